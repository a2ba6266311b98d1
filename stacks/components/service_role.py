"""An IAM role whose permissions live in one customer-managed policy, stated explicitly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import aws_iam as iam
from constructs import Construct


class ServiceRole(Construct):
    """A role for one AWS service principal with a managed policy instead of inline ones.

    CDK's `grant_*` helpers write inline policies (flagged by NIST 800-53 IAMNoInlinePolicy)
    and often grant more than needed. Here every permission is written out with `allow()`,
    so a reviewer sees exactly what the role can do. `role` ignores CDK's automatic policy
    updates, so nothing is added behind the reviewer's back.

    Attributes:
        role: the role as handed to functions and services (policy updates disabled).
        policy: the managed policy that holds every permission.
    """

    def __init__(self, scope: Construct, construct_id: str, *, service: str, description: str) -> None:
        super().__init__(scope, construct_id)
        self._role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal(service), description=description)
        self.policy = iam.ManagedPolicy(self, "Policy", description=f"Permissions of: {description}")
        self._role.add_managed_policy(self.policy)
        self.role: iam.IRole = self._role.without_policy_updates()

    @property
    def role_arn(self) -> str:
        return self._role.role_arn

    def allow(
        self,
        actions: Sequence[str],
        resources: Sequence[str],
        *,
        conditions: Mapping[str, Any] | None = None,
        sid: str | None = None,
    ) -> None:
        """Add one Allow statement to the managed policy."""
        self.policy.add_statements(
            iam.PolicyStatement(
                sid=sid, actions=list(actions), resources=list(resources), conditions=dict(conditions or {})
            )
        )
