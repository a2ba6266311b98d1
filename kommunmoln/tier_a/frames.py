"""Framed message bodies (ESDK message format version 2, committing suite without signature).

Only the body: the AWS Encryption SDK builds and parses the header, authenticates it,
unwraps the data key and derives the frame key (kommunmoln.tier_a.codec hands that key and
the message ID in). This module encrypts and decrypts frames with `cryptography`'s AES-GCM
straight into caller buffers (`encrypt_into`/`decrypt_into`), because the ESDK's Python
stream copies each frame about six times (docs/BENCHMARKS.md, profile).

Layout, from the AWS Encryption SDK message format reference (body structure) and body AAD
reference (https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/message-format.html,
.../body-aad-reference.html); all integers big-endian:
- regular frame: sequence number (uint32), IV (12), encrypted content (frame length), tag (16);
- final frame: 0xFFFFFFFF, sequence number (uint32), IV (12), content length (uint32, at
  most the frame length, may be 0), encrypted content, tag (16);
- sequence numbers start at 1 and increase by one; the last frame is the final frame (a
  plaintext that is a whole number of frames ends with an empty final frame, as the ESDK
  writes it); the IV of frame n is n as a 12-byte big-endian number (8 zero bytes, then n);
- AAD: message ID (32 bytes in version 2), "AWSKMSEncryptionClient Frame" or
  "AWSKMSEncryptionClient Final Frame", sequence number (uint32), content length (uint64);
- the suite has no signature, so nothing follows the final frame (no footer).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

IV_LENGTH = 12
TAG_LENGTH = 16
SEQUENCE_NUMBER_END = 0xFFFFFFFF
MAX_SEQUENCE_NUMBER = 0xFFFFFFFF  # 2^32 - 1 frames at most
REGULAR_FRAME_AAD = b"AWSKMSEncryptionClient Frame"
FINAL_FRAME_AAD = b"AWSKMSEncryptionClient Final Frame"
_REGULAR_PREFIX = 4 + IV_LENGTH  # sequence number, IV
_FINAL_PREFIX = 4 + 4 + IV_LENGTH + 4  # end marker, sequence number, IV, content length


class FrameError(ValueError):
    """The body is not a well-formed sequence of frames (truncated, reordered, oversized)."""


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def frame_iv(sequence_number: int) -> bytes:
    return sequence_number.to_bytes(IV_LENGTH, "big")


def _aad(message_id: bytes, final: bool, sequence_number: int, length: int) -> bytes:
    return message_id + (FINAL_FRAME_AAD if final else REGULAR_FRAME_AAD) + struct.pack(">IQ", sequence_number, length)


class FrameEncryptor:
    """The ciphertext of one message, header first, read with `readinto` (or `read`).

    `header` is the ESDK's parsed header, `header_bytes` its serialization with its
    authentication; `key` the ESDK-derived data encryption key. Frames that fit are encrypted directly into the caller's buffer;
    one that straddles the end of the buffer goes through a scratch buffer.
    """

    def __init__(self, source: BinaryIO, *, header: object, header_bytes: bytes, key: bytes, frame_length: int) -> None:
        self.header = header  # the ESDK's MessageHeader (message ID, context), as its stream exposes it
        self._source = source
        self._readinto = getattr(source, "readinto", None)
        self._aead = AESGCM(key)
        self._message_id = bytes(header.message_id)  # type: ignore[attr-defined]
        self._frame_length = frame_length
        self._plain = memoryview(bytearray(frame_length))
        self._scratch = memoryview(bytearray(_FINAL_PREFIX + frame_length + TAG_LENGTH))
        self._pending = memoryview(header_bytes)
        self._sequence_number = 1
        self._done = False
        self.plaintext_bytes = 0

    def _fill_plain(self) -> int:
        """Up to one frame of plaintext into the frame buffer (short only at the end of the input)."""
        got = 0
        while got < self._frame_length:
            if self._readinto is not None:
                try:
                    n = self._readinto(self._plain[got:])
                except (NotImplementedError, io.UnsupportedOperation):  # a RawIOBase with read() only
                    self._readinto = None
                    continue
            else:
                data = self._source.read(self._frame_length - got)
                n = len(data)
                self._plain[got : got + n] = data
            if not n:
                break
            got += n
        return got

    def _encrypt_frame(self, out: memoryview, length: int, final: bool) -> int:
        """Frame `self._sequence_number` of `length` plaintext bytes into `out`; returns its size."""
        number = self._sequence_number
        if number > MAX_SEQUENCE_NUMBER:
            raise FrameError("message would have more than 2^32 - 1 frames")
        iv = frame_iv(number)
        if final:
            struct.pack_into(">II12sI", out, 0, SEQUENCE_NUMBER_END, number, iv, length)
            offset = _FINAL_PREFIX
        else:
            struct.pack_into(">I12s", out, 0, number, iv)
            offset = _REGULAR_PREFIX
        end = offset + length + TAG_LENGTH
        self._aead.encrypt_into(
            iv, self._plain[:length], _aad(self._message_id, final, number, length), out[offset:end]
        )
        self._sequence_number += 1
        self.plaintext_bytes += length
        return end

    def readinto(self, buffer: bytearray | memoryview) -> int:
        out = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(out):
            if self._pending:
                n = min(len(self._pending), len(out) - filled)
                out[filled : filled + n] = self._pending[:n]
                self._pending = self._pending[n:]
                filled += n
                continue
            if self._done:
                break
            length = self._fill_plain()
            final = length < self._frame_length  # a full frame is regular; EOF ends with a short final frame
            size = (_FINAL_PREFIX if final else _REGULAR_PREFIX) + length + TAG_LENGTH
            if len(out) - filled >= size:
                filled += self._encrypt_frame(out[filled:], length, final)
            else:
                self._pending = self._scratch[: self._encrypt_frame(self._scratch, length, final)]
            self._done = final
        return filled

    def read(self, size: int = -1) -> bytes:
        buffer = bytearray(size if size > 0 else self._frame_length + _FINAL_PREFIX + TAG_LENGTH)
        del buffer[self.readinto(buffer) :]
        return bytes(buffer)


def _read_exact(source: _Readable, size: int, what: str) -> bytes:
    data = source.read(size)
    while len(data) < size:
        more = source.read(size - len(data))
        if not more:
            raise FrameError(f"message is truncated ({what})")
        data += more
    return data


class FrameDecryptor:
    """Reads, authenticates and decrypts one frame at a time into a frame-sized buffer of its own."""

    def __init__(self, *, key: bytes, message_id: bytes, frame_length: int) -> None:
        self._aead = AESGCM(key)
        self._message_id = bytes(message_id)
        self._frame_length = frame_length
        self._plain = memoryview(bytearray(frame_length))

    def frame(self, source: _Readable, number: int, *, final: bool | None = None) -> tuple[bool, memoryview]:
        """Frame `number` from `source`: (whether it is the final frame, its plaintext).

        `final` says which kind the frame must be where the caller knows it (the object's
        length fixes it, see `body_layout`); None accepts either. The plaintext view is
        valid until the next call. Raises cryptography's InvalidTag when the frame does not
        authenticate and FrameError when it is malformed or out of place.
        """
        (first,) = struct.unpack(">I", _read_exact(source, 4, "frame header"))
        is_final = first == SEQUENCE_NUMBER_END
        if final is not None and is_final != final:
            raise FrameError(f"frame {number} is {'the' if is_final else 'not the'} final frame where it must "
                             f"{'not ' if is_final else ''}be (truncated or extended message)")  # fmt: skip
        if is_final:
            seq, iv, length = struct.unpack(">I12sI", _read_exact(source, 4 + IV_LENGTH + 4, "final frame header"))
            if length > self._frame_length:
                raise FrameError(f"final frame is longer ({length}) than the frame length ({self._frame_length})")
        else:
            seq, length = first, self._frame_length
            iv = _read_exact(source, IV_LENGTH, "frame IV")
        if seq != number:
            raise FrameError(f"frame {seq} where frame {number} was expected (frames out of order)")
        sealed = _read_exact(source, length + TAG_LENGTH, f"frame {number}")
        plain = self._plain[:length]
        self._aead.decrypt_into(iv, sealed, _aad(self._message_id, is_final, number, length), plain)
        return is_final, plain


def decrypt_frames(source: _Readable, sink: BinaryIO, *, key: bytes, message_id: bytes, frame_length: int) -> int:
    """Decrypt the framed body that follows the header in `source` into `sink`; returns the plaintext length.

    Raises cryptography's InvalidTag when a frame does not authenticate and FrameError when
    the frames are malformed. Each frame's plaintext is written as soon as that frame
    authenticates: the caller writes to a temporary file it discards on any error.
    """
    decryptor = FrameDecryptor(key=key, message_id=message_id, frame_length=frame_length)
    number = 1
    written = 0
    while True:
        final, plain = decryptor.frame(source, number)
        sink.write(plain)
        written += len(plain)
        if final:
            return written
        if number == MAX_SEQUENCE_NUMBER:
            raise FrameError("message has more than 2^32 - 1 frames")
        number += 1


REGULAR_FRAME_OVERHEAD = _REGULAR_PREFIX + TAG_LENGTH  # 32 bytes around each regular frame's content
FINAL_FRAME_OVERHEAD = _FINAL_PREFIX + TAG_LENGTH  # 40 bytes around the final frame's content


@dataclass(frozen=True)
class BodyLayout:
    """Where every frame of an unsigned framed message must be, given the message's length.

    With no footer (no signature), a message of `L` bytes whose header takes `H` bytes has
    `n` regular frames of exactly `frame_length` bytes of content and one final frame of
    `final_length` <= frame_length bytes, with L = H + n * (frame_length + 32) +
    final_length + 40; since final_length < frame_length + 32, `n` and `final_length`
    follow from L alone. A frame found anywhere else (truncated, extended, reordered
    message) fails `FrameDecryptor.frame`'s checks or its authentication.
    """

    header_length: int
    frame_length: int
    regular_frames: int
    final_length: int

    @property
    def frames(self) -> int:
        """The number of frames; the last, this number, is the final frame."""
        return self.regular_frames + 1

    @property
    def plaintext_length(self) -> int:
        return self.regular_frames * self.frame_length + self.final_length

    def start(self, number: int) -> int:
        """The offset of frame `number` (1-based) in the message."""
        return self.header_length + (number - 1) * (self.frame_length + REGULAR_FRAME_OVERHEAD)

    def end(self, number: int) -> int:
        """The offset just past frame `number`."""
        if number == self.frames:
            return self.start(number) + self.final_length + FINAL_FRAME_OVERHEAD
        return self.start(number + 1)

    def plaintext_start(self, number: int) -> int:
        return (number - 1) * self.frame_length


def body_layout(*, header_length: int, message_length: int, frame_length: int) -> BodyLayout:
    """The layout of the body of an unsigned framed message of `message_length` bytes (FrameError if none fits)."""
    rest = message_length - header_length - FINAL_FRAME_OVERHEAD
    if rest < 0:
        raise FrameError("message is truncated (no room for the final frame)")
    regular, final_length = divmod(rest, frame_length + REGULAR_FRAME_OVERHEAD)
    if final_length > frame_length:
        raise FrameError("message length does not match its framing (truncated or extended)")
    if regular + 1 > MAX_SEQUENCE_NUMBER:
        raise FrameError("message has more than 2^32 - 1 frames")
    return BodyLayout(header_length, frame_length, regular, final_length)
