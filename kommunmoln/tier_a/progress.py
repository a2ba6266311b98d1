"""A dependency-free progress line on stderr, shown only on a terminal and without --quiet."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_MIB = 1024 * 1024


class Progress:
    """`update(n)` from any thread; redraws at most a few times a second; `close()` ends the line."""

    def __init__(
        self, label: str, total: int | None, *, enabled: bool, stream: TextIO | None = None, files: int | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.files = files  # how many files the whole run has (None: one file)
        self.files_done = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_draw = 0.0

    def update(self, count: int) -> None:
        with self._lock:
            self.done += count
            if not self.enabled:
                return
            now = time.monotonic()
            if now - self._last_draw >= 0.2:
                self._last_draw = now
                self._draw(now)

    def file_done(self) -> None:
        """One more file finished (shown as n/N files)."""
        with self._lock:
            self.files_done += 1

    def finish(self) -> None:
        """The transfer ended: the estimate of the total becomes the count (100 %)."""
        with self._lock:
            self.total = self.done

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-6)
        rate = self.done / _MIB / elapsed
        label = f"{self.label} {self.files_done}/{self.files} files" if self.files else self.label
        if self.total:
            share = min(self.done / self.total, 1.0)
            bar = "#" * int(share * 20)
            text = f"{label} [{bar:<20}] {share:6.1%} {self.done / _MIB:,.1f}/{self.total / _MIB:,.1f} MiB"
        else:
            text = f"{label} {self.done / _MIB:,.1f} MiB"
        self.stream.write(f"\r{text} {rate:,.1f} MiB/s\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self.enabled:
                self._draw(time.monotonic())
                self.stream.write("\n")
                self.stream.flush()
                self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_enabled(quiet: bool, stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    return not quiet and hasattr(stream, "isatty") and stream.isatty()
