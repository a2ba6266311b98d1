"""Network stack: the isolated VPC every other stack receives, and the app's one management-event trail.

Every deployment has this stack, so the multi-Region trail of management events lives here,
once, whichever tiers are deployed (a second copy of management events is billed; see trail.py).
"""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from kommunmoln import names
from kommunmoln.config import AppConfig
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork
from stacks.components.secure_bucket import access_log_bucket
from stacks.components.trail import AuditTrail


class NetworkStack(cdk.Stack):
    """Wires the isolated VPC, its endpoints, its encrypted flow logs and the management-event trail.

    Attributes:
        network: the IsolatedNetwork construct (vpc, s3_endpoint, subnets, ...).
        trail: the AuditTrail of all management events, multi-Region (every KMS key use, IAM change,
            bucket configuration change; the tier stacks' alarms match these events).
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # Server access logs of the trail bucket are granted by bucket policy (as in cdk.json, also without the CLI).
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        log_encryption = LogEncryption(
            self,
            "LogEncryption",
            workshop_mode=config.workshop_mode,
            retention_days=config.expiry_days(config.log_retention_days),
        )
        tier_b = config.deploys(names.USE_CASE_CLOUDHSM)
        self.network = IsolatedNetwork(
            self,
            "Network",
            cidr=config.vpc_cidr,
            availability_zones=list(config.availability_zones),
            log_encryption=log_encryption,
            cloudhsm_endpoint=tier_b,
            ssm_endpoints=tier_b and config.tier_b.admin_host,
        )
        retention = config.expiry_days(config.log_retention_days)
        access_logs = access_log_bucket(
            self, "AccessLogs", workshop_mode=config.workshop_mode, retention_days=retention
        )
        self.trail = AuditTrail(
            self,
            "ManagementTrail",
            trail_name=names.trail_name(config.municipality_id, "management"),
            management_events=True,
            access_logs=access_logs,
            log_encryption=log_encryption,
            retention_days=retention,
            object_lock_days=config.trail_object_lock_days,
            workshop_mode=config.workshop_mode,
        )
        cdk.CfnOutput(self, names.OUTPUT_TRAIL_BUCKET, value=self.trail.bucket.bucket_name)
        cdk.CfnOutput(self, names.OUTPUT_TRAIL_BREAK_GLASS_ROLE, value=self.trail.break_glass.role_arn)
        cdk.CfnOutput(self, names.OUTPUT_VPC_ID, value=self.network.vpc.vpc_id)
        cdk.CfnOutput(self, names.OUTPUT_S3_ENDPOINT_ID, value=self.network.s3_endpoint.vpc_endpoint_id)
