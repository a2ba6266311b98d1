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

# The Amazon Linux 2023 package repositories are an AWS-owned bucket per Region, read anonymously
# by dnf through the S3 gateway endpoint: `al2023-repos-<region>-de612dc2` (AWS's data perimeter
# examples, "AllowRequestsToAWSOwnedResources", citing the AL2023 User Guide, Kernel Live Patching:
# https://docs.aws.amazon.com/linux/al2023/ug/live-patching.html; the same ARN is in the Application
# Migration Service network requirements). A gateway endpoint policy that names only this account's
# buckets blocks it, so `dnf install` on the admin host fails fetching the repository metadata.
AL2023_REPOSITORY_BUCKET = "al2023-repos-{region}-de612dc2"
# AWS-owned Systems Manager resources (account field empty in their ARNs) that an SSM-managed host
# reads: public parameters under /aws/ and AWS-owned documents (AWS's data perimeter example
# ssm_endpoint_policy.json, "AllowRequestsByOrgsIdentitiesToAWSResources"). Read actions only.
SSM_AWS_OWNED_ACTIONS = ("ssm:Describe*", "ssm:List*", "ssm:Get*")


def endpoint_perimeter(account: str) -> dict[str, dict[str, str]]:
    """The condition every endpoint statement starts from: this account's principals on this account's resources.

    `aws:ResourceAccount` is the account that owns the resource a request acts on; with
    `aws:PrincipalAccount` it makes the endpoint a two-sided perimeter: nobody else's credentials
    through it, and none of our credentials towards anybody else's resources (IAM User Guide,
    "AWS global condition context keys"; AWS's data perimeter examples use the same pair).
    """
    return {"StringEquals": {"aws:PrincipalAccount": account, "aws:ResourceAccount": account}}


class IsolatedNetwork(Construct):
    """A VPC with isolated subnets in the given zones, VPC endpoints and flow logs.

    No public subnet exists, so CDK creates no internet gateway and no NAT gateway:
    nothing in the VPC can reach the internet, only AWS APIs through the endpoints,
    whose policies admit this account's principals acting on this account's resources alone
    (with two read-only exceptions for AWS-owned resources the admin host needs: the Amazon
    Linux 2023 repository bucket and AWS's public SSM parameters and documents).

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
        if ssm_endpoints:
            # The admin host installs the CloudHSM CLI's dependencies from the Amazon Linux repositories
            # (GPG-checked by dnf): read-only, this Region's repository bucket only. dnf's requests are
            # unsigned, so no principal condition can apply; GetObject cannot carry data out.
            stack = cdk.Stack.of(self)
            repository = AL2023_REPOSITORY_BUCKET.format(region=stack.region)
            self.s3_endpoint.add_to_policy(
                iam.PolicyStatement(
                    sid="AmazonLinuxRepositoriesReadOnly",
                    principals=[iam.AnyPrincipal()],
                    actions=["s3:GetObject"],
                    resources=[f"arn:{stack.partition}:s3:::{repository}/*"],
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
                        sid="OnlyThisAccountsPrincipalsAndResources",
                        principals=[iam.AnyPrincipal()],
                        actions=["*"],
                        resources=["*"],
                        conditions=endpoint_perimeter(account),
                    )
                )
            if name == "Ssm":
                stack = cdk.Stack.of(self)
                ssm_arn = f"arn:{stack.partition}:ssm:{stack.region}:"
                endpoint.add_to_policy(
                    iam.PolicyStatement(
                        sid="ReadAwsOwnedParametersAndDocuments",
                        principals=[iam.AnyPrincipal()],
                        actions=list(SSM_AWS_OWNED_ACTIONS),
                        resources=[f"{ssm_arn}:parameter/aws/*", f"{ssm_arn}:document/*"],
                        conditions={"StringEquals": {"aws:PrincipalAccount": account}},
                    )
                )
            self.interface_endpoints[name] = endpoint
