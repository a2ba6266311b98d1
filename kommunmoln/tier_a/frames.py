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


def decrypt_frames(source: _Readable, sink: BinaryIO, *, key: bytes, message_id: bytes, frame_length: int) -> int:
    """Decrypt the framed body that follows the header in `source` into `sink`; returns the plaintext length.

    Raises cryptography's InvalidTag when a frame does not authenticate and FrameError when
    the frames are malformed. Each frame's plaintext is written as soon as that frame
    authenticates: the caller writes to a temporary file it discards on any error.
    """
    aead = AESGCM(key)
    plain = memoryview(bytearray(frame_length))
    expected = 1
    written = 0
    while True:
        (first,) = struct.unpack(">I", _read_exact(source, 4, "frame header"))
        final = first == SEQUENCE_NUMBER_END
        if final:
            number, iv, length = struct.unpack(">I12sI", _read_exact(source, 4 + IV_LENGTH + 4, "final frame header"))
            if length > frame_length:
                raise FrameError(f"final frame is longer ({length}) than the frame length ({frame_length})")
        else:
            number, length = first, frame_length
            iv = _read_exact(source, IV_LENGTH, "frame IV")
        if number != expected:
            raise FrameError(f"frame {number} where frame {expected} was expected (frames out of order)")
        sealed = _read_exact(source, length + TAG_LENGTH, f"frame {number}")
        aead.decrypt_into(iv, sealed, _aad(message_id, final, number, length), plain[:length])
        sink.write(plain[:length])
        written += length
        if final:
            return written
        if expected == MAX_SEQUENCE_NUMBER:
            raise FrameError("message has more than 2^32 - 1 frames")
        expected += 1
