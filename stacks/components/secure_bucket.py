"""A hardened S3 bucket with its own hardened server-access-log bucket.

Reusable by both tiers: encryption at rest is a parameter (SSE-S3 for tier A, whose
objects are already client-side ciphertext; SSE-KMS with a customer key for tier B).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.compliance import acknowledge
from stacks.components.lifecycle import removal_policy

# Every object-data action (reads, writes, listings, deletions): what "data access" means
# in the bucket-policy guards. Bucket configuration actions are deliberately not in it.
DATA_ACTIONS: tuple[str, ...] = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectAttributes",
    "s3:GetObjectVersionAttributes",
    "s3:PutObject",
    "s3:RestoreObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:ListBucketMultipartUploads",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
    # Tags are data too (the client's encryption tag, the validator's status): read and written only
    # inside the perimeter.
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
)
_LOGS_BY_POLICY_FLAG = "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy"


def access_log_lifecycle_rules(retention_days: int | None) -> list[s3.LifecycleRule]:
    """The one retention rule of every server-access-log bucket of the app (both tiers and the network stack).

    Access logs are records too (arkivlagen): they expire only under a gallring decision, i.e. when
    `retention_days` is not None (`AppConfig.expiry_days(log_retention_days)`); then a log object
    expires after that many days and its noncurrent version 30 days later. Without a decision
    nothing expires; only incomplete multipart uploads (never records) are aborted after a day.
    """
    return [
        s3.LifecycleRule(
            id="ExpireAccessLogs" if retention_days else "AbortIncompleteMultipartUploads",
            expiration=cdk.Duration.days(retention_days) if retention_days else None,
            noncurrent_version_expiration=cdk.Duration.days(30) if retention_days else None,
            abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
        )
    ]


def access_log_bucket(
    scope: Construct,
    construct_id: str,
    *,
    workshop_mode: bool,
    retention_days: int | None,
    bucket_name: str | None = None,
) -> s3.Bucket:
    """A hardened target for S3 server access logs, with `access_log_lifecycle_rules(retention_days)`.

    SSE-S3, not SSE-KMS: the project followed the S3 user guide ("Enabling Amazon S3 server access
    logging", as read when this was written) in using SSE-S3 for log targets; that page's current text
    was not found in the reference corpus on 2 Dec 2026 (not re-checked). aws-cdk PR #24789 and commit
    6c5b67e (#25350) state that "KMS encryption works fine for server access logging target buckets
    with proper permission being setup", so an SSE-KMS target is reported to work; the bucket keeps
    SSE-S3 (S3 sees these request records in either case). No Object Lock: S3 does not deliver access
    logs to a bucket with Object Lock (S3 user guide, "Configuring S3 Object Lock").
    """
    bucket = s3.Bucket(
        scope,
        construct_id,
        bucket_name=bucket_name,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=True,
        lifecycle_rules=access_log_lifecycle_rules(retention_days),
        removal_policy=removal_policy(workshop_mode=workshop_mode),
        auto_delete_objects=workshop_mode,
    )
    resource = bucket.node.default_child
    acknowledge(
        resource,
        "NIST.800.53.R5::NIST.800.53.R5-S3DefaultEncryptionKMS",
        "S3 server access log target: kept on SSE-S3 as the S3 user guide was read when written (not "
        "re-checked; aws-cdk PR #24789 reports SSE-KMS targets work with the right key permissions). S3 "
        "writes these request records and sees them under either key, so a KMS key adds no secrecy here.",
    )
    acknowledge(
        resource,
        "NIST.800.53.R5::NIST.800.53.R5-S3BucketReplicationEnabled",
        "Access logs stay in the deployment region by design (data residency); versioning protects them, and a "
        "replica in another region would move metadata about Secrecy-Act objects out of the region.",
    )
    return bucket


class SecureBucket(Construct):
    """A private, versioned, TLS-only bucket whose server access logs go to a second bucket.

    Both buckets: Block Public Access, bucket-owner-enforced ownership (no ACLs), TLS-only
    policy, versioning, removal policy by `workshop_mode` (objects auto-deleted only then).
    The data bucket also gets lifecycle rules (abort incomplete multipart uploads after one
    day; expire noncurrent versions after `noncurrent_version_days` only when it is not None, i.e.
    under the municipality's gallring decision, see `AppConfig.expiry_days`) and, when
    `object_lock_days` > 0, Object Lock in governance mode with that default retention.

    Attributes:
        bucket: the data bucket.
        access_log_bucket: receives the data bucket's server access logs.
        bucket_arn / objects_arn: ARNs built from `bucket_name` when one is given, so that
            they can be referenced without a dependency on the bucket resource.
        auto_delete_role_arn: the role of CDK's auto-delete provider (workshop mode), else None.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        workshop_mode: bool,
        noncurrent_version_days: int | None,
        encryption: s3.BucketEncryption = s3.BucketEncryption.S3_MANAGED,
        encryption_key: kms.IKey | None = None,
        object_lock_days: int = 0,
        bucket_name: str | None = None,
        access_log_bucket_name: str | None = None,
        access_log_days: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        # Log delivery through the bucket policy, never through ACLs (ownership is enforced),
        # whether or not the app's cdk.json sets this flag (`python app.py` does not read it).
        self.node.set_context(_LOGS_BY_POLICY_FLAG, True)
        stack = cdk.Stack.of(self)
        removal = removal_policy(workshop_mode=workshop_mode)

        self.access_log_bucket = access_log_bucket(
            self,
            "AccessLogs",
            workshop_mode=workshop_mode,
            retention_days=access_log_days,
            bucket_name=access_log_bucket_name,
        )

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            encryption=encryption,
            encryption_key=encryption_key,
            bucket_key_enabled=encryption in (s3.BucketEncryption.KMS, s3.BucketEncryption.DSSE) or None,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="s3-access/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="AbortIncompleteMultipartUploads",
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                ),
                *(
                    [
                        s3.LifecycleRule(
                            id="ExpireNoncurrentVersions",
                            noncurrent_version_expiration=cdk.Duration.days(noncurrent_version_days),
                        )
                    ]
                    if noncurrent_version_days
                    else []
                ),
            ],
            object_lock_enabled=object_lock_days > 0 or None,
            object_lock_default_retention=(
                s3.ObjectLockRetention.governance(cdk.Duration.days(object_lock_days)) if object_lock_days > 0 else None
            ),
            removal_policy=removal,
            auto_delete_objects=workshop_mode,
        )
        if bucket_name is not None:
            self.bucket_arn = f"arn:{stack.partition}:s3:::{bucket_name}"
        else:
            self.bucket_arn = self.bucket.bucket_arn
        self.objects_arn = f"{self.bucket_arn}/*"

        self.auto_delete_role_arn = auto_delete_role_arn(self) if workshop_mode else None

    @property
    def cfn_bucket(self) -> s3.CfnBucket:
        return self.bucket.node.default_child

    def add_policy_statement(self, statement: iam.PolicyStatement) -> None:
        self.bucket.add_to_resource_policy(statement)

    def notify_function(self, function: lambda_.IFunction, permission: cdk.CfnResource, *, event: str) -> None:
        """Send `event` notifications (e.g. 's3:ObjectCreated:*') straight to a Lambda function.

        Written on the bucket resource itself instead of CDK's notification custom resource
        (which would add an unhardened Lambda outside the VPC). Needs `bucket_name`: the
        function's permission must name the bucket without referencing it, else the bucket,
        the permission and the function's policy would form a cycle. The bucket waits for
        the permission, because S3 test-invokes the destination when it is configured.
        """
        self.cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            lambda_configurations=[
                s3.CfnBucket.LambdaConfigurationProperty(event=event, function=function.function_arn)
            ]
        )
        self.cfn_bucket.add_resource_dependency(permission)


def auto_delete_role_arn(scope: Construct) -> str | None:
    """The role of CDK's one auto-delete provider of the stack (workshop mode), or None if there is none."""
    provider = cdk.Stack.of(scope).node.try_find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider")
    return provider.role_arn if provider is not None else None
