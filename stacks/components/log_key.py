"""A customer-managed KMS key for a stack's CloudWatch log groups, and explicit log groups for every function.

Lambda writes to `/aws/lambda/<function name>`, a log group CloudWatch creates on the first
invocation ("By default, CloudWatch automatically creates a log group named /aws/lambda/<function
name> for your function when it's first invoked", Lambda developer guide, "Configuring CloudWatch
log groups"), which no template controls: no KMS key, no retention, and left behind by `make
destroy`. CDK's own handlers (custom-resource provider functions such as the default security
group restriction and the workshop auto-delete handler, the bucket-notifications handler,
AwsCustomResource) are created that way. `ExplicitFunctionLogGroups` gives each of them a log
group of this stack's `LogEncryption` (its key, the configured retention, the removal policy)
through the function's `LoggingConfig.LogGroup` ("The name of the Amazon CloudWatch log group the
function sends logs to", AWS::Lambda::Function LoggingConfig). Their roles already may write
there: CDK's providers use AWSLambdaBasicExecutionRole (CreateLogStream, PutLogEvents on any group).
"""

from __future__ import annotations

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from kommunmoln.config import LOG_RETENTION_DAYS
from stacks.compliance import acknowledge
from stacks.components.lifecycle import removal_policy, supporting_key


class LogEncryption(Construct):
    """KMS key (rotated yearly) that CloudWatch Logs in this stack's region may use.

    Attributes:
        key: the KMS key.
    """

    def __init__(self, scope: Construct, construct_id: str, *, workshop_mode: bool, retention_days: int | None) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self._retention_days = retention_days
        self._workshop_mode = workshop_mode
        self.key = supporting_key(
            self,
            "Key",
            description=f"Encrypts CloudWatch log groups of {stack.stack_name}",
            workshop_mode=workshop_mode,
        )
        # CloudWatch Logs may use the key only for log groups of this account and region.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"
                    }
                },
            )
        )
        # Every function of the stack without a log group of its own gets one of this key (see the module docstring).
        cdk.Aspects.of(stack).add(ExplicitFunctionLogGroups(self), priority=cdk.AspectPriority.MUTATING)

    def log_group(self, scope: Construct, construct_id: str, *, name: str | None = None) -> logs.LogGroup:
        """A log group encrypted with this key, with the configured retention (None: kept until a gallring decision)."""
        group = logs.LogGroup(
            scope,
            construct_id,
            log_group_name=name,
            encryption_key=self.key,
            retention=retention(self._retention_days) if self._retention_days else logs.RetentionDays.INFINITE,
            removal_policy=removal_policy(workshop_mode=self._workshop_mode),
        )
        if not self._retention_days:
            acknowledge(
                group.node.default_child,
                "NIST.800.53.R5::NIST.800.53.R5-CloudWatchLogGroupRetentionPeriod",
                "Log events are public records under the Archives Act (arkivlagen 1990:782): they are kept until the "
                "municipality's gallring decision is configured (gallring_decision), then log_retention_days applies.",
            )
        return group


@jsii.implements(cdk.IAspect)
class ExplicitFunctionLogGroups:
    """An aspect: each AWS::Lambda::Function of the stack without `LoggingConfig.LogGroup` gets an explicit one.

    Functions written with `lambda_.Function(log_group=...)` (ours, the Provider framework's) keep
    theirs. The new group is `<function id>Logs` next to the function, so a second visit finds it.
    """

    def __init__(self, log_encryption: LogEncryption) -> None:
        self._log_encryption = log_encryption
        self._stack = cdk.Stack.of(log_encryption)

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, cdk.CfnResource) or node.cfn_resource_type != "AWS::Lambda::Function":
            return
        if cdk.Stack.of(node) is not self._stack or _has_log_group(node):
            return
        scope, group_id = node.node.scope, f"{node.node.id}Logs"
        group = scope.node.try_find_child(group_id) or self._log_encryption.log_group(scope, group_id)
        node.add_property_override("LoggingConfig.LogGroup", group.log_group_name)


def _has_log_group(function: cdk.CfnResource) -> bool:
    """Whether an L1 function already names its log group (a plain CfnResource, as CDK's providers are, does not)."""
    if not isinstance(function, lambda_.CfnFunction):
        return False
    config = cdk.Stack.of(function).resolve(function.logging_config)
    return bool(config) and bool(config.get("logGroup") or config.get("LogGroup"))


# CloudWatch Logs retention periods (kommunmoln.config.LOG_RETENTION_DAYS) by enum name.
_RETENTION_NAMES = dict(
    zip(
        LOG_RETENTION_DAYS,
        (
            "ONE_DAY",
            "THREE_DAYS",
            "FIVE_DAYS",
            "ONE_WEEK",
            "TWO_WEEKS",
            "ONE_MONTH",
            "TWO_MONTHS",
            "THREE_MONTHS",
            "FOUR_MONTHS",
            "FIVE_MONTHS",
            "SIX_MONTHS",
            "ONE_YEAR",
            "THIRTEEN_MONTHS",
            "EIGHTEEN_MONTHS",
            "TWO_YEARS",
            "THREE_YEARS",
            "FIVE_YEARS",
            "SIX_YEARS",
            "SEVEN_YEARS",
            "EIGHT_YEARS",
            "NINE_YEARS",
            "TEN_YEARS",
        ),
        strict=True,
    )
)


def retention(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a validated number of days."""
    return logs.RetentionDays[_RETENTION_NAMES[days]]
