"""Scenario rows: one request, who makes it, and the decision AWS must reach.

Shared by the tier A and tier B matrices. A row names its category so that the closing
count by category is printed by `python -m tests.infrastructure.policy.scenarios`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kommunmoln.policy_eval import ALLOW, Request, evaluate

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


def row(name: str, category: str, who: str, action: str, target: str, expected: str, **context: Any) -> Scenario:
    """A Scenario; `parts=[{...}, ...]` merges shared context fragments before the keyword ones."""
    merged: dict[str, Any] = {}
    for part in context.pop("parts", []):
        merged.update(part)
    merged.update(context)
    return Scenario(name, category, who, action, target, expected, merged)


Principals = Mapping[str, tuple[str, Sequence[Mapping[str, Any]]]]


def decide_s3(
    scenario: Scenario, *, principals: Principals, policy: Mapping[str, Any], resource: str,
    replacements: Mapping[str, str],
) -> str:  # fmt: skip
    """Evaluate one S3 row: the principal's identity policies and the bucket policy, placeholders replaced.

    Every request arrives over TLS 1.2 (the TLS-only statements are not what these rows test).
    """
    arn, identity = principals[scenario.who]
    context: dict[str, Any] = {"aws:SecureTransport": True, "s3:TlsVersion": "1.2"}
    context.update({k: replacements.get(v, v) if isinstance(v, str) else v for k, v in scenario.context.items()})
    request = Request(arn, scenario.action, resource, context)
    return evaluate(request, identity_policies=identity, resource_policy=policy)


def assert_rows_consistent(scenarios: Iterable[Scenario], categories: set[str]) -> None:
    """Attack rows never end in ALLOW, legitimate rows always do, and every named category has rows."""
    rows = list(scenarios)
    assert all(s.expected != ALLOW for s in rows if s.category != "legitimate")
    assert all(s.expected == ALLOW for s in rows if s.category == "legitimate")
    assert {s.category for s in rows} >= categories


MATRICES = (
    "tests.infrastructure.policy.test_tier_a_matrix",
    "tests.infrastructure.policy.test_tier_b_bucket_matrix",
    "tests.infrastructure.policy.test_tier_b_key_matrix",
)


def counts() -> dict[str, dict[str, int]]:
    """Rows per category, per matrix (counted from the SCENARIOS lists themselves)."""
    import importlib
    from collections import Counter

    return {
        name.rsplit(".", 1)[-1]: dict(
            sorted(Counter(s.category for s in importlib.import_module(name).SCENARIOS).items())
        )
        for name in MATRICES
    }


def main() -> None:
    """`python -m tests.infrastructure.policy.scenarios`: the scenario count by category (docs/RELIABILITY.md)."""
    total = 0
    for matrix, by_category in counts().items():
        rows = sum(by_category.values())
        total += rows
        print(f"{matrix}: {rows} rows")
        for category, number in by_category.items():
            print(f"  {category:<24} {number:>3}")
    print(f"total: {total} rows")


if __name__ == "__main__":
    main()
