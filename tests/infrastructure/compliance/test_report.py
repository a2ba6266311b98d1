"""The evidence report: built from the project's own app, every reference in it is real."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kommunmoln.compliance import REQUIREMENTS, RULES
from kommunmoln.compliance.report import (
    ACKNOWLEDGED,
    EXTERNAL_CONTROLS,
    FAIL,
    PASS,
    Evidence,
    Row,
    collect_evidence,
    render_html,
    render_markdown,
    summary_line,
    write_reports,
)
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def evidence() -> Evidence:
    return collect_evidence()


def test_project_app_passes_the_osl_pack(evidence: Evidence) -> None:
    # GIVEN the project's app from cdk.json (network, tier A, tier B) evaluated by every control
    osl = [row for row in evidence.rows if row.control.startswith("KommunmolnOSL-")]
    # THEN no OSL control fails, and the protected-bucket rules really ran (positive passes)
    assert [row for row in osl if row.status == FAIL] == []
    passed = {row.control for row in osl if row.status == PASS}
    assert {"KommunmolnOSL-1", "KommunmolnOSL-2", "KommunmolnOSL-3", "KommunmolnOSL-6", "KommunmolnOSL-7"} <= passed


def test_every_requirement_has_controls_and_acknowledgments_carry_reasons(evidence: Evidence) -> None:
    for requirement in REQUIREMENTS:
        assert evidence.rows_for(requirement), requirement.id
    for row in evidence.rows:
        if row.status == ACKNOWLEDGED:
            assert len(row.detail) >= 40, row


def test_summary_line_counts_rows(evidence: Evidence) -> None:
    line = summary_line(evidence)
    match = re.fullmatch(
        r"Compliance: 7 requirements, (\d+) controls, (\d+) pass, (\d+) acknowledged, (\d+) fail", line
    )
    assert match, line
    assert sum(int(n) for n in match.groups()[1:]) == len(evidence.rows)


def test_reports_are_written_and_html_is_escaped(tmp_path: Path) -> None:
    # GIVEN evidence whose detail contains markup
    evidence = Evidence(
        config={"municipality": "Exempel"},
        rows=[Row(("disclosure",), "KommunmolnOSL-2", "t", "S/B|x", "AWS::S3::Bucket", FAIL, "<script>x</script>", ())],
    )
    # WHEN both reports are written
    markdown, html_file = write_reports(evidence, tmp_path / "docs" / "compliance-report.md")
    # THEN the HTML escapes it and the Markdown keeps the table intact
    page = html_file.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "S/B\\|x" in markdown.read_text()
    assert render_markdown(evidence).count("## ") == len(REQUIREMENTS)
    assert render_html(evidence).count("<h2>") == len(REQUIREMENTS)


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_proving_test_named_in_the_catalogue_exists() -> None:
    references = {t for rule in RULES for t in rule.tests} | {t for c in EXTERNAL_CONTROLS for t in c.tests}
    for reference in sorted(references):
        file, _, name = reference.partition("::")
        assert name in _test_names(REPO_ROOT / file), reference
