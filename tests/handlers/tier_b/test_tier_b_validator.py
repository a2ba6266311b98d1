"""Tier B object validator with moto S3, KMS, SNS and SQS (the Lambda handler end to end)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from kommunmoln import names
from lambdas.tier_b_validator import handler, logic

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

REGION = "eu-north-1"
BUCKET = "kommunmoln-exempel-tier-b-test"
ALIAS = "alias/kommunmoln-exempel-tier-b"


@dataclass
class World:
    s3: Any
    sqs: Any
    key_id: str
    key_arn: str
    wrong_key_arn: str
    topic_arn: str
    queue_url: str

    def put(self, key: str, **extra: Any) -> str:
        return self.s3.put_object(Bucket=BUCKET, Key=key, Body=b"%PDF-1.7", **extra)["VersionId"]

    def alarms(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        for m in messages:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return [json.loads(json.loads(m["Body"])["Message"]) for m in messages]

    def tags(self, key: str, version: str) -> dict[str, str]:
        tag_set = self.s3.get_object_tagging(Bucket=BUCKET, Key=key, VersionId=version)["TagSet"]
        return {t["Key"]: t["Value"] for t in tag_set}


def sse_kms(key: str, bucket_key: bool = True) -> dict[str, Any]:
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key, "BucketKeyEnabled": bucket_key}


def s3_event(key: str, version: str | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key.replace(" ", "+")}
    if version:
        obj["versionId"] = version
    return {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": BUCKET}, "object": obj}}]}


@pytest.fixture(scope="module")
def _aws() -> Iterator[World]:
    """One moto world per module (creating clients is the slow part); each test gets its own bucket."""
    with mock_aws():
        s3, kms, sns, sqs = (boto3.client(s, region_name=REGION) for s in ("s3", "kms", "sns", "sqs"))
        key = kms.create_key(Description="tier B stand-in")["KeyMetadata"]
        kms.create_alias(AliasName=ALIAS, TargetKeyId=key["KeyId"])
        wrong = kms.create_key(Description="other")["KeyMetadata"]
        topic = sns.create_topic(Name="alarms")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        handler.reset_cold_start_state()
        yield World(s3, sqs, key["KeyId"], key["Arn"], wrong["Arn"], topic, queue)
        handler.reset_cold_start_state()


@pytest.fixture
def world(_aws: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for version in _aws.s3.list_object_versions(Bucket=BUCKET).get("Versions", []) if _bucket_exists(_aws) else []:
        _aws.s3.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])
    if not _bucket_exists(_aws):
        _aws.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        _aws.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    _aws.alarms()
    monkeypatch.setenv(names.ENV_EXPECTED_KMS_KEY_ARN, _aws.key_arn)
    monkeypatch.setenv(names.ENV_ALARM_TOPIC_ARN, _aws.topic_arn)
    _new_cold_start()
    yield _aws
    _new_cold_start()


def _bucket_exists(world: World) -> bool:
    return any(b["Name"] == BUCKET for b in world.s3.list_buckets().get("Buckets", []))


def _new_cold_start() -> None:
    """Settings and the resolved key as after a cold start (the clients stay: creating them is slow)."""
    handler._settings.cache_clear()
    handler._matcher.cache_clear()


def run(event: dict[str, Any]) -> list[dict[str, Any]]:
    return handler.lambda_handler(event, None)["results"]


@pytest.mark.parametrize("form", ["key-id", "key-arn", "alias", "alias-arn"])
def test_object_with_the_tier_b_key_in_any_form_is_validated(world: World, form: str) -> None:
    # GIVEN an upload naming the right key as id, ARN, alias or alias ARN
    alias_arn = world.key_arn.split(":key/")[0] + ":" + ALIAS
    key = {"key-id": world.key_id, "key-arn": world.key_arn, "alias": ALIAS, "alias-arn": alias_arn}[form]
    version = world.put("beslut.pdf", **sse_kms(key))
    # WHEN validated / THEN tagged validated, no alarm
    if form.startswith("alias"):
        # aliases are only known to the validator when it is configured with the alias (resolved once)
        os.environ[names.ENV_EXPECTED_KMS_KEY_ARN] = ALIAS  # monkeypatch restores it
        _new_cold_start()
    [result] = run(s3_event("beslut.pdf", version))
    assert result["status"] == names.STATUS_VALIDATED
    assert world.tags("beslut.pdf", version) == {names.OBJECT_TAG_STATUS: names.STATUS_VALIDATED}
    assert world.alarms() == []


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("wrong", logic.REASON_WRONG_KEY),
        ({"ServerSideEncryption": "AES256"}, logic.REASON_NOT_SSE_KMS),
        ("no-bucket-key", logic.REASON_NO_BUCKET_KEY),
    ],
)
def test_object_breaking_the_rule_is_quarantined_tagged_and_alarmed(world: World, extra: Any, reason: str) -> None:
    # GIVEN an upload with the wrong key, SSE-S3, or without a bucket key, and a tag of its own
    if extra == "wrong":
        extra = sse_kms(world.wrong_key_arn)
    elif extra == "no-bucket-key":
        extra = sse_kms(world.key_arn, bucket_key=False)
    version = world.put("fel fil.pdf", Tagging="diarienummer=KS-2026-17", **extra)
    # WHEN validated
    [result] = run(s3_event("fel fil.pdf", version))
    # THEN quarantined with the reason, other tags kept, one alarm naming the object and the remedy
    assert (result["status"], result["reason"]) == (names.STATUS_QUARANTINED, reason)
    assert world.tags("fel fil.pdf", version) == {
        "diarienummer": "KS-2026-17",
        names.OBJECT_TAG_STATUS: names.STATUS_QUARANTINED,
        names.OBJECT_TAG_REASON: reason,
    }
    [alarm] = world.alarms()
    assert (alarm["key"], alarm["versionId"], alarm["reason"]) == ("fel fil.pdf", version, reason)
    assert "re-upload" in alarm["remedy"]
    # AND nothing was deleted
    assert len(world.s3.list_object_versions(Bucket=BUCKET)["Versions"]) == 1


def test_duplicate_delivery_changes_nothing_and_alarms_once(world: World) -> None:
    version = world.put("dubbel.pdf", **sse_kms(world.wrong_key_arn))
    first = run(s3_event("dubbel.pdf", version))
    second = run(s3_event("dubbel.pdf", version))
    assert first[0]["duplicate"] is False and second[0]["duplicate"] is True
    assert len(world.alarms()) == 1


def test_only_the_named_version_is_judged(world: World) -> None:
    # GIVEN a good version followed by a bad one under the same key
    good = world.put("samma.pdf", **sse_kms(world.key_arn))
    bad = world.put("samma.pdf", **sse_kms(world.wrong_key_arn))
    run(s3_event("samma.pdf", good))
    run(s3_event("samma.pdf", bad))
    assert world.tags("samma.pdf", good)[names.OBJECT_TAG_STATUS] == names.STATUS_VALIDATED
    assert world.tags("samma.pdf", bad)[names.OBJECT_TAG_STATUS] == names.STATUS_QUARANTINED


def test_missing_object_is_reported_not_raised(world: World) -> None:
    [result] = run(s3_event("finns-inte.pdf", "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"))
    assert result["status"] == logic.OUTCOME_MISSING
    assert world.alarms() == []


def test_eventbridge_object_created_events_are_understood(world: World) -> None:
    version = world.put("eb.pdf", **sse_kms(world.key_arn))
    event = {"detail": {"bucket": {"name": BUCKET}, "object": {"key": "eb.pdf", "version-id": version}}}
    assert run(event)[0]["status"] == names.STATUS_VALIDATED


def test_settings_are_validated_once_per_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(names.ENV_EXPECTED_KMS_KEY_ARN, raising=False)
    monkeypatch.setenv(names.ENV_ALARM_TOPIC_ARN, "arn:aws:sns:eu-north-1:111122223333:t")
    _new_cold_start()
    with pytest.raises(RuntimeError, match=names.ENV_EXPECTED_KMS_KEY_ARN):
        handler.lambda_handler({"Records": []}, None)
    _new_cold_start()


def test_key_matcher_accepts_only_the_configured_key() -> None:
    arn = "arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    by_arn = logic.KeyMatcher.build(arn)
    assert by_arn.matches(arn) and by_arn.matches("1234abcd-12ab-34cd-56ef-1234567890ab")
    assert not by_arn.matches(arn.replace("111122223333", "999999999999"))
    assert not by_arn.matches("alias/anything") and not by_arn.matches(None)
    by_id = logic.KeyMatcher.build("1234abcd-12ab-34cd-56ef-1234567890ab")
    assert by_id.matches(arn)
    with pytest.raises(logic.ValidatorConfigError, match="needs a DescribeKey"):
        logic.KeyMatcher.build("alias/x")
    with pytest.raises(logic.ValidatorConfigError, match="not a KMS key id"):
        logic.KeyMatcher.build("arn:aws:s3:::bucket")
