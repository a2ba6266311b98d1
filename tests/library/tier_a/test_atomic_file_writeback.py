"""AtomicFile's background writeback: the file is flushed while it is written, and a failed flush is never renamed.

The documented rules these tests rely on:
- fdatasync(2) "flushes all modified in-core data of the file referred to by the file
  descriptor fd to the disk device", and returns EIO when "an error occurred during
  synchronization" (Linux man-pages, fsync(2)).
- Since Linux 4.13 writeback errors are tracked with errseq_t and reported once to each
  open file description (the kernel's Documentation/filesystems/vfs.rst, "Handling errors
  during writeback"; fsync(2): "errors from write-back will be reported to all file
  descriptors that might have written the data"): once the background call on a
  descriptor has seen an error, a later fsync on the same descriptor may return 0. So the
  background error must be kept, and it refuses the rename.
The failing flush is scripted (monkeypatched os.fdatasync): a real EIO needs a failing disk.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from kommunmoln.tier_a import outputs
from kommunmoln.tier_a.outputs import AtomicFile

CHUNK = b"k" * 65536


def _writeback_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kommunmoln-writeback" and t.is_alive()]


@pytest.fixture
def fast_writeback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "WRITEBACK_INTERVAL", 0.01)


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every os.fdatasync call as (descriptor, file size at that moment); the real call still runs."""
    calls: list[tuple[int, int]] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        calls.append((fd, os.fstat(fd).st_size))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    return calls


def _write_slowly(handle, chunks: int = 20, pause: float = 0.005) -> None:
    for _ in range(chunks):
        handle.write(CHUNK)
        handle.flush()
        time.sleep(pause)


def test_file_is_flushed_while_it_is_written(tmp_path: Path, fast_writeback, flushes) -> None:
    # GIVEN a destination written over longer than the writeback interval
    dest = tmp_path / "out.bin"
    # WHEN the file is written through AtomicFile
    with AtomicFile(dest) as (handle, tmp):
        _write_slowly(handle)
        fd = handle.fileno()
    # THEN fdatasync ran on the temporary file's descriptor while it was still growing,
    assert any(call_fd == fd and 0 < size < 20 * len(CHUNK) for call_fd, size in flushes), flushes
    # AND the destination holds every byte, the temporary file is gone, no flusher thread is left
    assert dest.read_bytes() == CHUNK * 20
    assert not tmp.exists()
    assert _writeback_threads() == []


def test_failed_background_flush_refuses_the_rename(tmp_path: Path, fast_writeback, monkeypatch) -> None:
    # GIVEN a disk that refuses the data (the background fdatasync fails with EIO; the final
    # fsync succeeds, as it may under Linux's report-once rule quoted above)
    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", failing)
    dest = tmp_path / "out.bin"
    # WHEN the block finishes without an error of its own
    with pytest.raises(OSError) as raised, AtomicFile(dest) as (handle, tmp):
        _write_slowly(handle)
    # THEN the flush's error is raised, nothing is renamed into place, the temporary file is removed
    assert raised.value.errno == errno.EIO
    assert not dest.exists()
    assert not tmp.exists()
    assert _writeback_threads() == []


def test_no_thread_no_file_left_when_the_flusher_cannot_start(tmp_path: Path, monkeypatch) -> None:
    # GIVEN a process that cannot start another thread
    def no_thread(self) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    dest = tmp_path / "out.bin"
    # WHEN AtomicFile is entered
    with pytest.raises(RuntimeError), AtomicFile(dest) as (_handle, _tmp):
        pass
    # THEN neither the destination nor a temporary file is left
    assert list(tmp_path.iterdir()) == []


def test_failed_background_flush_keeps_an_existing_destination(tmp_path: Path, fast_writeback, monkeypatch) -> None:
    # GIVEN an existing destination and a disk that refuses the new data
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"previous version")
    monkeypatch.setattr(os, "fdatasync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    # WHEN a replacement is written with overwrite
    with pytest.raises(OSError), AtomicFile(dest, overwrite=True) as (handle, _tmp):
        _write_slowly(handle)
    # THEN the previous version is untouched
    assert dest.read_bytes() == b"previous version"


def test_error_in_the_block_wins_over_a_flush_error(tmp_path: Path, fast_writeback, monkeypatch) -> None:
    # GIVEN a block that fails (e.g. a frame that did not authenticate) while a flush also failed
    monkeypatch.setattr(os, "fdatasync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    dest = tmp_path / "out.bin"

    class Tampered(Exception):
        pass

    # WHEN the block raises
    with pytest.raises(Tampered), AtomicFile(dest) as (handle, tmp):
        _write_slowly(handle)
        raise Tampered
    # THEN the block's own error reaches the caller, and nothing is left on disk
    assert not dest.exists()
    assert not tmp.exists()
    assert _writeback_threads() == []


def test_quick_file_needs_no_background_flush(tmp_path: Path, flushes, monkeypatch) -> None:
    # GIVEN a small file written well within the interval (5 s here, so a loaded machine cannot flake it)
    monkeypatch.setattr(outputs, "WRITEBACK_INTERVAL", 5.0)
    dest = tmp_path / "small.bin"
    # WHEN it is written
    with AtomicFile(dest) as (handle, _tmp):
        handle.write(b"small")
    # THEN only the final fsync made it durable (no background call), and it is in place
    assert flushes == []
    assert dest.read_bytes() == b"small"
    assert _writeback_threads() == []
