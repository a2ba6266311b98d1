"""Tier B stack (use case 2): CloudHSM cluster, KMS custom key store, SSE-KMS bucket.

Two phases, switched by `tier_b_keystore_enabled`:
  1. (default) cluster, HSMs, admin host, kmsuser secret, monitor. No data bucket:
     until the operator has initialized and activated the cluster and created `kmsuser`,
     no HSM-backed key can exist, and a bucket with a regular KMS key would silently be a
     weaker tier.
  2. adds the custom key store, the HSM-backed key with its alias and key policy, the
     SSE-KMS data bucket, its CloudTrail data-event trail and the object validator.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from kommunmoln import names
from kommunmoln.config import AppConfig
from stacks.compliance import acknowledge
from stacks.components.alarm_topic import AlarmTopic
from stacks.components.cloudhsm import CloudHsmCluster, CloudHsmHsms, HsmProvisioner
from stacks.components.hsm_admin_host import INSTALL_NOTE, HsmAdminHost
from stacks.components.hsm_key_store import (
    KEY_ADMIN_ACTIONS,
    KEY_CHANGE_EVENT_NAMES,
    HsmKey,
    HsmKeyStore,
    KmsUserSecret,
)
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork
from stacks.components.secure_bucket import access_log_bucket
from stacks.components.security_role import SecurityRole
from stacks.components.tier_a_guards import CONFIGURATION_EVENT_NAMES, GuardPrincipals, deployment_role_arn
from stacks.components.tier_b_buckets import SseKmsBucket, finding_text
from stacks.components.tier_b_checks import KeyStoreMonitor, TierBValidator
from stacks.components.trail import AuditTrail, alarm_on_trail_changes

PHASE_1_NOTE = (
    "Phase 1: no data bucket yet. Initialize and activate the cluster, create kmsuser "
    "(python -m usecases.cloudhsm_kms init), then deploy with tier_b_keystore_enabled=true."
)


class TierBStack(cdk.Stack):
    """Wires the tier B constructs for one municipality (see the module docstring)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, network: IsolatedNetwork, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # As in cdk.json, also when app.py runs without the CLI: access logs are granted by
        # bucket policy (an ACL would conflict with BucketOwnerEnforced).
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        # The admin host's IMDSv2 launch template gets a name unique to the stack, not the account-wide
        # fixed `InstanceLaunchTemplate` (two stacks in one account would collide).
        self.node.set_context("@aws-cdk/aws-ec2:uniqueImdsv2TemplateName", True)
        tier_b, workshop = config.tier_b, config.workshop_mode
        log_encryption = LogEncryption(
            self, "LogEncryption", workshop_mode=workshop, retention_days=config.expiry_days(config.log_retention_days)
        )
        access_logs = access_log_bucket(
            self, "AccessLogs", workshop_mode=workshop, retention_days=config.expiry_days(config.log_retention_days)
        )

        provisioner = HsmProvisioner(
            self, "Provisioner", network=network, log_encryption=log_encryption, workshop_mode=workshop
        )
        # A new AWS::CloudHSM::Cluster, or (tier_b_restore_backup_id) one restored from a backup by the
        # provisioner; the key store below then gets the restored cluster's id and moves to it.
        cluster = CloudHsmCluster(
            self, "Cluster", network=network,
            backup_retention_days=tier_b.backup_retention_days, restore_backup_id=tier_b.restore_backup_id,
            workshop_mode=workshop, provisioner=provisioner,
        )  # fmt: skip
        provisioner.grant_hsms(cluster=cluster, vpc_id=network.vpc.vpc_id)
        hsms = CloudHsmHsms(
            self, "Hsms", provisioner=provisioner, cluster=cluster, availability_zones=config.availability_zones,
            hsm_count=phase_hsm_count(config), workshop_mode=workshop,
        )  # fmt: skip
        secret = KmsUserSecret(self, "KmsUserPassword", network=network, workshop_mode=workshop)
        if tier_b.admin_host:
            host = HsmAdminHost(
                self, "AdminHost", network=network, cluster=cluster, secret=secret, access_logs=access_logs,
                noncurrent_version_days=config.expiry_days(tier_b.noncurrent_version_days), workshop_mode=workshop,
                ami_id=tier_b.admin_host_ami, cli_sha256=tier_b.cloudhsm_cli_sha256,
            )  # fmt: skip
            cdk.CfnOutput(self, names.OUTPUT_ADMIN_HOST_ID, value=host.instance.instance_id, description=INSTALL_NOTE)
        cdk.CfnOutput(
            self, names.OUTPUT_KMSUSER_SECRET, value=secret.secret.secret_arn,
            description="The kmsuser password (set it in CloudHSM CLI when creating kmsuser; KMS then rotates it)",
        )  # fmt: skip
        alarms = AlarmTopic(
            self, "Alarms", description="kommunmoln tier B alarms", email=config.alarm_email, workshop_mode=workshop
        )

        key_store_id = key_arn = key_policy = ""
        if tier_b.keystore_enabled:
            key_store = HsmKeyStore(
                self, "KeyStore", provisioner=provisioner, cluster=cluster, hsms=hsms, secret=secret,
                key_store_name=f"{config.prefix}-tier-b", trust_anchor_file=tier_b.trust_anchor_file(),
                existing_key_store_id=tier_b.existing_key_store_id, workshop_mode=workshop,
            )  # fmt: skip
            bucket_name = f"{config.prefix}-tier-b-{self.account}-{self.region}"
            key = HsmKey(
                self, "Key", provisioner=provisioner, key_store=key_store, alias_name=f"alias/{config.prefix}-tier-b",
                description=f"kommunmoln tier B data key of {config.municipality_name} (CloudHSM custom key store)",
                bucket_arn=f"arn:{self.partition}:s3:::{bucket_name}", workshop_mode=workshop,
            )  # fmt: skip
            key_store_id, key_arn, key_policy = key_store.key_store_id, key.key_arn, key.policy_json
            # Attached from the policy's side (the policy depends on the role and the key; the
            # key policy names the role): attaching it on the role would close a cycle.
            iam.ManagedPolicy(
                self, "KeyBreakGlassPolicy", roles=[key.admin_role],
                description="Break-glass administration of the tier B HSM key (MFA required by the key policy)",
                statements=[iam.PolicyStatement(sid="AdministerTheTierBKey", actions=list(KEY_ADMIN_ACTIONS), resources=[key_arn])],
            )  # fmt: skip
            alarms.alarm_on_api_calls(
                self, "KeyChangeAlarm", source="kms", event_names=list(KEY_CHANGE_EVENT_NAMES),
                detail={"resources": {"ARN": [key_arn]}},
                description="Tier B: the HSM key's policy, state or grants were changed (or a change was attempted)",
            )  # fmt: skip
            validator = TierBValidator(
                self, "Validator", network=network, log_encryption=log_encryption, alarms=alarms,
                bucket_arn=f"arn:{self.partition}:s3:::{bucket_name}", key_arn=key_arn, workshop_mode=workshop,
            )  # fmt: skip
            bucket_arn = f"arn:{self.partition}:s3:::{bucket_name}"
            security = SecurityRole(
                self, "SecurityRole", description=f"kommunmoln tier B security role ({config.municipality_name})"
            )
            break_glass = SecurityRole.break_glass(
                self, "BreakGlassRole", bucket_arn=bucket_arn,
                description=f"kommunmoln tier B break-glass role ({config.municipality_name})",
            )  # fmt: skip
            data = SseKmsBucket(
                self, "Data", bucket_name=bucket_name, key=key.key, key_arn=key_arn, access_logs=access_logs,
                usage_role=key.usage_role, validator=validator.function.function,
                noncurrent_version_days=config.expiry_days(tier_b.noncurrent_version_days), workshop_mode=workshop,
                guards=GuardPrincipals(
                    security=security.role_arn, validator=validator.function.role.role_arn,
                    break_glass=break_glass.role_arn, deployment=deployment_role_arn(self),
                    s3_endpoint_id=network.s3_endpoint.vpc_endpoint_id, data_access=[key.usage_role.role_arn],
                ),
            )  # fmt: skip
            _grant_security_role(security, data)
            alarms.alarm_on_api_calls(
                self, "ConfigurationChangeAlarm", source="s3", event_names=list(CONFIGURATION_EVENT_NAMES),
                detail={"requestParameters": {"bucketName": [bucket_name]}},
                description="Tier B: a guarded configuration of the data bucket was changed (or attempted)",
            )  # fmt: skip
            # Object reads and writes: data events only (the network stack's trail records the management
            # events, every use of the HSM key and every CloudHSM call included, once for the whole app).
            # The data bucket's break-glass role also guards the trail bucket.
            trail = AuditTrail(
                self, "Trail", trail_name=names.trail_name(config.municipality_id, "tier-b-data"),
                management_events=False, data_buckets=[data.bucket], access_logs=access_logs,
                log_encryption=log_encryption, retention_days=config.expiry_days(config.log_retention_days),
                object_lock_days=config.trail_object_lock_days, workshop_mode=workshop, break_glass=break_glass,
            )  # fmt: skip
            trail.alarm_on_changes(alarms)
            cdk.CfnOutput(self, names.OUTPUT_TRAIL_BUCKET, value=trail.bucket.bucket_name)
            cdk.CfnOutput(self, names.OUTPUT_SECURITY_ROLE, value=security.role_arn)
            cdk.CfnOutput(self, names.OUTPUT_BREAK_GLASS_ROLE, value=break_glass.role_arn)
            cdk.CfnOutput(self, names.OUTPUT_CUSTOM_KEY_STORE_ID, value=key_store_id)
            cdk.CfnOutput(self, names.OUTPUT_KMS_KEY_ARN, value=key_arn)
            cdk.CfnOutput(self, names.OUTPUT_KMS_ALIAS, value=key.alias_name)
            cdk.CfnOutput(
                self, names.OUTPUT_KMS_USAGE_ROLE, value=key.usage_role.role_arn,
                description="Assume this role to upload/download (the key policy lets no other principal use the "
                "key); python -m usecases.cloudhsm_kms upload/download assume it.",
            )  # fmt: skip
            cdk.CfnOutput(
                self, names.OUTPUT_SSE_BUCKET, value=data.bucket.bucket_name,
                description="Object reads/writes are CloudTrail data events of this stack's trail; key use and "
                "every other management event are in the network stack's multi-Region trail.",
            )  # fmt: skip

        alarm_on_trail_changes(self, alarms)
        KeyStoreMonitor(
            self, "Monitor", network=network, log_encryption=log_encryption, alarms=alarms,
            cluster_id=cluster.cluster_id, min_hsms=phase_hsm_count(config), key_store_id=key_store_id, key_arn=key_arn,
            expected_key_policy=key_policy, interval_minutes=tier_b.monitor_interval_minutes, workshop_mode=workshop,
        )  # fmt: skip
        cdk.CfnOutput(
            self, names.OUTPUT_CLUSTER_ID, value=cluster.cluster_id,
            description=None if tier_b.keystore_enabled else PHASE_1_NOTE,
        )  # fmt: skip
        cdk.CfnOutput(self, names.OUTPUT_ALARM_TOPIC, value=alarms.topic.topic_arn)


def _grant_security_role(security: SecurityRole, data: SseKmsBucket) -> None:
    """The tier B security role lists, retags and deletes versions; it cannot read them (the key policy)."""
    security.allow(["s3:ListBucket", "s3:ListBucketVersions"], [data.bucket_arn], sid="ListDataBucket")
    security.allow(
        ["s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging",
         "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging", "s3:DeleteObject", "s3:DeleteObjectVersion"],
        [data.objects_arn],
        sid="HandleQuarantinedObjects",
    )  # fmt: skip
    acknowledge(
        security.policy.node.default_child,
        f"AwsSolutions::AwsSolutions-IAM5[Resource::{finding_text(security, data.objects_arn)}]",
        "The security role releases or deletes whichever object the validator quarantines, so it needs the objects "
        "of the data bucket (tier B, or tier C which reuses this); the wildcard is confined to that one bucket, "
        "and the role requires MFA.",
    )


def phase_hsm_count(config: AppConfig) -> int:
    """HSMs the deployed phase asks for: one before activation, the configured number after.

    CloudHSM accepts exactly one HSM until the cluster is initialized and activated; the others are
    added in phase 2, when the cluster is ACTIVE (the provisioner refuses more before that). A restored
    cluster comes up initialized, but it is activated only if its backup was, so it starts with one too.
    """
    return config.tier_b.hsm_count if config.tier_b.keystore_enabled else 1


def description(config: AppConfig) -> str:
    """The stack description, saying which phase is deployed."""
    base = f"kommunmoln tier B for {config.municipality_name}: CloudHSM cluster and HSMs, admin host, monitor"
    if config.tier_b.keystore_enabled:
        return f"{base}, KMS custom key store, HSM-backed key, SSE-KMS bucket (phase 2)"
    return f"{base}. {PHASE_1_NOTE}"
