"""Dated test results: what the test run proved, for the report's "proven by" column.

A pytest plugin (registered by tests/conftest.py; active only with `--results-file PATH`, which
`make test` passes as build/test-results.json) records each test's outcome with the time it
finished, the git commit and the run's start and end. The report reads that file and shows per
control the tests that prove it with their outcome and date. A test the file does not list, or
no file at all, is `not run`: the report never claims a pass it has not seen. Results recorded
at another commit than the report's are marked as such.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "kommunmoln-test-results/1"
PASSED, FAILED, SKIPPED, ERROR, NOT_RUN = "passed", "failed", "skipped", "error", "not run"
_RANK = {ERROR: 0, FAILED: 1, SKIPPED: 2, PASSED: 3}  # the worst outcome of a test's instances wins


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_commit(cwd: Path) -> str:
    """HEAD (with `+dirty` for uncommitted changes to tracked files), or `unknown`."""

    git = shutil.which("git")

    def run(*args: str) -> str:
        if git is None:
            return ""
        try:
            done = subprocess.run((git, *args), capture_output=True, text=True, timeout=20, cwd=cwd, check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = run("rev-parse", "HEAD")
    if not commit:
        return "unknown"
    return commit + ("+dirty" if run("status", "--porcelain", "--untracked-files=no") else "")


@dataclass(frozen=True)
class TestResult:
    """One test (all its parametrized instances together): the worst outcome and when it finished."""

    __test__ = False  # not a pytest test class

    outcome: str
    finished: str


@dataclass
class TestResults:
    """The results file of one test run."""

    __test__ = False

    commit: str = ""
    started: str = ""
    finished: str = ""
    tests: dict[str, TestResult] = field(default_factory=dict)
    source: str = ""  # where it was read from ("" when no file exists)

    @classmethod
    def load(cls, path: Path) -> TestResults:
        """Read a results file; a missing or unreadable one gives empty results (every test `not run`)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tests"), dict):
            return cls()
        tests: dict[str, TestResult] = {}
        for node_id, entry in data["tests"].items():
            if isinstance(entry, dict) and entry.get("outcome") in _RANK and isinstance(entry.get("finished"), str):
                _merge(tests, _base_id(node_id), TestResult(entry["outcome"], entry["finished"]))
        return cls(
            str(data.get("commit", "")), str(data.get("started", "")), str(data.get("finished", "")), tests, str(path)
        )

    def result(self, test_id: str) -> TestResult | None:
        """The result of a catalogued test id (`file::name`), or None when the run did not include it."""
        return self.tests.get(test_id)

    def describe(self, test_id: str, report_commit: str = "") -> str:
        """`passed 2026-12-02T16:40:03Z`, `failed ...`, or `not run`; marks results of another commit."""
        result = self.result(test_id)
        if result is None:
            return NOT_RUN
        text = f"{result.outcome} {result.finished}"
        if report_commit and self.commit and self.commit != report_commit:
            text += f" (at commit {self.commit[:12]}, not this report's)"
        return text

    def summary(self, report_commit: str = "") -> str:
        """One line for the report's provenance: which run, when, at which commit."""
        if not self.source:
            return "no results file: every proving test is shown as 'not run' (run `make test` first)"
        counts: dict[str, int] = {}
        for result in self.tests.values():
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        tally = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        same = "" if not report_commit or self.commit == report_commit else " (not this report's commit)"
        return f"{self.source}: run {self.started} to {self.finished} at commit {self.commit}{same}; {tally}"


def _base_id(node_id: str) -> str:
    """`tests/x.py::test_y[param]` -> `tests/x.py::test_y` (the catalogue names tests without parameters)."""
    head, sep, _ = node_id.partition("[")
    return head if sep else node_id


def _merge(tests: dict[str, TestResult], test_id: str, result: TestResult) -> None:
    known = tests.get(test_id)
    worse = known is None or _RANK[result.outcome] < _RANK[known.outcome]
    if worse or (_RANK[result.outcome] == _RANK[known.outcome] and result.finished > known.finished):
        tests[test_id] = result


# --- the pytest plugin -----------------------------------------------------------------------
class _Recorder:
    def __init__(self, path: Path, rootdir: Path) -> None:
        self.path = path
        self.rootdir = rootdir
        self.started = _now()
        self.outcomes: dict[str, dict[str, str]] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.failed or report.skipped:
            if report.failed:
                outcome = FAILED if report.when == "call" else ERROR
            elif report.skipped:
                outcome = SKIPPED
            else:
                outcome = PASSED
            previous = self.outcomes.get(report.nodeid)
            # A teardown error after a pass still makes the test an error.
            if previous is None or _RANK[outcome] < _RANK[previous["outcome"]]:
                self.outcomes[report.nodeid] = {"outcome": outcome, "finished": _now()}

    def pytest_sessionfinish(self, session: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "format": FORMAT,
            "commit": git_commit(self.rootdir),
            "started": self.started,
            "finished": _now(),
            "tests": self.outcomes,
        }
        self.path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--results-file",
        default=None,
        metavar="PATH",
        help="write dated test outcomes (with the git commit) for the compliance report",
    )


def pytest_configure(config: Any) -> None:
    path = config.getoption("--results-file")
    # Only the controlling process writes (pytest-xdist workers report to it).
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Recorder(Path(path), Path(str(config.rootpath))), "kommunmoln-results")
