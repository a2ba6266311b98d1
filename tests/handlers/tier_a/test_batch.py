"""The validator as an S3 Batch Operations target (LambdaInvoke, invocation schema 2.0).

The event fixture `tier_a_batch_invocation.json` follows the schema 2.0 example of
"Invoke AWS Lambda function" (Amazon S3 User Guide,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops-invoke-lambda.html): tasks
name `s3Bucket` (2.0; 1.0 sends `s3BucketArn`), the URL-encoded `s3Key` and `s3VersionId`.
The answer must echo `invocationSchemaVersion` and `invocationId`, give `treatMissingKeysAs`,
and one `results` entry per task with `taskId`, `resultCode` (Succeeded, TemporaryFailure,
PermanentFailure) and `resultString`.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from botocore.stub import Stubber

from kommunmoln import names
from lambdas.tier_a_validator import batch, handler
from tests.handlers.tier_a.conftest import BUCKET, EVENTS, PDF, REGION, FakeAws, context_for, encrypt
from tests.handlers.tier_a.test_handler import KEY, LambdaContext, cold_start  # noqa: F401 - fixture

FIXTURE = json.loads((EVENTS / "tier_a_batch_invocation.json").read_text())


def _event(*tasks: tuple[str, str | None]) -> dict[str, Any]:
    """The documented event with one task per (key, version id)."""
    event = copy.deepcopy(FIXTURE)
    template = event["tasks"][0]
    event["tasks"] = [
        {**template, "taskId": f"task-{i}", "s3Bucket": BUCKET, "s3Key": quote_plus(key, safe="/"), "s3VersionId": v}
        for i, (key, v) in enumerate(tasks)
    ]
    return event


def _codes(answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["taskId"], r["resultCode"], r["resultString"]) for r in answer["results"]]


def test_the_fixture_is_the_documented_schema_2_event() -> None:
    assert FIXTURE["invocationSchemaVersion"] == "2.0" and batch.is_batch_event(FIXTURE)
    assert set(FIXTURE["tasks"][0]) == {"taskId", "s3Bucket", "s3Key", "s3VersionId"}
    assert set(FIXTURE["job"]) == {"id", "userArguments"}


def test_each_decision_maps_to_its_result_code(cold_start: FakeAws) -> None:  # noqa: F811
    # GIVEN a valid message, a plaintext upload and a version id that does not exist
    valid = cold_start.put(KEY, encrypt(b"beslut", context=context_for(KEY)))
    plain = cold_start.put("plain-batch.pdf", PDF)
    event = _event((KEY, valid), ("plain-batch.pdf", plain), ("gone.pdf", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"))
    # WHEN the handler receives the batch invocation
    answer = handler.lambda_handler(event, LambdaContext())
    # THEN the answer has the documented envelope
    assert answer["invocationSchemaVersion"] == "2.0"
    assert answer["invocationId"] == FIXTURE["invocationId"]
    assert answer["treatMissingKeysAs"] == "PermanentFailure"
    # AND validated -> Succeeded, quarantined -> Succeeded naming its reason codes, missing -> PermanentFailure
    results = _codes(answer)
    assert results[0] == ("task-0", "Succeeded", "validated")
    assert results[1][:2] == ("task-1", "Succeeded") and results[1][2].startswith("quarantined: ")
    assert results[2][:2] == ("task-2", "PermanentFailure") and results[2][2].startswith("missing")
    # AND the objects were tagged as any S3 event would have them (the key was URL-decoded)
    assert cold_start.tags(KEY, valid)[names.OBJECT_TAG_STATUS] == "validated"
    assert cold_start.tags("plain-batch.pdf", plain)[names.OBJECT_TAG_STATUS] == "quarantined"
    # AND no content leaks into a result string
    assert "Personnummer" not in json.dumps(answer)
    # WHEN the job retries the same tasks THEN the decisions are reported again, marked as already checked
    again = _codes(handler.lambda_handler(event, LambdaContext()))
    assert again[0] == ("task-0", "Succeeded", "validated (already checked)")


def test_throttling_is_a_temporary_failure_and_access_denied_a_permanent_one(cold_start: FakeAws) -> None:  # noqa: F811
    # GIVEN S3 throttling the first task's tag read and denying the second's
    # (GetObjectTagging errors: SlowDown 503 is retryable, AccessDenied 403 is not;
    # https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html)
    s3 = boto3.client("s3", region_name=REGION)
    stubber = Stubber(s3)
    stubber.add_client_error("get_object_tagging", service_error_code="SlowDown", http_status_code=503)
    stubber.add_client_error("get_object_tagging", service_error_code="AccessDenied", http_status_code=403)
    handler._clients["s3"] = s3
    # WHEN the batch invocation arrives
    with stubber:
        answer = handler.lambda_handler(_event((KEY, "v1"), (KEY, "v2")), LambdaContext())
    # THEN the throttled task is retried by Batch Operations and the denied one fails for good; nothing raises
    assert _codes(answer) == [
        ("task-0", "TemporaryFailure", "not checked yet: SlowDown (retried)"),
        ("task-1", "PermanentFailure", "not checked: AccessDenied"),
    ]


def test_another_schema_version_fails_every_task(cold_start: FakeAws) -> None:  # noqa: F811
    # GIVEN a schema 1.0 event (bucket as an ARN), which this function does not read
    event = {
        "invocationSchemaVersion": "1.0",
        "invocationId": "abc",
        "job": {"id": "j"},
        "tasks": [{"taskId": "t1", "s3Key": "k", "s3VersionId": None, "s3BucketArn": f"arn:aws:s3:::{BUCKET}"}],
    }
    # WHEN it arrives THEN every task is a permanent failure (never a guessed pass)
    answer = handler.lambda_handler(event, LambdaContext())
    assert answer["invocationSchemaVersion"] == "1.0"
    assert _codes(answer) == [("t1", "PermanentFailure", "invocation schema 1.0 not supported")]


def test_a_malformed_task_fails_and_a_task_without_id_is_left_to_treat_missing_keys_as(
    cold_start: FakeAws,  # noqa: F811
) -> None:
    event = _event((KEY, None))
    event["tasks"].append({"taskId": "no-key", "s3Bucket": BUCKET})
    event["tasks"].append({"s3Bucket": BUCKET, "s3Key": "x"})
    event["tasks"][0]["s3Key"] = ""
    answer = handler.lambda_handler(event, LambdaContext())
    assert [(r["taskId"], r["resultCode"]) for r in answer["results"]] == [
        ("task-0", "PermanentFailure"),
        ("no-key", "PermanentFailure"),
    ]
    assert answer["treatMissingKeysAs"] == "PermanentFailure"


def test_a_security_role_status_is_reported_but_never_as_validated() -> None:
    outcome = batch.Outcome(BUCKET, "k", "v", "released", (), 0, repeated=True)
    result = batch.result_for("t", outcome)
    assert result.code == "Succeeded" and not result.text.startswith("validated")


@pytest.mark.parametrize("status", ["validated", "quarantined"])
def test_result_strings_are_bounded(status: str) -> None:
    outcome = batch.Outcome(BUCKET, "k", None, status, ("x" * 900,), 0, reason_codes=("x" * 900,))
    assert len(batch.result_for("t", outcome).as_dict()["resultString"]) <= batch.MAX_RESULT_STRING
