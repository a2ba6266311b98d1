"""The OSL pack's rules on fixture stacks: each rule passes a compliant and flags a non-compliant one.

The main fixture app is synthesized once for the module (see fixtures.py); two small apps
cover the synthesis failure message and workshop mode.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from kommunmoln import names
from kommunmoln.compliance import SwedishPublicSectorChecks
from kommunmoln.compliance.checks import COMPLIANT, NON_COMPLIANT, Evaluator, Options, Outcome, rule
from kommunmoln.compliance.model import AppModel, ResourceRef, StackModel
from tests.infrastructure.compliance.fixtures import (
    REGION,
    Findings,
    build_main_app,
    protect,
    protected_bucket_model,
    synth_findings,
)

PACK = names.COMPLIANCE_PACK
OSL1, OSL2, OSL3, OSL4, OSL5, OSL6, OSL7 = (f"{PACK}-{n}" for n in range(1, 8))


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> Findings:
    outdir = tmp_path_factory.mktemp("osl-fixtures")
    return synth_findings(build_main_app(outdir), outdir)


def _base(rule_name: str) -> str:
    return rule_name.split("[")[0]


def _rules(findings: Findings, path: str) -> set[str]:
    return {_base(r) for r in findings.rules(path)}


# --- the compliant stack ----------------------------------------------------------------
def test_compliant_stack_has_no_findings(findings: Findings) -> None:
    # GIVEN a stack with a tier A bucket, a tier B bucket on an HSM key, a trail, retained state
    # THEN the pack flags nothing in it
    assert findings.under("Good/") == set()


# --- rule 1: residency --------------------------------------------------------------------
def test_osl1_stack_in_allowed_region_passes(findings: Findings) -> None:
    assert OSL1 not in _rules(findings, "Good/TierA/Resource")
    assert OSL1 not in _rules(findings, "Good/OrdinaryKey/Resource")


def test_osl1_region_outside_allow_list_fails(findings: Findings) -> None:
    # GIVEN a bucket in a stack deployed to us-east-1 THEN rule 1 flags it
    assert OSL1 in _rules(findings, "WrongRegion/Data/Resource")


def test_osl1_environment_agnostic_stack_with_data_fails(findings: Findings) -> None:
    # GIVEN a key in an environment-agnostic stack THEN rule 1 flags it and hints at `region`
    assert OSL1 in _rules(findings, "Agnostic/Key/Resource")
    assert "set `region`" in findings.descriptions[OSL1]


def test_osl1_multi_region_key_fails(findings: Findings) -> None:
    assert OSL1 in _rules(findings, "Bad/MultiRegionKey/Resource")


def _replicating_model(destination: object, status: str = "Enabled", other_region: str | None = None) -> AppModel:
    """Stack `C`'s protected bucket `Data` with one replication rule to `destination`; with `other_region`,
    a stack `Far` there holding bucket `Target` (BucketName far-copy)."""
    model = protected_bucket_model({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k"}, None)
    model.stacks["C"].template["Resources"]["Data"]["Properties"]["ReplicationConfiguration"] = {
        "Role": "arn:aws:iam::111111111111:role/r",
        "Rules": [{"Id": "copy", "Status": status, "Destination": {"Bucket": destination}}],
    }
    model.stacks["C"].template["Resources"]["Local"] = {"Type": "AWS::S3::Bucket", "Properties": {}}
    if other_region:
        far = {"Resources": {"Target": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "far-copy"}}}}
        model.add(StackModel("Far", far, other_region, None))
    return model


def _rule1_outcome(model: AppModel) -> Outcome:
    return Evaluator(model, Options((REGION,))).evaluate(rule(1), ResourceRef("C", "Data"))


def test_osl1_protected_bucket_replicating_to_a_bucket_outside_the_allowed_regions_fails() -> None:
    # GIVEN a protected bucket replicating to the app's bucket in a us-east-1 stack (by ARN and by name)
    for destination in ({"Fn::GetAtt": ["Target", "Arn"]}, "arn:aws:s3:::far-copy"):
        model = _replicating_model(destination, other_region="us-east-1")
        if isinstance(destination, dict):  # a cross-stack reference, as an import
            model.stacks["Far"].template["Outputs"] = {"T": {"Value": destination, "Export": {"Name": "far-arn"}}}
            rules = model.stacks["C"].template["Resources"]["Data"]["Properties"]["ReplicationConfiguration"]
            rules["Rules"][0]["Destination"]["Bucket"] = {"Fn::ImportValue": "far-arn"}
        # WHEN rule 1 evaluates it THEN it fails and names the region
        outcome = _rule1_outcome(model)
        assert outcome.status == NON_COMPLIANT, destination
        assert "replication rule copy" in outcome.reasons[0] and "in us-east-1" in outcome.reasons[0]


def test_osl1_replication_to_an_unresolvable_destination_fails_closed() -> None:
    # GIVEN a destination bucket ARN that is not a bucket of this app (S3 ARNs carry no region)
    outcome = _rule1_outcome(_replicating_model("arn:aws:s3:::somewhere-else"))
    # THEN rule 1 fails: the destination is not provably in an allowed region
    assert outcome.status == NON_COMPLIANT and "not resolvable to a region" in outcome.reasons[0]
    # AND an unknown Status counts as enabled
    assert _rule1_outcome(_replicating_model("arn:aws:s3:::x", status="Maybe")).status == NON_COMPLIANT


def test_osl1_replication_within_the_allowed_region_or_disabled_passes() -> None:
    # GIVEN replication to a bucket in the same (allowed) stack, and a disabled rule to anywhere
    assert _rule1_outcome(_replicating_model({"Fn::GetAtt": ["Local", "Arn"]})).status == COMPLIANT
    assert _rule1_outcome(_replicating_model({"Ref": "Local"})).status == COMPLIANT
    # THEN both pass
    assert _rule1_outcome(_replicating_model("arn:aws:s3:::x", status="Disabled")).status == COMPLIANT


# --- rule 2: tier A or tier B --------------------------------------------------------------
def test_osl2_tier_a_bucket_passes(findings: Findings) -> None:
    assert OSL2 not in _rules(findings, "Good/TierA/Resource")


def test_osl2_tier_b_bucket_with_hsm_key_raises_no_rule_2_finding(findings: Findings) -> None:
    # GIVEN a tier B bucket on an HSM-backed key THEN rule 2 raises no finding: the bucket is protected
    # server-side as tier B claims. That is not "no disclosure": the report shows it `not met` there
    # (test_report.py::test_tier_b_bucket_is_not_met_under_no_disclosure_and_edpb_use_case_1).
    assert OSL2 not in _rules(findings, "Good/TierB/Resource")
    assert "Good/TierB/Resource" not in findings.acknowledged


def test_osl2_aws_kms_origin_key_fails(findings: Findings) -> None:
    # GIVEN a tier B bucket encrypted with an ordinary AWS::KMS::Key (origin AWS_KMS) THEN rule 2 flags it
    assert OSL2 in _rules(findings, "Bad/TierBAwsKms/Resource")


def test_osl2_tier_a_without_validator_fails(findings: Findings) -> None:
    assert OSL2 in _rules(findings, "Bad/TierANoValidator/Resource")


def test_osl2_imported_key_arn_fails_and_can_be_acknowledged(findings: Findings) -> None:
    # GIVEN two tier B buckets on an imported key ARN, one acknowledged with describe-key evidence
    # THEN the plain one fails, the acknowledged one is listed as acknowledged, not failed
    assert OSL2 in _rules(findings, "Bad/ImportedKey/Resource")
    assert OSL2 not in _rules(findings, "Bad/ImportedKeyAcknowledged/Resource")
    assert OSL2 in findings.acknowledged["Bad/ImportedKeyAcknowledged/Resource"]


def test_osl2_sse_s3_protected_bucket_fails_synthesis_with_rule_id_and_fix(tmp_path: Path) -> None:
    # GIVEN a municipality's app with the pack and an SSE-S3 bucket tagged as protected
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Municipality", env=cdk.Environment(region=REGION))
    bucket = s3.Bucket(
        stack, "Records", encryption=s3.BucketEncryption.S3_MANAGED, removal_policy=cdk.RemovalPolicy.RETAIN
    )
    protect(bucket, None)
    cdk.Validations.of(app).add_plugins(SwedishPublicSectorChecks())
    # WHEN synthesized THEN synthesis fails, naming the rule and the fix
    with pytest.raises(RuntimeError, match="ValidationFailed") as error:
        app.synth()
    assert OSL2 in str(error.value)
    assert "SSE-S3" in str(error.value)
    assert "Fix: tier A:" in str(error.value)
    # AND the validation report lists the violation with its rule name and the fix hint
    report = json.loads((tmp_path / "validation-report.json").read_text())
    ours = next(p for p in report["pluginReports"] if p["pluginName"] == PACK)
    violation = next(v for v in ours["violations"] if v["ruleName"] == OSL2)
    assert "Fix:" in violation["description"]
    assert violation["violatingConstructs"][0]["constructPath"] == "Municipality/Records/Resource"
    assert ours["conclusion"] == "failure"


# --- rule 3: bucket hardening ------------------------------------------------------------------
def test_osl3_hardened_protected_bucket_passes(findings: Findings) -> None:
    for path in ("Good/TierA/Resource", "Good/TierB/Resource", "Good/OrgTrailLogged/Resource"):
        assert OSL3 not in _rules(findings, path)


def test_osl3_bare_protected_bucket_reports_each_missing_control(findings: Findings) -> None:
    # GIVEN a protected L1 bucket with nothing but SSE-S3 THEN each missing control is its own finding
    rules = findings.rules("Bad/SseS3")
    assert {f"{OSL3}[{c}]" for c in ("TLS", "PublicAccessBlock", "Versioning", "Retention", "AccessLogging")} <= rules


# --- rule 4: no external principals -----------------------------------------------------------
def test_osl4_own_account_principals_pass(findings: Findings) -> None:
    assert OSL4 not in _rules(findings, "Good/TierA/Policy/Resource")
    assert OSL4 not in _rules(findings, "Good/HsmKey/Default")


def test_osl4_other_account_in_bucket_policy_fails(findings: Findings) -> None:
    assert OSL4 in _rules(findings, "Bad/SharedWithOtherAccount/Policy/Resource")


def test_osl4_public_principal_in_protected_key_policy_fails(findings: Findings) -> None:
    assert OSL4 in _rules(findings, "Bad/PublicHsmKey/Default")


# --- rule 5: key policy wildcards --------------------------------------------------------------
def test_osl5_default_key_policy_on_ordinary_key_passes(findings: Findings) -> None:
    assert OSL5 not in _rules(findings, "Good/OrdinaryKey/Resource")


def test_osl5_strict_hsm_key_policy_passes(findings: Findings) -> None:
    assert OSL5 not in _rules(findings, "Good/HsmKey/Default")


def test_osl5_root_kms_star_on_protected_bucket_key_fails(findings: Findings) -> None:
    # GIVEN the key of a protected bucket with the CDK default policy (kms:* for the root) THEN it fails
    assert OSL5 in _rules(findings, "Bad/AwsKmsOriginKey/Resource")


def test_osl5_role_with_kms_star_fails(findings: Findings) -> None:
    assert OSL5 in _rules(findings, "Bad/RoleKmsStarKey/Resource")


# --- rule 6: deletion protection ----------------------------------------------------------------
def test_osl6_retained_resources_pass(findings: Findings) -> None:
    for path in ("Good/TierA/Resource", "Good/OrdinaryKey/Resource", "Good/Logs/Resource", "Good/HsmKey/Default"):
        assert OSL6 not in _rules(findings, path)


def test_osl6_destroyable_resources_and_short_pending_window_fail(findings: Findings) -> None:
    for path in (
        "Bad/Destroyable/Resource",
        "Bad/ShortWindowKey/Resource",
        "Bad/DestroyableLogs/Resource",
        "Bad/SseS3",
    ):
        assert OSL6 in _rules(findings, path), path


def test_osl6_not_applicable_in_workshop_mode(tmp_path: Path) -> None:
    # GIVEN the pack in workshop mode and destroyable, short-window state in an allowed region
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Workshop", env=cdk.Environment(region=REGION))
    s3.Bucket(stack, "Scratch", removal_policy=cdk.RemovalPolicy.DESTROY)
    kms.Key(stack, "Key", pending_window=cdk.Duration.days(7), removal_policy=cdk.RemovalPolicy.DESTROY)
    cdk.Validations.of(app).add_plugins(SwedishPublicSectorChecks(workshop_mode=True))
    # WHEN synthesized THEN nothing is flagged (synthesis passes)
    findings = synth_findings(app, tmp_path)
    assert findings.error == ""
    assert findings.failed == {}


# --- rule 7: logging ---------------------------------------------------------------------------
def test_osl7_trail_with_data_events_passes(findings: Findings) -> None:
    assert OSL7 not in _rules(findings, "Good/TierA/Resource")
    assert OSL7 not in _rules(findings, "Good/TierB/Resource")


def test_osl7_organization_trail_tag_passes(findings: Findings) -> None:
    assert OSL7 not in _rules(findings, "Good/OrgTrailLogged/Resource")


def test_osl7_no_trail_fails(findings: Findings) -> None:
    # GIVEN protected buckets that no trail of the app covers THEN rule 7 flags them
    assert OSL7 in _rules(findings, "Bad/SseS3")
    assert OSL7 in _rules(findings, "Bad/TierANoValidator/Resource")


# --- the pack itself ----------------------------------------------------------------------------
def test_pack_refuses_regions_outside_the_eu() -> None:
    with pytest.raises(ValueError, match="EU regions"):
        SwedishPublicSectorChecks(allowed_regions=("us-east-1",))


# --- rule 9: expiry only under a gallring decision -------------------------------------------
OSL9 = f"{PACK}-9"


def test_rule9_expiry_under_a_named_decision_passes(findings: Findings) -> None:
    # GIVEN buckets whose versions expire and a log group with a retention, each tagged with the decision
    assert OSL9 not in _rules(findings, "Good/TierA/Resource")
    assert OSL9 not in _rules(findings, "Good/ExpiringLogs/Resource")
    assert OSL9 not in _rules(findings, "Good/Logs/Resource")  # kept forever


def test_rule9_flags_expiry_without_a_decision_tag(findings: Findings) -> None:
    # GIVEN a bucket that expires objects and a log group with a retention, neither naming a decision
    # THEN rule 9 flags both and the fix names the config key
    assert OSL9 in _rules(findings, "Bad/ExpiringBucket/Resource")
    assert OSL9 in _rules(findings, "Bad/ExpiringLogs/Resource")
    assert "gallring_decision" in findings.descriptions[OSL9]
