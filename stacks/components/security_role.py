"""The security role: the only principal that reads quarantined objects or deletes versions."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.components.tier_a_guards import CONFIGURATION_ACTIONS


class SecurityRole(Construct):
    """An IAM role that people of this account assume with MFA, to handle quarantined objects.

    The bucket policies name it as the one exception to the quarantine and deletion guards.
    Its permissions live in one managed policy, every statement written out with `allow()`.

    Attributes:
        role: the role.
        policy: the managed policy holding its permissions.
    """

    def __init__(self, scope: Construct, construct_id: str, *, description: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.AccountRootPrincipal().with_conditions({"Bool": {"aws:MultiFactorAuthPresent": "true"}}),
            description=description,
            max_session_duration=None,
        )
        self.policy = iam.ManagedPolicy(self, "Policy", description=f"Permissions of: {description}")
        self.role.add_managed_policy(self.policy)

    @property
    def role_arn(self) -> str:
        return self.role.role_arn

    @classmethod
    def break_glass(cls, scope: Construct, construct_id: str, *, description: str, bucket_arn: str) -> SecurityRole:
        """The break-glass role: people with MFA change the bucket's guarded configuration.

        The bucket policies deny those changes to everyone else except CloudFormation's
        deployment role. Its permissions are exactly the guarded configuration actions.
        """
        role = cls(scope, construct_id, description=description)
        role.allow(CONFIGURATION_ACTIONS, [bucket_arn], sid="ChangeGuardedBucketConfiguration")
        return role

    def allow(self, actions: Sequence[str], resources: Sequence[str], *, sid: str | None = None) -> None:
        """Add one Allow statement to the managed policy."""
        self.policy.add_statements(iam.PolicyStatement(sid=sid, actions=list(actions), resources=list(resources)))
