"""Tier A stack (use case 1): a bucket that accepts only client-side-encrypted objects.

Only wires constructs: the hardened data bucket with its access-log bucket, the bucket
policy guards, the security role, the alarm topic, the validator and the S3 Batch
Operations role and job bucket that run the validator over a whole bucket.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

from kommunmoln import names
from kommunmoln.config import AppConfig
from stacks.compliance import acknowledge
from stacks.components.alarm_topic import AlarmTopic
from stacks.components.batch_verification import BatchVerification
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork
from stacks.components.secure_bucket import SecureBucket
from stacks.components.security_role import SecurityRole
from stacks.components.tier_a_guards import (
    CONFIGURATION_EVENT_NAMES,
    GuardPrincipals,
    add_tier_a_guards,
    deployment_role_arn,
)
from stacks.components.tier_a_validator import TierAValidator, nag_rendering
from stacks.components.trail import AuditTrail, alarm_on_trail_changes


class TierAStack(cdk.Stack):
    """Data bucket for ESDK ciphertext, guarded by policy and checked by the validator.

    Attributes:
        data: the SecureBucket (bucket, access_log_bucket).
        security_role: the MFA role that alone reads quarantined objects and deletes versions.
        alarms: the AlarmTopic (topic, key).
        validator: the TierAValidator (function, alarms).
        trail: CloudTrail trail logging the data bucket's object events (data events only).
        batch: the BatchVerification (role, bucket) of `kommunmoln batch-verify`.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, network: IsolatedNetwork, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        tier = config.tier_a
        workshop = config.workshop_mode
        log_encryption = LogEncryption(
            self, "LogEncryption", workshop_mode=workshop, retention_days=config.expiry_days(config.log_retention_days)
        )

        self.security_role = SecurityRole(
            self, "SecurityRole", description=f"kommunmoln tier A security role ({config.municipality_name})"
        )
        # SSE-S3 as the second layer: the objects are already ESDK ciphertext under keys that
        # only the municipality holds; a KMS key would be one more key AWS holds.
        self.data = SecureBucket(
            self,
            "Data",
            workshop_mode=workshop,
            noncurrent_version_days=config.expiry_days(tier.noncurrent_version_days),
            access_log_days=config.expiry_days(config.log_retention_days),
            encryption=s3.BucketEncryption.S3_MANAGED,
            object_lock_days=tier.object_lock_days,
            bucket_name=names.tier_a_bucket_name(config.municipality_id, "data", self.account, self.region),
            access_log_bucket_name=names.tier_a_bucket_name(config.municipality_id, "logs", self.account, self.region),
        )
        bucket_resource = self.data.bucket.node.default_child
        acknowledge(
            bucket_resource,
            "NIST.800.53.R5::NIST.800.53.R5-S3DefaultEncryptionKMS",
            "Tier A objects are AWS Encryption SDK ciphertext under municipality-held keys before they reach S3 "
            "(the validator quarantines anything else); SSE-S3 is a second layer. An AWS KMS key would add no "
            "protection against the provider, which is the threat tier A answers.",
        )
        acknowledge(
            bucket_resource,
            "NIST.800.53.R5::NIST.800.53.R5-S3BucketReplicationEnabled",
            "Secrecy-Act data stays in the one configured EU region (data residency); loss is prevented in place by "
            "versioning, the deny-delete bucket policy and optional Object Lock, and the municipality keeps the keys.",
        )
        # The access-log bucket holds request metadata, not Secrecy-Act content: not tagged protected.
        cdk.Tags.of(self.data.bucket).add(names.TAG_CLASSIFICATION, names.CLASSIFICATION_PROTECTED)
        cdk.Tags.of(self).add(names.TAG_TIER, names.TIER_A)

        self.break_glass_role = SecurityRole.break_glass(
            self,
            "BreakGlassRole",
            description=f"kommunmoln tier A break-glass role ({config.municipality_name})",
            bucket_arn=self.data.bucket_arn,
        )
        # Every object read and write (S3 data events only: the network stack's trail records the
        # management events, key use included, once for the whole app).
        self.trail = AuditTrail(
            self,
            "Trail",
            trail_name=names.trail_name(config.municipality_id, "tier-a-data"),
            management_events=False,
            data_buckets=[self.data.bucket],
            access_logs=self.data.access_log_bucket,
            log_encryption=log_encryption,
            retention_days=config.expiry_days(config.log_retention_days),
            object_lock_days=config.trail_object_lock_days,
            workshop_mode=workshop,
            break_glass=self.break_glass_role,
        )

        self.alarms = AlarmTopic(
            self, "Alarms", description="kommunmoln tier A alarms", email=config.alarm_email, workshop_mode=workshop
        )
        self.validator = TierAValidator(
            self,
            "Validator",
            settings=tier,
            bucket=self.data,
            alarms=self.alarms,
            network=network,
            log_encryption=log_encryption,
            workshop_mode=workshop,
        )
        self.batch = BatchVerification(
            self,
            "BatchVerify",
            data=self.data,
            validator_function_arn=self.validator.function.function.function_arn,
            bucket_name=names.tier_a_bucket_name(config.municipality_id, "jobs", self.account, self.region),
            retention_days=config.expiry_days(config.log_retention_days),
            workshop_mode=workshop,
        )
        add_tier_a_guards(
            self.data,
            GuardPrincipals(
                security=self.security_role.role_arn,
                validator=self.validator.function.role.role_arn,
                break_glass=self.break_glass_role.role_arn,
                deployment=deployment_role_arn(self),
                s3_endpoint_id=network.s3_endpoint.vpc_endpoint_id,
                data_access=tier.data_access_principals,
                data_access_source_ips=tier.client_source_ips,
                # The Batch Operations role lists the bucket for a generated manifest (from AWS, not
                # through the endpoint); its policy allows nothing else on the data bucket.
                service_listers=[self.batch.role.role_arn],
                maintenance=[self.data.auto_delete_role_arn] if self.data.auto_delete_role_arn else [],
            ),
            storage_classes=tier.storage_classes,
        )
        self.configuration_alarm = self.alarms.alarm_on_api_calls(
            self,
            "ConfigurationChangeAlarm",
            source="s3",
            event_names=list(CONFIGURATION_EVENT_NAMES),
            detail={"requestParameters": {"bucketName": [self.data.bucket.bucket_name]}},
            description="Tier A: a guarded configuration of the data bucket was changed (or attempted)",
        )
        self.trail.alarm_on_changes(self.alarms)
        alarm_on_trail_changes(self, self.alarms)
        self.security_role.allow(
            ["s3:ListBucket", "s3:ListBucketVersions"], [self.data.bucket_arn], sid="ListDataBucket"
        )
        self.security_role.allow(
            ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging",
             "s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:DeleteObjectTagging",
             "s3:DeleteObjectVersionTagging", "s3:DeleteObject", "s3:DeleteObjectVersion"],
            [self.data.objects_arn],
            sid="HandleQuarantinedObjects",
        )  # fmt: skip
        self.batch.allow_operator(self.security_role)
        acknowledge(
            self.security_role.policy.node.default_child,
            f"AwsSolutions::AwsSolutions-IAM5[Resource::{nag_rendering(self, self.data.objects_arn)}]",
            "The security role handles whichever object the validator quarantines, so it needs the objects of the "
            "tier A data bucket; the wildcard is confined to that one bucket, and the role requires MFA.",
        )

        cdk.CfnOutput(self, names.OUTPUT_DATA_BUCKET, value=self.data.bucket.bucket_name)
        cdk.CfnOutput(self, names.OUTPUT_ACCESS_LOG_BUCKET, value=self.data.access_log_bucket.bucket_name)
        cdk.CfnOutput(self, names.OUTPUT_ALARM_TOPIC, value=self.alarms.topic.topic_arn)
        cdk.CfnOutput(self, names.OUTPUT_VALIDATOR_FUNCTION, value=self.validator.function.function.function_name)
        cdk.CfnOutput(self, names.OUTPUT_SECURITY_ROLE, value=self.security_role.role_arn)
        cdk.CfnOutput(self, names.OUTPUT_BREAK_GLASS_ROLE, value=self.break_glass_role.role_arn)
        cdk.CfnOutput(self, names.OUTPUT_TRAIL_BUCKET, value=self.trail.bucket.bucket_name)
        cdk.CfnOutput(self, names.OUTPUT_BATCH_ROLE, value=self.batch.role.role_arn)
        cdk.CfnOutput(self, names.OUTPUT_BATCH_BUCKET, value=self.batch.bucket.bucket_name)
        cdk.CfnOutput(self, names.OUTPUT_VALIDATOR_FUNCTION_ARN, value=self.validator.function.function.function_arn)
