"""Where the client writes: one rule set for `encrypt`, `decrypt`, `download` and `sync`.

- `-` means standard output (and standard input for an input): the only way to write
  through to something that is not a regular file.
- A destination that exists must be a regular file, and is replaced only with `--force`
  (`overwrite=True`); a symlink, a device, a FIFO or a socket is never replaced (writing
  "to /dev/stdout" used to replace the device node with a regular file machine-wide).
- Input and output must not be the same file.
- Files appear whole or not at all: written to a 0600 temporary file beside the destination,
  fsynced, then moved into place. Without `overwrite` the move is a hard link, which fails
  if the destination appeared in the meantime (no check-then-replace race).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kommunmoln.tier_a.errors import UsageError

STDIO = "-"


def is_stdio(path: str | os.PathLike[str]) -> bool:
    """True for the `-` that names standard input or output."""
    return os.fspath(path) == STDIO


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_destination(
    dest: str | os.PathLike[str], *, overwrite: bool, source: str | os.PathLike[str] | None = None
) -> Path:
    """The destination as a Path, or UsageError saying why it must not be written.

    `source` (an input file) must not be the destination itself.
    """
    dest = Path(dest)
    try:
        info = dest.lstat()
    except FileNotFoundError:
        info = None
    except OSError as error:
        raise UsageError(f"output {dest}: {error.strerror}") from None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise UsageError(f"output {dest} is a symlink; write to its target by name, or to '-' (standard output)")
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"output {dest} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(
                f"output {dest} is {_kind(info.st_mode)}; it is never replaced (use '-' for standard output)"
            )
        if source is not None and not is_stdio(source) and _same_file(Path(source), dest):
            raise UsageError(f"input and output are the same file ({dest})")
        if not overwrite:
            raise UsageError(f"output {dest} exists; use --force to replace it")
    if not dest.parent.is_dir():
        raise UsageError(f"output directory {dest.parent} does not exist")
    return dest


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


WRITEBACK_INTERVAL = 0.2  # seconds between background fdatasync calls while a file is written


class BackgroundWriteback:
    """Flushes a file being written to disk every `interval` seconds, on a thread of its own.

    The fsync before the rename (`AtomicFile`) is what makes a renamed file whole after a
    power cut; done only at the end it waits for every byte written, which on this project's
    machines was 0.26-0.32 s per GiB freshly downloaded (bench/). Flushing while the
    download still runs overlaps that wait with the network, so the final fsync only has the
    last interval's bytes to write. It changes nothing about durability: the final fsync
    still runs and decides.

    An error of a background flush is kept and returned by `stop()`: Linux reports a
    writeback error to an fsync once per file description (errseq), so a failure the
    background call saw might not be seen again by the final one, and the file would be
    renamed into place with bytes the disk did not take.
    """

    def __init__(self, fd: int, *, interval: float | None = None) -> None:
        self._fd = fd
        self._interval = WRITEBACK_INTERVAL if interval is None else interval
        self._stopped = threading.Event()
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="kommunmoln-writeback", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                getattr(os, "fdatasync", os.fsync)(self._fd)  # macOS has no fdatasync
            except OSError as error:
                self.error = error
                return

    def stop(self) -> OSError | None:
        """Stop flushing (waits for a flush under way); the error a flush met, if any."""
        self._stopped.set()
        self._thread.join()
        return self.error


class AtomicFile:
    """A 0600 temporary file beside `dest`: fsync + move into place on success, unlink on failure.

    While it is written, `BackgroundWriteback` flushes it every `WRITEBACK_INTERVAL`
    seconds, so the closing fsync is short. Ctrl-C and SIGTERM discard it. SIGKILL cannot
    be intercepted: the 0600 file then stays until the next run for the same destination
    sweeps it (see `_sweep_stale`).
    """

    def __init__(self, dest: Path, *, overwrite: bool = True) -> None:
        self.dest = Path(dest)
        self.overwrite = overwrite
        self.tmp: Path | None = None
        self.handle: BinaryIO | None = None
        self._writeback: BackgroundWriteback | None = None

    def __enter__(self) -> tuple[BinaryIO, Path]:
        check_destination(self.dest, overwrite=self.overwrite)
        parent = self.dest.parent
        self._sweep_stale(parent)
        try:
            fd, name = tempfile.mkstemp(prefix=f".{self.dest.name}.", suffix=".partial", dir=parent)
        except OSError as error:
            raise UsageError(f"cannot write in {parent}: {error.strerror}") from None
        self.tmp = Path(name)
        self.handle = os.fdopen(fd, "wb")
        try:
            self._writeback = BackgroundWriteback(fd)
        except BaseException:  # no thread could be started: nothing may be left behind
            self._discard()
            raise
        return self.handle, self.tmp

    def _sweep_stale(self, parent: Path) -> None:
        """Remove temporary files that an earlier run for this destination left when it was killed.

        SIGKILL (or a power cut) gives no process a chance to clean up, so a 0600 temporary
        file may remain; it is removed here, before anything new is written.
        """
        for stale in parent.glob(f".{self.dest.name}.*.partial"):
            stale.unlink(missing_ok=True)

    def _commit(self) -> None:
        assert self.tmp is not None
        # Checked again at the last moment: the destination may have changed while we wrote.
        check_destination(self.dest, overwrite=self.overwrite)
        if self.overwrite:
            os.replace(self.tmp, self.dest)
            return
        try:
            os.link(self.tmp, self.dest)  # fails with EEXIST instead of replacing
        except FileExistsError:
            raise UsageError(f"output {self.dest} appeared while writing; use --force to replace it") from None
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            os.replace(self.tmp, self.dest)  # a file system without hard links: checked just above
            return
        self.tmp.unlink()

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.handle is not None and self.tmp is not None and self._writeback is not None
        writeback, self._writeback = self._writeback, None
        try:
            flush_error = writeback.stop()  # first: the thread must not outlive the descriptor
            if exc_type is None:
                if flush_error is not None:
                    raise flush_error  # the disk refused bytes of this file: never rename it into place
                self.handle.flush()
                os.fsync(self.handle.fileno())
                self.handle.close()
                self._commit()
                fsync_dir(self.dest.parent)
                return False
        except BaseException:
            self._discard()
            raise
        self._discard()
        return False

    def _discard(self) -> None:
        assert self.handle is not None and self.tmp is not None
        try:
            self.handle.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def stdout_spool() -> Iterator[Path]:
    """A private 0600 file to decrypt into; copied to standard output only when the block succeeds.

    Decryption releases plaintext frame by frame before the whole message is authenticated,
    so writing straight to a pipe would hand a reader a prefix of a tampered message. The
    spool keeps `decrypt -` all or nothing; it lives in a 0700 directory of its own and is
    removed on every path.
    """
    spool_dir = Path(tempfile.mkdtemp(prefix="kommunmoln-"))
    spool = spool_dir / "plaintext"
    try:
        yield spool
        with open(spool, "rb") as handle:
            out = sys.stdout.buffer
            shutil.copyfileobj(handle, out, 1024 * 1024)
            out.flush()
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)


class PeekableInput(io.RawIOBase):
    """Standard input whose first bytes can be looked at (the header) and still be read after."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._head = b""

    def readable(self) -> bool:
        return True

    def peek_head(self, limit: int) -> bytes:
        """Up to `limit` bytes from the start (fewer only at the end of the input); not consumed."""
        while len(self._head) < limit:
            data = self._raw.read(limit - len(self._head))
            if not data:
                break
            self._head += data
        return self._head[:limit]

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._raw.read(size)

    def close(self) -> None:  # standard input stays open for the process
        pass


_stdin: PeekableInput | None = None


def open_input(path: str | os.PathLike[str]) -> BinaryIO:
    """An input file opened for reading (`-` = standard input); UsageError with a one-line reason."""
    global _stdin
    if is_stdio(path):
        if _stdin is None or _stdin._raw is not sys.stdin.buffer:
            _stdin = PeekableInput(sys.stdin.buffer)
        return _stdin  # type: ignore[return-value]
    path = Path(path)
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UsageError(f"input {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"input {path} is a directory") from None
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
