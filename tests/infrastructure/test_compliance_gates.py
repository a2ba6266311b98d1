"""Compliance gates: no unacknowledged finding, and every acknowledgment is specific."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from stacks.compliance import acknowledge, add_compliance_packs
from tests.conftest import Synthesized


def _report(synthesized: Synthesized) -> dict:
    return json.loads((synthesized.outdir / "validation-report.json").read_text())


def test_default_app_has_no_unacknowledged_findings(synthesized: Synthesized) -> None:
    # GIVEN the app synthesized with every pack (synthesis itself raises on a finding)
    report = _report(synthesized)
    # THEN every pack that reported concluded success with zero violations
    # (cdk-nag omits a pack from the report when it has neither findings nor acknowledgments)
    assert report["pluginReports"]
    for plugin in report["pluginReports"]:
        assert plugin["conclusion"] == "success", plugin["pluginName"]
        assert plugin["violations"] == []


def test_each_acknowledgment_concerns_one_resource_with_a_specific_reason(synthesized: Synthesized) -> None:
    # GIVEN the acknowledged (suppressed) findings
    suppressed = [v for p in _report(synthesized)["pluginReports"] for v in p.get("suppressedViolations", [])]
    assert suppressed, "expected at least the flow-log stream wildcard to be acknowledged"
    for violation in suppressed:
        # THEN each sits on exactly one CloudFormation resource (an L1), never on a stack or a tree
        assert len(violation["violatingConstructs"]) == 1, violation["ruleName"]
        construct = violation["violatingConstructs"][0]
        assert construct["constructFqn"].split(".")[-1].startswith("Cfn"), construct


def test_an_unacknowledged_finding_fails_synthesis(tmp_path) -> None:
    # GIVEN an app with the gates and a bucket that breaks several rules
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Careless", env=cdk.Environment(region="eu-north-1"))
    s3.Bucket(stack, "Open")
    add_compliance_packs(app)
    # WHEN synthesized THEN synthesis fails, and the report names the rules
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules
    assert {"NIST.800.53.R5-S3BucketLoggingEnabled", "NIST.800.53.R5-S3BucketVersioningEnabled"} <= rules


def test_acknowledgment_without_a_specific_reason_is_refused() -> None:
    app = cdk.App()
    stack = cdk.Stack(app, "S")
    bucket = s3.Bucket(stack, "B")
    # WHEN someone acknowledges with a vague reason THEN it is refused
    with pytest.raises(ValueError, match="specific reason"):
        acknowledge(bucket.node.default_child, "AwsSolutions::AwsSolutions-S1", "not needed for a sample")
