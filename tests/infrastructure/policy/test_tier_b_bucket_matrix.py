"""Tier B data bucket matrix (issue 11, item 10): tier A's deletion, perimeter and tag guards on the
SSE-KMS bucket, with tier B's own encryption rules, evaluated offline against the synthesized policies.

The rows write out the values AWS sees (tag keys, SSE headers, the endpoint), independent of the
implementation's constants. The key policy is a separate gate (test_tier_b_key_matrix.py): a row
here that ends in ALLOW says only that the bucket policy and IAM let the S3 request through.
Condition keys as documented in the Service Authorization Reference, "Actions, resources, and
condition keys for Amazon S3" (s3:RequestObjectTagKeys, s3:ExistingObjectTag/<key>,
s3:x-amz-server-side-encryption, ...-aws-kms-key-id, ...-customer-algorithm, s3:DataAccessPointArn)
and the IAM User Guide's global keys (aws:SourceVpce, aws:PrincipalArn, aws:MultiFactorAuthPresent).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Synthesized
from tests.infrastructure.policy.evaluator import (
    ACCOUNT,
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    REGION,
    Resolver,
)
from tests.infrastructure.policy.scenarios import ADMIN_POLICY, Scenario, assert_rows_consistent, decide_s3, row

TIER_B = "-tier-b"
ENDPOINT = "endpoint"  # replaced by the S3 gateway endpoint id of the network stack
KEY = "key"  # replaced by the HSM key's ARN
STATUS = "s3:ExistingObjectTag/kommunmoln-status"
QUARANTINED = {STATUS: "quarantined"}
IN_VPC = {"aws:SourceVpce": ENDPOINT}
MFA = {"aws:MultiFactorAuthPresent": True}
# Written out (default municipality "exempel"): requests from the validator function's own code carry
# lambda:SourceFunctionArn (https://docs.aws.amazon.com/lambda/latest/dg/permissions-source-function-arn.html).
VALIDATOR_CODE = {
    "lambda:SourceFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:kommunmoln-exempel-tier-b-validator"
}
OTHER_FUNCTION = {"lambda:SourceFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:attacker"}
SSE = "s3:x-amz-server-side-encryption"
DEPLOYMENT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"

D, A, I = EXPLICIT_DENY, ALLOW, IMPLICIT_DENY  # noqa: E741


_s = row

SCENARIOS = [
    # --- deletion: only the security role deletes versions ----------------------------------------
    _s("admin deletes a version", "deletion", "admin", "s3:DeleteObjectVersion", "object", D, parts=[IN_VPC]),
    _s("admin deletes an object (delete marker)", "deletion", "admin", "s3:DeleteObject", "object", D, parts=[IN_VPC]),
    _s("admin bypasses governance retention", "deletion", "admin", "s3:BypassGovernanceRetention", "object", D, parts=[IN_VPC]),
    _s("usage role deletes a version", "deletion", "usage", "s3:DeleteObjectVersion", "object", D),
    _s("admin deletes the bucket", "deletion", "admin", "s3:DeleteBucket", "bucket", D, parts=[IN_VPC]),
    _s("security role deletes a quarantined version", "legitimate", "security", "s3:DeleteObjectVersion", "object", A, parts=[MFA, QUARANTINED]),
    # --- perimeter: the VPC's S3 endpoint, or the usage and security roles -------------------------
    _s("admin from the internet reads", "perimeter", "admin", "s3:GetObject", "object", D),
    _s("admin from the internet uploads", "perimeter", "admin", "s3:PutObject", "object", D),
    _s("admin lists from the internet", "perimeter", "admin", "s3:ListBucket", "bucket", D),
    _s("admin through another endpoint", "perimeter", "admin", "s3:GetObject", "object", D, **{"aws:SourceVpce": "vpce-attacker"}),
    _s("read through an access point", "perimeter", "usage", "s3:GetObject", "object", D,
       **{"s3:DataAccessPointArn": f"arn:aws:s3:{REGION}:{ACCOUNT}:accesspoint/side-door"}),
    _s("validator role outside the endpoint reads", "perimeter", "validator", "s3:GetObjectVersion", "object", D),
    _s("principal without any grant", "perimeter", "nobody", "s3:GetObject", "object", I, parts=[IN_VPC]),
    _s("usage role reads from the municipality", "legitimate", "usage", "s3:GetObject", "object", A),
    _s("usage role uploads from the municipality (default encryption)", "legitimate", "usage", "s3:PutObject", "object", A),
    _s("usage role lists", "legitimate", "usage", "s3:ListBucket", "bucket", A),
    _s("another function given the validator role reads", "perimeter", "validator", "s3:GetObjectVersion", "object", D, parts=[IN_VPC, OTHER_FUNCTION]),
    _s("validator role's credentials used in the VPC outside Lambda tag", "status-tags", "validator", "s3:PutObjectVersionTagging", "object", D,
       parts=[IN_VPC], **{"s3:RequestObjectTagKeys": ["kommunmoln-status"]}),
    _s("validator reads a new version through the endpoint", "legitimate", "validator", "s3:GetObjectVersion", "object", A, parts=[IN_VPC, VALIDATOR_CODE]),
    # --- tags: only the validator's status tags, only from the validator ----------------------------
    _s("upload with a tag key outside the allow-list", "status-tags", "usage", "s3:PutObject", "object", D, **{"s3:RequestObjectTagKeys": ["owner"]}),
    _s("upload with tier A's encryption tag", "status-tags", "usage", "s3:PutObject", "object", D, **{"s3:RequestObjectTagKeys": ["kommunmoln-encryption"]}),
    _s("upload forging kommunmoln-status", "status-tags", "usage", "s3:PutObject", "object", D, **{"s3:RequestObjectTagKeys": ["kommunmoln-status"]}),
    _s("admin tags a version validated", "status-tags", "admin", "s3:PutObjectVersionTagging", "object", D, parts=[IN_VPC], **{"s3:RequestObjectTagKeys": ["kommunmoln-status"]}),
    _s("admin removes a quarantine's tags", "status-tags", "admin", "s3:DeleteObjectVersionTagging", "object", D, parts=[IN_VPC, QUARANTINED]),
    _s("validator lifts a quarantine", "status-tags", "validator", "s3:PutObjectVersionTagging", "object", D, parts=[IN_VPC, VALIDATOR_CODE, QUARANTINED], **{"s3:RequestObjectTagKeys": ["kommunmoln-status"]}),
    _s("validator role outside the endpoint tags", "status-tags", "validator", "s3:PutObjectVersionTagging", "object", D, **{"s3:RequestObjectTagKeys": ["kommunmoln-status"]}),
    # PutObjectTagging replaces the whole tag set (S3 API Reference, PutObjectTagging): nobody else retags.
    _s("admin strips validated (empty tag set)", "status-tags", "admin", "s3:PutObjectTagging", "object", D, parts=[IN_VPC, {STATUS: "validated"}]),
    _s("usage role deletes a version's tags", "status-tags", "usage", "s3:DeleteObjectVersionTagging", "object", D, parts=[{STATUS: "validated"}]),
    _s("validator tags a version", "legitimate", "validator", "s3:PutObjectVersionTagging", "object", A, parts=[IN_VPC, VALIDATOR_CODE], **{"s3:RequestObjectTagKeys": ["kommunmoln-status", "kommunmoln-reason"]}),
    _s("security role releases a quarantine", "legitimate", "security", "s3:PutObjectVersionTagging", "object", A, parts=[MFA, QUARANTINED], **{"s3:RequestObjectTagKeys": ["kommunmoln-status"]}),
    # --- encryption (tier B's SSE-KMS rules instead of tier A's SSE-S3 ones) ------------------------
    _s("upload with SSE-S3", "upload-at-door", "usage", "s3:PutObject", "object", D, **{SSE: "AES256"}),
    _s("upload with DSSE-KMS", "upload-at-door", "usage", "s3:PutObject", "object", D, **{SSE: "aws:kms:dsse"}),
    _s("upload with another KMS key", "upload-at-door", "usage", "s3:PutObject", "object", D,
       **{SSE: "aws:kms", f"{SSE}-aws-kms-key-id": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000-other"}),
    _s("upload with aws:kms and no key id (aws/s3)", "upload-at-door", "usage", "s3:PutObject", "object", D, **{SSE: "aws:kms"}),
    _s("upload with SSE-C", "upload-at-door", "usage", "s3:PutObject", "object", D, **{f"{SSE}-customer-algorithm": "AES256"}),
    _s("upload naming the HSM key", "legitimate", "usage", "s3:PutObject", "object", A, **{SSE: "aws:kms", f"{SSE}-aws-kms-key-id": KEY}),
    _s("multipart: UploadPart (no headers, no tags)", "legitimate", "usage", "s3:PutObject", "object", A),
    # --- configuration: CloudFormation or the break-glass role with MFA -----------------------------
    *[
        _s(f"admin {action.split(':')[1]}", "configuration", "admin", action, "bucket", D, parts=[IN_VPC])
        for action in (
            "s3:PutBucketNotification", "s3:PutLifecycleConfiguration", "s3:PutBucketVersioning", "s3:PutBucketPolicy",
            "s3:PutEncryptionConfiguration", "s3:PutReplicationConfiguration", "s3:PutBucketObjectLockConfiguration",
            "s3:PutInventoryConfiguration", "s3:PutAnalyticsConfiguration",
        )
    ],
    _s("admin ReplicateObject into the bucket", "configuration", "admin", "s3:ReplicateObject", "object", D, parts=[IN_VPC]),
    _s("break-glass without MFA", "configuration", "break_glass", "s3:PutBucketPolicy", "bucket", D, **{"aws:MultiFactorAuthPresent": False}),
    _s("security role changes the policy", "configuration", "security", "s3:PutBucketPolicy", "bucket", D, parts=[MFA]),
    _s("break-glass with MFA changes the lifecycle", "legitimate", "break_glass", "s3:PutLifecycleConfiguration", "bucket", A, parts=[MFA]),
    _s("cdk deploy: CloudFormation updates the policy", "legitimate", "deployment", "s3:PutBucketPolicy", "bucket", A),
]  # fmt: skip


class BucketMatrix:
    """The synthesized tier B bucket policy and roles, resolved."""

    def __init__(self, synth: Synthesized) -> None:
        resolver = Resolver(synth.templates)
        template = resolver.template_of(TIER_B)
        bucket_id, bucket_name = resolver.protected_bucket(TIER_B)
        self.bucket_arn = f"arn:aws:s3:::{bucket_name}"
        self.policy = resolver.bucket_policy(TIER_B, bucket_id)
        (key_id,) = [k for k, v in template["Resources"].items() if v["Type"] == "Custom::KmsHsmKey"]
        self.key_arn = resolver.resolve({"Fn::GetAtt": [key_id, "KeyArn"]}, template)
        self.endpoint = resolver.s3_endpoint_id()
        self.principals: dict[str, tuple[str, list[dict[str, Any]]]] = {
            "admin": (f"arn:aws:iam::{ACCOUNT}:role/AccountAdministrator", [ADMIN_POLICY]),
            "nobody": (f"arn:aws:iam::{ACCOUNT}:role/Nobody", []),
            "usage": resolver.role(TIER_B, "/Key/UsageRole/"),
            "validator": resolver.role(TIER_B, "/Validator/Function/Role/"),
            "security": resolver.role(TIER_B, "/SecurityRole/"),
            "break_glass": resolver.role(TIER_B, "/BreakGlassRole/"),
            "deployment": (DEPLOYMENT_ROLE, [ADMIN_POLICY]),
        }

    def decide(self, scenario: Scenario) -> str:
        resource = {"bucket": self.bucket_arn, "object": f"{self.bucket_arn}/arenden/2026/beslut.pdf"}[scenario.target]
        return decide_s3(
            scenario, principals=self.principals, policy=self.policy, resource=resource,
            replacements={ENDPOINT: self.endpoint, KEY: self.key_arn},
        )  # fmt: skip


@pytest.fixture(scope="module")
def bucket_matrix(phase2: Synthesized) -> BucketMatrix:
    return BucketMatrix(phase2)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_tier_b_bucket_scenario(bucket_matrix: BucketMatrix, scenario: Scenario) -> None:
    # GIVEN the synthesized tier B bucket policy and roles WHEN the request is evaluated THEN AWS's decision
    assert bucket_matrix.decide(scenario) == scenario.expected, scenario


def test_every_tier_b_attack_is_refused_and_the_guards_are_tier_as() -> None:
    assert_rows_consistent(SCENARIOS, {"deletion", "perimeter", "status-tags", "upload-at-door", "configuration",
                                       "legitimate"})  # fmt: skip
