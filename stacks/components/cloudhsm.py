"""The CloudHSM cluster, its HSMs, and the Provider that manages what CloudFormation cannot.

CloudFormation has only `AWS::CloudHSM::Cluster` (no HSMs, no key store, no key inside
one, and, in aws-cdk-lib 2.275 / the CloudFormation registry schema, no SourceBackupId).
A cluster restored from a backup, the HSMs, the KMS custom key store and the KMS key inside
it are custom resources served by
one Provider whose handlers (`lambdas.cloudhsm_provisioner.handler.on_event` and
`.is_complete`) dispatch on the custom resource type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudhsm as cloudhsm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from kommunmoln import names
from stacks.compliance import acknowledge
from stacks.components.function import HardenedFunction, deny_outside_functions
from stacks.components.lifecycle import removal_policy, supporting_key
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork

HSM_TYPE = "hsm2m.medium"  # FIPS 140-3 Level 3
CLUSTER_MODE = "FIPS"
HSM_PORTS = ec2.Port.tcp_range(2223, 2225)  # CloudHSM client <-> HSM
PROVISIONER_HANDLER = "lambdas.cloudhsm_provisioner.handler"
PROVISIONER_SERVICE = "cloudhsm-provisioner"
PROVISIONER_FUNCTION_TIMEOUT_SECONDS = 600
SID_PROVISIONER_ONLY_FROM_ITS_CODE = "DenyProvisioningOutsideTheProvisionerFunctions"
# What the provisioner roles may do only from the provisioner functions' own code: every key,
# key store, HSM and secret action of the provisioning permissions. Not Lambda's own calls made
# with the role outside the execution environment (network interfaces, the dead-letter queue and
# its key), which carry no lambda:SourceFunctionArn.
PROVISIONER_BOUND_ACTIONS = (
    "kms:CreateKey", "kms:PutKeyPolicy", "kms:DisableKey", "kms:EnableKey", "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion", "kms:CreateGrant", "kms:RevokeGrant", "kms:RetireGrant", "kms:CreateAlias",
    "kms:UpdateAlias", "kms:DeleteAlias", "kms:UpdateKeyDescription", "kms:TagResource", "kms:UntagResource",
    "kms:CreateCustomKeyStore", "kms:ConnectCustomKeyStore", "kms:DisconnectCustomKeyStore",
    "kms:UpdateCustomKeyStore", "kms:DeleteCustomKeyStore", "cloudhsm:CreateCluster", "cloudhsm:DeleteCluster",
    "cloudhsm:ModifyCluster", "cloudhsm:CreateHsm", "cloudhsm:DeleteHsm", "cloudhsm:InitializeCluster",
    "cloudhsm:TagResource", "secretsmanager:GetSecretValue",
    "iam:CreateServiceLinkedRole",
)  # fmt: skip
PROVIDER_TOTAL_TIMEOUT_SECONDS = 3300  # below CloudFormation's 3600 s custom resource limit, with margin
PROVISIONER_WILDCARD_REASON = (
    "Only actions without resource-level permissions use '*': cloudhsm:DescribeClusters and "
    "DescribeBackups, the EC2 Describe calls CreateHsm and CreateCluster depend on, the KMS custom "
    "key store actions, kms:ListKeys, kms:ListAliases, and kms:CreateKey (restricted by condition to origin "
    "AWS_CLOUDHSM, symmetric keys)."
)


def finding_arn(stack: cdk.Stack, service: str) -> str:
    """`arn:<partition>:<service>:<region>:<account>` as cdk-nag prints it inside a finding id."""
    region = "<AWS::Region>" if cdk.Token.is_unresolved(stack.region) else stack.region
    account = "<AWS::AccountId>" if cdk.Token.is_unresolved(stack.account) else stack.account
    return f"arn:<AWS::Partition>:{service}:{region}:{account}"


class CloudHsmCluster(Construct):
    """The tier B CloudHSM cluster (hsm2m.medium, FIPS mode) in the isolated subnets.

    A new cluster is an `AWS::CloudHSM::Cluster`. With `restore_backup_id` the cluster is
    restored from that backup by the custom resource `Custom::CloudHsmCluster` (served by
    `provisioner`), because the CloudFormation resource has no SourceBackupId. The restored
    cluster comes up with the users and key material of the backup (no init needed), takes
    its mode from the backup (the handler refuses a backup that is not FIPS), changes only
    its backup retention in place and refuses any other change while it exists. Either way
    the attributes below are the same, so the rest of the stack does not care which it is.
    Keep `tier_b_restore_backup_id` set for as long as the restored cluster lives: clearing
    it would create a new, empty cluster (docs/use-case-2.md#restore).

    CloudHSM creates the cluster security group itself (attribute `SecurityGroup`). Its
    default rules allow 2223-2225 only between members of that group (the HSMs and the
    ENIs KMS creates for the key store); we add 2223-2225 from the client security group
    (the admin host) only, not from the VPC CIDR, so nothing else in the VPC reaches the HSMs.

    Attributes:
        resource: the CfnCluster, or the CustomResource of a restored cluster.
        cluster: the CfnCluster of a new cluster; None for a restored one.
        cluster_id: the cluster id (cluster-...).
        cluster_arn: the cluster ARN.
        restored_from_backup: the source backup id of a restored cluster, else "".
        security_group_id: the security group CloudHSM created for the cluster.
        client_security_group: for clients of the HSMs (admin host): no inbound rules,
            egress 2223-2225 to the cluster security group and HTTPS to the VPC endpoints.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: IsolatedNetwork,
        backup_retention_days: int,
        restore_backup_id: str,
        workshop_mode: bool,
        provisioner: HsmProvisioner | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        subnets = network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        if restore_backup_id:
            if provisioner is None:
                raise ValueError("restoring a cluster from a backup needs the HsmProvisioner that serves it")
            self._restore(
                provisioner=provisioner, subnet_ids=subnets.subnet_ids, backup_id=restore_backup_id,
                backup_retention_days=backup_retention_days, workshop_mode=workshop_mode, vpc_id=network.vpc.vpc_id,
            )  # fmt: skip
        else:
            self._create(subnet_ids=subnets.subnet_ids, backup_retention_days=backup_retention_days,
                         workshop_mode=workshop_mode)  # fmt: skip

        # Clients of the HSMs (the admin host): no inbound rules; out only to the cluster's HSM ports and HTTPS.
        self.client_security_group = ec2.SecurityGroup(
            self,
            "ClientSecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=False,
            description="CloudHSM clients: no inbound; 2223-2225 to the cluster, HTTPS to endpoints and S3",
        )
        # HSM ports only from the clients' security group, not from the VPC CIDR: a Lambda or any other
        # ENI in the VPC cannot reach the HSMs. KMS needs no rule here: it reaches the HSMs through the
        # cluster security group's own rules (2223-2225 with the group itself as source and destination,
        # set by CloudHSM at creation, which KMS requires unchanged: CloudHsmClusterInvalidConfigurationException,
        # https://docs.aws.amazon.com/kms/latest/APIReference/API_ConnectCustomKeyStore.html; "Connect an AWS
        # CloudHSM key store", https://docs.aws.amazon.com/kms/latest/developerguide/connect-keystore.html).
        # The provisioner and monitor Lambdas use the CloudHSM and KMS APIs (HTTPS), never these ports.
        ec2.CfnSecurityGroupIngress(
            self,
            "HsmPortsFromClients",
            group_id=self.security_group_id,
            ip_protocol="tcp",
            from_port=2223,
            to_port=2225,
            source_security_group_id=self.client_security_group.security_group_id,
            description="CloudHSM client ports 2223-2225 from the HSM client security group only",
        )
        self.client_security_group.add_egress_rule(
            ec2.Peer.security_group_id(self.security_group_id), HSM_PORTS, "CloudHSM client to the cluster's HSMs"
        )
        # HTTPS to the interface endpoints (VPC CIDR) and to S3 through the gateway endpoint
        # (S3 addresses are public; the VPC has no route to the internet, only the endpoint).
        self.client_security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to endpoints/S3")

    def _create(self, *, subnet_ids: Sequence[str], backup_retention_days: int, workshop_mode: bool) -> None:
        cluster = cloudhsm.CfnCluster(
            self,
            "Cluster",
            hsm_type=HSM_TYPE,
            mode=CLUSTER_MODE,
            network_type="IPV4",
            subnet_ids=list(subnet_ids),
            backup_retention_policy=cloudhsm.CfnCluster.BackupRetentionPolicyProperty(
                type="DAYS", value=str(backup_retention_days)
            ),
        )
        cluster.apply_removal_policy(removal_policy(workshop_mode=workshop_mode))
        acknowledge(
            cluster,
            "CloudFormation-Validate::F3006",
            "Stale region data in the CDK's built-in validation: AWS::CloudHSM::Cluster exists in eu-north-1 "
            "(cfn-lint 1.58 schemas list it; checked by the tier B tests).",
        )
        self.resource: cdk.CfnResource | cdk.CustomResource = cluster
        self.cluster = cluster
        self.cluster_id = cluster.attr_cluster_id
        self.cluster_arn = cluster.attr_arn
        self.security_group_id = cluster.attr_security_group
        self.restored_from_backup = ""

    def _restore(
        self,
        *,
        provisioner: HsmProvisioner,
        subnet_ids: Sequence[str],
        backup_id: str,
        backup_retention_days: int,
        workshop_mode: bool,
        vpc_id: str,
    ) -> None:
        provisioner.grant_cluster_restore(backup_id=backup_id, vpc_id=vpc_id)
        restored = cdk.CustomResource(
            self,
            "Restored",
            service_token=provisioner.provider.service_token,
            resource_type=names.RESOURCE_CLOUDHSM_CLUSTER,
            properties={
                "SourceBackupId": backup_id,
                "HsmType": HSM_TYPE,
                "SubnetIds": list(subnet_ids),
                "BackupRetentionDays": str(backup_retention_days),
                "Mode": CLUSTER_MODE,  # checked against the backup; a restored cluster takes the backup's mode
                "WorkshopMode": str(workshop_mode).lower(),
            },
            # The cluster holds the key material of the key store: retained unless workshop mode
            # (then the handler deletes it only once the HSMs resource has deleted every HSM).
            removal_policy=removal_policy(workshop_mode=workshop_mode),
        )
        stack = cdk.Stack.of(self)
        self.resource = restored
        self.cluster = None
        self.cluster_id = restored.get_att_string("ClusterId")
        self.cluster_arn = f"arn:{stack.partition}:cloudhsm:{stack.region}:{stack.account}:cluster/{self.cluster_id}"
        self.security_group_id = restored.get_att_string("SecurityGroup")
        self.restored_from_backup = backup_id


class HsmProvisioner(Construct):
    """One Provider (on_event + is_complete) for the tier B custom resource types (restored cluster, HSMs,
    key store, key).

    Both handlers are HardenedFunctions (in the VPC, own managed-policy role, DLQ,
    encrypted logs). The framework's own functions and waiter state machine get an
    encrypted log group, encrypted environment, and ALL-level state machine logging.

    Attributes:
        on_event / is_complete: the HardenedFunctions.
        provider: the custom resources Provider (`service_token`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: IsolatedNetwork,
        log_encryption: LogEncryption,
        workshop_mode: bool,
        handler: str = PROVISIONER_HANDLER,
        service_name: str = PROVISIONER_SERVICE,
        label: str = "Tier B provisioner",
        purpose: str = "cluster restore, HSM, key store and HSM-backed key",
        wildcard_reason: str = PROVISIONER_WILDCARD_REASON,
    ) -> None:
        """`handler` ... `wildcard_reason` let another tier's provisioner (tier C: lambdas.xks_provisioner) reuse
        the construct; the defaults are tier B's."""
        super().__init__(scope, construct_id)
        stack_name = cdk.Stack.of(self).stack_name
        common: dict[str, Any] = {
            "service_name": service_name,
            "environment": {},
            "network": network,
            "log_encryption": log_encryption,
            "reserved_concurrency": 2,
            "workshop_mode": workshop_mode,
            # Longer than the longest wait inside one invocation (common.MAX_WAIT_IN_INVOCATION_SECONDS);
            # waits longer than that belong to is_complete (tests/infrastructure: test_provisioner_timeouts).
            "timeout": cdk.Duration.seconds(PROVISIONER_FUNCTION_TIMEOUT_SECONDS),
            # CreateHsm and DeleteHsm (called by tier B's code) need ec2:CreateNetworkInterface and
            # DeleteNetworkInterface on the caller (Service Authorization Reference, CloudHSM, dependent
            # actions), so that provisioner's code keeps the network-interface permissions that the other
            # functions' code (tier C's provisioner included) is denied
            # (function.deny_network_interfaces_to_function_code).
            "code_needs_network_interfaces": handler == PROVISIONER_HANDLER,
        }
        self.on_event = HardenedFunction(
            self,
            "OnEvent",
            handler=f"{handler}.on_event",
            description=f"{label}: starts {purpose} operations",
            function_name=f"{stack_name}-provisioner-on-event",
            **common,
        )
        self.is_complete = HardenedFunction(
            self,
            "IsComplete",
            handler=f"{handler}.is_complete",
            description=f"{label}: reports whether {purpose} operations finished",
            function_name=f"{stack_name}-provisioner-is-complete",
            **common,
        )
        # The provisioning permissions live in one managed policy of their own, attached to
        # both handler roles, so that its wildcard findings are acknowledged separately from
        # the network-interface wildcard HardenedFunction already acknowledges on its policy.
        self.policy = iam.ManagedPolicy(
            self,
            "Permissions",
            description=f"{label}: {purpose}",
            roles=[self.on_event.role.role, self.is_complete.role.role],
        )
        for function in (self.on_event, self.is_complete):
            function.function.node.add_dependency(self.policy)
        # The roles' provisioning rights hold only inside the two functions: a new function given one
        # of these roles (iam:PassRole), or the roles' credentials used anywhere else, get none of them
        # (lambda:SourceFunctionArn, usable in identity policies only). The ARNs come from the explicit
        # function names, so the policy does not depend on the functions (which depend on it).
        self.policy.add_statements(
            deny_outside_functions(
                PROVISIONER_BOUND_ACTIONS, ["*"], sid=SID_PROVISIONER_ONLY_FROM_ITS_CODE,
                function_arns=[f.source_function_arn for f in (self.on_event, self.is_complete)],
            )
        )  # fmt: skip
        self.acknowledge_wildcard("Resource::*", wildcard_reason)

        self.framework_key = supporting_key(
            self,
            "FrameworkKey",
            description=f"Encrypts the environment of the custom resource framework functions ({label})",
            workshop_mode=workshop_mode,
        )
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=self.on_event.function,
            is_complete_handler=self.is_complete.function,
            # An HSM takes up to 20 minutes, a key store connect up to 20 minutes; HSMs of one request are
            # created at once (in parallel). A custom resource operation times out after at most 3600 s
            # (ServiceTimeout "must be an integer from 1 to 3600", AWS::CloudFormation::CustomResource:
            # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-cloudformation-customresource.html),
            # so the waiter may not wait longer than that.
            query_interval=cdk.Duration.seconds(30),
            total_timeout=cdk.Duration.seconds(PROVIDER_TOTAL_TIMEOUT_SECONDS),
            log_group=log_encryption.log_group(self, "FrameworkLogs"),
            provider_function_env_encryption=self.framework_key,
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=log_encryption.log_group(self, "WaiterLogs"),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,
            ),
        )
        self._acknowledge_framework(label)

    def allow(
        self,
        actions: Sequence[str],
        resources: Sequence[str],
        *,
        sid: str,
        conditions: Mapping[str, Any] | None = None,
    ) -> None:
        """Grant both handlers the same statement (is_complete re-reads what on_event started)."""
        self.policy.add_statements(
            iam.PolicyStatement(
                sid=sid, actions=list(actions), resources=list(resources), conditions=dict(conditions or {})
            )
        )

    def grant_hsms(self, *, cluster: CloudHsmCluster, vpc_id: str) -> None:
        """What `Custom::CloudHsmHsms` needs: CreateHsm/DeleteHsm and the EC2 actions they depend on.

        Per the Service Authorization Reference, CreateHsm also needs ec2:CreateNetworkInterface,
        DeleteNetworkInterface, Describe{NetworkInterfaces,SecurityGroups,Subnets},
        CreateSecurityGroup, Authorize/RevokeSecurityGroup{Ingress,Egress} on the caller;
        DeleteHsm needs ec2:DeleteNetworkInterface. The network-interface actions are already
        granted by HardenedFunction (Lambda's own VPC access).
        """
        stack = cdk.Stack.of(self)
        ec2_arn = f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}"
        if cluster.restored_from_backup:
            # The restored cluster's ARN comes from a custom resource this Provider serves: naming it
            # here would make the policy wait for the cluster, which waits for the policy (a cycle).
            self.allow(
                ["cloudhsm:CreateHsm", "cloudhsm:DeleteHsm"],
                [f"arn:{stack.partition}:cloudhsm:{stack.region}:{stack.account}:cluster/*"],
                sid="HsmsOfThisCluster",
                conditions={
                    "StringEquals": {f"aws:ResourceTag/{names.TAG_RESTORED_FROM_BACKUP}": cluster.restored_from_backup}
                },
            )
        else:
            self.allow(["cloudhsm:CreateHsm", "cloudhsm:DeleteHsm"], [cluster.cluster_arn], sid="HsmsOfThisCluster")
        self.allow(["cloudhsm:DescribeClusters"], ["*"], sid="DescribeClusters")
        self.allow(
            ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets"],
            ["*"],
            sid="Ec2DescribeForCreateHsm",
        )
        self.allow(
            [
                "ec2:CreateSecurityGroup",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupEgress",
            ],
            [f"{ec2_arn}:security-group/*", f"{ec2_arn}:vpc/{vpc_id}"],
            sid="Ec2SecurityGroupForCreateHsm",
        )
        self.acknowledge_wildcard(
            f"Resource::{finding_arn(stack, 'ec2')}:security-group/*",
            "CreateHsm creates and edits the HSM's security group on the caller's behalf; its id is not known "
            "before creation. Confined to security groups of this account and Region.",
        )

    def grant_cluster_restore(self, *, backup_id: str, vpc_id: str) -> None:
        """What `Custom::CloudHsmCluster` needs: CreateCluster from one backup, and Modify/Delete.

        Per the Service Authorization Reference, CreateCluster authorizes on the source backup
        and also needs cloudhsm:TagResource, ec2:CreateSecurityGroup,
        Authorize{Ingress,Egress}/RevokeSecurityGroupEgress, Describe{SecurityGroups,Subnets,Vpcs}
        and iam:CreateServiceLinkedRole (AWSServiceRoleForCloudHSM, on the account's first
        cluster); DeleteCluster also needs ec2:DeleteSecurityGroup and DescribeSecurityGroups.
        ModifyCluster and DeleteCluster are limited to clusters tagged as restored from this
        backup (the handler tags the cluster when it creates it).
        """
        stack = cdk.Stack.of(self)
        arn = f"arn:{stack.partition}:cloudhsm:{stack.region}:{stack.account}"
        ec2_arn = f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}"
        self.allow(["cloudhsm:CreateCluster"], [f"{arn}:backup/{backup_id}"], sid="RestoreFromTheConfiguredBackup")
        self.allow(["cloudhsm:DescribeBackups"], ["*"], sid="DescribeBackups")
        self.allow(
            ["cloudhsm:TagResource"],
            [f"{arn}:cluster/*", f"{arn}:backup/{backup_id}"],
            sid="TagTheRestoredCluster",
            conditions={
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": [names.TAG_PROJECT, names.TAG_TIER, names.TAG_RESTORED_FROM_BACKUP]
                }
            },
        )
        self.allow(
            ["cloudhsm:ModifyCluster", "cloudhsm:DeleteCluster"],
            [f"{arn}:cluster/*"],
            sid="ManageTheRestoredCluster",
            conditions={"StringEquals": {f"aws:ResourceTag/{names.TAG_RESTORED_FROM_BACKUP}": backup_id}},
        )
        self.allow(
            ["ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"],
            ["*"],
            sid="Ec2DescribeForCreateCluster",
        )
        self.allow(
            [
                "ec2:CreateSecurityGroup",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupEgress",
            ],
            [f"{ec2_arn}:security-group/*", f"{ec2_arn}:vpc/{vpc_id}"],
            sid="Ec2SecurityGroupForCreateCluster",
        )
        self.allow(
            ["ec2:DeleteSecurityGroup"],
            [f"{ec2_arn}:security-group/*"],
            sid="Ec2SecurityGroupForDeleteCluster",
            conditions={"ArnEquals": {"ec2:Vpc": f"{ec2_arn}:vpc/{vpc_id}"}},
        )
        self.allow(
            ["iam:CreateServiceLinkedRole"],
            [
                f"arn:{stack.partition}:iam::{stack.account}:role/aws-service-role/cloudhsm.amazonaws.com/"
                "AWSServiceRoleForCloudHSM"
            ],
            sid="CloudHsmServiceLinkedRole",
            conditions={"StringEquals": {"iam:AWSServiceName": "cloudhsm.amazonaws.com"}},
        )
        self.acknowledge_wildcard(
            f"Resource::{finding_arn(stack, 'cloudhsm')}:cluster/*",
            "The restored cluster's id exists only after CreateCluster; ModifyCluster/DeleteCluster are limited by "
            "condition to clusters tagged as restored from the configured backup, tagging to our three tag keys.",
        )

    def acknowledge_wildcard(self, finding: str, reason: str) -> None:
        """Acknowledge one IAM5 wildcard finding on the provisioning policy."""
        acknowledge(self.policy.node.default_child, f"AwsSolutions::AwsSolutions-IAM5[{finding}]", reason)

    def _acknowledge_framework(self, label: str) -> None:
        """Findings on the Provider framework's generated functions, roles and state machine."""
        framework = self.provider.node
        out_of_vpc = (
            "Provider framework function: it only invokes our in-VPC handlers and Step Functions "
            "through AWS APIs and holds no data; the isolated VPC has no Lambda or Step Functions endpoint."
        )
        stack = cdk.Stack.of(self)
        handlers = [self.on_event.function.node.default_child, self.is_complete.function.node.default_child]
        framework_functions = [
            child
            for child in framework.find_all()
            if isinstance(child, cdk.CfnResource)
            and child.cfn_resource_type == "AWS::Lambda::Function"
            and any(part in child.node.path for part in ("framework-isComplete", "framework-onTimeout"))
        ]
        for child in framework.find_all():
            resource = child if isinstance(child, cdk.CfnResource) else None
            if resource is None:
                continue
            kind = resource.cfn_resource_type
            if kind == "AWS::Lambda::Function":
                acknowledge(resource, "NIST.800.53.R5::NIST.800.53.R5-LambdaInsideVPC", out_of_vpc)
                acknowledge(
                    resource,
                    "NIST.800.53.R5::NIST.800.53.R5-LambdaConcurrency",
                    f"Provider framework function: invoked only by CloudFormation for the few {label} custom "
                    "resources of this stack; the CDK framework does not expose reserved concurrency.",
                )
                acknowledge(
                    resource,
                    "NIST.800.53.R5::NIST.800.53.R5-LambdaDLQ",
                    "Provider framework function: invoked synchronously by CloudFormation or the waiter state "
                    "machine, which report failures back to CloudFormation; there are no async events to lose.",
                )
            elif kind == "AWS::IAM::Role":
                acknowledge(
                    resource,
                    "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                    "Provider framework role created by the CDK: the AWS managed basic execution policy only "
                    "allows writing its own logs; the framework does not accept a managed-policy role here.",
                )
            elif kind == "AWS::IAM::Policy":
                acknowledge(
                    resource,
                    "NIST.800.53.R5::NIST.800.53.R5-IAMNoInlinePolicy",
                    "Inline policy the CDK Provider framework writes for its own role: invoke our two "
                    "handlers and drive its waiter state machine, nothing else.",
                )
                # lambda:InvokeFunction on `<function ARN>:*` covers the function's versions and aliases.
                waiter = "waiter-state-machine" in resource.node.path
                if waiter:
                    acknowledge(
                        resource,
                        "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
                        "Step Functions log delivery (logs:CreateLogDelivery, PutResourcePolicy, ...) supports no "
                        "resource-level permissions; the CDK writes exactly these for the waiter's log group.",
                    )
                for function in framework_functions if waiter else handlers:
                    acknowledge(
                        resource,
                        f"AwsSolutions::AwsSolutions-IAM5[Resource::<{stack.get_logical_id(function)}.Arn>:*]",
                        "The framework invokes exactly this one function; the trailing wildcard only admits "
                        "its versions and aliases (qualified ARNs).",
                    )
            elif kind == "AWS::StepFunctions::StateMachine":
                acknowledge(
                    resource,
                    "AwsSolutions::AwsSolutions-SF2",
                    "Provider framework waiter state machine: it only polls is_complete every 30 s; X-Ray "
                    "tracing adds no insight and the framework does not expose it. Logging is ALL-level.",
                )


class CloudHsmHsms(Construct):
    """The HSMs of the cluster (custom resource `Custom::CloudHsmHsms`), spread across zones.

    Attributes:
        resource: the CustomResource; `hsm_ids` (comma-separated) and `hsm_count` from its Data.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        provisioner: HsmProvisioner,
        cluster: CloudHsmCluster,
        availability_zones: Sequence[str],
        hsm_count: int,
        workshop_mode: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.resource = cdk.CustomResource(
            self,
            "Resource",
            service_token=provisioner.provider.service_token,
            resource_type=names.RESOURCE_CLOUDHSM_HSMS,
            properties={
                "ClusterId": cluster.cluster_id,
                "AvailabilityZones": list(availability_zones),
                "HsmCount": str(hsm_count),
            },
            # HSMs hold the key material KMS reaches: retained (and billed) unless workshop mode.
            removal_policy=removal_policy(workshop_mode=workshop_mode),
        )
        # CloudFormation deletes the HSMs before the cluster (the GetAtt implies it; said explicitly
        # because a workshop teardown of a restored cluster depends on it: DeleteCluster needs no HSMs).
        self.resource.node.add_dependency(cluster.resource)
        self.hsm_ids = self.resource.get_att_string("HsmIds")
        self.hsm_count = self.resource.get_att_string("HsmCount")
