"""Optional size padding (`upload --pad`, `sync --pad`): Padmé lengths, ISO/IEC 7816-4 bytes.

AWS sees each object's size. For municipalities whose file sizes are themselves telling
(a 2-page decision vs a 40-page investigation), `--pad` grows the plaintext before
encryption to a Padmé length (Nikitin et al., "Reducing Metadata Leakage from Encrypted
Files and Communication with PURBs", PETS 2019): a length L is rounded up so that only its
top floor(log2(floor(log2 L))) + 1 bits are kept, which leaks O(log log L) bits of the size.
Overhead: 1 byte plus at most 12.5 % below 256 bytes, 6.25 % from 256 bytes to 64 KiB,
3.13 % from 64 KiB to 4 GiB and 1.56 % above (about half that on average).

Format (decodable without this project, docs/use-case-1.md section 6): the encrypted
plaintext is the file, one byte 0x80, then zero bytes up to padme(size + 1). The message's
encryption context says `kommunmoln:padding = padme-v1`, never a size. To undo: strip the
trailing zero bytes, then the 0x80. The padding is inside the ESDK message, so it is
authenticated like the content.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from kommunmoln import names
from kommunmoln.tier_a.errors import DecryptionError

SCHEME = "padme-v1"
CONTEXT_KEY = names.CONTEXT_PADDING
MARKER = 0x80
_ZEROS = bytes(1024 * 1024)


def padme(length: int) -> int:
    """The Padmé length of `length` (>= length; equal for 0-3 and for powers of two up to 8)."""
    if length < 2:
        return length
    exponent = length.bit_length() - 1  # floor(log2 L)
    significant = exponent.bit_length()  # floor(log2 E) + 1
    mask = (1 << (exponent - significant)) - 1
    return (length + mask) & ~mask


def padded_length(size: int) -> int:
    """The plaintext length stored for a file of `size` bytes (file + marker + zeros)."""
    return padme(size + 1)


def overhead(size: int) -> float:
    """The padding's share of the file size (0.0 for an empty file)."""
    return (padded_length(size) - size) / size if size else 0.0


class PaddedSource(io.RawIOBase):
    """The file's bytes, then 0x80 and zeros up to the Padmé length of what was actually read.

    The padding is computed when the file ends (a file that grows or shrinks while it is
    read is padded for the size it had), so the stored length is always a Padmé length.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._content = 0
        self._tail: int | None = None  # padding bytes still to emit (None: content not finished)
        self._marker_sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._tail is None:
            n = self._raw.readinto(view) if hasattr(self._raw, "readinto") else self._read_into(view)
            if n:
                self._content += n
                return n
            self._tail = padded_length(self._content) - self._content
        if not self._tail or not len(view):
            return 0
        n = min(self._tail, len(view))
        view[:n] = bytes(n)
        if not self._marker_sent:
            view[0] = MARKER
            self._marker_sent = True
        self._tail -= n
        return n

    def _read_into(self, view: memoryview) -> int:
        data = self._raw.read(len(view))
        view[: len(data)] = data
        return len(data)


class Unpadder:
    """A decryption sink that writes the content and drops the trailing 0x80 + zeros.

    Memory stays constant: a run of zero bytes after a 0x80 is only counted, and written out
    when more content follows. `finish()` refuses a message whose padding is missing or not
    the Padmé length of its content, and returns the content bytes written.
    """

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._written = 0
        self._pending: int | None = None  # zeros after a held-back 0x80 (None: no 0x80 held)

    def _flush_pending(self) -> None:
        if self._pending is None:
            return
        self._emit(bytes([MARKER]))
        while self._pending:
            n = min(self._pending, len(_ZEROS))
            self._emit(_ZEROS[:n])
            self._pending -= n
        self._pending = None

    def _emit(self, data) -> None:
        self._sink.write(data)
        self._written += len(data)

    def write(self, data) -> int:
        chunk = bytes(data)
        stripped = chunk.rstrip(b"\x00")
        if not stripped:  # only zeros: padding if a 0x80 is held back, else content
            if self._pending is not None:
                self._pending += len(chunk)
            else:
                self._emit(chunk)
            return len(chunk)
        self._flush_pending()
        if stripped[-1] == MARKER:
            self._emit(stripped[:-1])
            self._pending = len(chunk) - len(stripped)
        else:
            self._emit(chunk)
        return len(chunk)

    def finish(self) -> int:
        if self._pending is None:
            raise DecryptionError("the object says it is padded but its padding is missing; no output written")
        if padded_length(self._written) != self._written + 1 + self._pending:
            raise DecryptionError("the object's padding is not the Padmé length of its content; no output written")
        return self._written
