"""The tier A validator's Lambda entry point: event in, tags/alarms/metrics/logs out."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from kommunmoln import names
from lambdas.tier_a_validator import handler
from tests.handlers.tier_a.conftest import EVENTS, PDF, REGION, FakeAws, context_for, encrypt, event_for, settings_env

KEY = "socialtjansten/2026/beslut åtgärd: 12.pdf.esdk"


@dataclass
class LambdaContext:
    function_name: str = "tier-a-validator"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-north-1:123456789012:function:tier-a-validator"
    aws_request_id: str = "5f1e7c7e-0000-4000-8000-000000000001"


@pytest.fixture
def cold_start(fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAws]:
    """A fresh execution environment whose environment and clients point at moto."""
    for variable, value in settings_env(fake_aws.topic_arn).items():
        monkeypatch.setenv(variable, value)
    handler.reset()
    handler._clients.update({"s3": fake_aws.s3, "sns": fake_aws.sns})
    yield fake_aws
    handler.reset()


def _emf(stdout: str) -> list[dict]:
    """The embedded-metric-format documents among the printed lines."""
    documents = []
    for line in stdout.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


def test_valid_object_event_is_validated_with_a_metric(cold_start: FakeAws, capsys: pytest.CaptureFixture) -> None:
    # GIVEN an S3 event for a valid object version (key URL-encoded as S3 sends it)
    version = cold_start.put(KEY, encrypt(b"beslut", context=context_for(KEY)))
    # WHEN the handler runs
    result = handler.lambda_handler(event_for(KEY, version), LambdaContext())
    # THEN the version is validated and one ObjectsValidated metric is emitted for the service
    assert [o["status"] for o in result["outcomes"]] == ["validated"]
    assert cold_start.tags(KEY, version)[names.OBJECT_TAG_STATUS] == "validated"
    metrics = _emf(capsys.readouterr().out)
    assert len(metrics) == 1
    assert metrics[0][names.METRIC_OBJECTS_VALIDATED] == [1.0]
    declared = metrics[0]["_aws"]["CloudWatchMetrics"][0]
    # The stack's alarm selects exactly this namespace and dimension.
    assert (declared["Namespace"], declared["Dimensions"]) == (
        names.METRIC_NAMESPACE,
        [[names.METRIC_DIMENSION_SERVICE]],
    )


def test_plaintext_event_is_quarantined_with_metric_and_alarm_and_logs_hold_no_content(
    cold_start: FakeAws, capsys: pytest.CaptureFixture
) -> None:
    # GIVEN a plaintext upload
    version = cold_start.put("plain.pdf", PDF)
    # WHEN the handler runs
    result = handler.lambda_handler(event_for("plain.pdf", version), LambdaContext())
    # THEN quarantined: metric, one alarm, and neither logs nor alarm contain the content
    assert result["outcomes"][0]["status"] == "quarantined"
    output = capsys.readouterr()
    metrics = _emf(output.out)
    assert names.METRIC_OBJECTS_QUARANTINED in metrics[0]
    assert len(cold_start.alarms()) == 1
    assert "Personnummer" not in output.out + output.err


def test_duplicate_delivery_emits_no_second_metric(cold_start: FakeAws, capsys: pytest.CaptureFixture) -> None:
    version = cold_start.put("plain2.pdf", PDF)
    event = event_for("plain2.pdf", version)
    handler.lambda_handler(event, LambdaContext())
    capsys.readouterr()
    # WHEN the same event arrives again THEN it is reported as repeated, without metric or alarm
    result = handler.lambda_handler(event, LambdaContext())
    assert result["outcomes"][0]["repeated"] is True
    assert all(names.METRIC_OBJECTS_QUARANTINED not in m for m in _emf(capsys.readouterr().out))
    assert len(cold_start.alarms()) == 1


def test_object_removed_event_is_ignored(cold_start: FakeAws) -> None:
    event = json.loads((EVENTS / "tier_a_object_removed.json").read_text())
    assert handler.lambda_handler(event, LambdaContext()) == {"outcomes": []}


def test_access_denied_propagates_so_the_event_is_retried_then_dead_lettered(cold_start: FakeAws) -> None:
    # GIVEN S3 denying the validator (e.g. a broken bucket policy)
    s3 = boto3.client("s3", region_name=REGION)
    stubber = Stubber(s3)
    stubber.add_client_error("get_object_tagging", service_error_code="AccessDenied", http_status_code=403)
    handler._clients["s3"] = s3
    # WHEN the handler runs THEN it raises (Lambda retries, then the DLQ receives the event)
    with stubber, pytest.raises(ClientError, match="AccessDenied"):
        handler.lambda_handler(event_for(KEY, "v1"), LambdaContext())


def test_malformed_event_raises(cold_start: FakeAws) -> None:
    with pytest.raises(ValueError, match="not an S3 event notification"):
        handler.lambda_handler({"hello": "world"}, LambdaContext())


def test_missing_setting_fails_the_invocation_naming_the_variable(
    cold_start: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(names.ENV_ALARM_TOPIC_ARN)
    handler.reset()
    with pytest.raises(ValueError, match=names.ENV_ALARM_TOPIC_ARN):
        handler.lambda_handler(event_for(KEY, "v1"), LambdaContext())


def test_settings_are_read_once_per_cold_start(cold_start: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    first = handler.settings()
    monkeypatch.setenv(names.ENV_HEADER_READ_BYTES, "2048")
    assert handler.settings() is first
    handler.reset()
    assert handler.settings().header_read_bytes == 2048


def test_import_creates_no_aws_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN boto3 unable to create clients
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a boto3 client was created at import time")

    monkeypatch.setattr(boto3, "client", refuse)
    # WHEN the module is imported afresh THEN nothing was created
    reloaded = importlib.reload(handler)
    assert reloaded._clients == {}
