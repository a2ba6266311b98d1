"""bench/small_files.py: the table and ratios it reports (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

from bench import run, small_files
from bench.small_files import KIB, Row, make_tree, render


def test_ratios_are_against_plain_boto3_of_the_same_set() -> None:
    rows = [Row("boto3", 100, 10 * KIB, 2.0), Row("kommunmoln", 100, 10 * KIB, 4.0), Row("boto3", 10, 1024 * KIB, 1.0),
            Row("kommunmoln", 10, 1024 * KIB, 0.5)]  # fmt: skip
    table = render(rows, "test")
    assert "| 100 | 10 KiB | kommunmoln | 4.00 | 25 | 0.2 | 0.50 |" in table
    assert "| 10 | 1,024 KiB | kommunmoln | 0.50 | 20 | 20.0 | 2.00 |" in table


def test_tree_has_the_asked_files_in_share_like_directories(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "share", 250, 10)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert len(files) == 250 and {p.stat().st_size for p in files} == {10}
    assert len({p.parent for p in files}) == 3


def test_registered_as_a_bench_section() -> None:
    assert "small-files" in run.SECTIONS and "small-files" in run.DEFAULT_SECTIONS
    assert small_files.FULL == ((10_000, 10 * KIB), (1_000, 1024 * KIB))
