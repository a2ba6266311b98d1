"""Tier B key store monitor against botocore's Stubber (real KMS, CloudHSMv2 and SNS models)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from kommunmoln import names
from kommunmoln.tier_b import recorded
from lambdas.cloudhsm_provisioner.logic import CONNECTION_ERROR_REMEDIES
from lambdas.keystore_monitor import handler, logic

TOPIC = f"arn:aws:sns:{recorded.REGION}:{recorded.ACCOUNT}:kommunmoln-alarms"
FILTER = {"Filters": {"clusterIds": [recorded.CLUSTER_ID]}}
STORE = {"CustomKeyStoreId": recorded.KEY_STORE_ID}
FULL = logic.MonitorSettings(recorded.KEY_STORE_ID, recorded.CLUSTER_ID, recorded.KEY_ARN, 2)
TWO_ZONES = [recorded.hsm("hsm-aaaaaaaaaaa", recorded.ZONES[0]), recorded.hsm("hsm-bbbbbbbbbbb", recorded.ZONES[1])]


@functools.cache
def _clients() -> tuple[Any, Any, Any]:
    session = boto3.Session(region_name=recorded.REGION)
    return tuple(
        session.client(s, endpoint_url=f"https://{s}.{recorded.REGION}.amazonaws.com")
        for s in ("kms", "cloudhsmv2", "sns")
    )


@pytest.fixture
def stubs() -> Iterator[tuple[Stubber, Stubber, Stubber]]:
    kms, hsm, sns = (Stubber(c) for c in _clients())
    with kms, hsm, sns:
        yield kms, hsm, sns
        for s in (kms, hsm, sns):
            s.assert_no_pending_responses()


class Topic:
    """Records what would go to SNS (the publish call itself is plain boto3)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish(self, **params: Any) -> dict[str, str]:
        self.messages.append(params)
        return {"MessageId": "m-1"}


def run(settings: logic.MonitorSettings, topic: Topic | None = None) -> tuple[logic.HealthReport, dict[str, Any]]:
    kms, hsm, _ = _clients()
    return handler.run(handler.Settings(checks=settings, topic_arn=TOPIC), kms=kms, cloudhsm=hsm, sns=topic or Topic())


def test_healthy_key_store_emits_ones_and_sends_no_alarm(stubs: tuple[Stubber, Stubber, Stubber]) -> None:
    kms, hsm, _ = stubs
    kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTED"), STORE)
    hsm.add_response("describe_clusters", recorded.cluster("ACTIVE", TWO_ZONES), FILTER)
    kms.add_response("describe_key", recorded.key_metadata(), {"KeyId": recorded.KEY_ARN})
    topic = Topic()
    report, result = run(FULL, topic)
    assert result["healthy"] is True and topic.messages == []
    assert report.metrics() == {
        names.METRIC_KEYSTORE_CONNECTED: 1, names.METRIC_ACTIVE_HSMS: 2, names.METRIC_MIN_HSMS_PER_AZ: 1,
        names.METRIC_KEY_USABLE: 1,
    }  # fmt: skip


def test_phase_one_skips_the_missing_checks_and_says_so(stubs: tuple[Stubber, Stubber, Stubber]) -> None:
    _, hsm, _ = stubs
    hsm.add_response("describe_clusters", recorded.cluster("ACTIVE", TWO_ZONES), FILTER)
    report, result = run(logic.MonitorSettings("", recorded.CLUSTER_ID, "", 2))
    assert [c["status"] for c in result["checks"]] == ["skipped", "ok", "skipped", "skipped"]
    assert "phase 1" in result["checks"][0]["detail"]
    assert names.METRIC_KEYSTORE_CONNECTED not in report.metrics()


@pytest.mark.parametrize(
    "code", ["INVALID_CREDENTIALS", "USER_LOCKED_OUT", "NETWORK_ERRORS", "INSUFFICIENT_CLOUDHSM_HSMS"]
)
def test_failed_key_store_alarms_with_its_remedy(stubs: tuple[Stubber, Stubber, Stubber], code: str) -> None:
    kms, hsm, _ = stubs
    kms.add_response("describe_custom_key_stores", recorded.key_store("FAILED", code=code), STORE)
    hsm.add_response("describe_clusters", recorded.cluster("ACTIVE", TWO_ZONES), FILTER)
    kms.add_response("describe_key", recorded.key_metadata("Unavailable"), {"KeyId": recorded.KEY_ARN})
    topic = Topic()
    report, result = run(FULL, topic)
    assert result["alarmed"] is True
    assert report.metrics()[names.METRIC_KEYSTORE_CONNECTED] == 0
    [sent] = topic.messages
    assert sent["TopicArn"] == TOPIC
    message = json.loads(sent["Message"])
    assert message["problems"][0]["remedy"] == CONNECTION_ERROR_REMEDIES[code]
    assert code in message["problems"][0]["detail"]


def test_hsms_in_one_zone_only_is_a_problem(stubs: tuple[Stubber, Stubber, Stubber]) -> None:
    _, hsm, _ = stubs
    one_zone = [
        recorded.hsm("hsm-aaaaaaaaaaa", recorded.ZONES[0]),
        recorded.hsm("hsm-bbbbbbbbbbb", recorded.ZONES[1], "DEGRADED"),
    ]
    hsm.add_response("describe_clusters", recorded.cluster("ACTIVE", one_zone), FILTER)
    report, _ = run(logic.MonitorSettings("", recorded.CLUSTER_ID, "", 2))
    [problem] = report.problems
    assert "1 ACTIVE HSMs, fewer than the 2 required" in problem.detail
    assert report.metrics()[names.METRIC_MIN_HSMS_PER_AZ] == 0


def test_key_not_backed_by_the_hsm_is_a_problem(stubs: tuple[Stubber, Stubber, Stubber]) -> None:
    kms, _, _ = stubs
    kms.add_response("describe_key", recorded.key_metadata(origin="AWS_KMS"), {"KeyId": recorded.KEY_ARN})
    report, _ = run(logic.MonitorSettings("", "", recorded.KEY_ARN, 2))
    assert "not AWS_CLOUDHSM" in report.problems[0].detail
    assert report.metrics() == {names.METRIC_KEY_USABLE: 0}


def test_min_hsms_setting_is_validated() -> None:
    with pytest.raises(ValueError, match=names.ENV_MIN_HSMS):
        logic.MonitorSettings.from_env({names.ENV_MIN_HSMS: "zero"})
    assert logic.MonitorSettings.from_env({}).min_hsms == 2


# --- the key sits in another custom key store (mutation gap 4) ------------------------------------
# DescribeKey's KeyMetadata.CustomKeyStoreId names the key store that holds a key in a custom key
# store (KMS API Reference, DescribeKey / KeyMetadata). A literal other id, not derived from the config.
OTHER_STORE = "cks-99999999999999999"


def test_an_enabled_hsm_key_in_another_key_store_is_a_problem(stubs: tuple[Stubber, Stubber, Stubber]) -> None:
    # GIVEN the expected key ARN resolving to an Enabled, AWS_CLOUDHSM key, but in another custom key store
    kms, _, _ = stubs
    kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTED"), STORE)
    kms.add_response("describe_key", recorded.key_metadata(store_id=OTHER_STORE), {"KeyId": recorded.KEY_ARN})
    topic = Topic()
    # WHEN the monitor checks the key against the configured key store
    report, result = run(logic.MonitorSettings(recorded.KEY_STORE_ID, "", recorded.KEY_ARN, 2), topic)
    # THEN it is a problem naming both stores, the key counts as unusable, and the alarm goes out
    [problem] = report.problems
    assert OTHER_STORE in problem.detail and recorded.KEY_STORE_ID in problem.detail
    assert report.metrics()[names.METRIC_KEY_USABLE] == 0
    assert result["alarmed"] is True and len(topic.messages) == 1


@pytest.mark.parametrize("missing", [names.ENV_CUSTOM_KEY_STORE_ID, names.ENV_EXPECTED_KEY_POLICY])
def test_a_key_arn_without_its_key_store_or_policy_is_refused(missing: str) -> None:
    # GIVEN a deployed monitor's environment with the key ARN but one of the values to compare it with empty
    env = {names.ENV_EXPECTED_KMS_KEY_ARN: recorded.KEY_ARN, names.ENV_CUSTOM_KEY_STORE_ID: recorded.KEY_STORE_ID,
           names.ENV_EXPECTED_KEY_POLICY: json.dumps(TEMPLATE_POLICY), missing: ""}  # fmt: skip
    # WHEN the settings are read THEN they are refused (a key in another store or a rewritten policy would pass)
    with pytest.raises(ValueError, match=missing):
        logic.MonitorSettings.from_env(env)


# --- the live key policy against the template's (issue 11, item 9) --------------------------------
# GetKeyPolicy returns "a key policy document in JSON format" (KMS API Reference, GetKeyPolicy); the
# only policy name is "default". The comparison is on canonical JSON, so formatting is no drift.
TEMPLATE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "AccountReadsKeyMetadata", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{recorded.ACCOUNT}:root"},
         "Action": ["kms:DescribeKey", "kms:GetKeyPolicy"], "Resource": "*"},
        {"Sid": "UseOnlyThroughS3", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{recorded.ACCOUNT}:role/usage"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{recorded.REGION}.amazonaws.com"}}},
    ],
}  # fmt: skip
WITH_POLICY = logic.MonitorSettings(recorded.KEY_STORE_ID, "", recorded.KEY_ARN, 2, json.dumps(TEMPLATE_POLICY))
GET_POLICY = {"KeyId": recorded.KEY_ARN, "PolicyName": "default"}


def _live(policy: dict[str, Any], *, indent: int | None = None) -> dict[str, str]:
    return {"Policy": json.dumps(policy, indent=indent), "PolicyName": "default"}


def _drifted() -> dict[str, Any]:
    """An administrator's takeover: the account root gets kms:* (the AWS default key policy statement)."""
    return {**TEMPLATE_POLICY, "Statement": [*TEMPLATE_POLICY["Statement"], {
        "Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{recorded.ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}]}  # fmt: skip


def test_the_template_policy_reformatted_by_kms_is_no_drift(stubs: tuple[Stubber, Stubber, Stubber]) -> None:
    # GIVEN the live policy with the same meaning in another form: indented, statements in another order,
    # a one-element list where the template has a string
    kms, _, _ = stubs
    reordered = {**TEMPLATE_POLICY, "Statement": list(reversed(TEMPLATE_POLICY["Statement"]))}
    reordered["Statement"][1] = {**reordered["Statement"][1], "Resource": ["*"]}
    kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTED"), STORE)
    kms.add_response("describe_key", recorded.key_metadata(), {"KeyId": recorded.KEY_ARN})
    kms.add_response("get_key_policy", _live(reordered, indent=4), GET_POLICY)
    # WHEN the monitor compares it with the template's
    report, result = run(WITH_POLICY)
    # THEN the policy check is ok and no alarm goes out
    assert result["healthy"] is True
    assert report.metrics()[names.METRIC_KEY_POLICY_AS_TEMPLATE] == 1


@pytest.mark.parametrize(
    ("mutate", "said"),
    [
        (lambda p: _drifted(), "Sid Enable IAM User Permissions added"),
        (lambda p: {**p, "Statement": p["Statement"][:1]}, "Sid UseOnlyThroughS3 missing"),
        (
            lambda p: {**p, "Statement": [p["Statement"][0], {**p["Statement"][1], "Condition": {}}]},
            "Sid UseOnlyThroughS3 changed",
        ),
    ],
    ids=["admin-adds-kms-star", "statement-removed", "condition-dropped"],
)
def test_a_drifted_key_policy_alarms_with_the_statements_that_differ(
    stubs: tuple[Stubber, Stubber, Stubber], mutate: Any, said: str
) -> None:
    # GIVEN a live key policy that differs from the template's in meaning
    kms, _, _ = stubs
    kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTED"), STORE)
    kms.add_response("describe_key", recorded.key_metadata(), {"KeyId": recorded.KEY_ARN})
    kms.add_response("get_key_policy", _live(mutate(TEMPLATE_POLICY)), GET_POLICY)
    topic = Topic()
    # WHEN the monitor runs
    report, _result = run(WITH_POLICY, topic)
    # THEN the key-policy check is a problem naming the statement, its metric is 0, and the alarm goes out
    [problem] = report.problems
    assert problem.name == "key-policy" and said in problem.detail
    assert "put-key-policy" in problem.remedy
    assert report.metrics()[names.METRIC_KEY_POLICY_AS_TEMPLATE] == 0
    [sent] = topic.messages
    assert said in sent["Message"]


def test_a_live_policy_that_is_not_json_is_drift(stubs: tuple[Stubber, Stubber, Stubber]) -> None:
    # GIVEN GetKeyPolicy returning text that is no JSON document WHEN compared THEN it is a problem, not a crash
    kms, _, _ = stubs
    kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTED"), STORE)
    kms.add_response("describe_key", recorded.key_metadata(), {"KeyId": recorded.KEY_ARN})
    kms.add_response("get_key_policy", {"Policy": "[]", "PolicyName": "default"}, GET_POLICY)
    report, _ = run(WITH_POLICY)
    assert [c.name for c in report.problems] == ["key-policy"]
