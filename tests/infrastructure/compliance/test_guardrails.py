"""Rule 8 and the residency SCP set: generated from the config, checked for what it does not prevent.

The policies here are evaluated by `guardrails.gaps`, our own reading of the SCP grammar; no AWS
response is scripted. The shape follows the AWS Organizations User Guide, "General examples":
"Deny access to AWS based on the requested AWS Region" (Deny + NotAction global services +
StringNotEquals aws:RequestedRegion), and the 5,120-character SCP quota ("Quotas for AWS
Organizations").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kommunmoln.compliance.checks import COMPLIANT, NON_COMPLIANT, Evaluator, Options
from kommunmoln.compliance.guardrails import (
    CROSS_REGION_COPY_ACTIONS,
    SCP_MAX_CHARACTERS,
    gaps,
    main,
    render,
    residency_scp,
)
from kommunmoln.compliance.model import AppModel, StackModel
from kommunmoln.config import ConfigError, load_config

REGIONS = ("eu-north-1", "eu-central-1")


def _app_with(*policies: dict[str, Any]) -> AppModel:
    resources: dict[str, Any] = {"Data": {"Type": "AWS::S3::Bucket", "Properties": {}}}
    for number, content in enumerate(policies):
        resources[f"Scp{number}"] = {
            "Type": "AWS::Organizations::Policy",
            "Properties": {"Name": "residency", "Type": "SERVICE_CONTROL_POLICY", "Content": content},
        }
    model = AppModel()
    model.add(StackModel("Org", {"Resources": resources}, "eu-north-1", None))
    return model


def test_generated_scp_denies_copies_and_other_regions_within_the_quota() -> None:
    # GIVEN the allowed regions WHEN the SCP is generated
    document = residency_scp(REGIONS)
    # THEN it has no gaps, denies each cross-region copy unconditionally, and fits the quota
    assert gaps(document, REGIONS) == []
    copies = document["Statement"][0]
    assert copies["Effect"] == "Deny" and set(copies["Action"]) == set(CROSS_REGION_COPY_ACTIONS)
    region = document["Statement"][1]
    assert region["Condition"] == {"StringNotEquals": {"aws:RequestedRegion": list(REGIONS)}}
    assert "iam:*" in region["NotAction"] and "kms:*" not in region["NotAction"]
    assert len(render(document)) <= SCP_MAX_CHARACTERS


def test_gaps_name_what_a_partial_policy_does_not_prevent() -> None:
    # GIVEN a region denial that exempts kms:* (as AWS's example does) and no copy denials
    document = residency_scp(REGIONS)
    region = document["Statement"][1]
    region["NotAction"] = [*region["NotAction"], "kms:*"]
    partial = {"Version": "2012-10-17", "Statement": [region]}
    # THEN each missing denial is named, and the kms:* exemption does not count as a region guardrail
    missing = gaps(partial, REGIONS)
    copies = len(CROSS_REGION_COPY_ACTIONS)
    assert [m.split(" ")[0] for m in missing[:copies]] == list(CROSS_REGION_COPY_ACTIONS)
    assert "requests outside eu-north-1, eu-central-1 are not denied" in missing[copies]
    # AND a region allowed by the policy but not by the config is a gap too
    assert any("requests outside" in m for m in gaps(residency_scp(("eu-north-1", "us-east-1")), REGIONS))
    # AND a conditional deny of the copy actions does not count
    conditional = residency_scp(REGIONS)
    conditional["Statement"][0]["Condition"] = {"StringEquals": {"aws:PrincipalTag/team": "x"}}
    assert "cloudhsm:CopyBackupToRegion is not denied" in gaps(conditional, REGIONS)
    assert gaps(None, REGIONS) and gaps("not a policy", REGIONS)


@pytest.mark.parametrize(
    "action",
    [
        "secretsmanager:ReplicateSecretToRegions",
        "backup:StartCopyJob",
        "backup:CopyIntoBackupVault",
        "ecr:PutReplicationConfiguration",
        "dynamodb:CreateTableReplica",
        "dynamodb:CreateGlobalTable",
    ],
)
def test_copies_requested_from_an_allowed_region_are_denied_and_their_absence_is_a_gap(action: str) -> None:
    # GIVEN the generated SCP WHEN it is checked THEN the copy action is denied without condition
    document = residency_scp(REGIONS)
    assert action in document["Statement"][0]["Action"] and "Condition" not in document["Statement"][0]
    # AND a policy that leaves that one action out is reported as a gap naming it
    document["Statement"][0]["Action"] = [a for a in document["Statement"][0]["Action"] if a != action]
    assert gaps(document, REGIONS) == [f"{action} is not denied"]
    # AND the whole set still fits the SCP quota
    assert len(render(residency_scp(REGIONS))) <= SCP_MAX_CHARACTERS


def test_rule8_flags_an_app_without_guardrails() -> None:
    outcome, where = Evaluator(_app_with(), Options(REGIONS)).residency_guardrails()
    assert outcome.status == NON_COMPLIANT
    assert "kms:ReplicateKey" in outcome.reasons[0] and where == "organisation (no policy)"


def test_rule8_passes_an_app_with_the_generated_scp() -> None:
    outcome, where = Evaluator(_app_with(residency_scp(REGIONS)), Options(REGIONS)).residency_guardrails()
    assert outcome.status == COMPLIANT and where == "Org/Scp0"


def test_rule8_flags_an_incomplete_scp() -> None:
    only_copies = {"Version": "2012-10-17", "Statement": [residency_scp(REGIONS)["Statement"][0]]}
    outcome, _ = Evaluator(_app_with(json.dumps(only_copies)), Options(REGIONS)).residency_guardrails()
    assert outcome.status == NON_COMPLIANT
    assert outcome.reasons[0].startswith("policy Scp0: requests outside")


def test_rule8_declared_policy_ids_pass_as_declared() -> None:
    options = Options(REGIONS, residency_guardrail_policy_ids=("p-abcd1234",))
    outcome, where = Evaluator(_app_with(), options).residency_guardrails()
    assert outcome.status == COMPLIANT
    assert "not verified from the templates" in outcome.reasons[0] and "p-abcd1234" in where


def test_policy_ids_are_validated_naming_the_key() -> None:
    assert load_config({"residency_guardrail_policy_ids": "p-abcd1234"}).residency_guardrail_policy_ids == (
        "p-abcd1234",
    )
    with pytest.raises(ConfigError, match="residency_guardrail_policy_ids"):
        load_config({"residency_guardrail_policy_ids": ["arn:aws:organizations::1:policy/x"]})


def test_cli_writes_the_scp_from_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scp.json"
    assert main(["--out", str(out), "-c", "allowed_regions=eu-north-1,eu-west-1"]) == 0
    document = json.loads(out.read_text())
    assert gaps(document, ("eu-north-1", "eu-west-1")) == []
    assert document["Statement"][1]["Condition"]["StringNotEquals"]["aws:RequestedRegion"] == [
        "eu-north-1",
        "eu-west-1",
    ]
    assert "wrote" in capsys.readouterr().out


def test_compliance_md_lists_exactly_the_cross_region_copy_actions_of_the_code() -> None:
    # GIVEN docs/compliance.md's paragraph on `make guardrails` (review item 5: it said "the three")
    import re

    text = (Path(__file__).resolve().parents[3] / "docs" / "compliance.md").read_text(encoding="utf-8")
    paragraph = text.split("`make guardrails` writes `build/residency-scp.json`")[1].split("(action names checked")[0]
    # THEN the actions it lists are exactly CROSS_REGION_COPY_ACTIONS, and no count contradicts it
    assert set(re.findall(r"`([a-z0-9-]+:[A-Za-z]+)`", paragraph)) == set(CROSS_REGION_COPY_ACTIONS)
    assert "the three cross-region" not in text
