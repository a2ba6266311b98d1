"""An isolated VPC: private subnets only, no internet gateway, no NAT, AWS APIs via endpoints."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.compliance import LOG_STREAM_REASON, acknowledge, log_stream_wildcard_id
from stacks.components.log_key import LogEncryption
from stacks.components.service_role import ServiceRole

# Interface endpoints every use case needs: KMS (keys), STS (role sessions), CloudWatch
# Logs, SNS (validator alarms) and CloudWatch (metrics). CloudHSM's API endpoint serves the
# key store monitor. SSM's three endpoints serve the admin host (tier B activation path).
_BASE_INTERFACE_SERVICES: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "Kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Sns": ec2.InterfaceVpcEndpointAwsService.SNS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
}
_CLOUDHSM_SERVICES: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "CloudHsm": ec2.InterfaceVpcEndpointAwsService.CLOUDHSM,
}
_SSM_SERVICES: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "Ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    "SsmMessages": ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES,
    "Ec2Messages": ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES,
}
# Services whose endpoints accept a restrictive endpoint policy (checked in AWS docs).
_POLICY_CAPABLE = {"Kms", "Sts", "Logs", "Sns", "Monitoring", "CloudHsm", "Ssm"}


class IsolatedNetwork(Construct):
    """A VPC with isolated subnets in the given zones, VPC endpoints and flow logs.

    No public subnet exists, so CDK creates no internet gateway and no NAT gateway:
    nothing in the VPC can reach the internet, only AWS APIs through the endpoints,
    whose policies admit principals and buckets of this account alone.

    Attributes:
        vpc: the VPC.
        s3_endpoint: the S3 gateway endpoint (buckets may require `aws:SourceVpce` = its id).
        interface_endpoints: interface endpoints by short name ("Kms", "Sts", ...).
        flow_log_group: the encrypted log group receiving the VPC flow logs.
        subnets: selection of the isolated subnets, for Lambdas and the CloudHSM cluster.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cidr: str,
        availability_zones: list[str],
        log_encryption: LogEncryption,
        cloudhsm_endpoint: bool,
        ssm_endpoints: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            availability_zones=availability_zones,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24)
            ],
            restrict_default_security_group=True,
        )
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        self.flow_log_group = log_encryption.log_group(self, "FlowLogs")
        flow_log_role = ServiceRole(
            self, "FlowLogRole", service="vpc-flow-logs.amazonaws.com", description="VPC flow logs delivery"
        )
        flow_log_role.allow(
            ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            [self.flow_log_group.log_group_arn, f"{self.flow_log_group.log_group_arn}:log-stream:*"],
        )
        acknowledge(
            flow_log_role.policy.node.default_child, log_stream_wildcard_id(self.flow_log_group), LOG_STREAM_REASON
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group, flow_log_role.role),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        account = cdk.Stack.of(self).account
        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.subnets]
        )
        # Data may leave the VPC only towards this account's buckets (exfiltration guard).
        self.s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="OnlyThisAccountsBuckets",
                principals=[iam.AnyPrincipal()],
                actions=["s3:*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:ResourceAccount": account}},
            )
        )

        services = dict(_BASE_INTERFACE_SERVICES)
        if cloudhsm_endpoint:
            services.update(_CLOUDHSM_SERVICES)
        if ssm_endpoints:
            services.update(_SSM_SERVICES)
        # One security group for all interface endpoints: HTTPS from inside the VPC only.
        # The CIDR is the configured literal (not a VPC attribute) so that it can be checked.
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="Interface endpoints: HTTPS from inside the VPC only",
        )
        self.endpoint_security_group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "HTTPS from the VPC")
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        for name, service in services.items():
            endpoint = self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.subnets,
                private_dns_enabled=True,
                security_groups=[self.endpoint_security_group],
                open=False,
            )
            if name in _POLICY_CAPABLE:
                endpoint.add_to_policy(
                    iam.PolicyStatement(
                        sid="OnlyThisAccountsPrincipals",
                        principals=[iam.AnyPrincipal()],
                        actions=["*"],
                        resources=["*"],
                        conditions={"StringEquals": {"aws:PrincipalAccount": account}},
                    )
                )
            self.interface_endpoints[name] = endpoint
