"""Reliability suite: a ledger of what was tried and what went wrong, written at session end.

Every test of `tests/reliability/` adds its figures to one session ledger (`ledger`
fixture): inputs tried per category, crashes (an exception other than the documented one),
false passes (bad input judged good), plaintext bytes released after a failed
authentication, objects lost, orphan multipart parts. Tests also *assert* these are zero;
the ledger only makes the figures of a run visible. At the end of the session the ledger is
written as JSON (to $KOMMUNMOLN_RELIABILITY_JSON, else into pytest's temporary directory)
and summarized in the terminal; docs/RELIABILITY.md copies the figures of one such run.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

FIGURES = ("inputs", "crashes", "false_passes", "plaintext_bytes_released", "objects_lost", "orphan_parts")


class Ledger:
    """Counters per category (e.g. "header_fuzz") and figure (e.g. "inputs")."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))

    def add(self, category: str, **figures: int) -> None:
        for figure, amount in figures.items():
            if figure not in FIGURES:
                raise KeyError(f"unknown figure {figure!r}; use one of {FIGURES}")
            self.counts[category][figure] += amount

    def as_dict(self) -> dict[str, Any]:
        return {category: dict(values) for category, values in sorted(self.counts.items())}


LEDGER = Ledger()


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return LEDGER


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not LEDGER.counts:
        return
    target = os.environ.get("KOMMUNMOLN_RELIABILITY_JSON")
    if target:
        path = Path(target)
    else:
        base = config._tmp_path_factory.getbasetemp() if hasattr(config, "_tmp_path_factory") else Path("/tmp")
        path = Path(base) / "reliability-last-run.json"
    record = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "slow_fuzz": bool(config.getoption("--slow-fuzz")),
        "exitstatus": int(exitstatus),
        "categories": LEDGER.as_dict(),
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    terminalreporter.section("reliability ledger")
    short = {
        "inputs": "inputs",
        "crashes": "crashes",
        "false_passes": "false-pass",
        "plaintext_bytes_released": "pt-bytes",
        "objects_lost": "lost",
        "orphan_parts": "orphans",
    }
    terminalreporter.write_line(f"{'category':40}" + "".join(f"{short[f]:>11}" for f in FIGURES))
    for category, values in record["categories"].items():
        terminalreporter.write_line(f"{category:40}" + "".join(f"{values[f]:>11}" for f in FIGURES))
    terminalreporter.write_line(f"written to {path}")
