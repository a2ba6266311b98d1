"""Tier B key policy matrix: the synthesized HSM key policy and roles, evaluated offline.

Covers issue 11 item 8 (an account administrator cannot take the key over; use only via S3,
only for the tier B bucket, only from this account) and mutation gap (3): a missing
`kms:CallerAccount` condition lets another account's request through S3 pass.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Synthesized
from tests.infrastructure.policy.evaluator import (
    ACCOUNT,
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    REGION,
    Request,
    Resolver,
    evaluate,
)
from tests.infrastructure.policy.scenarios import ADMIN_POLICY, Scenario

TIER_B = "-tier-b"
VIA_S3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT}
MFA = {"aws:MultiFactorAuthPresent": True}
A, I, D = ALLOW, IMPLICIT_DENY, EXPLICIT_DENY  # noqa: E741
ORIGIN = {"kms:KeyOrigin": "AWS_CLOUDHSM"}
# Written out (default municipality "exempel"), not taken from the code: the provisioner's explicit name.
PROVISIONER_FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:kommunmoln-exempel-tier-b-provisioner-on-event"
OTHER_FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:attacker"


def _bucket_context(suffix: str = "") -> dict[str, str]:
    return {"kms:EncryptionContext:aws:s3:arn": "BUCKET" + suffix}


SCENARIOS = [
    Scenario("admin rewrites the key policy", "key-takeover", "admin", "kms:PutKeyPolicy", "key", I),
    Scenario("admin schedules key deletion", "key-takeover", "admin", "kms:ScheduleKeyDeletion", "key", I),
    Scenario("admin disables the key", "key-takeover", "admin", "kms:DisableKey", "key", I),
    Scenario("admin creates a grant", "key-takeover", "admin", "kms:CreateGrant", "key", I),
    Scenario("admin decrypts directly", "key-takeover", "admin", "kms:Decrypt", "key", I),
    Scenario("admin decrypts through S3", "key-takeover", "admin", "kms:Decrypt", "key", I, {**VIA_S3, **_bucket_context()}),
    Scenario("break-glass without MFA rewrites the policy", "key-takeover", "break_glass", "kms:PutKeyPolicy", "key", I),
    Scenario("break-glass with MFA decrypts", "key-takeover", "break_glass", "kms:Decrypt", "key", I, {**MFA, **VIA_S3, **_bucket_context()}),
    Scenario("usage role decrypts outside S3", "key-use", "usage", "kms:Decrypt", "key", I, _bucket_context()),
    Scenario("usage role via S3 for another bucket", "key-use", "usage", "kms:Decrypt", "key", I, {**VIA_S3, "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::other-bucket"}),
    Scenario("usage role via S3 from another account", "key-use", "usage", "kms:Decrypt", "key", I, {**VIA_S3, **_bucket_context(), "kms:CallerAccount": "222222222222"}),
    Scenario("usage role via S3 without encryption context", "key-use", "usage", "kms:GenerateDataKey", "key", I, VIA_S3),
    Scenario("usage role via S3 for the bucket (bucket key)", "legitimate", "usage", "kms:GenerateDataKey", "key", A, {**VIA_S3, **_bucket_context()}),
    Scenario("usage role via S3 for an object (no bucket key)", "legitimate", "usage", "kms:Decrypt", "key", A, {**VIA_S3, **_bucket_context("/a/b.pdf")}),
    Scenario("break-glass with MFA rewrites the policy", "legitimate", "break_glass", "kms:PutKeyPolicy", "key", A, MFA),
    Scenario("provisioner applies the template policy", "legitimate", "provisioner", "kms:PutKeyPolicy", "key", A),
    Scenario("account reads the key policy (monitor)", "legitimate", "admin", "kms:GetKeyPolicy", "key", A),
    # The provisioner roles' key rights hold only inside the provisioner functions (lambda:SourceFunctionArn,
    # identity policies only: https://docs.aws.amazon.com/lambda/latest/dg/permissions-source-function-arn.html).
    # The role's own policies (and an administrator's rights on top) are evaluated, not only the key policy.
    Scenario("provisioner role's credentials outside Lambda rewrite the policy", "key-takeover", "provisioner_iam", "kms:PutKeyPolicy", "key", D, ORIGIN),
    Scenario("another function given the provisioner role schedules deletion", "key-takeover", "provisioner_iam", "kms:ScheduleKeyDeletion", "key", D, {**ORIGIN, "lambda:SourceFunctionArn": OTHER_FUNCTION}),
    Scenario("another function given the provisioner role disables the key", "key-takeover", "provisioner_iam", "kms:DisableKey", "key", D, {**ORIGIN, "lambda:SourceFunctionArn": OTHER_FUNCTION}),
    Scenario("provisioner code applies the template policy", "legitimate", "provisioner_iam", "kms:PutKeyPolicy", "key", A, {**ORIGIN, "lambda:SourceFunctionArn": PROVISIONER_FUNCTION}),
]  # fmt: skip


class KeyMatrix:
    def __init__(self, synth: Synthesized) -> None:
        resolver = Resolver(synth.templates)
        template = resolver.template_of(TIER_B)
        (key_id,) = [k for k, v in template["Resources"].items() if v["Type"] == "Custom::KmsHsmKey"]
        self.policy = json.loads(resolver.key_policy(TIER_B, key_id))
        (bucket_id,) = [
            k
            for k, v in template["Resources"].items()
            if v["Type"] == "AWS::S3::Bucket" and "Data" in k and "AccessLog" not in k
        ]
        self.bucket_arn = f"arn:aws:s3:::{resolver.resolve({'Ref': bucket_id}, template)}"
        self.key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd"

        def role(path: str) -> tuple[str, list[dict[str, Any]]]:
            return resolver.role(TIER_B, path)

        self.principals = {
            "admin": (f"arn:aws:iam::{ACCOUNT}:role/AccountAdministrator", [ADMIN_POLICY]),
            "break_glass": (role("/Key/AdminRole/")[0], [ADMIN_POLICY]),
            "usage": (role("/Key/UsageRole")[0], [ADMIN_POLICY]),
            "provisioner": (role("/Provisioner/OnEvent/Role/")[0], [ADMIN_POLICY]),
            "provisioner_iam": (
                role("/Provisioner/OnEvent/Role/")[0],
                [ADMIN_POLICY, *role("/Provisioner/OnEvent/Role/")[1]],
            ),
        }  # identity policies as broad as possible: only the key policy (or the roles' own denies) may stop them

    def decide(self, scenario: Scenario) -> str:
        arn, identity = self.principals[scenario.who]
        context = {
            k: (v.replace("BUCKET", self.bucket_arn) if isinstance(v, str) else v) for k, v in scenario.context.items()
        }
        request = Request(arn, scenario.action, self.key_arn, context)
        return evaluate(request, identity_policies=identity, resource_policy=self.policy, key_policy=True)


@pytest.fixture(scope="module")
def matrix(phase2: Synthesized) -> KeyMatrix:
    return KeyMatrix(phase2)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_tier_b_key_scenario(matrix: KeyMatrix, scenario: Scenario) -> None:
    assert matrix.decide(scenario) == scenario.expected, scenario


def test_attacks_never_allowed() -> None:
    assert all(s.expected in (IMPLICIT_DENY, EXPLICIT_DENY) for s in SCENARIOS if s.category != "legitimate")


def test_the_monitor_compares_the_live_policy_with_the_one_the_key_gets(phase2: Synthesized) -> None:
    # GIVEN the phase 2 tier B template
    resolver = Resolver(phase2.templates)
    template = resolver.template_of(TIER_B)
    (key,) = [v for v in template["Resources"].values() if v["Type"] == "Custom::KmsHsmKey"]
    (monitor,) = [v for v in template["Resources"].values() if v["Type"] == "AWS::Lambda::Function"
                  and "keystore_monitor" in str(v["Properties"].get("Handler", ""))]  # fmt: skip
    env = monitor["Properties"]["Environment"]["Variables"]
    # THEN the monitor's expected policy is the very JSON the custom resource applies (one source)
    assert env["KOMMUNMOLN_EXPECTED_KEY_POLICY"] == key["Properties"]["KeyPolicy"]
    # AND with real-length names (role names ~60 characters longer than the resolved logical ids) the
    # environment stays inside Lambda's 4 KB for all variables together (Lambda quotas, "Environment variables")
    resolved = {k: str(resolver.resolve(v, template)) for k, v in env.items()}
    roles = json.loads(resolved["KOMMUNMOLN_EXPECTED_KEY_POLICY"]).__repr__().count(":role/")
    size = sum(len(k) + len(v) for k, v in resolved.items()) + 60 * roles
    assert size < 4096, size
    # AND a drifted policy (metric below 1, or a silent monitor) raises an alarm that names the remedy
    (drift,) = [v["Properties"] for v in template["Resources"].values() if v["Type"] == "AWS::CloudWatch::Alarm"
                and v["Properties"].get("MetricName") == "KmsKeyPolicyAsTemplate"]  # fmt: skip
    assert drift["Threshold"] == 1 and drift["ComparisonOperator"] == "LessThanThreshold"
    assert drift["TreatMissingData"] == "breaching" and "PutKeyPolicy" in json.dumps(drift["AlarmDescription"])
    # AND the monitor may read the key's policy
    assert "kms:GetKeyPolicy" in json.dumps(
        resolver.role_policies(TIER_B, monitor["Properties"]["Role"]["Fn::GetAtt"][0])
    )


def test_the_provisioner_applies_only_the_policy_it_was_deployed_with(phase2: Synthesized) -> None:
    # GIVEN the phase 2 tier B template
    template = Resolver(phase2.templates).template_of(TIER_B)
    (key,) = [v for v in template["Resources"].values() if v["Type"] == "Custom::KmsHsmKey"]
    (on_event,) = [v["Properties"] for v in template["Resources"].values() if v["Type"] == "AWS::Lambda::Function"
                   and str(v["Properties"].get("Handler", "")).endswith("cloudhsm_provisioner.handler.on_event")]  # fmt: skip
    env = on_event["Environment"]["Variables"]
    # THEN the onEvent function holds the key policy of the custom resource (one source: the event's copy is
    # only compared with it) and the deployment's workshop flag, so a forged event can neither rewrite nor delete
    assert env["KOMMUNMOLN_EXPECTED_KEY_POLICY"] == key["Properties"]["KeyPolicy"]
    assert env["KOMMUNMOLN_WORKSHOP_MODE"] == "false"
    # AND its name is explicit, so the roles' SourceFunctionArn deny can name it without a dependency cycle
    assert on_event["FunctionName"] == "kommunmoln-exempel-tier-b-provisioner-on-event"
