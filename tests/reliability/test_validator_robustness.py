"""Tier A validator robustness: duplicates, reordering, deletions, denied access, throttling.

Every S3 client handed to the validator is wrapped in `NoDeleteS3`, which fails the test
on any Delete* (or abort) call, whatever the path. The rules checked:
- a decision is made per object *version*, from that version's bytes only, whatever order
  and however often events arrive; a duplicate is reported as repeated, without a second
  read, tag or alarm;
- a version deleted before (or during) validation is reported 'missing': nothing tagged,
  no alarm, no exception;
- anything that prevents a decision (AccessDenied, SlowDown after the client's retries,
  SNS failure) raises, so that Lambda retries and then dead-letters the event, and no
  status tag is written on that path;
- the handler raises for a malformed event (dead-letter queue) and ignores foreign records.
A seeded Hypothesis campaign drives random sequences of uploads, deletions, duplicate and
out-of-order deliveries and injected errors against these invariants.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kommunmoln import names
from lambdas.tier_a_validator import handler
from lambdas.tier_a_validator.logic import (
    STATUS_MISSING,
    STATUS_QUARANTINED,
    STATUS_VALIDATED,
    Settings,
    validate_object,
)
from tests.reliability import esdk_samples as samples
from tests.reliability.fakes import DeleteAttempted, FakeS3, FakeSns, NoDeleteS3, client_error

CATEGORY = "validator_robustness"
BUCKET = "kommun-data"
TOPIC = "arn:aws:sns:eu-north-1:123456789012:kommunmoln-alarms"
SETTINGS = Settings(("kommunmoln",), names.REQUIRED_CONTEXT_KEYS, 65536, TOPIC)


@functools.cache
def good_body(key: str) -> bytes:
    return samples.encrypt(b"akt " + key.encode(), context={names.CONTEXT_BUCKET: BUCKET, names.CONTEXT_KEY: key})


BAD_BODIES = {
    "plaintext": b"%PDF-1.7 personnummer 19121212-1212",
    "other-key": samples.encrypt(b"x", context={names.CONTEXT_BUCKET: BUCKET, names.CONTEXT_KEY: "somewhere/else"}),
    "foreign-namespace": samples.encrypt(b"x", master_key=samples.raw_master_key("annan-kommun")),
    "empty": b"",
}


def _validate(s3, sns, key: str, version: str | None):
    return validate_object(NoDeleteS3(s3), sns, bucket=BUCKET, key=key, version_id=version, settings=SETTINGS)


def _status(s3: FakeS3, key: str, version: str | None) -> str | None:
    return {t["Key"]: t["Value"] for t in s3.tags.get((BUCKET, key, version), [])}.get(names.OBJECT_TAG_STATUS)


# --- Duplicates and order ------------------------------------------------------------------------
def test_duplicate_delivery_reads_tags_and_alarms_once(ledger) -> None:
    # GIVEN a plaintext object (to be quarantined)
    s3, sns = FakeS3(), FakeSns()
    s3.put(BUCKET, "a.pdf", "v1", BAD_BODIES["plaintext"])
    # WHEN its event is delivered three times
    outcomes = [_validate(s3, sns, "a.pdf", "v1") for _ in range(3)]
    ledger.add(CATEGORY, inputs=3)
    # THEN one read, one alarm, one tag; the repeats report the stored decision
    assert [o.status for o in outcomes] == [STATUS_QUARANTINED] * 3
    assert [o.repeated for o in outcomes] == [False, True, True]
    assert s3.counter["gets"] == 1 and len(sns.messages) == 1
    assert outcomes[1].reason_codes == outcomes[0].reason_codes


def test_out_of_order_versions_are_judged_each_by_its_own_bytes(ledger) -> None:
    # GIVEN version 1 (plaintext) and version 2 (a valid message) of one key
    s3, sns = FakeS3(), FakeSns()
    s3.put(BUCKET, "b.pdf", "v1", BAD_BODIES["plaintext"])
    s3.put(BUCKET, "b.pdf", "v2", good_body("b.pdf"))
    # WHEN the event of version 2 arrives before that of version 1
    second = _validate(s3, sns, "b.pdf", "v2")
    first = _validate(s3, sns, "b.pdf", "v1")
    ledger.add(CATEGORY, inputs=2)
    # THEN each version carries its own verdict, read with its own VersionId
    assert (second.status, first.status) == (STATUS_VALIDATED, STATUS_QUARANTINED)
    assert _status(s3, "b.pdf", "v2") == STATUS_VALIDATED and _status(s3, "b.pdf", "v1") == STATUS_QUARANTINED
    assert len(sns.messages) == 1 and json.loads(sns.messages[0]["Message"])["versionId"] == "v1"


def test_security_role_status_is_respected(ledger) -> None:
    # GIVEN a version the security role already released: status tag set by hand, bound to
    # that version as every status tag must be (a status tag counts only for its own version)
    s3, sns = FakeS3(), FakeSns()
    s3.put(BUCKET, "c.pdf", "v1", BAD_BODIES["plaintext"])
    s3.tags[(BUCKET, "c.pdf", "v1")] = [
        {"Key": names.OBJECT_TAG_STATUS, "Value": STATUS_VALIDATED},
        {"Key": names.OBJECT_TAG_CHECKED_VERSION, "Value": "v1"},
    ]
    # WHEN its event is redelivered
    outcome = _validate(s3, sns, "c.pdf", "v1")
    ledger.add(CATEGORY, inputs=1)
    # THEN the validator neither re-reads nor overrides it
    assert outcome.repeated and outcome.status == STATUS_VALIDATED and s3.counter["gets"] == 0


def test_status_tag_without_version_binding_is_checked_again(ledger) -> None:
    # GIVEN a plaintext version that carries `validated` but not its own version binding (a copy,
    # or a tag written by hand without the binding)
    s3, sns = FakeS3(), FakeSns()
    s3.put(BUCKET, "c2.pdf", "v1", BAD_BODIES["plaintext"])
    s3.tags[(BUCKET, "c2.pdf", "v1")] = [{"Key": names.OBJECT_TAG_STATUS, "Value": STATUS_VALIDATED}]
    # WHEN its event is delivered
    outcome = _validate(s3, sns, "c2.pdf", "v1")
    ledger.add(CATEGORY, inputs=1)
    # THEN the validator reads it and quarantines it: an unbound status tag is not trusted
    assert not outcome.repeated and outcome.status == STATUS_QUARANTINED and s3.counter["gets"] == 1


# --- Deleted objects --------------------------------------------------------------------------------
def test_version_deleted_before_validation_is_missing(ledger) -> None:
    # GIVEN an event for a version that no longer exists
    s3, sns = FakeS3(), FakeSns()
    # WHEN validated
    outcome = _validate(s3, sns, "gone.pdf", "v9")
    ledger.add(CATEGORY, inputs=1)
    # THEN 'missing', nothing tagged, no alarm, no exception
    assert outcome.status == STATUS_MISSING and s3.tags == {} and sns.messages == []


@pytest.mark.parametrize("stage", ["GetObject", "PutObjectTagging"])
def test_version_deleted_during_validation_is_missing(ledger, stage: str) -> None:
    # GIVEN a plaintext object deleted by someone else between the validator's calls
    s3, sns = FakeS3(), FakeSns()
    s3.put(BUCKET, "d.pdf", "v1", BAD_BODIES["plaintext"])
    s3.errors[stage] = [client_error("NoSuchVersion", stage, 404)]
    # WHEN validated
    outcome = _validate(s3, sns, "d.pdf", "v1")
    ledger.add(CATEGORY, inputs=1)
    # THEN reported missing, no exception, and no status tag was written
    assert outcome.status == STATUS_MISSING
    assert _status(s3, "d.pdf", "v1") is None


# --- Undecidable: raise (Lambda retries, then the dead-letter queue), never tag ---------------------
# A GetObject AccessDenied is not here: it is a decision (quarantine), see
# test_get_object_access_denied_is_quarantined below.
@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [
        ("GetObjectTagging", "AccessDenied", 403),
        ("GetObject", "SlowDown", 503),
        ("GetObject", "InternalError", 500),
        ("PutObjectTagging", "AccessDenied", 403),
        ("PutObjectTagging", "SlowDown", 503),
    ],
)
@pytest.mark.parametrize("content", ["plaintext", "good"])
def test_no_decision_raises_and_never_tags(ledger, operation: str, code: str, status: int, content: str) -> None:
    # GIVEN an S3 error that persists past the client's retries
    s3, sns = FakeS3(), FakeSns()
    body = good_body("e.pdf") if content == "good" else BAD_BODIES["plaintext"]
    s3.put(BUCKET, "e.pdf", "v1", body)
    s3.errors[operation] = [client_error(code, operation, status)]
    # WHEN validated  THEN the error propagates (Lambda retries, then dead-letters) and no status tag exists
    with pytest.raises(ClientError) as raised:
        _validate(s3, sns, "e.pdf", "v1")
    ledger.add(CATEGORY, inputs=1)
    assert raised.value.response["Error"]["Code"] == code
    assert _status(s3, "e.pdf", "v1") is None
    # AND a retry after the fault clears decides normally
    outcome = _validate(s3, sns, "e.pdf", "v1")
    assert outcome.status == (STATUS_VALIDATED if content == "good" else STATUS_QUARANTINED)
    assert not outcome.repeated
    if content == "plaintext":
        assert len(sns.messages) >= 1


@pytest.mark.parametrize("content", ["plaintext", "good"])
def test_get_object_access_denied_is_quarantined(ledger, content: str) -> None:
    # GIVEN a version S3 refuses to return to the validator for good. GetObject on an SSE-KMS
    # object needs kms:Decrypt on its key ("Using server-side encryption with AWS KMS keys",
    # S3 User Guide), so AccessDenied is what an object under someone else's key gives.
    s3, sns = FakeS3(), FakeSns()
    body = good_body("e2.pdf") if content == "good" else BAD_BODIES["plaintext"]
    s3.put(BUCKET, "e2.pdf", "v1", body)
    s3.errors["GetObject"] = [client_error("AccessDenied", "GetObject", 403)]
    # WHEN validated
    outcome = _validate(s3, sns, "e2.pdf", "v1")
    ledger.add(CATEGORY, inputs=1)
    # THEN it ends in a decision: quarantined (what was not checked is not released), and alarmed
    assert outcome.status == STATUS_QUARANTINED and _status(s3, "e2.pdf", "v1") == STATUS_QUARANTINED
    assert len(sns.messages) == 1


def test_alarm_failure_still_leaves_the_decision(ledger) -> None:
    # GIVEN SNS failing for a quarantine-worthy object
    s3, sns = FakeS3(), FakeSns()
    s3.put(BUCKET, "f.pdf", "v1", BAD_BODIES["plaintext"])
    sns.errors.append(client_error("Throttling", "Publish", 400))
    # WHEN validated  THEN the tag (the decision the bucket policy reads) is written first and the
    # failed publish does not undo it; the quarantine metric alarm still tells people
    outcome = _validate(s3, sns, "f.pdf", "v1")
    assert outcome.status == STATUS_QUARANTINED and _status(s3, "f.pdf", "v1") == STATUS_QUARANTINED
    assert sns.messages == []
    ledger.add(CATEGORY, inputs=1)


# --- Random sequences (seeded) ----------------------------------------------------------------------
KEYS = ["k1.pdf", "k2.pdf", "dir/k3.pdf"]
_ops = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.sampled_from(["good", *BAD_BODIES])),
    st.tuples(st.just("delete"), st.integers(0, 50), st.none()),
    st.tuples(st.just("deliver"), st.integers(0, 50), st.none()),
    st.tuples(
        st.just("fault"),
        st.sampled_from(["GetObject", "GetObjectTagging", "PutObjectTagging"]),
        st.sampled_from(["AccessDenied", "SlowDown"]),
    ),
)


def _sequence_property(ledger, ops) -> None:
    # GIVEN a bucket where versions are uploaded and deleted while events arrive late,
    # twice or out of order, and S3 sometimes refuses or throttles
    s3, sns = FakeS3(), FakeSns()
    versions: list[tuple[str, str, bool]] = []  # (key, version id, conforms)
    deleted: set[int] = set()
    for op, a, b in ops:
        ledger.add(CATEGORY, inputs=1)
        if op == "put":
            version = f"v{len(versions)}"
            s3.put(BUCKET, a, version, good_body(a) if b == "good" else BAD_BODIES[b])
            versions.append((a, version, b == "good"))
        elif op == "delete" and versions:
            index = a % len(versions)
            s3.remove(BUCKET, *versions[index][:2])
            deleted.add(index)
        elif op == "deliver" and versions:
            index = a % len(versions)
            key, version, _ = versions[index]
            # WHEN the validator handles the event
            try:
                outcome = _validate(s3, sns, key, version)
            except DeleteAttempted:
                ledger.add(CATEGORY, objects_lost=1)
                raise
            except ClientError as error:
                assert error.response["Error"]["Code"] in ("AccessDenied", "SlowDown")
                continue
            # THEN the outcome matches the version's bytes (or its absence)
            if index in deleted:
                assert outcome.status == STATUS_MISSING
        elif op == "fault":
            s3.errors.setdefault(a, []).append(client_error(b, a, 403 if b == "AccessDenied" else 503))
    # AND every tag ever written matches the content of its own version; alarms name only bad versions
    truth = {(k, v): ok for k, v, ok in versions}
    for (_, key, version), tags in s3.tags.items():
        status = {t["Key"]: t["Value"] for t in tags}.get(names.OBJECT_TAG_STATUS)
        expected = STATUS_VALIDATED if truth[(key, version)] else STATUS_QUARANTINED
        if status != expected:
            ledger.add(CATEGORY, false_passes=int(status == STATUS_VALIDATED))
        assert status == expected, (key, version, status)
    for message in sns.messages:
        body = json.loads(message["Message"])
        assert not truth[(body["key"], body["versionId"])]


@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(_ops, min_size=1, max_size=25))
def test_random_event_sequences_keep_the_invariants(ledger, ops) -> None:
    _sequence_property(ledger, ops)


@pytest.mark.slow_fuzz
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(_ops, min_size=1, max_size=60))
def test_slow_random_event_sequences(ledger, ops) -> None:
    _sequence_property(ledger, ops)


# --- The Lambda handler ----------------------------------------------------------------------------
@pytest.fixture
def lambda_env(monkeypatch):
    monkeypatch.setenv(names.ENV_ALLOWED_NAMESPACES, "kommunmoln")
    monkeypatch.setenv(names.ENV_REQUIRED_CONTEXT_KEYS, ",".join(names.REQUIRED_CONTEXT_KEYS))
    monkeypatch.setenv(names.ENV_HEADER_READ_BYTES, "65536")
    monkeypatch.setenv(names.ENV_ALARM_TOPIC_ARN, TOPIC)
    handler.reset()
    s3, sns = FakeS3(), FakeSns()
    guarded = NoDeleteS3(s3)
    monkeypatch.setattr(handler, "client", lambda service: guarded if service == "s3" else sns)
    yield s3, sns
    handler.reset()


class _Context:
    function_name = "validator"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-north-1:123456789012:function:validator"
    aws_request_id = "req-1"


def _event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def _record(key: str, version: str | None, name: str = "ObjectCreated:Put", source: str = "aws:s3") -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key}
    if version:
        obj["versionId"] = version
    return {"eventSource": source, "eventName": name, "s3": {"bucket": {"name": BUCKET}, "object": obj}}


@pytest.mark.parametrize(
    "event",
    [{}, {"Records": "x"}, {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}, []],
    ids=["no-records", "records-not-a-list", "record-without-object", "not-a-dict"],
)
def test_handler_raises_on_malformed_events(ledger, lambda_env, event) -> None:
    # GIVEN an event that can never be processed  WHEN handled  THEN it raises (dead-letter queue)
    ledger.add(CATEGORY, inputs=1)
    with pytest.raises((ValueError, TypeError)):
        handler.lambda_handler(event, _Context())


def test_handler_processes_a_batch_with_duplicates_and_foreign_records(ledger, lambda_env) -> None:
    s3, sns = lambda_env
    # GIVEN a batch: a good object, a plaintext one twice, a deletion event and a foreign record
    s3.put(BUCKET, "dir/ok file.pdf", "v1", good_body("dir/ok file.pdf"))
    s3.put(BUCKET, "bad.pdf", "v1", BAD_BODIES["plaintext"])
    event = _event(
        _record("dir/ok+file.pdf", "v1"),  # URL-encoded key, as S3 sends it
        _record("bad.pdf", "v1"),
        _record("bad.pdf", "v1"),
        _record("bad.pdf", "v1", name="ObjectRemoved:Delete"),
        _record("bad.pdf", "v1", source="aws:sqs"),
    )
    # WHEN handled
    result = handler.lambda_handler(event, _Context())
    ledger.add(CATEGORY, inputs=5)
    # THEN three decisions (one repeated), one alarm, no deletion
    statuses = [(o["key"], o["status"], o["repeated"]) for o in result["outcomes"]]
    assert statuses == [
        ("dir/ok file.pdf", STATUS_VALIDATED, False),
        ("bad.pdf", STATUS_QUARANTINED, False),
        ("bad.pdf", STATUS_QUARANTINED, True),
    ]
    assert len(sns.messages) == 1


def test_handler_raises_when_tagging_is_denied(ledger, lambda_env) -> None:
    s3, sns = lambda_env
    # GIVEN a validator role without s3:PutObjectTagging (no decision can be recorded)
    s3.put(BUCKET, "x.pdf", "v1", BAD_BODIES["plaintext"])
    s3.errors["PutObjectTagging"] = [client_error("AccessDenied", "PutObjectTagging", 403)]
    # WHEN the event is handled  THEN it raises (retry, then DLQ) and nothing is tagged or alarmed;
    # the version stays unreadable meanwhile, since reads require `validated`
    with pytest.raises(ClientError):
        handler.lambda_handler(_event(_record("x.pdf", "v1")), _Context())
    ledger.add(CATEGORY, inputs=1)
    assert s3.tags == {} and sns.messages == []


def test_validator_against_moto_never_deletes(ledger, moto_endpoint) -> None:
    # GIVEN a real (moto) versioned bucket with a good and a plaintext version, the client wrapped to refuse deletes
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-north-1")
    bucket = "rel-validator-moto"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    body = samples.encrypt(b"x", context={names.CONTEXT_BUCKET: bucket, names.CONTEXT_KEY: "o.pdf"})
    v1 = s3.put_object(Bucket=bucket, Key="o.pdf", Body=body)["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="o.pdf", Body=b"plaintext")["VersionId"]
    sns = FakeSns()
    # WHEN both versions are validated twice, newest first
    results = [
        validate_object(NoDeleteS3(s3), sns, bucket=bucket, key="o.pdf", version_id=v, settings=SETTINGS)
        for v in (v2, v1, v2, v1)
    ]
    ledger.add(CATEGORY, inputs=4)
    # THEN each version has its verdict, both versions still exist, one alarm
    assert [r.status for r in results] == [STATUS_QUARANTINED, STATUS_VALIDATED] * 2
    assert len(s3.list_object_versions(Bucket=bucket)["Versions"]) == 2
    assert len(sns.messages) == 1
