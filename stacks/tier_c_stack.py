"""Tier C stack (use case 3): a KMS external key store (XKS) on the municipality's proxy, an SSE-KMS bucket.

The key material never exists in AWS: every use of the key is a request from KMS to the municipality's
proxy (kommunmoln.tier_c, run on premises), which encrypts and decrypts inside its own HSM. The stack holds:
  * the provisioner (tier B's Provider construct with the tier C handlers);
  * with VPC_ENDPOINT_SERVICE connectivity: the NLB, the endpoint service and its private DNS verification;
  * the external key store, connected (a FAILED connection fails the deployment with its remedy);
  * the KMS key (Origin EXTERNAL_KEY_STORE, XksKeyId) with tier B's strict key policy and alias;
  * the SSE-KMS bucket, tier B's bucket policy guards and object validator, the trail and the monitor.
Deploy it only once the proxy answers (PUBLIC_ENDPOINT: KMS calls it while creating the key store).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from kommunmoln import names
from kommunmoln.config import AppConfig
from stacks.components.alarm_topic import AlarmTopic
from stacks.components.hsm_key_store import KEY_ADMIN_ACTIONS, KEY_CHANGE_EVENT_NAMES, HsmKey
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork, endpoint_perimeter
from stacks.components.secure_bucket import access_log_bucket
from stacks.components.security_role import SecurityRole
from stacks.components.tier_a_guards import CONFIGURATION_EVENT_NAMES, GuardPrincipals, deployment_role_arn
from stacks.components.tier_b_buckets import SseKmsBucket
from stacks.components.tier_b_checks import TierBValidator
from stacks.components.trail import AuditTrail, alarm_on_trail_changes
from stacks.components.xks_key_store import XksEndpointService, XksKeyStore, xks_provisioner
from stacks.components.xks_monitor import XKS_VALIDATOR_SERVICE, XksKeyStoreMonitor
from stacks.tier_b_stack import _grant_security_role as grant_security_role


class TierCStack(cdk.Stack):
    """Wires the tier C constructs for one municipality (see the module docstring)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        network: IsolatedNetwork,
        secrets_manager_endpoint: bool,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        if config.tier_c is None:
            raise ValueError("TierCStack needs the tier C settings (use case external-key-store)")
        tier_c, workshop = config.tier_c, config.workshop_mode
        retention = config.expiry_days(config.log_retention_days)
        log_encryption = LogEncryption(self, "LogEncryption", workshop_mode=workshop, retention_days=retention)
        access_logs = access_log_bucket(self, "AccessLogs", workshop_mode=workshop, retention_days=retention)
        vpc_service = tier_c.connectivity == "VPC_ENDPOINT_SERVICE"
        # The provisioner runs in the isolated VPC: it reads the proxy credential from Secrets Manager and, with
        # VPC connectivity, the endpoint service from EC2. (Tier B's stack adds the Secrets Manager endpoint
        # when both tiers share the VPC; two endpoints with private DNS for one service cannot coexist.)
        endpoints = (
            {"SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER} if secrets_manager_endpoint else {}
        )
        if vpc_service:
            endpoints["Ec2"] = ec2.InterfaceVpcEndpointAwsService.EC2
        for name, service in endpoints.items():
            endpoint = ec2.InterfaceVpcEndpoint(
                self, f"{name}Endpoint", vpc=network.vpc, service=service, subnets=network.subnets,
                private_dns_enabled=True, security_groups=[network.endpoint_security_group], open=False,
            )  # fmt: skip
            endpoint.add_to_policy(
                iam.PolicyStatement(
                    sid="OnlyThisAccountsPrincipalsAndResources", principals=[iam.AnyPrincipal()], actions=["*"],
                    resources=["*"], conditions=endpoint_perimeter(self.account),
                )
            )  # fmt: skip

        provisioner = xks_provisioner(
            self, "Provisioner", network=network, log_encryption=log_encryption, workshop_mode=workshop
        )
        endpoint_service = None
        if vpc_service:
            endpoint_service = XksEndpointService(
                self, "EndpointService", network=network, provisioner=provisioner,
                private_dns_name=tier_c.private_dns_name, target_ips=tier_c.proxy_target_ips,
                target_port=tier_c.proxy_port, vpc_cidr=config.vpc_cidr, workshop_mode=workshop,
            )  # fmt: skip
            cdk.CfnOutput(
                self, names.OUTPUT_XKS_ENDPOINT_SERVICE, value=endpoint_service.service_name,
                description="Publish the TXT record of its private DNS name (aws ec2 "
                "describe-vpc-endpoint-service-configurations) so that the name is verified",
            )  # fmt: skip
        key_store = XksKeyStore(
            self, "KeyStore", provisioner=provisioner, settings=tier_c, key_store_name=f"{config.prefix}-tier-c",
            endpoint_service=endpoint_service, workshop_mode=workshop,
        )  # fmt: skip
        bucket_name = f"{config.prefix}-tier-c-{self.account}-{self.region}"
        bucket_arn = f"arn:{self.partition}:s3:::{bucket_name}"
        key = HsmKey(
            self, "Key", provisioner=provisioner, key_store=key_store, alias_name=f"alias/{config.prefix}-tier-c",
            description=f"kommunmoln tier C data key of {config.municipality_name} (external key store, "
            f"external key {tier_c.xks_key_id})",
            bucket_arn=bucket_arn, workshop_mode=workshop, xks_key_id=tier_c.xks_key_id, tier_label="tier C",
        )  # fmt: skip
        key.resource.node.add_dependency(key_store.resource)
        key_arn = key.key_arn
        iam.ManagedPolicy(
            self, "KeyBreakGlassPolicy", roles=[key.admin_role],
            description="Break-glass administration of the tier C key (MFA required by the key policy)",
            statements=[iam.PolicyStatement(sid="AdministerTheTierCKey", actions=list(KEY_ADMIN_ACTIONS), resources=[key_arn])],
        )  # fmt: skip
        alarms = AlarmTopic(
            self, "Alarms", description="kommunmoln tier C alarms", email=config.alarm_email, workshop_mode=workshop
        )
        alarms.alarm_on_api_calls(
            self, "KeyChangeAlarm", source="kms", event_names=list(KEY_CHANGE_EVENT_NAMES),
            detail={"resources": {"ARN": [key_arn]}},
            description="Tier C: the external key's KMS policy, state or grants were changed (or a change was attempted)",
        )  # fmt: skip
        validator = TierBValidator(
            self, "Validator", network=network, log_encryption=log_encryption, alarms=alarms, bucket_arn=bucket_arn,
            key_arn=key_arn, workshop_mode=workshop, service_name=XKS_VALIDATOR_SERVICE, label="Tier C",
        )  # fmt: skip
        security = SecurityRole(
            self, "SecurityRole", description=f"kommunmoln tier C security role ({config.municipality_name})"
        )
        break_glass = SecurityRole.break_glass(
            self, "BreakGlassRole", bucket_arn=bucket_arn,
            description=f"kommunmoln tier C break-glass role ({config.municipality_name})",
        )  # fmt: skip
        # Tier B's bucket with tier A's deletion, perimeter, status-tag and configuration guards.
        data = SseKmsBucket(
            self, "Data", bucket_name=bucket_name, key=key.key, key_arn=key_arn, access_logs=access_logs,
            usage_role=key.usage_role, validator=validator.function.function,
            noncurrent_version_days=config.expiry_days(tier_c.noncurrent_version_days), workshop_mode=workshop,
            tier=names.TIER_C,
            guards=GuardPrincipals(
                security=security.role_arn, validator=validator.function.role.role_arn,
                break_glass=break_glass.role_arn, deployment=deployment_role_arn(self),
                s3_endpoint_id=network.s3_endpoint.vpc_endpoint_id, data_access=[key.usage_role.role_arn],
            ),
        )  # fmt: skip
        grant_security_role(security, data)
        alarms.alarm_on_api_calls(
            self, "ConfigurationChangeAlarm", source="s3", event_names=list(CONFIGURATION_EVENT_NAMES),
            detail={"requestParameters": {"bucketName": [bucket_name]}},
            description="Tier C: a guarded configuration of the data bucket was changed (or attempted)",
        )  # fmt: skip
        # The data events of the bucket (management events: the network stack's trail).
        trail = AuditTrail(
            self, "Trail", trail_name=names.trail_name(config.municipality_id, "tier-c-data"), management_events=False,
            data_buckets=[data.bucket], access_logs=access_logs, log_encryption=log_encryption,
            retention_days=retention, object_lock_days=config.trail_object_lock_days, workshop_mode=workshop,
            break_glass=break_glass,
        )  # fmt: skip
        trail.alarm_on_changes(alarms)
        alarm_on_trail_changes(self, alarms)
        cdk.CfnOutput(self, names.OUTPUT_TRAIL_BUCKET, value=trail.bucket.bucket_name)
        cdk.CfnOutput(self, names.OUTPUT_SECURITY_ROLE, value=security.role_arn)
        cdk.CfnOutput(self, names.OUTPUT_BREAK_GLASS_ROLE, value=break_glass.role_arn)
        XksKeyStoreMonitor(
            self, "Monitor", network=network, log_encryption=log_encryption, alarms=alarms,
            key_store_id=key_store.key_store_id, key_arn=key_arn, xks_key_id=tier_c.xks_key_id,
            proxy_uri=f"{tier_c.proxy_uri_endpoint}{tier_c.proxy_uri_path}", expected_key_policy=key.policy_json,
            interval_minutes=tier_c.monitor_interval_minutes, certificate_alarm_days=tier_c.certificate_alarm_days,
            credential_rotation_days=tier_c.credential_rotation_days, workshop_mode=workshop,
        )  # fmt: skip
        cdk.CfnOutput(self, names.OUTPUT_CUSTOM_KEY_STORE_ID, value=key_store.key_store_id)
        cdk.CfnOutput(self, names.OUTPUT_KMS_KEY_ARN, value=key_arn)
        cdk.CfnOutput(self, names.OUTPUT_KMS_ALIAS, value=key.alias_name)
        cdk.CfnOutput(
            self, names.OUTPUT_KMS_USAGE_ROLE, value=key.usage_role.role_arn,
            description="Assume this role to upload/download (the key policy lets no other principal use the key)",
        )  # fmt: skip
        cdk.CfnOutput(self, names.OUTPUT_SSE_BUCKET, value=data.bucket.bucket_name)
        cdk.CfnOutput(self, names.OUTPUT_ALARM_TOPIC, value=alarms.topic.topic_arn)


def description(config: AppConfig) -> str:
    """The stack description, naming the connectivity option."""
    connectivity = config.tier_c.connectivity if config.tier_c else "?"
    return (
        f"kommunmoln tier C for {config.municipality_name}: KMS external key store ({connectivity}) on the "
        "municipality's XKS proxy and HSM, external-key-backed KMS key, SSE-KMS bucket, validator, monitor"
    )
