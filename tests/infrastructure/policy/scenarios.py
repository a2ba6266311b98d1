"""Scenario rows: one request, who makes it, and the decision AWS must reach.

Shared by the tier A and tier B matrices. A row names its category so that the closing
count by category is printed by `python -m tests.infrastructure.policy.scenarios`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ADMIN_POLICY = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix."""

    name: str
    category: str  # "attack" rows must end in a deny, "legitimate" rows in ALLOW
    who: str  # a principal name the matrix maps to an ARN and identity policies
    action: str
    target: str  # "bucket" | "object" | a literal ARN
    expected: str
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.category}:{self.name}"
