"""Dated test results (issue 16 item 14): "proven by" shows what a run proved and when, never a bare name."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from kommunmoln.compliance.report import PASS, Evidence, Row, render_html, render_markdown
from kommunmoln.compliance.results import FORMAT, NOT_RUN, TestResults
from tests.conftest import REPO_ROOT
from tests.infrastructure.compliance.fixtures import write_results

GIT = shutil.which("git") or "git"
_PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "kommunmoln.compliance.results"]
_STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"

_SAMPLE_TESTS = """
import pytest

def test_passes():
    assert True

def test_fails():
    assert False

@pytest.mark.skip(reason="not here")
def test_skipped():
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n == 1

@pytest.fixture
def broken():
    raise RuntimeError("setup")

def test_setup_error(broken):
    pass
"""


def _run_plugin(directory: Path, results: Path) -> subprocess.CompletedProcess[str]:
    (directory / "test_sample.py").write_text(_SAMPLE_TESTS)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [*_PYTEST, f"--results-file={results}", "test_sample.py"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plugin_records_each_outcome_with_its_time_and_the_commit(tmp_path: Path) -> None:
    # GIVEN a git checkout with passing, failing, skipped, parametrized and erroring tests
    subprocess.run([GIT, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "README").write_text("x")
    subprocess.run([GIT, "add", "README"], cwd=tmp_path, check=True)
    subprocess.run(
        [GIT, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "x"],
        cwd=tmp_path,
        check=True,
    )
    head = subprocess.run([GIT, "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    results = tmp_path / "build" / "test-results.json"
    # WHEN pytest runs with the plugin and --results-file
    run = _run_plugin(tmp_path, results)
    assert run.returncode == 1, run.stdout + run.stderr  # a test failed, and pytest says so
    # THEN the file records the format, the run's times, the commit, and every outcome dated
    document = json.loads(results.read_text())
    assert document["format"] == FORMAT and document["commit"] == head
    assert re.fullmatch(_STAMP, document["started"]) and document["started"] <= document["finished"]
    outcomes = {node.split("::")[1]: entry["outcome"] for node, entry in document["tests"].items()}
    assert outcomes == {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_skipped": "skipped",
        "test_param[1]": "passed",
        "test_param[2]": "failed",
        "test_setup_error": "error",
    }
    assert all(re.fullmatch(_STAMP, entry["finished"]) for entry in document["tests"].values())
    # AND read back, a parametrized test counts as its worst instance
    loaded = TestResults.load(results)
    assert loaded.result("test_sample.py::test_param").outcome == "failed"
    assert loaded.describe("test_sample.py::test_passes", head).startswith("passed ")
    assert "not this report's" not in loaded.describe("test_sample.py::test_passes", head)


def test_without_the_option_no_file_is_written(tmp_path: Path) -> None:
    # GIVEN the plugin loaded but no --results-file WHEN pytest runs THEN nothing is written
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert True\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(
        _PYTEST,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_one.py"]


def test_missing_malformed_or_foreign_files_mean_not_run(tmp_path: Path) -> None:
    # GIVEN no file, a file that is not JSON, and JSON of another format
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "junit", "tests": {"a::b": {"outcome": "passed"}}}))
    for name in ("absent.json", "bad.json", "other.json"):
        results = TestResults.load(tmp_path / name)
        # THEN every test is `not run`, never passed, and the summary says why
        assert results.describe("a::b") == NOT_RUN
        assert "no results file" in results.summary()


def test_results_of_another_commit_are_marked(tmp_path: Path) -> None:
    # GIVEN results recorded at commit A
    path = write_results(
        tmp_path / "r.json",
        "a" * 40,
        {"t.py::test_x": ("passed", "2026-12-01T10:01:00Z")},
        ("2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z"),
    )
    # WHEN a report at commit B reads them THEN the result is shown with its date and marked as another commit's
    shown = TestResults.load(path).describe("t.py::test_x", "b" * 40)
    assert shown == f"passed 2026-12-01T10:01:00Z (at commit {'a' * 12}, not this report's)"
    assert "not this report's commit" in TestResults.load(path).summary("b" * 40)


def test_report_proven_by_shows_dated_results_and_not_run(tmp_path: Path) -> None:
    # GIVEN a row proven by two tests, of which the run includes only one (it failed)
    path = write_results(
        tmp_path / "r.json",
        "c" * 40,
        {"t.py::test_ran": ("failed", "2026-12-02T09:02:03Z")},
        ("2026-12-02T09:00:00Z", "2026-12-02T09:10:00Z"),
    )
    row = Row(
        ("disclosure",),
        "KommunmolnOSL-2",
        "t",
        "S/B",
        "AWS::S3::Bucket",
        PASS,
        "",
        ("t.py::test_ran", "t.py::test_absent"),
    )
    evidence = Evidence(config={}, rows=[row], provenance={"git commit": "c" * 40}, results=TestResults.load(path))
    # WHEN the report is rendered
    markdown, page = render_markdown(evidence), render_html(evidence)
    # THEN each proving test shows its outcome and date, and the one the run did not include is `not run`
    assert "`t.py::test_ran`: failed 2026-12-02T09:02:03Z" in markdown
    assert "`t.py::test_absent`: not run" in markdown
    assert "t.py::test_absent</code>: not run" in page
    assert "test_absent`: passed" not in markdown
    assert f"{path}: run 2026-12-02T09:00:00Z to 2026-12-02T09:10:00Z" in markdown


def test_make_test_writes_the_results_file_that_make_report_reads() -> None:
    # GIVEN the Makefile WHEN make plans `test` and `report` (dry run, nothing executed)
    make = shutil.which("make") or "make"
    plan = subprocess.run(
        [make, "-n", "-o", ".venv/.installed", "-o", "node_modules/.installed", "test", "report"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    # THEN the test run records its results where the report reads them, and the report writes the PDFs
    assert "pytest --results-file=build/test-results.json" in plan
    assert "kommunmoln.compliance.report --results build/test-results.json --pdf-dir build/report" in plan
