"""docs/RELIABILITY.md states the scenario counts the matrices actually hold (counted, not guessed)."""

from __future__ import annotations

import re
from collections import defaultdict

from kommunmoln.config import REPO_ROOT
from tests.infrastructure.policy.scenarios import counts

LABELS = {"tier A bucket": "test_tier_a_matrix", "tier B bucket": "test_tier_b_bucket_matrix",
          "tier B key": "test_tier_b_key_matrix"}  # fmt: skip
ROW = re.compile(r"^\| (tier [AB] (?:bucket|key)) \| `([a-z-]+)`[^|]* \| (\d+) \|", re.MULTILINE)


def test_the_reliability_page_states_the_matrix_counts() -> None:
    # GIVEN the policy matrix table of docs/RELIABILITY.md
    text = (REPO_ROOT / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")
    stated: dict[str, dict[str, int]] = defaultdict(dict)
    for label, category, number in ROW.findall(text):
        stated[LABELS[label]][category] = int(number)
    # WHEN the matrices' rows are counted THEN every category and count agrees, and so does the total
    actual = counts()
    assert dict(stated) == actual
    total = sum(sum(c.values()) for c in actual.values())
    assert f"**{total} scenarios in {len(actual)} matrices" in text
