"""Tier B buckets: a hardened bucket helper and the SSE-KMS data bucket (the access-log bucket is
secure_bucket.access_log_bucket, shared with tier A).

(Tier B's own copy; the tier A engineer writes `secure_bucket.py` in parallel. To be
deduplicated later.)
"""

from __future__ import annotations

import dataclasses

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from kommunmoln import names
from stacks.compliance import acknowledge
from stacks.components.lifecycle import removal_policy
from stacks.components.secure_bucket import auto_delete_role_arn
from stacks.components.tier_a_guards import (
    GuardPrincipals,
    add_configuration_guards,
    add_data_guards,
    add_status_tag_guards,
)

REPLICATION_REASON = (
    "Data and logs must stay in the one configured EU Region; cross-Region replication of tier B data "
    "would need a second HSM-backed key store elsewhere. Versioning and retention protect against loss."
)


def hardened_bucket(
    scope: Construct,
    construct_id: str,
    *,
    workshop_mode: bool,
    noncurrent_version_days: int | None,
    access_log_bucket: s3.IBucket | None,
    log_prefix: str = "",
    encryption_key: kms.IKey | None = None,
    bucket_name: str | None = None,
) -> s3.Bucket:
    """A private, TLS-only, versioned bucket with owner-enforced objects and lifecycle rules.

    SSE-KMS with `encryption_key` (and S3 Bucket Keys) when given, else SSE-S3. Noncurrent versions
    expire only when `noncurrent_version_days` is not None (under a gallring decision).
    """
    bucket = s3.Bucket(
        scope,
        construct_id,
        bucket_name=bucket_name,
        encryption=s3.BucketEncryption.KMS if encryption_key else s3.BucketEncryption.S3_MANAGED,
        encryption_key=encryption_key,
        bucket_key_enabled=True if encryption_key else None,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=True,
        server_access_logs_bucket=access_log_bucket,
        server_access_logs_prefix=log_prefix or None,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="ExpireNoncurrentVersions" if noncurrent_version_days else "AbortIncompleteMultipartUploads",
                noncurrent_version_expiration=(
                    cdk.Duration.days(noncurrent_version_days) if noncurrent_version_days else None
                ),
                abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
            )
        ],
        removal_policy=removal_policy(workshop_mode=workshop_mode),
        # Workshop mode only: `make destroy` must remove versioned, non-empty buckets in one command.
        # CDK's auto-delete provider rather than our provisioner, as tier A's SecureBucket does: one
        # CDK-maintained handler per stack that first denies new writes (late access-log and trail
        # deliveries), then deletes every version and delete marker, and only for buckets it tagged.
        # It exists only in workshop mode; production templates keep no code that can empty a bucket,
        # and the in-VPC provisioner keeps no S3 permissions at all. The provider's function and role
        # are plain CfnResources, which the nag packs do not inspect: nothing to acknowledge (the
        # workshop-mode test asserts that the gates pass and which resources the provider adds).
        auto_delete_objects=workshop_mode,
    )
    acknowledge(
        bucket.node.default_child, "NIST.800.53.R5::NIST.800.53.R5-S3BucketReplicationEnabled", REPLICATION_REASON
    )
    return bucket


class SseKmsBucket(Construct):
    """The tier B data bucket: SSE-KMS with the HSM-backed key, S3 Bucket Keys on.

    Bucket policy (besides TLS-only):
      * deny PutObject with any other encryption mode (AES256, aws:kms:dsse) when the
        `x-amz-server-side-encryption` header is sent;
      * deny PutObject naming any other KMS key (`...-aws-kms-key-id` must be the key ARN);
      * deny PutObject with `aws:kms` but no key id (S3 could pick the AWS managed aws/s3 key);
      * deny SSE-C.
    A PutObject *without* encryption headers is allowed: default encryption then applies the
    HSM-backed key with a Bucket Key. Decision: UploadPart and CompleteMultipartUpload are
    authorized as s3:PutObject but carry no SSE headers, so denying absent headers would
    break multipart uploads; the validator checks every new object's encryption anyway.

    Tier A's shared guards too (stacks/components/tier_a_guards.py; the encryption rules above
    replace tier A's SSE-S3 ones): only the security role deletes versions; data only through
    the VPC's S3 endpoint or by the usage role (`guards.data_access`) and the security role;
    no access points; object tags only the validator's status tags, written only by the
    validator (from inside the VPC) or the security role, a quarantine lifted only by the
    security role; bucket configuration only by CloudFormation or the break-glass role with MFA.
    Reads are not gated on `validated` as in tier A: S3 itself decrypts with the HSM key, so an
    object of the wrong encryption is a misfiled object, not readable plaintext left behind.

    Object-created notifications go straight to the validator (CloudFormation
    NotificationConfiguration, no CDK notifications custom resource). The bucket has an
    explicit name so the Lambda permission can name it without a dependency cycle.

    Attributes:
        bucket, bucket_name, bucket_arn / objects_arn (name-derived ARNs, usable in policies before
        the bucket exists), data_access_policy (S3 access for the usage role), guards (who the
        guards name, with CDK's auto-delete role in workshop mode).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_name: str,
        key: kms.IKey,
        key_arn: str,
        access_logs: s3.IBucket,
        usage_role: iam.IRole,
        validator: lambda_.IFunction,
        noncurrent_version_days: int | None,
        guards: GuardPrincipals,
        workshop_mode: bool,
        tier: str = names.TIER_B,
    ) -> None:
        """`tier` is the bucket's kommunmoln:tier tag (tier C reuses the bucket with names.TIER_C)."""
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.bucket_name = bucket_name
        self.bucket_arn = f"arn:{stack.partition}:s3:::{bucket_name}"
        self.objects_arn = f"{self.bucket_arn}/*"
        permission = lambda_.CfnPermission(
            self,
            "InvokeValidator",
            action="lambda:InvokeFunction",
            function_name=validator.function_arn,
            principal="s3.amazonaws.com",
            source_account=stack.account,
            source_arn=self.bucket_arn,
        )
        self.bucket = hardened_bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            encryption_key=key,
            workshop_mode=workshop_mode,
            noncurrent_version_days=noncurrent_version_days,
            access_log_bucket=access_logs,
            log_prefix=f"{bucket_name}/",
        )
        cfn_bucket: s3.CfnBucket = self.bucket.node.default_child
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            lambda_configurations=[
                s3.CfnBucket.LambdaConfigurationProperty(event="s3:ObjectCreated:*", function=validator.function_arn)
            ]
        )
        cfn_bucket.add_resource_dependency(permission)
        cdk.Tags.of(self.bucket).add(names.TAG_CLASSIFICATION, names.CLASSIFICATION_PROTECTED)
        cdk.Tags.of(self.bucket).add(names.TAG_TIER, tier)

        objects = self.objects_arn
        sse = "s3:x-amz-server-side-encryption"
        # Null "false" + StringNotEquals, not StringNotEqualsIfExists: an ...IfExists operator is true when
        # the key is absent (IAM User Guide, "...IfExists condition operators"), so in a Deny it refused every
        # PutObject without the header, UploadPart and CompleteMultipartUpload included.
        for sid, conditions in (
            ("DenyOtherEncryptionModes", {"Null": {sse: "false"}, "StringNotEquals": {sse: "aws:kms"}}),
            (
                "DenyOtherKmsKeys",
                {"Null": {f"{sse}-aws-kms-key-id": "false"}, "StringNotEquals": {f"{sse}-aws-kms-key-id": key_arn}},
            ),
            ("DenyKmsWithoutKeyId", {"StringEquals": {sse: "aws:kms"}, "Null": {f"{sse}-aws-kms-key-id": "true"}}),
            ("DenySseC", {"Null": {f"{sse}-customer-algorithm": "false"}}),
        ):
            self.bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=sid,
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["s3:PutObject"],
                    resources=[objects],
                    conditions=conditions,
                )
            )

        maintenance = auto_delete_role_arn(self) if workshop_mode else None
        self.guards = dataclasses.replace(
            guards, maintenance=[*guards.maintenance, *([maintenance] if maintenance else [])]
        )
        add_status_tag_guards(self, self.guards)
        add_data_guards(self, self.guards, tag_keys=names.OBJECT_TAG_KEYS_STATUS)
        add_configuration_guards(self, self.guards)

        self.data_access_policy = iam.ManagedPolicy(
            self,
            "DataAccess",
            description=f"{tier} bucket: read and write objects (SSE-KMS through the key policy's S3 grant)",
            roles=[usage_role],
            statements=[
                iam.PolicyStatement(sid="ListBucket", actions=["s3:ListBucket"], resources=[self.bucket_arn]),
                iam.PolicyStatement(
                    sid="ReadWriteObjects",
                    actions=["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[objects],
                ),
            ],
        )
        acknowledge(
            self.data_access_policy.node.default_child,
            f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{finding_text(self, bucket_name)}/*]",
            "The usage role reads and writes any object of the tier B bucket, which is its purpose; "
            "the wildcard is confined to that one bucket's objects.",
        )

    def add_policy_statement(self, statement: iam.PolicyStatement) -> None:
        self.bucket.add_to_resource_policy(statement)


def finding_text(scope: Construct, value: str) -> str:
    """How cdk-nag prints a string with pseudo-parameter tokens inside a finding id (`<AWS::AccountId>`)."""
    resolved = cdk.Stack.of(scope).resolve(value)
    if isinstance(resolved, str):
        return resolved
    parts = resolved["Fn::Join"][1]
    return "".join(part if isinstance(part, str) else f"<{part['Ref']}>" for part in parts)
