"""The tier A bucket policy: what no IAM permission can override.

Deny statements only (the bucket and its principals live in one account, so IAM policies
grant and the bucket policy takes away). Each statement is one rule with its own Sid. The
rules fail closed: a version is unreadable until the validator has tagged *that version*
`validated`; an upload that could never be valid is refused at the door; and the bucket's
configuration (which could disconnect the validator or expire everything) is changed only
by CloudFormation's deployment role or by the break-glass role with MFA.

`tests/infrastructure/policy/` evaluates these statements with an offline evaluator against
a matrix of attacks and legitimate flows; `test_tier_a_stack.py` asserts their shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

from kommunmoln import names
from stacks.components.secure_bucket import DATA_ACTIONS

SID_ENCRYPTION_TAG = "DenyTaggedUploadsWithoutEncryptionTag"
SID_TAG_ALLOW_LIST = "DenyObjectTagKeysOutsideAllowList"
SID_FORGED_STATUS = "DenyStatusTagsFromOthersThanValidator"
SID_KEEP_QUARANTINE = "DenyChangingQuarantineTags"
SID_TAGGING = "DenyRetaggingExceptValidatorAndSecurityRole"
SID_READ_UNVALIDATED = "DenyReadingVersionsNotValidated"
SID_VALIDATOR_ENDPOINT = "DenyValidatorRoleOutsideItsEndpoint"
SID_STORAGE_CLASS = "DenyUploadsToOtherStorageClasses"
SID_SERVER_SIDE_ENCRYPTION = "DenyServerSideEncryptionOtherThanSseS3"
SID_CUSTOMER_KEYS = "DenyCustomerProvidedKeys"
SID_COPIES = "DenyCopiesIntoTheBucket"
SID_ACCESS_POINTS = "DenyAccessThroughAccessPoints"
SID_CONFIGURATION = "DenyConfigurationChangesExceptBreakGlass"
SID_BREAK_GLASS_MFA = "DenyBreakGlassWithoutMfa"
SID_NO_DELETION = "DenyDeletionExceptSecurityRole"
SID_PERIMETER = "DenyDataAccessOutsideEndpointAndPrincipals"
SID_SERVICE_LISTERS = "DenyServiceListersAnythingButListing"
LISTING_ACTIONS = ("s3:ListBucket", "s3:ListBucketVersions")
SID_CLIENT_SOURCE_IPS = "DenyOnPremisesPrincipalsOutsideTheirNetworks"

TAGGING_ACTIONS = ("s3:PutObjectTagging", "s3:PutObjectVersionTagging")
UNTAGGING_ACTIONS = ("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging")
# Every action that returns an object's bytes. CopyObject (as source), SelectObjectContent
# and an Object Lambda access point's GetObject are all authorized as s3:GetObject(Version)
# on the source object; replication reads with GetObjectVersionForReplication.
READ_ACTIONS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectTorrent",
    "s3:GetObjectVersionTorrent",
)
DELETE_ACTIONS = ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention")
# Bucket configuration that could switch a guard off: the notification (the validator),
# lifecycle (expire past the deny-delete guard), versioning, the policy itself, encryption,
# replication, Object Lock, public access, ownership, logging, archive tiers, the bucket.
CONFIGURATION_ACTIONS = (
    "s3:PutBucketNotification",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketVersioning",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutEncryptionConfiguration",
    "s3:PutReplicationConfiguration",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketLogging",
    "s3:PutIntelligentTieringConfiguration",
    "s3:PutInventoryConfiguration",
    "s3:PutAnalyticsConfiguration",
    "s3:PutBucketAcl",
    "s3:DeleteBucket",
)
# The CloudTrail event names of those changes (management events, source s3.amazonaws.com),
# on which the configuration-change alarm fires: also the successful ones by the
# deployment or break-glass role, so that every change is seen.
CONFIGURATION_EVENT_NAMES = (
    "PutBucketNotification",
    "PutBucketLifecycle",
    "DeleteBucketLifecycle",
    "PutBucketVersioning",
    "PutBucketPolicy",
    "DeleteBucketPolicy",
    "PutBucketEncryption",
    "DeleteBucketEncryption",
    "PutBucketReplication",
    "DeleteBucketReplication",
    "PutObjectLockConfiguration",
    "PutBucketPublicAccessBlock",
    "DeleteBucketPublicAccessBlock",
    "PutBucketOwnershipControls",
    "DeleteBucketOwnershipControls",
    "PutBucketLogging",
    "PutBucketIntelligentTieringConfiguration",
    "DeleteBucketIntelligentTieringConfiguration",
    "PutBucketInventoryConfiguration",
    "DeleteBucketInventoryConfiguration",
    "PutBucketAnalyticsConfiguration",
    "DeleteBucketAnalyticsConfiguration",
    "PutBucketAcl",
    "DeleteBucket",
)
# Object-level replication writes into this bucket (as a replication destination).
REPLICATION_ACTIONS = ("s3:ReplicateObject", "s3:ReplicateTags", "s3:ReplicateDelete")


class GuardedBucket(Protocol):
    """What the guards need of a bucket (tier A's SecureBucket, tier B's SseKmsBucket)."""

    bucket_arn: str
    objects_arn: str

    def add_policy_statement(self, statement: iam.PolicyStatement) -> None: ...


@dataclass(frozen=True)
class GuardPrincipals:
    """Who the guards name. ARNs may be CloudFormation tokens.

    security: reads quarantined/unchecked versions, releases quarantine, deletes versions.
    validator: reads heads and writes status tags, only through `s3_endpoint_id`.
    break_glass: changes bucket configuration, only with MFA.
    deployment: CloudFormation's execution role (`cdk deploy` changes configuration through it).
    data_access: on-premises principals exempt from the endpoint perimeter.
    data_access_source_ips: if given, the public networks those principals must call from.
    maintenance: CDK's own housekeeping roles (workshop-mode auto-delete), for `cdk destroy`.
    service_listers: AWS service roles that list the bucket from AWS (S3 Batch Operations' manifest
        generator), exempt from the endpoint perimeter only; their own policies allow nothing else.
    """

    security: str
    validator: str
    break_glass: str
    deployment: str
    s3_endpoint_id: str
    data_access: Sequence[str] = field(default_factory=tuple)
    maintenance: Sequence[str] = field(default_factory=tuple)
    data_access_source_ips: Sequence[str] = field(default_factory=tuple)
    service_listers: Sequence[str] = field(default_factory=tuple)


def deployment_role_arn(stack: cdk.Stack) -> str:
    """The ARN of the role CloudFormation deploys this stack with (the CDK bootstrap's execution role).

    `cdk deploy` hands the change set to CloudFormation, which calls S3 with this role; the
    synthesizer names it with ${AWS::...} placeholders, resolved here with Fn::Sub.
    """
    synthesizer = stack.synthesizer
    if isinstance(synthesizer, cdk.DefaultStackSynthesizer):
        return cdk.Fn.sub(synthesizer.cloud_formation_execution_role_arn)
    # Other synthesizers (legacy, CLI credentials) deploy with the caller's own credentials.
    return f"arn:{stack.partition}:iam::{stack.account}:role/cdk-hnb659fds-cfn-exec-role-{stack.account}-{stack.region}"


def _deny(sid: str, actions: Sequence[str], resources: Sequence[str], conditions: dict) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid,
        effect=iam.Effect.DENY,
        principals=[iam.AnyPrincipal()],
        actions=list(actions),
        resources=list(resources),
        conditions=conditions,
    )


def _not_principals(*arns: str) -> dict[str, dict[str, list[str]]]:
    return {"ArnNotEquals": {"aws:PrincipalArn": list(arns)}}


class ConfigurationExemptions(Protocol):
    """Who the configuration guards exempt (GuardPrincipals has these, and so does a trail's)."""

    break_glass: str
    deployment: str
    maintenance: Sequence[str]


def add_configuration_guards(bucket: GuardedBucket, who: ConfigurationExemptions) -> None:
    """Configuration and replication changes only by the deployment role or the break-glass role with MFA.

    Shared by both tiers. CloudFormation applies every template change with its execution
    role, so `cdk deploy` (and `cdk destroy` in workshop mode) keeps working; a person who
    changes the bucket outside CloudFormation must assume the break-glass role with MFA.
    """
    exempt = [who.break_glass, who.deployment, *who.maintenance]
    bucket.add_policy_statement(
        _deny(SID_CONFIGURATION, CONFIGURATION_ACTIONS, [bucket.bucket_arn], _not_principals(*exempt))
    )
    bucket.add_policy_statement(
        _deny(f"{SID_CONFIGURATION}Objects", REPLICATION_ACTIONS, [bucket.objects_arn], _not_principals(*exempt))
    )
    # The role's trust already requires MFA; this holds even if someone widens that trust.
    bucket.add_policy_statement(
        _deny(
            SID_BREAK_GLASS_MFA,
            ["s3:*"],
            [bucket.bucket_arn, bucket.objects_arn],
            {
                "ArnEquals": {"aws:PrincipalArn": [who.break_glass]},
                "BoolIfExists": {"aws:MultiFactorAuthPresent": "false"},
            },
        )
    )


def add_data_guards(
    bucket: GuardedBucket, who: GuardPrincipals, *, tag_keys: Sequence[str] = names.OBJECT_TAG_KEYS_ALLOWED
) -> None:
    """Deletion, perimeter, access-point and tag-key guards (shared by both tiers).

    `tag_keys` is the allow-list of object tag keys (tier B: only the validator's status tags).
    """
    objects = [bucket.objects_arn]
    # Nothing is lost: only the security role deletes versions or bypasses governance retention.
    bucket.add_policy_statement(
        _deny(SID_NO_DELETION, DELETE_ACTIONS, objects, _not_principals(who.security, *who.maintenance))
    )
    # Data only through the VPC's S3 gateway endpoint, or by a configured principal (the
    # municipality's on-premises clients) or the security role (people, MFA required).
    bucket.add_policy_statement(
        _deny(
            SID_PERIMETER,
            DATA_ACTIONS,
            [bucket.bucket_arn, bucket.objects_arn],
            {
                "StringNotEquals": {"aws:SourceVpce": who.s3_endpoint_id},
                **_not_principals(who.security, *who.data_access, *who.maintenance, *who.service_listers),
            },
        )
    )
    # A service role exempt from the perimeter (S3 Batch Operations' manifest generator) may only
    # list: the bucket policy itself takes everything else away, whatever its IAM policy says.
    if who.service_listers:
        bucket.add_policy_statement(
            iam.PolicyStatement(
                sid=SID_SERVICE_LISTERS,
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                not_actions=list(LISTING_ACTIONS),
                resources=[bucket.bucket_arn, bucket.objects_arn],
                conditions={"ArnEquals": {"aws:PrincipalArn": list(who.service_listers)}},
            )
        )
    # Optionally, the on-premises principals only from the municipality's networks: stolen client
    # credentials used from anywhere else get nothing. aws:SourceIp is the requester's public address
    # and is absent through a VPC endpoint (hence the endpoint exception); requests a service makes
    # with the principal's credentials come from the service's address, hence aws:ViaAWSService
    # (IAM User Guide, "AWS global condition context keys"; example "AWS: Denies access to AWS based
    # on the source IP").
    if who.data_access and who.data_access_source_ips:
        bucket.add_policy_statement(
            _deny(
                SID_CLIENT_SOURCE_IPS,
                DATA_ACTIONS,
                [bucket.bucket_arn, bucket.objects_arn],
                {
                    "ArnEquals": {"aws:PrincipalArn": list(who.data_access)},
                    "NotIpAddress": {"aws:SourceIp": list(who.data_access_source_ips)},
                    "StringNotEquals": {"aws:SourceVpce": who.s3_endpoint_id},
                    "BoolIfExists": {"aws:ViaAWSService": "false"},
                },
            )
        )
    # Access points (and Object Lambda, which reads through one) would be a second door with
    # its own policy: no request through any access point.
    bucket.add_policy_statement(
        _deny(
            SID_ACCESS_POINTS,
            ["s3:*"],
            [bucket.bucket_arn, *objects],
            {"Null": {"s3:DataAccessPointArn": "false"}},
        )
    )
    # Only allow-listed tag keys, on uploads and on later tagging. Multipart parts carry no
    # tags (no s3:RequestObjectTagKeys): ForAnyValue over a missing key is false, so they pass.
    bucket.add_policy_statement(
        _deny(
            SID_TAG_ALLOW_LIST,
            ["s3:PutObject", *TAGGING_ACTIONS],
            objects,
            {"ForAnyValue:StringNotEquals": {"s3:RequestObjectTagKeys": list(tag_keys)}},
        )
    )


def add_status_tag_guards(bucket: GuardedBucket, who: GuardPrincipals) -> None:
    """The status tags are the validator's (and the security role's) alone (shared by both tiers)."""
    objects = [bucket.objects_arn]
    status_tag = f"s3:ExistingObjectTag/{names.OBJECT_TAG_STATUS}"
    # Only the validator (and the security role) may write the status tags: a client that
    # uploads with `kommunmoln-status=validated` would otherwise skip validation.
    bucket.add_policy_statement(
        _deny(
            SID_FORGED_STATUS,
            ["s3:PutObject", *TAGGING_ACTIONS],
            objects,
            {
                "ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": list(names.OBJECT_TAG_KEYS_STATUS)},
                **_not_principals(who.validator, who.security),
            },
        )
    )
    # Nobody but the validator and the security role changes an object's tags after the upload: a
    # PutObjectTagging replaces the whole tag set (S3 API Reference, PutObjectTagging: "replaces an existing
    # tag set"), so anyone allowed it could strip `validated` or the client's encryption tag, and no
    # ObjectCreated event would run the validator again. Clients tag only in the upload itself (PutObject
    # with x-amz-tagging, authorized as s3:PutObject with s3:RequestObjectTag keys), never afterwards.
    bucket.add_policy_statement(
        _deny(
            SID_TAGGING, [*TAGGING_ACTIONS, *UNTAGGING_ACTIONS], objects, _not_principals(who.validator, who.security)
        )
    )
    # Nobody but the security role may lift a quarantine by rewriting or removing tags.
    bucket.add_policy_statement(
        _deny(
            SID_KEEP_QUARANTINE,
            [*TAGGING_ACTIONS, *UNTAGGING_ACTIONS],
            objects,
            {"StringEquals": {status_tag: names.STATUS_QUARANTINED}, **_not_principals(who.security)},
        )
    )
    # The validator's exemptions hold only for the function in the VPC: a new function (or
    # anyone) given the validator's role outside the VPC's S3 endpoint gets nothing.
    # lambda:SourceFunctionArn would be the tighter key, but AWS documents that it cannot be
    # used in resource-based policies (Lambda guide, "Using source function ARN").
    bucket.add_policy_statement(
        _deny(
            SID_VALIDATOR_ENDPOINT,
            ["s3:*"],
            [bucket.bucket_arn, *objects],
            {
                "ArnEquals": {"aws:PrincipalArn": [who.validator]},
                "StringNotEquals": {"aws:SourceVpce": who.s3_endpoint_id},
            },
        )
    )


def add_tier_a_guards(bucket: GuardedBucket, who: GuardPrincipals, *, storage_classes: Sequence[str]) -> None:
    """Add the tier A deny statements to `bucket`'s policy (including the shared guards)."""
    objects = [bucket.objects_arn]
    status_tag = f"s3:ExistingObjectTag/{names.OBJECT_TAG_STATUS}"

    # Uploads that carry tags must carry the client's encryption tag. Requests without any
    # tag are not denied here because UploadPart and CompleteMultipartUpload are authorized
    # as s3:PutObject and never carry tags (boto/boto3#2675); an untagged single PUT stays
    # unreadable (SID_READ_UNVALIDATED) until the validator has checked it.
    bucket.add_policy_statement(
        _deny(
            SID_ENCRYPTION_TAG,
            ["s3:PutObject"],
            objects,
            {
                "Null": {"s3:RequestObjectTagKeys": "false"},
                "StringNotEquals": {
                    f"s3:RequestObjectTag/{names.OBJECT_TAG_ENCRYPTION}": names.OBJECT_TAG_ENCRYPTION_VALUE
                },
            },
        )
    )
    # Fail closed: a version is readable only once its status tag says `validated`. Untagged
    # (not yet checked, or the validator could not decide) and quarantined versions alike.
    # StringNotEquals is true when the tag is missing (AWS: a negated operator on an absent
    # key matches), so an untagged version is denied.
    bucket.add_policy_statement(
        _deny(
            SID_READ_UNVALIDATED,
            READ_ACTIONS,
            objects,
            {"StringNotEquals": {status_tag: names.STATUS_VALIDATED}, **_not_principals(who.validator, who.security)},
        )
    )
    # Uploads that cannot be valid are refused at the door. The storage-class, SSE and
    # SSE-C headers are condition keys of s3:PutObject (Service Authorization Reference,
    # "Actions, resources, and condition keys for Amazon S3"); a missing header means
    # STANDARD and the bucket default (SSE-S3), hence the Null checks.
    bucket.add_policy_statement(
        _deny(
            SID_STORAGE_CLASS,
            ["s3:PutObject"],
            objects,
            {
                "Null": {"s3:x-amz-storage-class": "false"},
                "StringNotEquals": {"s3:x-amz-storage-class": list(storage_classes)},
            },
        )
    )
    bucket.add_policy_statement(
        _deny(
            SID_SERVER_SIDE_ENCRYPTION,
            ["s3:PutObject"],
            objects,
            {
                "Null": {"s3:x-amz-server-side-encryption": "false"},
                "StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"},
            },
        )
    )
    bucket.add_policy_statement(
        _deny(
            SID_CUSTOMER_KEYS,
            ["s3:PutObject"],
            objects,
            {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}},
        )
    )
    # A copy (CopyObject, UploadPartCopy) would carry the source's `validated` tag to a new
    # key by default; clients never copy, and an old version is restored by downloading and
    # uploading it again (a new version, which the validator checks).
    bucket.add_policy_statement(
        _deny(
            SID_COPIES,
            ["s3:PutObject"],
            objects,
            {"Null": {"s3:x-amz-copy-source": "false"}},
        )
    )
    add_status_tag_guards(bucket, who)
    add_data_guards(bucket, who)
    add_configuration_guards(bucket, who)
