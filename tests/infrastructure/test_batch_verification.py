"""The S3 Batch Operations role, job bucket and inventory of `kommunmoln batch-verify`, from the template.

Permissions as in "Granting permissions for Batch Operations" (Amazon S3 User Guide,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops-iam-role-policies.html): the
role is assumed by batchoperations.s3.amazonaws.com, invokes the function, reads manifests
and writes reports; whoever creates the job needs s3:CreateJob and iam:PassRole for the role.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kommunmoln import names
from kommunmoln.policy_eval import ALLOW, EXPLICIT_DENY, Request, Resolver, evaluate
from stacks.components.tier_a_guards import SID_SERVICE_LISTERS
from tests.conftest import Synthesized
from tests.infrastructure.test_tier_a_stack import TIER_A, _arn, _data_bucket, _logical_id


def _template(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template(TIER_A)


def _policy_statements(template: dict[str, Any], path_part: str) -> list[dict[str, Any]]:
    policy = template["Resources"][_logical_id(template, "AWS::IAM::ManagedPolicy", path_part)]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def test_the_batch_role_is_assumed_by_batch_operations_only(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    role = template["Resources"][_logical_id(template, "AWS::IAM::Role", "/BatchVerify/")]
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "batchoperations.s3.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole" and "Condition" not in statement


def test_the_batch_role_invokes_the_validator_lists_the_data_bucket_and_touches_only_the_job_bucket(
    synthesized: Synthesized,
) -> None:
    # GIVEN the synthesized tier A stack WHEN the batch role's policy is read
    template = _template(synthesized)
    statements = {s["Sid"]: s for s in _policy_statements(template, "BatchVerifyRole")}
    function = {"Fn::GetAtt": [_logical_id(template, "AWS::Lambda::Function", "/Validator/"), "Arn"]}
    data_id, _ = _data_bucket(template)
    job_id = _logical_id(template, "AWS::S3::Bucket", "BatchVerifyJobsBucket")
    # THEN it may invoke exactly the validator function
    assert statements["InvokeTheValidator"]["Action"] == "lambda:InvokeFunction"
    assert statements["InvokeTheValidator"]["Resource"] == function
    # AND only list the data bucket (no object read, write or deletion there)
    listing = statements["ListTheDataBucket"]
    assert set(listing["Action"]) == {"s3:ListBucket", "s3:ListBucketVersions"}
    assert "-tier-a-data-" in json.dumps(listing["Resource"]) and "/*" not in json.dumps(listing["Resource"])
    on_data = [sid for sid, s in statements.items() if "-tier-a-data-" in json.dumps(s["Resource"])]
    assert on_data == ["ListTheDataBucket"]
    # AND read manifests and write reports in the job bucket only
    job_objects = {"Fn::Join": ["", [{"Fn::GetAtt": [job_id, "Arn"]}, "/*"]]}
    assert statements["WriteManifestsAndReports"] == {**statements["WriteManifestsAndReports"], "Action": "s3:PutObject",
                                                      "Resource": job_objects}  # fmt: skip
    assert set(statements["ReadManifests"]["Action"]) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert statements["ReadManifests"]["Resource"] == job_objects
    assert data_id != job_id


def test_the_job_bucket_is_private_versioned_sse_s3_and_logged(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    bucket = template["Resources"][_logical_id(template, "AWS::S3::Bucket", "BatchVerifyJobsBucket")]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }  # fmt: skip
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert rule == {"SSEAlgorithm": "AES256"}  # completion reports are always SSE-S3
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "s3-access/"
    assert "-tier-a-jobs-" in json.dumps(bucket["BucketName"])


def test_the_data_bucket_delivers_a_daily_inventory_of_every_version_to_the_job_bucket(
    synthesized: Synthesized,
) -> None:
    template = _template(synthesized)
    _, data = _data_bucket(template)
    (inventory,) = data["Properties"]["InventoryConfigurations"]
    job_id = _logical_id(template, "AWS::S3::Bucket", "BatchVerifyJobsBucket")
    assert inventory["Id"] == names.BATCH_INVENTORY_ID and inventory["Enabled"] is True
    assert (inventory["ScheduleFrequency"], inventory["IncludedObjectVersions"]) == ("Daily", "All")
    assert inventory["Destination"]["Format"] == "CSV"
    assert inventory["Destination"]["BucketArn"] == {"Fn::GetAtt": [job_id, "Arn"]}
    assert inventory["Destination"]["Prefix"] == names.BATCH_INVENTORY_PREFIX


def test_the_security_role_creates_jobs_passing_only_the_batch_role(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    statements = {s.get("Sid"): s for s in _policy_statements(template, "SecurityRolePolicy")}
    assert statements["CreateBatchVerifyJobs"]["Action"] == "s3:CreateJob"
    passing = statements["PassTheBatchVerifyRole"]
    assert passing["Action"] == "iam:PassRole" and passing["Resource"] == _arn(template, "/BatchVerify/")
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "batchoperations.s3.amazonaws.com"}}
    assert statements["FollowBatchVerifyJobs"]["Action"] == "s3:DescribeJob"


def test_the_client_finds_role_bucket_and_function_in_the_outputs(synthesized: Synthesized) -> None:
    outputs = _template(synthesized)["Outputs"]
    for name in (names.OUTPUT_BATCH_ROLE, names.OUTPUT_BATCH_BUCKET, names.OUTPUT_VALIDATOR_FUNCTION_ARN):
        assert name in outputs
    assert outputs[names.OUTPUT_BATCH_ROLE]["Value"] == _arn(_template(synthesized), "/BatchVerify/")


@pytest.mark.parametrize(
    ("action", "target", "expected"),
    [
        ("s3:ListBucket", "bucket", ALLOW),  # the manifest generator lists the bucket from AWS
        ("s3:ListBucketVersions", "bucket", ALLOW),
        ("s3:GetObject", "object", EXPLICIT_DENY),  # even a validated object: never content
        ("s3:PutObject", "object", EXPLICIT_DENY),
        ("s3:DeleteObject", "object", EXPLICIT_DENY),
        ("s3:PutBucketPolicy", "bucket", EXPLICIT_DENY),
    ],
)
def test_the_bucket_policy_lets_the_batch_role_list_and_nothing_else(
    synthesized: Synthesized, action: str, target: str, expected: str
) -> None:
    # GIVEN the resolved bucket policy and a batch role whose IAM policy were widened to s3:*
    resolver = Resolver(synthesized.templates)
    bucket_id, bucket = resolver.protected_bucket(TIER_A)
    policy = resolver.bucket_policy(TIER_A, bucket_id)
    arn, _ = resolver.role(TIER_A, "/BatchVerify/")
    widened = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    resource = {"bucket": f"arn:aws:s3:::{bucket}", "object": f"arn:aws:s3:::{bucket}/a.esdk"}[target]
    # WHEN it calls from outside the VPC endpoint (as Batch Operations does), over TLS, on a validated object
    context = {
        "aws:SecureTransport": True,
        "s3:TlsVersion": "1.2",
        "s3:ExistingObjectTag/kommunmoln-status": "validated",
    }
    decision = evaluate(Request(arn, action, resource, context), identity_policies=[widened], resource_policy=policy)
    # THEN only listing is allowed; the bucket policy denies the rest itself
    assert decision == expected
    assert SID_SERVICE_LISTERS in {s.get("Sid") for s in policy["Statement"]}
