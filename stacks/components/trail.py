"""CloudTrail trails: one multi-Region trail for management events, data-event-only trails per tier.

Management events once. "The first copy of management events is free. You are charged for
additional copies of management events that you are logging on any subsequent trail in the
same Region" (CloudTrail API reference, EventSelector.IncludeManagementEvents; AWS CloudTrail
pricing, https://aws.amazon.com/cloudtrail/pricing/). So exactly one trail of the app records
management events (every KMS key use, every IAM or bucket-policy change): the network stack's,
which every deployment has. The tier stacks' trails record S3 data events of their protected
buckets only (billed per event, whichever trail records them, so nothing is counted twice).

Multi-Region. "As of November 22, 2021, AWS CloudTrail changed how trails capture global
service events. Now, events created by Amazon CloudFront, AWS Identity and Access Management,
and AWS STS are recorded in ... us-east-1 ... To continue receiving global service events
outside of US East (N. Virginia), be sure to convert single-Region trails ... into
multi-Region trails" (CloudTrail user guide, "Using the update-trail command"). A single-Region
trail in eu-north-1 would not record a policy change granting kms:Decrypt. The multi-Region
trail still delivers the log files of every Region to its one bucket in the home Region.

The trail bucket keeps every log file and digest file unchanged:
  * Object Lock in compliance mode, `object_lock_days` default retention: "a protected object
    version can't be overwritten or deleted by any user, including the root user" until then
    (S3 user guide, "Locking objects with Object Lock", retention modes). Object Lock needs
    versioning, and once enabled it cannot be disabled nor versioning suspended (S3 user guide,
    "Configuring S3 Object Lock"); enabled here at creation (ObjectLockEnabled on the bucket).
    Not in workshop mode, where `make destroy` must empty the bucket.
  * the bucket policy denies deleting objects or versions (and changing their retention or legal
    hold) to everyone but the break-glass role with MFA (and CDK's workshop auto-delete role),
    and every configuration change (lifecycle, policy, Object Lock, versioning, ...) to everyone
    but the break-glass role and CloudFormation's deployment role (tier_a_guards'
    add_configuration_guards, shared with the tier A data bucket);
  * CloudTrail's own statements are the documented bucket policy for CloudTrail, with
    `aws:SourceArn` naming this trail: "The value of aws:SourceArn is always the ARN of the trail
    ... that is using the bucket to store logs" (CloudTrail user guide, "Amazon S3 bucket policy for
    CloudTrail"), so no other trail, of this account or any other, can write into the bucket;
  * log file validation is on: the digest files go to AWSLogs/<account>/CloudTrail-Digest/ in
    the same bucket (CloudTrail user guide, "CloudTrail digest file structure", digest file
    location), so the lock and the deny statements protect them exactly like the log files.

The L2 `aws_cloudtrail.Trail` writes the bucket statements without `aws:SourceArn` for a trail
that is not an organization trail, so the trail is a `CfnTrail` with the statements written here.
An organization trail (one trail of the management account for every account of the
organization) replaces the management trail: see docs/compliance.md, "Organization trail".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.compliance import acknowledge
from stacks.components.lifecycle import supporting_key
from stacks.components.log_key import LogEncryption
from stacks.components.secure_bucket import auto_delete_role_arn
from stacks.components.security_role import SecurityRole
from stacks.components.tier_a_guards import (
    CONFIGURATION_ACTIONS,
    CONFIGURATION_EVENT_NAMES,
    DELETE_ACTIONS,
    add_configuration_guards,
    deployment_role_arn,
)
from stacks.components.tier_a_validator import nag_rendering
from stacks.components.tier_b_buckets import hardened_bucket

if TYPE_CHECKING:
    from stacks.components.alarm_topic import AlarmTopic

# CloudTrail calls that stop, remove or narrow a trail (management events of cloudtrail.amazonaws.com).
# For a multi-Region trail they must be made in its home Region ("For a trail enabled in all Regions,
# this operation must be called from the Region in which the trail was created, or an
# InvalidHomeRegionException will occur", CloudTrail API reference, StopLogging), so a rule in the
# deployment Region sees every such call on the app's trails.
TRAIL_CHANGE_EVENT_NAMES = (
    "StopLogging",
    "DeleteTrail",
    "UpdateTrail",
    "PutEventSelectors",
    "PutInsightSelectors",
)
SID_CLOUDTRAIL_ACL_CHECK = "AWSCloudTrailAclCheck"
SID_CLOUDTRAIL_WRITE = "AWSCloudTrailWrite"
SID_KEEP_TRAIL_FILES = "DenyDeletingTrailFilesExceptBreakGlass"
# Removing a log or digest file version, or loosening what protects it. In compliance mode S3 refuses
# the deletions and a shorter retention anyway until the retention ends; the policy holds after that.
TRAIL_FILE_ACTIONS = (
    *DELETE_ACTIONS,
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
)


@dataclass(frozen=True)
class _TrailBucket:
    """The trail bucket as add_configuration_guards sees it (bucket_arn, objects_arn, add_policy_statement)."""

    bucket: s3.Bucket
    bucket_arn: str
    objects_arn: str

    def add_policy_statement(self, statement: iam.PolicyStatement) -> None:
        self.bucket.add_to_resource_policy(statement)


@dataclass(frozen=True)
class _Exemptions:
    break_glass: str
    deployment: str
    maintenance: Sequence[str] = field(default_factory=tuple)


class AuditTrail(Construct):
    """One trail with log file validation, KMS-encrypted files, CloudWatch Logs delivery and an Object Lock bucket.

    `management_events=True`: the app's multi-Region trail of all management events, global
    service events included, and no data events. Otherwise a single-Region trail of the S3 data
    events (reads and writes) of `data_buckets` and no management events.

    Attributes:
        trail (CfnTrail), trail_arn, key (encrypts log files and the bucket), bucket, log_group,
        break_glass (the SecurityRole that alone may reconfigure the bucket or delete files).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        trail_name: str,
        management_events: bool,
        access_logs: s3.IBucket,
        log_encryption: LogEncryption,
        retention_days: int | None,
        object_lock_days: int,
        workshop_mode: bool,
        data_buckets: Sequence[s3.IBucket] = (),
        break_glass: SecurityRole | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if management_events == bool(data_buckets):
            raise ValueError("a trail records management events or the data events of given buckets, not both")
        stack = cdk.Stack.of(self)
        self.trail_arn = f"arn:{stack.partition}:cloudtrail:{stack.region}:{stack.account}:trail/{trail_name}"
        self.key = supporting_key(
            self, "Key", description=f"Encrypts the CloudTrail log files of {trail_name}", workshop_mode=workshop_mode
        )
        # "Configure AWS KMS key policies for CloudTrail": encrypt for trails of this account, and
        # (recommended) only for this trail by aws:SourceArn; describe the key.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailEncryptsLogsOfThisTrail",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceArn": self.trail_arn},
                    "StringLike": {
                        "kms:EncryptionContext:aws:cloudtrail:arn": f"arn:{stack.partition}:cloudtrail:*:{stack.account}:trail/*"
                    },
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailDescribesKey",
                principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
                actions=["kms:DescribeKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceArn": self.trail_arn}},
            )
        )

        self.bucket = hardened_bucket(
            self,
            "Bucket",
            encryption_key=self.key,
            workshop_mode=workshop_mode,
            noncurrent_version_days=retention_days,
            access_log_bucket=access_logs,
            log_prefix=f"{trail_name}/",
        )
        self.object_lock_days = 0 if workshop_mode else object_lock_days
        cfn_bucket: s3.CfnBucket = self.bucket.node.default_child
        cfn_bucket.object_lock_enabled = True
        if self.object_lock_days:
            cfn_bucket.object_lock_configuration = s3.CfnBucket.ObjectLockConfigurationProperty(
                object_lock_enabled="Enabled",
                rule=s3.CfnBucket.ObjectLockRuleProperty(
                    default_retention=s3.CfnBucket.DefaultRetentionProperty(
                        mode="COMPLIANCE", days=self.object_lock_days
                    )
                ),
            )
        self._add_bucket_policy(stack, trail_name, break_glass, workshop_mode)

        self.log_group = log_encryption.log_group(self, "Logs")
        logs_role = iam.Role(
            self,
            "LogsRole",
            assumed_by=iam.ServicePrincipal("cloudtrail.amazonaws.com"),
            description=f"CloudTrail delivers {trail_name} to its CloudWatch Logs log group",
        )
        logs_policy = iam.ManagedPolicy(
            self,
            "LogsPolicy",
            roles=[logs_role],
            statements=[
                iam.PolicyStatement(
                    sid="DeliverToThisTrailsLogGroup",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],
                )
            ],
        )

        selectors = (
            [cloudtrail.CfnTrail.EventSelectorProperty(include_management_events=True, read_write_type="All")]
            if management_events
            else [
                cloudtrail.CfnTrail.EventSelectorProperty(
                    include_management_events=False,
                    read_write_type="All",
                    data_resources=[
                        cloudtrail.CfnTrail.DataResourceProperty(
                            type="AWS::S3::Object", values=[f"{bucket.bucket_arn}/" for bucket in data_buckets]
                        )
                    ],
                )
            ]
        )
        self.trail = cloudtrail.CfnTrail(
            self,
            "Trail",
            trail_name=trail_name,
            is_logging=True,
            s3_bucket_name=self.bucket.bucket_name,
            kms_key_id=self.key.key_arn,
            enable_log_file_validation=True,
            is_multi_region_trail=management_events,
            include_global_service_events=management_events,
            event_selectors=selectors,
            cloud_watch_logs_log_group_arn=self.log_group.log_group_arn,
            cloud_watch_logs_role_arn=logs_role.role_arn,
        )
        # CloudTrail checks at creation that it may write to the bucket and deliver to the log group.
        self.trail.node.add_dependency(self.bucket.policy, logs_policy)

    def alarm_on_changes(self, alarms: AlarmTopic) -> None:
        """Alarm on every change (or attempt) to this trail's bucket configuration (the guarded S3 calls)."""
        alarms.alarm_on_api_calls(
            self,
            "BucketChangeAlarm",
            source="s3",
            event_names=list(CONFIGURATION_EVENT_NAMES),
            detail={"requestParameters": {"bucketName": [self.bucket.bucket_name]}},
            description=f"A guarded configuration of the trail bucket of {self.trail.trail_name} was changed (or attempted)",
        )

    def _add_bucket_policy(
        self, stack: cdk.Stack, trail_name: str, break_glass: SecurityRole | None, workshop_mode: bool
    ) -> None:
        """CloudTrail's documented statements (with aws:SourceArn) and the deny-delete and configuration guards."""
        bucket_arn = self.bucket.bucket_arn
        objects_arn = self.bucket.arn_for_objects("*")
        cloudtrail_principal = iam.ServicePrincipal("cloudtrail.amazonaws.com")
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid=SID_CLOUDTRAIL_ACL_CHECK,
                principals=[cloudtrail_principal],
                actions=["s3:GetBucketAcl"],
                resources=[bucket_arn],
                conditions={"StringEquals": {"aws:SourceArn": self.trail_arn}},
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid=SID_CLOUDTRAIL_WRITE,
                principals=[cloudtrail_principal],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"AWSLogs/{stack.account}/*")],
                conditions={
                    "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": self.trail_arn}
                },
            )
        )
        if break_glass is None:
            break_glass = SecurityRole.break_glass(
                self,
                "BreakGlassRole",
                description=f"kommunmoln break-glass role of the trail bucket of {trail_name}",
                bucket_arn=bucket_arn,
            )
        else:
            break_glass.allow(CONFIGURATION_ACTIONS, [bucket_arn], sid="ChangeTrailBucketConfiguration")
        break_glass.allow(TRAIL_FILE_ACTIONS, [objects_arn], sid="RemoveTrailFilesAfterRetention")
        acknowledge(
            break_glass.policy.node.default_child,
            f"AwsSolutions::AwsSolutions-IAM5[Resource::{nag_rendering(stack, objects_arn)}]",
            "Break-glass only (MFA): removing log or digest files of this one trail bucket, which Object Lock in "
            "compliance mode refuses anyway until each file's retention has passed; confined to that bucket.",
        )
        self.break_glass = break_glass
        auto_delete = auto_delete_role_arn(self) if workshop_mode else None
        exempt = _Exemptions(
            break_glass=break_glass.role_arn,
            deployment=deployment_role_arn(stack),
            maintenance=(auto_delete,) if auto_delete else (),
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid=SID_KEEP_TRAIL_FILES,
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(TRAIL_FILE_ACTIONS),
                resources=[objects_arn],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": [exempt.break_glass, *exempt.maintenance]}},
            )
        )
        add_configuration_guards(_TrailBucket(self.bucket, bucket_arn, objects_arn), exempt)


def alarm_on_trail_changes(scope: Construct, alarms: AlarmTopic) -> None:
    """Alarm on any call that stops, deletes or narrows a trail of the account (every tier stack wires one).

    Not filtered by trail name: in the municipality's account any of these calls deserves a look,
    and the app's management trail lives in the network stack, which has no alarm topic.
    """
    alarms.alarm_on_api_calls(
        scope,
        "TrailChangeAlarm",
        source="cloudtrail",
        event_names=list(TRAIL_CHANGE_EVENT_NAMES),
        description="A CloudTrail trail of the account was stopped, deleted or changed (or an attempt was made)",
    )
