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
    assert [c["status"] for c in result["checks"]] == ["skipped", "ok", "skipped"]
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
