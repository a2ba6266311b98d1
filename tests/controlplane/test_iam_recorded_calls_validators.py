"""Every AWS call the tier A and tier B validators make is allowed by their synthesized role policies.

The same class of check as test_iam_recorded_calls.py (issue 10 defect 4), for the object validators:
each handler runs its flows against moto (valid object, plaintext or wrong key quarantined with an alarm,
a repeated event, a copy of a validated object re-checked), a botocore hook records every call with its
IAM action (S3's actions per "Required permissions for Amazon S3 API operations",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html: a call naming a
VersionId needs the *Version* action), and each (action, resource) must be allowed by the function's role.
"""

from __future__ import annotations

import os

import pytest

from kommunmoln import names
from lambdas.tier_a_validator import handler as tier_a_handler
from lambdas.tier_a_validator.logic import STATUS_QUARANTINED, STATUS_VALIDATED
from lambdas.tier_b_validator import handler as tier_b_handler
from tests.conftest import Synthesized
from tests.controlplane import iam_check
from tests.controlplane.test_iam_recorded_calls import ACCOUNT, workshop_phase2  # noqa: F401 - a fixture
from tests.handlers.tier_a.conftest import (  # noqa: F401 - fixtures
    BUCKET,
    PDF,
    FakeAws,
    _moto_account,
    context_for,
    encrypt,
    event_for,
    fake_aws,
    settings_env,
)
from tests.handlers.tier_a.test_handler import LambdaContext
from tests.handlers.tier_b.test_tier_b_validator import ALIAS, World, _aws, s3_event, sse_kms, world  # noqa: F401

REGION = "eu-north-1"


def _function(template: dict, handler_module: str) -> str:
    (function,) = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
                   and str(r["Properties"].get("Handler", "")).startswith(handler_module)]  # fmt: skip
    return function


def _missing(template: dict, handler_module: str, calls: list[iam_check.Call], *, bucket_marker: str) -> list[str]:
    """The calls the role would deny, with moto's bucket name replaced by the deployed bucket's (from the template)."""
    arns = iam_check.Arns("aws", REGION, ACCOUNT, resolve_key=lambda k: k.rsplit("/", 1)[-1])
    (deployed,) = {name for r in template["Resources"].values() if r["Type"] == "AWS::S3::Bucket"
                   and bucket_marker in (name := iam_check._render(r["Properties"].get("BucketName", ""), arns))}  # fmt: skip
    renamed = [iam_check.Call(c.action, {**c.params, "Bucket": deployed}) if "Bucket" in c.params else c for c in calls]
    return iam_check.denied(renamed, iam_check.role_statements(template, _function(template, handler_module)), arns)


def test_every_call_of_the_tier_a_validator_is_allowed_by_its_role(
    fake_aws: FakeAws,  # noqa: F811 - the fixture imported above
    workshop_phase2: Synthesized,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the tier A handler on a fresh cold start whose clients record every call
    for variable, value in settings_env(fake_aws.topic_arn).items():
        monkeypatch.setenv(variable, value)
    recorder = iam_check.Recorder()
    setup = fake_aws.session.client("s3")  # the test's own uploads and copies are not the validator's calls
    tier_a_handler.reset()
    tier_a_handler._clients.update({"s3": recorder.attach(fake_aws.session.client("s3")),
                                    "sns": recorder.attach(fake_aws.session.client("sns"))})  # fmt: skip
    try:
        key = "iam/beslut.pdf.esdk"
        tagging = "kommunmoln-encryption=esdk-client-side"
        version = setup.put_object(Bucket=BUCKET, Key=key, Body=encrypt(b"beslut", context=context_for(key)),
                                   Tagging=tagging)["VersionId"]  # fmt: skip
        plain = setup.put_object(Bucket=BUCKET, Key="iam/plain.pdf", Body=PDF, Tagging=tagging)["VersionId"]
        # WHEN it validates an object, sees the same event again, quarantines plaintext and re-checks a copy
        outcomes = []
        for event in (event_for(key, version), event_for(key, version), event_for("iam/plain.pdf", plain)):
            outcomes += tier_a_handler.lambda_handler(event, LambdaContext())["outcomes"]
        copy_key = "iam/kopia.pdf.esdk"
        source = {"Bucket": BUCKET, "Key": key, "VersionId": version}
        copy = setup.copy_object(Bucket=BUCKET, Key=copy_key, CopySource=source)["VersionId"]
        outcomes += tier_a_handler.lambda_handler(event_for(copy_key, copy), LambdaContext())["outcomes"]
    finally:
        tier_a_handler.reset()
    assert [o["status"] for o in outcomes][:3] == [STATUS_VALIDATED, STATUS_VALIDATED, STATUS_QUARANTINED]
    actions = {c.action for c in recorder.calls}
    assert {"s3:GetObjectVersion", "s3:GetObjectVersionTagging", "s3:PutObjectVersionTagging", "sns:Publish"} <= actions
    # THEN no recorded call would be denied by the validator's role in the template
    missing = _missing(workshop_phase2.template("-tier-a"), "lambdas.tier_a_validator.handler", recorder.calls,
                       bucket_marker="tier-a-data")  # fmt: skip
    assert missing == [], missing


def test_every_call_of_the_tier_b_validator_is_allowed_by_its_role(
    world: World,  # noqa: F811 - the fixture imported above
    workshop_phase2: Synthesized,  # noqa: F811
) -> None:
    # GIVEN the tier B handler configured with the key's alias (one kms:DescribeKey per cold start), recording
    os.environ[names.ENV_EXPECTED_KMS_KEY_ARN] = ALIAS  # the world fixture's monkeypatch restores it
    tier_b_handler._settings.cache_clear()
    tier_b_handler._matcher.cache_clear()
    recorder = iam_check.Recorder()
    for service in ("s3", "sns", "kms"):
        recorder.attach(tier_b_handler._client(service))
    # WHEN it validates a right-key upload, quarantines a wrong-key and an SSE-S3 upload, and sees a repeat
    good = world.put("iam-b/beslut.pdf", **sse_kms(world.key_arn))
    wrong = world.put("iam-b/fel.pdf", **sse_kms(world.wrong_key_arn))
    plain = world.put("iam-b/sse-s3.pdf", ServerSideEncryption="AES256")
    recorder.calls.clear()  # the test's own uploads went through the same client
    results = []
    for key, version in (("iam-b/beslut.pdf", good), ("iam-b/beslut.pdf", good), ("iam-b/fel.pdf", wrong),
                         ("iam-b/sse-s3.pdf", plain)):  # fmt: skip
        results += tier_b_handler.lambda_handler(s3_event(key, version), None)["results"]
    assert [r["status"] for r in results] == [names.STATUS_VALIDATED, names.STATUS_VALIDATED,
                                              names.STATUS_QUARANTINED, names.STATUS_QUARANTINED]  # fmt: skip
    actions = {c.action for c in recorder.calls}
    assert {"kms:DescribeKey", "s3:GetObjectVersion", "s3:PutObjectVersionTagging", "sns:Publish"} <= actions
    # THEN no recorded call would be denied by the tier B validator's role in the phase 2 template
    missing = _missing(workshop_phase2.template("-tier-b"), "lambdas.tier_b_validator.handler", recorder.calls,
                       bucket_marker="-tier-b-")  # fmt: skip
    assert missing == [], missing


def test_s3_calls_are_checked_as_their_iam_actions() -> None:
    # GIVEN a role that may read current objects only WHEN a versioned HeadObject is checked THEN it is reported
    arns = iam_check.Arns("aws", REGION, ACCOUNT, resolve_key=lambda k: k)
    statements = [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}]
    head = iam_check.Call(iam_check.iam_action("s3", "HeadObject", {"VersionId": "v1"}), {"Bucket": "b", "Key": "k"})
    assert head.action == "s3:GetObjectVersion"
    assert iam_check.denied([head], statements, arns) == ["s3:GetObjectVersion on arn:aws:s3:::b/k"]
    current = iam_check.Call(iam_check.iam_action("s3", "HeadObject", {}), {"Bucket": "b", "Key": "k"})
    assert iam_check.denied([current], statements, arns) == []
