"""Tier A request matrix: the synthesized bucket policy and IAM roles, evaluated offline.

Every attack of issue 11 and every legitimate flow is a row with the decision AWS must
reach. Principals' ARNs and the bucket name come from the synthesized templates; the
allowed values (storage classes, SSE, tag keys) are written out here, independent of the
implementation's constants, so a changed constant fails a row.
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

TIER_A = "-tier-a"
ENDPOINT = "endpoint"  # replaced by the S3 gateway endpoint id of the network stack
STATUS = "s3:ExistingObjectTag/kommunmoln-status"
VALIDATED = {STATUS: "validated"}
QUARANTINED = {STATUS: "quarantined"}
IN_VPC = {"aws:SourceVpce": ENDPOINT}
MFA = {"aws:MultiFactorAuthPresent": True}
# The validator function's own code (explicit name, default municipality "exempel"; written out here).
# Lambda sets lambda:SourceFunctionArn on requests made from a function's execution environment
# (https://docs.aws.amazon.com/lambda/latest/dg/permissions-source-function-arn.html).
VALIDATOR_CODE = {
    "lambda:SourceFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:kommunmoln-exempel-tier-a-validator"
}
OTHER_FUNCTION = {"lambda:SourceFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:attacker"}
CLIENT_TAGS = {
    "s3:RequestObjectTagKeys": ["kommunmoln-encryption"],
    "s3:RequestObjectTag/kommunmoln-encryption": "esdk-client-side",
}
# CDK's bootstrap execution role (default qualifier), written out rather than taken from the code.
DEPLOYMENT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"

D, A, I = EXPLICIT_DENY, ALLOW, IMPLICIT_DENY  # noqa: E741


_s = row

SCENARIOS = [
    # --- item 1: nothing readable until validated ----------------------------------------
    _s("admin reads an untagged (unchecked) version", "read-before-validation", "admin", "s3:GetObject", "object", D, parts=[IN_VPC]),
    _s("admin reads an untagged version by id", "read-before-validation", "admin", "s3:GetObjectVersion", "object", D, parts=[IN_VPC]),
    _s("client reads an untagged version", "read-before-validation", "client", "s3:GetObject", "object", D, parts=[IN_VPC]),
    _s("client reads a quarantined version", "read-before-validation", "client", "s3:GetObject", "object", D, parts=[IN_VPC, QUARANTINED]),
    _s("status tag with another value", "read-before-validation", "client", "s3:GetObject", "object", D, parts=[IN_VPC, {STATUS: "Validated"}]),
    _s("replication reads an unvalidated version", "read-before-validation", "admin", "s3:GetObjectVersionForReplication", "object", D, parts=[IN_VPC]),
    _s("torrent of an unvalidated version", "read-before-validation", "admin", "s3:GetObjectTorrent", "object", D, parts=[IN_VPC]),
    _s("read through an access point / Object Lambda", "read-before-validation", "admin", "s3:GetObject", "object", D,
       parts=[IN_VPC, VALIDATED, {"s3:DataAccessPointArn": f"arn:aws:s3:{REGION}:{ACCOUNT}:accesspoint/ol"}]),
    _s("client reads a validated version", "legitimate", "client", "s3:GetObject", "object", A, parts=[IN_VPC, VALIDATED]),
    _s("validator reads the head of an unchecked version", "legitimate", "validator", "s3:GetObjectVersion", "object", A, parts=[IN_VPC, VALIDATOR_CODE]),
    _s("security role reads a quarantined version", "legitimate", "security", "s3:GetObjectVersion", "object", A, parts=[MFA, QUARANTINED]),
    # --- item 3: uploads that cannot be valid ---------------------------------------------
    _s("upload to GLACIER", "upload-at-door", "client", "s3:PutObject", "object", D, parts=[IN_VPC, CLIENT_TAGS], **{"s3:x-amz-storage-class": "GLACIER"}),
    _s("upload to DEEP_ARCHIVE", "upload-at-door", "client", "s3:PutObject", "object", D, parts=[IN_VPC, CLIENT_TAGS], **{"s3:x-amz-storage-class": "DEEP_ARCHIVE"}),
    _s("upload to STANDARD_IA (not configured)", "upload-at-door", "client", "s3:PutObject", "object", D, parts=[IN_VPC, CLIENT_TAGS], **{"s3:x-amz-storage-class": "STANDARD_IA"}),
    _s("upload with SSE-KMS", "upload-at-door", "client", "s3:PutObject", "object", D, parts=[IN_VPC, CLIENT_TAGS], **{"s3:x-amz-server-side-encryption": "aws:kms"}),
    _s("upload with DSSE-KMS", "upload-at-door", "client", "s3:PutObject", "object", D, parts=[IN_VPC, CLIENT_TAGS], **{"s3:x-amz-server-side-encryption": "aws:kms:dsse"}),
    _s("upload with SSE-C", "upload-at-door", "client", "s3:PutObject", "object", D, parts=[IN_VPC, CLIENT_TAGS], **{"s3:x-amz-server-side-encryption-customer-algorithm": "AES256"}),
    _s("multipart part with SSE-C", "upload-at-door", "client", "s3:PutObject", "object", D, parts=[IN_VPC], **{"s3:x-amz-server-side-encryption-customer-algorithm": "AES256"}),
    _s("upload with a tag key outside the allow-list", "upload-at-door", "client", "s3:PutObject", "object", D, parts=[IN_VPC],
       **{"s3:RequestObjectTagKeys": ["kommunmoln-encryption", "owner"], "s3:RequestObjectTag/kommunmoln-encryption": "esdk-client-side"}),
    _s("later tagging with a key outside the allow-list", "upload-at-door", "client", "s3:PutObjectTagging", "object", D, parts=[IN_VPC, VALIDATED], **{"s3:RequestObjectTagKeys": ["x"]}),
    _s("upload tagged without the encryption tag", "upload-at-door", "client", "s3:PutObject", "object", D, parts=[IN_VPC],
       **{"s3:RequestObjectTagKeys": ["kommunmoln-encryption"], "s3:RequestObjectTag/kommunmoln-encryption": "plaintext"}),
    _s("single PUT with the client's tag", "legitimate", "client", "s3:PutObject", "object", A, parts=[IN_VPC, CLIENT_TAGS]),
    _s("single PUT, explicit SSE-S3 and STANDARD", "legitimate", "client", "s3:PutObject", "object", A, parts=[IN_VPC, CLIENT_TAGS],
       **{"s3:x-amz-server-side-encryption": "AES256", "s3:x-amz-storage-class": "STANDARD"}),
    _s("multipart: CreateMultipartUpload to INTELLIGENT_TIERING", "legitimate", "client", "s3:PutObject", "object", A, parts=[IN_VPC, CLIENT_TAGS], **{"s3:x-amz-storage-class": "INTELLIGENT_TIERING"}),
    _s("multipart: UploadPart (no tags, no headers)", "legitimate", "client", "s3:PutObject", "object", A, parts=[IN_VPC]),
    _s("multipart: CompleteMultipartUpload", "legitimate", "client", "s3:PutObject", "object", A, parts=[IN_VPC]),
    _s("multipart: ListMultipartUploadParts", "legitimate", "client", "s3:ListMultipartUploadParts", "object", A, parts=[IN_VPC]),
    # --- status tags ------------------------------------------------------------------------
    _s("upload forging kommunmoln-status=validated", "status-tags", "client", "s3:PutObject", "object", D, parts=[IN_VPC],
       **{"s3:RequestObjectTagKeys": ["kommunmoln-encryption", "kommunmoln-status"], "s3:RequestObjectTag/kommunmoln-encryption": "esdk-client-side"}),
    _s("admin tags a version validated", "status-tags", "admin", "s3:PutObjectVersionTagging", "object", D, parts=[IN_VPC], **{"s3:RequestObjectTagKeys": ["kommunmoln-status"]}),
    _s("admin forges the checked-version tag", "status-tags", "admin", "s3:PutObjectTagging", "object", D, parts=[IN_VPC], **{"s3:RequestObjectTagKeys": ["kommunmoln-checked-version"]}),
    _s("admin removes a quarantine's tags", "status-tags", "admin", "s3:DeleteObjectVersionTagging", "object", D, parts=[IN_VPC, QUARANTINED]),
    # PutObjectTagging replaces the whole tag set (S3 API Reference, PutObjectTagging), and no ObjectCreated
    # event re-runs the validator: nobody but the validator and the security role retags.
    _s("admin strips validated (tag set without the status)", "status-tags", "admin", "s3:PutObjectTagging", "object", D,
       parts=[IN_VPC, VALIDATED, CLIENT_TAGS]),
    _s("client deletes a validated version's tags", "status-tags", "client", "s3:DeleteObjectVersionTagging", "object", D, parts=[IN_VPC, VALIDATED]),
    _s("client retags a version with allowed keys only", "status-tags", "client", "s3:PutObjectVersionTagging", "object", D, parts=[IN_VPC, CLIENT_TAGS]),
    _s("validator tags a version", "legitimate", "validator", "s3:PutObjectVersionTagging", "object", A, parts=[IN_VPC, VALIDATOR_CODE],
       **{"s3:RequestObjectTagKeys": ["kommunmoln-encryption", "kommunmoln-status", "kommunmoln-checked-version"]}),
    _s("validator reads a version's tags", "legitimate", "validator", "s3:GetObjectVersionTagging", "object", A, parts=[IN_VPC, VALIDATOR_CODE]),
    _s("security role releases a quarantine", "legitimate", "security", "s3:PutObjectVersionTagging", "object", A,
       parts=[MFA, QUARANTINED], **{"s3:RequestObjectTagKeys": ["kommunmoln-status", "kommunmoln-checked-version"]}),
    _s("validator cannot lift a quarantine", "status-tags", "validator", "s3:PutObjectVersionTagging", "object", D, parts=[IN_VPC, VALIDATOR_CODE, QUARANTINED], **{"s3:RequestObjectTagKeys": ["kommunmoln-status"]}),
    # --- item 4: copies ---------------------------------------------------------------------
    _s("CopyObject of a validated object to a new key", "copy", "client", "s3:PutObject", "object", D, parts=[IN_VPC, CLIENT_TAGS], **{"s3:x-amz-copy-source": "bucket/validated-key"}),
    _s("UploadPartCopy", "copy", "client", "s3:PutObject", "object", D, parts=[IN_VPC], **{"s3:x-amz-copy-source": "bucket/validated-key"}),
    _s("even the security role cannot copy", "copy", "security", "s3:PutObject", "object", D, parts=[MFA], **{"s3:x-amz-copy-source": "bucket/k?versionId=1"}),
    # --- item 5: configuration and replication ----------------------------------------------
    *[
        _s(f"admin {action.split(':')[1]}", "configuration", "admin", action, "bucket", D, parts=[IN_VPC])
        for action in (
            "s3:PutBucketNotification", "s3:PutLifecycleConfiguration", "s3:PutBucketVersioning", "s3:PutBucketPolicy",
            "s3:DeleteBucketPolicy", "s3:PutEncryptionConfiguration", "s3:PutReplicationConfiguration",
            "s3:PutBucketObjectLockConfiguration", "s3:PutBucketPublicAccessBlock", "s3:PutIntelligentTieringConfiguration",
            "s3:PutInventoryConfiguration", "s3:PutAnalyticsConfiguration",
        )
    ],
    *[
        _s(f"admin {action.split(':')[1]} into the bucket", "configuration", "admin", action, "object", D, parts=[IN_VPC])
        for action in ("s3:ReplicateObject", "s3:ReplicateTags", "s3:ReplicateDelete")
    ],
    _s("break-glass without MFA", "configuration", "break_glass", "s3:PutBucketPolicy", "bucket", D, **{"aws:MultiFactorAuthPresent": False}),
    _s("break-glass session lacking the MFA key", "configuration", "break_glass", "s3:PutLifecycleConfiguration", "bucket", D),
    _s("break-glass with MFA changes the lifecycle", "legitimate", "break_glass", "s3:PutLifecycleConfiguration", "bucket", A, parts=[MFA]),
    _s("break-glass with MFA configures an inventory", "legitimate", "break_glass", "s3:PutInventoryConfiguration", "bucket", A, parts=[MFA]),
    _s("cdk deploy: CloudFormation updates the policy", "legitimate", "deployment", "s3:PutBucketPolicy", "bucket", A),
    _s("cdk deploy: CloudFormation sets the notification", "legitimate", "deployment", "s3:PutBucketNotification", "bucket", A),
    _s("security role cannot change the policy", "configuration", "security", "s3:PutBucketPolicy", "bucket", D, parts=[MFA]),
    # --- item 6: the validator's exemption is bound to the validator --------------------------
    _s("validator role used outside the VPC endpoint reads", "validator-binding", "validator", "s3:GetObjectVersion", "object", D),
    _s("validator role outside the endpoint tags validated", "validator-binding", "validator", "s3:PutObjectVersionTagging", "object", D, **{"s3:RequestObjectTagKeys": ["kommunmoln-status"]}),
    _s("validator role through another endpoint", "validator-binding", "validator", "s3:GetObject", "object", D, **{"aws:SourceVpce": "vpce-attacker"}),
    _s("another function given the validator role reads an unchecked version", "validator-binding", "validator", "s3:GetObjectVersion", "object", D, parts=[IN_VPC, OTHER_FUNCTION]),
    _s("another function given the validator role tags validated", "validator-binding", "validator", "s3:PutObjectVersionTagging", "object", D,
       parts=[IN_VPC, OTHER_FUNCTION], **{"s3:RequestObjectTagKeys": ["kommunmoln-status"]}),
    _s("validator role's credentials used in the VPC outside Lambda", "validator-binding", "validator", "s3:GetObjectVersion", "object", D, parts=[IN_VPC]),
    # --- deletion and perimeter ---------------------------------------------------------------
    _s("admin deletes a version", "deletion", "admin", "s3:DeleteObjectVersion", "object", D, parts=[IN_VPC, VALIDATED]),
    _s("admin bypasses governance retention", "deletion", "admin", "s3:BypassGovernanceRetention", "object", D, parts=[IN_VPC]),
    _s("admin deletes the bucket", "deletion", "admin", "s3:DeleteBucket", "bucket", D, parts=[IN_VPC]),
    _s("security role deletes a quarantined version", "legitimate", "security", "s3:DeleteObjectVersion", "object", A, parts=[MFA, QUARANTINED]),
    _s("admin from the internet reads a validated version", "perimeter", "admin", "s3:GetObject", "object", D, parts=[VALIDATED]),
    _s("client from the internet uploads", "perimeter", "client", "s3:PutObject", "object", D, parts=[CLIENT_TAGS]),
    _s("admin lists from the internet", "perimeter", "admin", "s3:ListBucket", "bucket", D),
    _s("client reads tags from the internet", "perimeter", "client", "s3:GetObjectTagging", "object", D, parts=[VALIDATED]),
    _s("client reads a version's tags from the internet", "perimeter", "client", "s3:GetObjectVersionTagging", "object", D),
    _s("client lists through the endpoint", "legitimate", "client", "s3:ListBucket", "bucket", A, parts=[IN_VPC]),
    _s("client without any grant", "perimeter", "nobody", "s3:GetObject", "object", I, parts=[IN_VPC, VALIDATED]),
]  # fmt: skip


class Matrix:
    """The synthesized tier A policies, resolved, and the principals of the scenarios."""

    def __init__(self, synth: Synthesized) -> None:
        self.resolver = Resolver(synth.templates)
        bucket_id, self.bucket_name = self.resolver.protected_bucket(TIER_A)
        self.policy = self.resolver.bucket_policy(TIER_A, bucket_id)
        self.endpoint = self.resolver.s3_endpoint_id()

        def role(path: str) -> tuple[str, list[dict[str, Any]]]:
            return self.resolver.role(TIER_A, path)

        client_grant = {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{self.bucket_name}", f"arn:aws:s3:::{self.bucket_name}/*"],
                }
            ]
        }
        self.principals: dict[str, tuple[str, list[dict[str, Any]]]] = {
            "admin": (f"arn:aws:iam::{ACCOUNT}:role/AccountAdministrator", [ADMIN_POLICY]),
            "client": (f"arn:aws:iam::{ACCOUNT}:role/MunicipalityClient", [client_grant]),
            "nobody": (f"arn:aws:iam::{ACCOUNT}:role/Nobody", []),
            "validator": role("/Validator/Function/Role/"),
            "security": role("/SecurityRole/"),
            "break_glass": role("/BreakGlassRole/"),
            "deployment": (DEPLOYMENT_ROLE, [ADMIN_POLICY]),  # the bootstrap attaches AdministratorAccess
        }  # fmt: skip

    def decide(self, scenario: Scenario) -> str:
        bucket_arn = f"arn:aws:s3:::{self.bucket_name}"
        resource = {"bucket": bucket_arn, "object": f"{bucket_arn}/docs/a.pdf.kmn"}.get(
            scenario.target, scenario.target
        )
        return decide_s3(
            scenario, principals=self.principals, policy=self.policy, resource=resource,
            replacements={ENDPOINT: self.endpoint},
        )  # fmt: skip


@pytest.fixture(scope="module")
def matrix(synthesized: Synthesized) -> Matrix:
    return Matrix(synthesized)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_tier_a_scenario(matrix: Matrix, scenario: Scenario) -> None:
    assert matrix.decide(scenario) == scenario.expected, scenario


def test_every_attack_is_refused_and_every_category_is_covered() -> None:
    assert_rows_consistent(SCENARIOS, {
        "read-before-validation", "upload-at-door", "status-tags", "copy", "configuration",
        "validator-binding", "deletion", "perimeter", "legitimate",
    })  # fmt: skip
