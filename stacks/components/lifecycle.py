"""Deletion behaviour shared by every stateful construct."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from constructs import Construct


def removal_policy(*, workshop_mode: bool) -> cdk.RemovalPolicy:
    """Retain stateful resources unless the stack was deployed for a workshop.

    Information under the Secrecy Act must never disappear with a `cdk destroy`; a
    workshop, on the other hand, must be able to tear everything down in one command.
    RETAIN_ON_UPDATE_OR_DELETE is CloudFormation's `RetainExceptOnCreate`: "If the stack
    operation that created the resource is rolled back, CloudFormation deletes the resource.
    For all other stack operations, such as stack deletion, CloudFormation retains the
    resource" (DeletionPolicy attribute,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-attribute-deletionpolicy.html).
    So a failed first deployment leaves no named bucket to collide with on the retry and no
    billed cluster or HSM behind, while a deployed resource is never deleted by CloudFormation.
    """
    return cdk.RemovalPolicy.DESTROY if workshop_mode else cdk.RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE


def supporting_key(scope: Construct, construct_id: str, *, description: str, workshop_mode: bool) -> kms.Key:
    """A customer-managed KMS key for a supporting resource (logs, queues, topics, secrets, trails).

    The project's standard in one place: yearly automatic rotation, the longest pending
    window (30 days) so a mistaken deletion can be cancelled, retained unless workshop mode.
    """
    return kms.Key(
        scope,
        construct_id,
        description=description,
        enable_key_rotation=True,
        pending_window=cdk.Duration.days(30),
        removal_policy=removal_policy(workshop_mode=workshop_mode),
    )
