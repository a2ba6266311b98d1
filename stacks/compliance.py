"""Compliance gates that run on every synthesis, and the one way to acknowledge a finding."""

from __future__ import annotations

import aws_cdk as cdk
import cdk_nag
from constructs import IConstruct

from kommunmoln.compliance import SwedishPublicSectorChecks
from kommunmoln.config import AppConfig


def add_compliance_packs(app: cdk.App, config: AppConfig | None = None) -> None:
    """Attach the rule packs as policy-validation plugins: any unacknowledged finding fails synthesis.

    The OSL pack takes the allowed regions and workshop mode from `config` (defaults without).
    """
    osl = (
        SwedishPublicSectorChecks(allowed_regions=config.allowed_regions, workshop_mode=config.workshop_mode)
        if config is not None
        else SwedishPublicSectorChecks()
    )
    cdk.Validations.of(app).add_plugins(cdk_nag.AwsSolutionsChecks(), cdk_nag.NIST80053R5Checks(), osl)


def acknowledge(resource: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one finding on the one resource it concerns.

    `resource` should be the CloudFormation resource itself (an L1, or `node.default_child`
    of an L2) so that the acknowledgment cannot hide findings on siblings or children.
    The reason must say why the finding does not apply here, specifically.
    """
    if len(reason) < 40:
        raise ValueError(f"acknowledgment of {rule_id} needs a specific reason, not {reason!r}")
    cdk.Validations.of(resource).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))


def log_stream_wildcard_id(log_group_resource: IConstruct) -> str:
    """The AwsSolutions-IAM5 finding id for `<log group ARN>:log-stream:*` in a policy."""
    logical_id = cdk.Stack.of(log_group_resource).get_logical_id(log_group_resource.node.default_child)
    return f"AwsSolutions::AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:log-stream:*]"


LOG_STREAM_REASON = (
    "Log streams are created at run time with names not known in advance; the wildcard is "
    "confined to the streams of this one log group."
)
