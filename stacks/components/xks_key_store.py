"""Tier C: the provisioner, the VPC endpoint service for the proxy and the KMS external key store (XKS).

CloudFormation has no custom key store resource, so the key store is `Custom::KmsExternalKeyStore`, served by
tier B's provisioner construct running the tier C handlers (`lambdas.xks_provisioner`). With
VPC_ENDPOINT_SERVICE connectivity the stack also builds what the KMS API Reference requires of the endpoint
service (ConnectionErrorCode XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION): an NLB in at least two zones, the
service principal cks.kms.<region>.amazonaws.com among the allowed principals, no acceptance of connection
requests, and a private DNS name whose domain is verified (`Custom::XksEndpointServicePrivateDns` waits for it).
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from kommunmoln import names
from kommunmoln.config import TierCConfig
from stacks.compliance import acknowledge
from stacks.components.cloudhsm import HsmProvisioner
from stacks.components.lifecycle import removal_policy
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork

XKS_PROVISIONER_HANDLER = "lambdas.xks_provisioner.handler"
XKS_PROVISIONER_SERVICE = "xks-provisioner"


def xks_service_principal(region: str) -> str:
    """KMS's regional service principal for external key stores (KMS API Reference: cks.kms.<region>.amazonaws.com)."""
    return f"cks.kms.{region}.amazonaws.com"


def xks_provisioner(
    scope: Construct, construct_id: str, *, network: IsolatedNetwork, log_encryption: LogEncryption, workshop_mode: bool
) -> HsmProvisioner:
    """Tier B's Provider construct (in-VPC handlers, DLQ, encrypted logs, framework findings) with tier C handlers."""
    return HsmProvisioner(
        scope, construct_id, network=network, log_encryption=log_encryption, workshop_mode=workshop_mode,
        handler=XKS_PROVISIONER_HANDLER, service_name=XKS_PROVISIONER_SERVICE, label="Tier C provisioner",
        purpose="external key store, endpoint service DNS and external key",
        wildcard_reason=(
            "Only actions without resource-level permissions use '*': the KMS custom key store actions, "
            "kms:ListKeys, kms:ListAliases, ec2:DescribeVpcEndpointServiceConfigurations, and kms:CreateKey "
            "(restricted by condition to origin EXTERNAL_KEY_STORE, symmetric keys)."
        ),
    )  # fmt: skip


class XksEndpointService(Construct):
    """VPC_ENDPOINT_SERVICE connectivity: an internal NLB to the on-premises proxies and its endpoint service.

    The NLB spans the isolated subnets (two zones or more) and forwards TCP 443 to the proxies' private
    addresses (IP targets outside the VPC, reached over the municipality's VPN or Direct Connect, which this
    project does not build). TLS ends at the proxy: the NLB never sees plaintext or the proxy's certificate key.

    Attributes:
        service: the CfnVPCEndpointService; `service_id`.
        dns: the custom resource that waits for the verified private DNS name; `service_name` (its Data).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: IsolatedNetwork,
        provisioner: HsmProvisioner,
        private_dns_name: str,
        target_ips: Sequence[str],
        target_port: int,
        vpc_cidr: str,
        workshop_mode: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        group = ec2.SecurityGroup(
            self, "LoadBalancerSecurityGroup", vpc=network.vpc, allow_all_outbound=False,
            description="XKS NLB: HTTPS in from the VPC (KMS interface endpoint), out to the proxies only",
        )  # fmt: skip
        group.add_ingress_rule(ec2.Peer.ipv4(vpc_cidr), ec2.Port.tcp(443), "KMS interface endpoint to the NLB")
        for address in target_ips:
            group.add_egress_rule(ec2.Peer.ipv4(f"{address}/32"), ec2.Port.tcp(target_port), "NLB to an XKS proxy")
        self.load_balancer = elbv2.NetworkLoadBalancer(
            self, "LoadBalancer", vpc=network.vpc, internet_facing=False, vpc_subnets=network.subnets,
            security_groups=[group], cross_zone_enabled=True, deletion_protection=not workshop_mode,
        )  # fmt: skip
        if workshop_mode:
            acknowledge(
                self.load_balancer.node.default_child,
                "NIST.800.53.R5::NIST.800.53.R5-ELBDeletionProtectionEnabled",
                "Workshop mode only: `make destroy` must delete everything in one command; outside workshop mode "
                "the NLB has deletion protection on.",
            )
        acknowledge(
            self.load_balancer.node.default_child,
            "AwsSolutions::AwsSolutions-ELB2",
            "A TCP pass-through NLB: TLS ends at the on-premises proxy, so NLB access logs (TLS listeners only) would "
            "be empty; the proxy writes its own audit log of every request.",
        )
        acknowledge(
            self.load_balancer.node.default_child,
            "NIST.800.53.R5::NIST.800.53.R5-ELBLoggingEnabled",
            "A TCP pass-through NLB: TLS ends at the on-premises proxy, so NLB access logs (TLS listeners only) would "
            "be empty; the proxy writes its own audit log of every request.",
        )
        targets = elbv2.NetworkTargetGroup(
            self, "Proxies", vpc=network.vpc, port=target_port, protocol=elbv2.Protocol.TCP,
            target_type=elbv2.TargetType.IP,
            health_check=elbv2.HealthCheck(protocol=elbv2.Protocol.TCP, healthy_threshold_count=2),
        )  # fmt: skip
        cfn_targets: elbv2.CfnTargetGroup = targets.node.default_child
        # Addresses outside the VPC (on premises) are registered with AvailabilityZone "all".
        cfn_targets.targets = [
            elbv2.CfnTargetGroup.TargetDescriptionProperty(id=ip, port=target_port, availability_zone="all")
            for ip in target_ips
        ]
        listener = self.load_balancer.add_listener(
            "Https", port=443, protocol=elbv2.Protocol.TCP, default_target_groups=[targets]
        )
        acknowledge(
            listener.node.default_child,
            "NIST.800.53.R5::NIST.800.53.R5-ELBv2ACMCertificateRequired",
            "TCP pass-through by design: KMS must see the proxy's own TLS certificate for the private DNS name, "
            "which TLS ending at an ACM certificate on the NLB would replace; traffic is TLS 1.2+ end to end.",
        )

        self.service = ec2.CfnVPCEndpointService(
            self, "Service", network_load_balancer_arns=[self.load_balancer.load_balancer_arn],
            acceptance_required=False, private_dns_name=private_dns_name,
        )  # fmt: skip
        self.service.apply_removal_policy(removal_policy(workshop_mode=workshop_mode))
        self.service_id = self.service.ref
        ec2.CfnVPCEndpointServicePermissions(
            self, "AllowKms", service_id=self.service_id, allowed_principals=[xks_service_principal(stack.region)]
        )
        self.dns = cdk.CustomResource(
            self, "PrivateDns", service_token=provisioner.provider.service_token,
            resource_type=names.RESOURCE_XKS_ENDPOINT_SERVICE_DNS,
            properties={"ServiceId": self.service_id, "PrivateDnsName": private_dns_name},
        )  # fmt: skip
        self.service_name = self.dns.get_att_string("ServiceName")
        provisioner.allow(["ec2:DescribeVpcEndpointServiceConfigurations"], ["*"], sid="DescribeEndpointServices")
        provisioner.allow(
            ["ec2:StartVpcEndpointServicePrivateDnsVerification"],
            [f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:vpc-endpoint-service/{self.service_id}"],
            sid="VerifyPrivateDnsName",
        )


class XksKeyStore(Construct):
    """The external key store (`Custom::KmsExternalKeyStore`), created from the proxy settings and connected.

    The proxy credential stays in Secrets Manager: the template carries only the secret's ARN, and the
    provisioner reads it at deployment. Retained unless workshop mode (then deleted only when it holds no keys).

    Attributes:
        resource, key_store_id.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        provisioner: HsmProvisioner,
        settings: TierCConfig,
        key_store_name: str,
        endpoint_service: XksEndpointService | None,
        workshop_mode: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.resource = cdk.CustomResource(
            self,
            "Resource",
            service_token=provisioner.provider.service_token,
            resource_type=names.RESOURCE_KMS_EXTERNAL_KEY_STORE,
            properties={
                "KeyStoreName": key_store_name,
                "Connectivity": settings.connectivity,
                "UriEndpoint": settings.proxy_uri_endpoint,
                "UriPath": settings.proxy_uri_path,
                "VpcEndpointServiceName": endpoint_service.service_name if endpoint_service else "",
                "CredentialSecretArn": settings.credential_secret_arn,
                "WorkshopMode": str(workshop_mode).lower(),
            },
            removal_policy=removal_policy(workshop_mode=workshop_mode),
        )
        self.key_store_id = self.resource.get_att_string("CustomKeyStoreId")
        provisioner.allow(
            ["kms:CreateCustomKeyStore", "kms:ConnectCustomKeyStore", "kms:DescribeCustomKeyStores",
             "kms:DisconnectCustomKeyStore", "kms:DeleteCustomKeyStore", "kms:UpdateCustomKeyStore", "kms:ListKeys"],
            ["*"],
            sid="CustomKeyStores",
        )  # fmt: skip
        # Secrets Manager appends 6 random characters to the name in the ARN; a configured ARN may include them.
        provisioner.allow(
            ["secretsmanager:GetSecretValue"], [settings.credential_secret_arn], sid="ReadProxyCredential"
        )
        if settings.credential_key_arn:
            provisioner.allow(
                ["kms:Decrypt"], [settings.credential_key_arn], sid="DecryptProxyCredential",
                conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{stack.region}.{stack.url_suffix}"}},
            )  # fmt: skip
        # KMS creates its service-linked role for custom key stores on the first CreateCustomKeyStore.
        provisioner.allow(
            ["iam:CreateServiceLinkedRole"],
            [f"arn:{stack.partition}:iam::{stack.account}:role/aws-service-role/cks.kms.amazonaws.com/"
             "AWSServiceRoleForKeyManagementServiceCustomKeyStores"],
            sid="KmsCustomKeyStoreServiceLinkedRole",
            conditions={"StringEquals": {"iam:AWSServiceName": "cks.kms.amazonaws.com"}},
        )  # fmt: skip
        if endpoint_service is not None:
            self.resource.node.add_dependency(endpoint_service.dns)
