"""The tier A bucket policy: what no IAM permission can override.

Deny statements only (the bucket and its principals live in one account, so IAM policies
grant and the bucket policy takes away). Each statement is one rule with its own Sid;
`tests/infrastructure/test_tier_a_stack.py` asserts every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam

from kommunmoln import names
from stacks.components.secure_bucket import DATA_ACTIONS, SecureBucket

SID_ENCRYPTION_TAG = "DenyTaggedUploadsWithoutEncryptionTag"
SID_FORGED_STATUS = "DenyStatusTagsFromOthersThanValidator"
SID_KEEP_QUARANTINE = "DenyChangingQuarantineTags"
SID_READ_QUARANTINED = "DenyReadingQuarantinedObjects"
SID_NO_DELETION = "DenyDeletionExceptSecurityRole"
SID_PERIMETER = "DenyDataAccessOutsideEndpointAndPrincipals"

_TAGGING_ACTIONS = ["s3:PutObjectTagging", "s3:PutObjectVersionTagging"]
_UNTAGGING_ACTIONS = ["s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"]


def add_tier_a_guards(
    bucket: SecureBucket,
    *,
    security_role_arn: str,
    validator_role_arn: str,
    s3_endpoint_id: str,
    data_access_principals: Sequence[str],
    maintenance_role_arns: Sequence[str] = (),
) -> None:
    """Add the tier A deny statements to `bucket`'s policy.

    `maintenance_role_arns`: roles of CDK's own housekeeping (the workshop-mode auto-delete
    provider), exempt from the deletion and perimeter guards so that `cdk destroy` works.
    """
    anyone = [iam.AnyPrincipal()]
    objects = [bucket.objects_arn]
    security = [security_role_arn]
    status_tag_keys = [names.OBJECT_TAG_STATUS, names.OBJECT_TAG_REASON]
    quarantined = {f"s3:ExistingObjectTag/{names.OBJECT_TAG_STATUS}": names.STATUS_QUARANTINED}

    # Uploads that carry tags must carry the client's encryption tag. Requests without any
    # tag are not denied here because UploadPart and CompleteMultipartUpload are authorized
    # as s3:PutObject and never carry tags: a plain "StringNotEquals" deny would break every
    # multipart upload (boto/boto3#2675). An untagged single PUT is caught by the validator,
    # which quarantines anything that is not a valid ESDK message.
    bucket.add_policy_statement(
        iam.PolicyStatement(
            sid=SID_ENCRYPTION_TAG,
            effect=iam.Effect.DENY,
            principals=anyone,
            actions=["s3:PutObject"],
            resources=objects,
            conditions={
                "Null": {"s3:RequestObjectTagKeys": "false"},
                "StringNotEquals": {
                    f"s3:RequestObjectTag/{names.OBJECT_TAG_ENCRYPTION}": names.OBJECT_TAG_ENCRYPTION_VALUE
                },
            },
        )
    )
    # Only the validator (and the security role) may write the status tags: a client that
    # uploads with `kommunmoln-status=validated` would otherwise skip validation.
    bucket.add_policy_statement(
        iam.PolicyStatement(
            sid=SID_FORGED_STATUS,
            effect=iam.Effect.DENY,
            principals=anyone,
            actions=["s3:PutObject", *_TAGGING_ACTIONS],
            resources=objects,
            conditions={
                "ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": status_tag_keys},
                "ArnNotEquals": {"aws:PrincipalArn": [validator_role_arn, security_role_arn]},
            },
        )
    )
    # Nobody but the security role may lift a quarantine by rewriting or removing tags.
    bucket.add_policy_statement(
        iam.PolicyStatement(
            sid=SID_KEEP_QUARANTINE,
            effect=iam.Effect.DENY,
            principals=anyone,
            actions=[*_TAGGING_ACTIONS, *_UNTAGGING_ACTIONS],
            resources=objects,
            conditions={"StringEquals": quarantined, "ArnNotEquals": {"aws:PrincipalArn": security}},
        )
    )
    bucket.add_policy_statement(
        iam.PolicyStatement(
            sid=SID_READ_QUARANTINED,
            effect=iam.Effect.DENY,
            principals=anyone,
            actions=["s3:GetObject", "s3:GetObjectVersion"],
            resources=objects,
            conditions={"StringEquals": quarantined, "ArnNotEquals": {"aws:PrincipalArn": security}},
        )
    )
    # Nothing is lost: only the security role deletes versions or bypasses governance retention.
    bucket.add_policy_statement(
        iam.PolicyStatement(
            sid=SID_NO_DELETION,
            effect=iam.Effect.DENY,
            principals=anyone,
            actions=["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"],
            resources=objects,
            conditions={"ArnNotEquals": {"aws:PrincipalArn": [*security, *maintenance_role_arns]}},
        )
    )
    # Data only through the VPC's S3 gateway endpoint, or by a configured principal (the
    # municipality's on-premises clients) or the security role (people, MFA required).
    bucket.add_policy_statement(
        iam.PolicyStatement(
            sid=SID_PERIMETER,
            effect=iam.Effect.DENY,
            principals=anyone,
            actions=list(DATA_ACTIONS),
            resources=[bucket.bucket_arn, bucket.objects_arn],
            conditions={
                "StringNotEquals": {"aws:SourceVpce": s3_endpoint_id},
                "ArnNotEquals": {"aws:PrincipalArn": [*security, *data_access_principals, *maintenance_role_arns]},
            },
        )
    )
