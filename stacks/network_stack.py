"""Network stack: the isolated VPC every other stack receives as a constructor argument."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from kommunmoln import names
from kommunmoln.config import AppConfig
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork


class NetworkStack(cdk.Stack):
    """Wires the isolated VPC, its endpoints and its encrypted flow logs.

    Attributes:
        network: the IsolatedNetwork construct (vpc, s3_endpoint, subnets, ...).
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
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
        cdk.CfnOutput(self, names.OUTPUT_VPC_ID, value=self.network.vpc.vpc_id)
        cdk.CfnOutput(self, names.OUTPUT_S3_ENDPOINT_ID, value=self.network.s3_endpoint.vpc_endpoint_id)
