"""Retention is gallring (Arkivlagen 1990:782 10 §): nothing expires unless a decision is configured.

The project app is synthesized with the compliance gates, so "synthesis passes" also means the
pack (rule 9) and the NIST/AwsSolutions packs accept what the configuration produces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kommunmoln import names
from kommunmoln.compliance.checks import _expiry
from kommunmoln.config import ConfigError, load_config
from tests.conftest import Synthesized, synthesize

DECISION = "KS 2026/123 p 45"


def _buckets_and_log_groups(synthesized: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{stack}/{logical_id}", resource)
        for stack, template in synthesized.templates.items()
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] in ("AWS::S3::Bucket", "AWS::Logs::LogGroup")
    ]


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Properties", {}).get("Tags", [])}


def test_default_app_expires_nothing(synthesized: Synthesized) -> None:
    # GIVEN the app from cdk.json, which names no gallring decision
    resources = _buckets_and_log_groups(synthesized)
    assert len(resources) >= 6
    # THEN no bucket expires objects or versions and no log group has a retention period
    assert [(where, _expiry(r)) for where, r in resources if _expiry(r)] == []
    assert all(names.TAG_GALLRING_DECISION not in _tags(r) for _, r in resources)


def test_gallring_decision_expires_and_tags_every_bucket_and_log_group(tmp_path: Path) -> None:
    # GIVEN a configured gallring decision WHEN the app is synthesized (the gates pass)
    synthesized = synthesize(tmp_path, {"gallring_decision": DECISION, "log_retention_days": 1827})
    resources = _buckets_and_log_groups(synthesized)
    # THEN the configured periods apply, and every bucket and log group names the decision
    assert {where: _tags(r).get(names.TAG_GALLRING_DECISION) for where, r in resources} == {
        where: DECISION for where, _ in resources
    }
    groups = [r for _, r in resources if r["Type"] == "AWS::Logs::LogGroup"]
    assert groups and {g["Properties"]["RetentionInDays"] for g in groups} == {1827}
    assert any("noncurrent versions" in _expiry(r) for _, r in resources if r["Type"] == "AWS::S3::Bucket")


@pytest.mark.parametrize("value", ["x", "KS\n2026", "Beslut § 45", "a" * 129])
def test_gallring_decision_is_validated_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match="gallring_decision"):
        load_config({"gallring_decision": value})


def test_expiry_days_only_under_a_decision() -> None:
    assert load_config({}).expiry_days(365) is None
    assert load_config({"gallring_decision": DECISION}).expiry_days(365) == 365
