"""What a command tells its caller: result lines, JSON Lines (--json), errors, a summary.

Text mode: result lines and the summary on standard output (not with --quiet), errors and
skipped inputs on standard error (always). JSON mode (--json): one JSON object per line on
standard output, each with an "event" of "result", "skipped", "error" or "summary"; errors
also go to standard error as one line, so a human watching a scripted run still sees them.
When standard output carries data (`decrypt IN -`), reports go to standard error.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from kommunmoln.tier_a.progress import Progress, progress_enabled


class Reporter:
    """One per command run; `stream` is where results go (standard output unless it carries data)."""

    def __init__(self, command: str, *, quiet: bool = False, json_lines: bool = False, stream: TextIO | None = None):
        self.command = command
        self.quiet = quiet
        self.json_lines = json_lines
        self.stream = stream
        self.errors = 0

    @property
    def out(self) -> TextIO:
        return self.stream or sys.stdout

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        record = {"event": event, "command": self.command, **fields}
        print(json.dumps(record, ensure_ascii=False, default=str), file=self.out, flush=True)

    def result(self, text: str, **fields: Any) -> None:
        """One thing done (a file encrypted, an object uploaded, an object checked)."""
        if self.json_lines:
            self._emit("result", fields)
        elif not self.quiet:
            print(text, file=self.out, flush=True)

    def always(self, text: str, **fields: Any) -> None:
        """A result shown even with --quiet (e.g. the encryption context a decrypted message claims)."""
        if self.json_lines:
            self._emit("result", fields)
        else:
            print(text, file=self.out, flush=True)

    def skipped(self, name: str, reason: str) -> None:
        """An input left out on purpose (symlink, unsafe key): always reported."""
        if self.json_lines:
            self._emit("skipped", {"name": name, "reason": reason})
        print(f"skipped: {name}: {reason}", file=sys.stderr, flush=True)

    def error(self, message: str, *, exit_code: int | None = None, **fields: Any) -> None:
        """A failure: one line on standard error (and a JSON event)."""
        self.errors += 1
        if self.json_lines:
            self._emit(
                "error", {"message": message, **({"exit_code": exit_code} if exit_code is not None else {}), **fields}
            )
        print(f"error: {message}", file=sys.stderr, flush=True)

    def summary(self, text: str, **fields: Any) -> None:
        """The closing line of a command over many items."""
        if self.json_lines:
            self._emit("summary", fields)
        elif not self.quiet:
            print(text, file=self.out, flush=True)

    def progress(self, label: str, total: int | None, *, files: int | None = None) -> Progress:
        """A progress line on a terminal's standard error (never with --quiet or --json)."""
        return Progress(label, total, enabled=not self.json_lines and progress_enabled(self.quiet), files=files)
