"""A hardened Python Lambda function, packaged without Docker.

The asset is assembled at synthesis by copying `lambdas/` and `kommunmoln/` into the
asset directory (a local bundling step, no Docker, no network), so a handler imports
`lambdas.<fn>.logic` and `kommunmoln.names` the same way locally and in Lambda.
Powertools comes from the AWS-published layer, resolved by CloudFormation at deploy time
from the public SSM parameter of the pinned version: synthesis makes no AWS call.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct, IConstruct

from kommunmoln import names
from stacks.compliance import LOG_STREAM_REASON, acknowledge, log_stream_wildcard_id
from stacks.components.lifecycle import removal_policy, supporting_key
from stacks.components.log_key import LogEncryption
from stacks.components.network import IsolatedNetwork
from stacks.components.service_role import ServiceRole

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
_ASSET_PACKAGES = ("lambdas", "kommunmoln")
# Client-only modules that Lambda never imports (they need the ESDK or PKCS#11).
_ASSET_EXCLUDE = ("__pycache__", "*.pyc", "*.orig", "tier_a", "tier_c", "compliance", "local_aws.py")
# kommunmoln/tier_b is client-side too, except the key-policy comparison the key store monitor imports.
_ASSET_TIER_B_KEEP = ("__init__.py", "key_policy.py")


def _asset_ignore(directory: str, entries: list[str]) -> set[str]:
    """shutil.copytree's ignore: _ASSET_EXCLUDE everywhere, and all of kommunmoln/tier_b but _ASSET_TIER_B_KEEP."""
    ignored = set(shutil.ignore_patterns(*_ASSET_EXCLUDE)(directory, entries))
    if Path(directory).name == "tier_b" and Path(directory).parent.name == "kommunmoln":
        ignored |= {entry for entry in entries if entry not in _ASSET_TIER_B_KEEP}
    return ignored


RUNTIME = lambda_.Runtime.PYTHON_3_14
POWERTOOLS_VERSION = "3.37.0"  # keep equal to aws-lambda-powertools in requirements.txt
POWERTOOLS_PARAMETER = f"/aws/service/powertools/python/x86_64/python3.14/{POWERTOOLS_VERSION}"


# What Lambda needs to attach a function to the VPC (AWSLambdaVPCAccessExecutionRole's EC2 actions).
NETWORK_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
SID_NO_NETWORK_INTERFACES_FROM_CODE = "DenyNetworkInterfaceActionsToFunctionCode"


def deny_network_interfaces_to_function_code() -> iam.PolicyStatement:
    """The network-interface permissions serve Lambda only: function code cannot use them.

    Lambda puts `lambda:SourceFunctionArn` into the credentials context of every request made from
    the execution environment (the function code), but not into the EC2 calls that create the
    function's network interfaces outside it ("Using source function ARN to control function access
    behavior", https://docs.aws.amazon.com/lambda/latest/dg/permissions-source-function-arn.html).
    Denying these actions whenever the key is present leaves Lambda's own calls allowed.
    """
    return iam.PolicyStatement(
        sid=SID_NO_NETWORK_INTERFACES_FROM_CODE,
        effect=iam.Effect.DENY,
        actions=list(NETWORK_INTERFACE_ACTIONS),
        resources=["*"],
        conditions={"Null": {"lambda:SourceFunctionArn": "false"}},
    )


def deny_outside_functions(
    actions: Sequence[str], resources: Sequence[str], *, sid: str, function_arns: Sequence[str]
) -> iam.PolicyStatement:
    """An identity-policy Deny of `actions` unless `lambda:SourceFunctionArn` is one of `function_arns`."""
    return iam.PolicyStatement(
        sid=sid,
        effect=iam.Effect.DENY,
        actions=list(actions),
        resources=list(resources),
        conditions={"ArnNotEquals": {"lambda:SourceFunctionArn": list(function_arns)}},
    )


@jsii.implements(cdk.IAspect)
class WithoutReservedConcurrency:
    """Config `lambda_reserved_concurrency=false`: no function of the app reserves concurrency.

    Lambda keeps at least 100 of an account's concurrency unreserved ("Lambda reserves 100 units of
    concurrency for functions that don't have reserved concurrency"; Configuring reserved concurrency,
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html), so in an account whose
    quota is 10 (new accounts) any reservation fails the deployment. The finding this causes is
    acknowledged on each function, naming the setting.
    """

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, lambda_.CfnFunction) and node.reserved_concurrent_executions is not None:
            node.reserved_concurrent_executions = None
            acknowledge(
                node,
                "NIST.800.53.R5::NIST.800.53.R5-LambdaConcurrency",
                "Reserved concurrency switched off by lambda_reserved_concurrency=false: the account's Lambda "
                "concurrency quota leaves no room to reserve (Lambda keeps 100 unreserved); the function's "
                "event sources retry, and the validators' alarms still fire.",
            )


@jsii.implements(cdk.ILocalBundling)
class _CopyPackages:
    """Local bundling: copy the project's pure-Python packages into the asset directory."""

    def try_bundle(self, output_dir: str, *, image: cdk.DockerImage, **_: object) -> bool:
        for package in _ASSET_PACKAGES:
            shutil.copytree(
                REPO_ROOT / package,
                Path(output_dir) / package,
                ignore=_asset_ignore,
                dirs_exist_ok=True,
            )
        return True


def project_code() -> lambda_.Code:
    """The Lambda asset holding `lambdas/` and `kommunmoln/` (hashed on its output)."""
    return lambda_.Code.from_asset(
        str(REPO_ROOT),
        # Only the two packages are fingerprinted; the copy itself happens in _CopyPackages.
        exclude=["*", *[f"!{p}" for p in _ASSET_PACKAGES], *[f"!{p}/**" for p in _ASSET_PACKAGES], "**/__pycache__"],
        asset_hash_type=cdk.AssetHashType.OUTPUT,
        bundling=cdk.BundlingOptions(
            image=cdk.DockerImage.from_registry("unused-local-bundling"), local=_CopyPackages()
        ),
    )


class HardenedFunction(Construct):
    """A Lambda function with the controls every project function needs.

    Inside the isolated VPC (AWS APIs through the endpoints only), its own role with a
    managed policy, a dead-letter queue encrypted with a customer-managed key, reserved
    concurrency, an encrypted log group with retention, structured JSON logs (Powertools).

    Attributes:
        function: the Lambda function.
        role: the ServiceRole; grant with `role.allow(actions, resources)`.
        dead_letter_queue: receives events the function could not process.
        queue_key: the KMS key encrypting the dead-letter queue.
        log_group: the function's log group.
        security_group: egress HTTPS only (the VPC has no route to the internet).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: str,
        description: str,
        service_name: str,
        environment: Mapping[str, str],
        network: IsolatedNetwork,
        log_encryption: LogEncryption,
        reserved_concurrency: int,
        workshop_mode: bool,
        timeout: cdk.Duration | None = None,
        memory_size: int = 256,
        code_needs_network_interfaces: bool = False,
        function_name: str | None = None,
    ) -> None:
        """`function_name` (explicit) gives the function an ARN known before it exists, so its own role's policy
        can name it (`deny_outside_function`) without a dependency cycle."""
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.function_name = function_name
        self.source_function_arn = (
            f"arn:{stack.partition}:lambda:{stack.region}:{stack.account}:function:{function_name}"
            if function_name
            else None
        )
        self.role = ServiceRole(self, "Role", service="lambda.amazonaws.com", description=description)
        # Network interfaces in the VPC and log delivery: what every function needs.
        self.role.allow(list(NETWORK_INTERFACE_ACTIONS), ["*"], sid="LambdaVpcNetworkInterfaces")
        if not code_needs_network_interfaces:
            self.role.policy.add_statements(deny_network_interfaces_to_function_code())
        self.log_group = log_encryption.log_group(self, "Logs")
        self.role.allow(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:log-stream:*"],
            sid="WriteOwnLogs",
        )
        policy_resource = self.role.policy.node.default_child
        acknowledge(policy_resource, log_stream_wildcard_id(self.log_group), LOG_STREAM_REASON)
        acknowledge(
            policy_resource,
            "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
            "Lambda creates and deletes the function's VPC network interfaces itself; the EC2 network-interface "
            "actions do not support resource-level permissions (the same statement as AWSLambdaVPCAccessExecutionRole).",
        )

        self.queue_key = supporting_key(
            self,
            "QueueKey",
            description=f"Encrypts the dead-letter queue of: {description}",
            workshop_mode=workshop_mode,
        )
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.queue_key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
            removal_policy=removal_policy(workshop_mode=workshop_mode),
        )
        # Lambda's service sends failed async events to the queue with the function's role.
        self.role.allow(["sqs:SendMessage"], [self.dead_letter_queue.queue_arn], sid="SendToDeadLetterQueue")
        self.role.allow(["kms:GenerateDataKey", "kms:Decrypt"], [self.queue_key.key_arn], sid="EncryptDeadLetters")

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=False,
            description=f"{service_name}: HTTPS to VPC endpoints only (no route to the internet exists)",
        )
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to VPC endpoints")

        powertools = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", ssm.StringParameter.value_for_string_parameter(self, POWERTOOLS_PARAMETER)
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=handler,
            function_name=function_name,
            code=project_code(),
            description=description,
            role=self.role.role,
            layers=[powertools],
            timeout=timeout or cdk.Duration.seconds(60),
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrency,
            dead_letter_queue=self.dead_letter_queue,
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            security_groups=[self.security_group],
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment={
                names.ENV_SERVICE_NAME: service_name,
                names.ENV_METRIC_NAMESPACE: names.METRIC_NAMESPACE,
                **environment,
            },
        )
        # The dead-letter queue and its key are granted above on the managed policy.
        self.function.node.add_dependency(self.role.policy)

    def deny_outside_function(self, actions: Sequence[str], resources: Sequence[str], *, sid: str) -> None:
        """Deny `actions` to this role's credentials unless the request comes from this function's code.

        Lambda puts `lambda:SourceFunctionArn` into the credentials context of requests made from the
        execution environment; the key can be used in identity policies (not in resource-based ones)
        ("Using source function ARN to control function access behavior",
        https://docs.aws.amazon.com/lambda/latest/dg/permissions-source-function-arn.html). The role's
        credentials used anywhere else (another function given the role, a copied session) carry another
        value or none: ArnNotEquals on an absent key is true, so they are denied (fail closed).
        """
        if self.source_function_arn is None:
            raise ValueError("deny_outside_function needs an explicit function_name")
        self.role.policy.add_statements(
            deny_outside_functions(actions, resources, sid=sid, function_arns=[self.source_function_arn])
        )

    def allow_invoke_from(self, service: str, *, source_arn: str, source_account: str) -> None:
        """Let an AWS service (e.g. s3.amazonaws.com) invoke the function for one source."""
        self.function.add_permission(
            f"InvokeBy{service.split('.')[0].title()}",
            principal=iam.ServicePrincipal(service),
            source_arn=source_arn,
            source_account=source_account,
        )
