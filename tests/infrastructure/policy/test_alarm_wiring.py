"""Issue 11 review defects 4 and 5: the configuration alarm's event list and the alarm topic's policy.

AWS facts encoded (looked up with the search tool):
- EventBridge publishes to an SNS topic under the topic's resource-based policy, and names the rule
  in `aws:SourceArn` (EventBridge User Guide, "Using resource-based policies for Amazon EventBridge",
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html).
- The CloudTrail event names of S3 bucket-configuration calls are the API operation names
  (S3 API Reference: PutBucketInventoryConfiguration, DeleteBucketInventoryConfiguration,
  DeleteBucketOwnershipControls, DeleteBucketIntelligentTieringConfiguration,
  PutBucketAnalyticsConfiguration, DeleteBucketAnalyticsConfiguration).
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Synthesized

EVENT_NAMES = {
    "PutBucketInventoryConfiguration", "DeleteBucketInventoryConfiguration", "DeleteBucketOwnershipControls",
    "DeleteBucketIntelligentTieringConfiguration", "PutBucketAnalyticsConfiguration",
    "DeleteBucketAnalyticsConfiguration",
}  # fmt: skip


def _statements(synth: Synthesized, suffix: str, resource_type: str, key: str) -> list[dict]:
    return [s for r in synth.resources(suffix, resource_type).values() for s in r["Properties"][key]["Statement"]]


@pytest.mark.parametrize("suffix", ["-tier-a", "-tier-b"])
def test_the_alarm_topic_lets_only_this_accounts_rules_publish(suffix: str, synthesized: Synthesized,
                                                               phase2: Synthesized) -> None:  # fmt: skip
    # GIVEN a stack whose configuration-change rule publishes to its alarm topic
    synth = synthesized if suffix == "-tier-a" else phase2
    rules = synth.resources(suffix, "AWS::Events::Rule")
    assert rules, "the stack has API-call alarm rules"
    # WHEN the topic policies' EventBridge statements are read
    events = [s for s in _statements(synth, suffix, "AWS::SNS::TopicPolicy", "PolicyDocument")
              if s.get("Principal") == {"Service": "events.amazonaws.com"}]  # fmt: skip
    # THEN there is exactly one, conditioned on this account and on a rule ARN of this account
    # (CDK's targets.SnsTopic would add a second, unconditioned one)
    assert len(events) == 1, events
    condition = events[0]["Condition"]
    assert "aws:SourceAccount" in condition["StringEquals"]
    assert ":rule/*" in json.dumps(condition["ArnLike"]["aws:SourceArn"])
    # AND every API-call alarm rule still targets the topic
    topics = set(synth.resources(suffix, "AWS::SNS::Topic"))
    api_rules = [r for r in rules.values() if "AWS API Call via CloudTrail" in json.dumps(r["Properties"])]
    assert api_rules
    for rule in api_rules:
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"].get("Ref") in topics


@pytest.mark.parametrize("suffix", ["-tier-a", "-tier-b"])
def test_the_configuration_alarm_covers_inventory_analytics_ownership_and_tiering(
    suffix: str, synthesized: Synthesized, phase2: Synthesized
) -> None:
    # GIVEN the configuration-change rule of the data bucket
    synth = synthesized if suffix == "-tier-a" else phase2
    (rule,) = [r for k, r in synth.resources(suffix, "AWS::Events::Rule").items() if "ConfigurationChange" in k]
    names = set(rule["Properties"]["EventPattern"]["detail"]["eventName"])
    # THEN the calls that switch inventory, analytics, ownership and tiering settings alarm too
    assert names >= EVENT_NAMES, EVENT_NAMES - names
