"""A CloudTrail audit trail of one stack: management events (every KMS key use and CloudHSM
call) and S3 data events of the protected buckets it is given (both tiers use it).

KMS cryptographic calls (GenerateDataKey/Decrypt made by S3 on the caller's behalf) are
management events, so the key's use is logged even without data events. Organizations
with an organization trail (Control Tower / Landing Zone Accelerator) may already record
management events centrally; this trail still adds the data events of the protected
buckets and keeps a municipality-owned, validated copy in the same Region.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.compliance import acknowledge
from stacks.components.lifecycle import supporting_key
from stacks.components.log_key import LogEncryption
from stacks.components.tier_b_buckets import hardened_bucket


class AuditTrail(Construct):
    """Trail with log file validation, KMS-encrypted files and CloudWatch Logs delivery.

    Attributes:
        trail, key (encrypts log files and the bucket), bucket (trail log bucket), log_group.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        access_logs: s3.IBucket,
        log_encryption: LogEncryption,
        retention_days: int | None,
        workshop_mode: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.key = supporting_key(
            self,
            "Key",
            description=f"Encrypts the CloudTrail log files of {stack.stack_name}",
            workshop_mode=workshop_mode,
        )
        trail_arn = f"arn:{stack.partition}:cloudtrail:{stack.region}:{stack.account}:trail/*"
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailEncryptsLogsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": trail_arn},
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailDescribesKey",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:DescribeKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self.bucket = hardened_bucket(
            self,
            "Bucket",
            encryption_key=self.key,
            workshop_mode=workshop_mode,
            noncurrent_version_days=retention_days,
            access_log_bucket=access_logs,
            log_prefix="cloudtrail-bucket/",
        )
        self.log_group = log_encryption.log_group(self, "Logs")
        self.trail = cloudtrail.Trail(
            self,
            "Trail",
            bucket=self.bucket,
            encryption_key=self.key,
            enable_file_validation=True,
            include_global_service_events=True,
            is_multi_region_trail=False,
            management_events=cloudtrail.ReadWriteType.ALL,
            send_to_cloud_watch_logs=True,
            cloud_watch_log_group=self.log_group,
        )
        for child in self.trail.node.find_all():
            if isinstance(child, cdk.CfnResource) and child.cfn_resource_type == "AWS::IAM::Policy":
                acknowledge(
                    child,
                    "NIST.800.53.R5::NIST.800.53.R5-IAMNoInlinePolicy",
                    "Inline policy the CloudTrail L2 writes for its CloudWatch Logs delivery role: "
                    "CreateLogStream/PutLogEvents on this trail's log group only.",
                )

    def add_data_events(self, bucket: s3.IBucket) -> None:
        """Record S3 object-level reads and writes of `bucket`."""
        self.trail.add_s3_event_selector(
            [cloudtrail.S3EventSelector(bucket=bucket)], read_write_type=cloudtrail.ReadWriteType.ALL
        )
