"""cfn-lint on every synthesized template: errors fail, and warnings too unless listed here."""

from __future__ import annotations

from cfnlint.api import ManualArgs, lint_file

from tests.conftest import Synthesized

# Warnings that are deliberate, each with the reason.
ACCEPTED_WARNINGS = {
    # Zones are explicit in cdk.json so that synthesis never calls AWS (no look-ups).
    "W3010": "explicit availability zones",
    # CDK's own custom-resource providers add DependsOn next to a GetAtt to the same role.
    "W3005": "redundant DependsOn written by CDK internals",
}


def test_every_template_passes_cfn_lint(synthesized: Synthesized) -> None:
    templates = sorted(synthesized.outdir.glob("*.template.json"))
    assert templates
    problems = []
    for path in templates:
        for match in lint_file(path, config=ManualArgs(regions=["eu-north-1"])):
            if match.rule.id not in ACCEPTED_WARNINGS:
                problems.append(f"{path.name}: {match.rule.id} {match.message} ({match.path_string})")
    assert problems == []
