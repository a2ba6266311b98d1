"""A customer-managed KMS key for a stack's CloudWatch log groups."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

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
