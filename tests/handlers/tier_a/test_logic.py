"""The tier A validator logic against moto: read the head, tag, alarm, never delete."""

from __future__ import annotations

import io
import json
import os

import boto3
import botocore.session
import pytest
from aws_encryption_sdk import StrictAwsKmsMasterKeyProvider
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from kommunmoln import names
from lambdas.tier_a_validator.logic import (
    STATUS_MISSING,
    STATUS_QUARANTINED,
    STATUS_VALIDATED,
    Settings,
    check_object,
    object_refs,
    validate_object,
)
from tests.handlers.tier_a.conftest import (
    BUCKET,
    ENCRYPTION_TAG,
    ESCROW_NAMESPACE,
    EVENTS,
    NAMESPACE,
    PDF,
    REGION,
    FakeAws,
    aes_key,
    context_for,
    encrypt,
    event_for,
    key_ring,
    settings_env,
)

KEY = "socialtjansten/2026/beslut åtgärd: 12.pdf.esdk"


def _validate(aws: FakeAws, key: str, version_id: str | None, settings: Settings | None = None):
    return validate_object(
        aws.s3, aws.sns, bucket=BUCKET, key=key, version_id=version_id, settings=settings or aws.settings
    )


def _assert_quarantined(aws: FakeAws, outcome, key: str, version_id: str | None, code: str) -> list[dict]:
    assert outcome.status == STATUS_QUARANTINED
    assert code in outcome.reason_codes
    tags = aws.tags(key, version_id)
    assert tags[names.OBJECT_TAG_STATUS] == names.STATUS_QUARANTINED
    assert code in tags[names.OBJECT_TAG_REASON].split()
    assert tags[names.OBJECT_TAG_ENCRYPTION] == names.OBJECT_TAG_ENCRYPTION_VALUE  # the client's tag is kept
    alarms = aws.alarms()
    assert len(alarms) == 1
    assert alarms[0]["event"] == "object-quarantined"
    assert (alarms[0]["bucket"], alarms[0]["key"], alarms[0]["versionId"]) == (BUCKET, key, version_id)
    assert code in alarms[0]["reasonCodes"]
    return alarms


# --- pass -----------------------------------------------------------------------------------
def test_valid_esdk_object_is_tagged_validated_without_alarm(fake_aws: FakeAws) -> None:
    # GIVEN an object encrypted by the client's format: committing suite, municipality key, bound context
    version = fake_aws.put(KEY, encrypt(b"beslut" * 500, context=context_for(KEY)))
    # WHEN validated
    outcome = _validate(fake_aws, KEY, version)
    # THEN it is validated, the version is tagged, the client's tag kept, and no alarm is sent
    assert (outcome.status, outcome.reasons, outcome.repeated) == (STATUS_VALIDATED, (), False)
    assert fake_aws.tags(KEY, version) == {
        names.OBJECT_TAG_ENCRYPTION: names.OBJECT_TAG_ENCRYPTION_VALUE,
        names.OBJECT_TAG_STATUS: names.STATUS_VALIDATED,
        names.OBJECT_TAG_CHECKED_VERSION: version,  # the status holds for this version only
    }
    assert fake_aws.alarms() == []


def test_primary_plus_rsa_escrow_key_is_valid_when_both_namespaces_are_allowed(
    fake_aws: FakeAws, rsa_escrow_key
) -> None:
    # GIVEN a message wrapped by the AES key and an RSA escrow key, both namespaces allowed
    settings = Settings.from_env(
        settings_env(fake_aws.topic_arn, **{names.ENV_ALLOWED_NAMESPACES: f"{NAMESPACE},{ESCROW_NAMESPACE}"})
    )
    message = encrypt(b"x" * 100, key_provider=key_ring(aes_key(), rsa_escrow_key), context=context_for(KEY))
    version = fake_aws.put(KEY, message)
    # WHEN validated THEN it passes
    assert _validate(fake_aws, KEY, version, settings).status == STATUS_VALIDATED


def test_other_tags_of_the_version_are_kept(fake_aws: FakeAws) -> None:
    # GIVEN an object with the client's tag and two of the municipality's own
    tags = [ENCRYPTION_TAG, {"Key": "arkiv", "Value": "gallras-2036"}, {"Key": "diarienr", "Value": "SN-2026-17"}]
    version = fake_aws.put(KEY, encrypt(b"x", context=context_for(KEY)), tags=tags)
    # WHEN validated THEN they are all still there beside the status
    _validate(fake_aws, KEY, version)
    assert fake_aws.tags(KEY, version) == {
        **{t["Key"]: t["Value"] for t in tags},
        names.OBJECT_TAG_STATUS: "validated",
        names.OBJECT_TAG_CHECKED_VERSION: version,
    }


# --- quarantine -------------------------------------------------------------------------------
def test_plaintext_is_quarantined_and_the_alarm_carries_no_content(fake_aws: FakeAws) -> None:
    # GIVEN a plaintext PDF uploaded around the client
    version = fake_aws.put("plain.pdf", PDF)
    # WHEN validated
    outcome = _validate(fake_aws, "plain.pdf", version)
    # THEN it is quarantined (tag + one alarm), kept, and nothing of its content leaves
    assert outcome.reasons == ("not-esdk: not an AWS Encryption SDK message (version byte 0x25)",)
    alarms = _assert_quarantined(fake_aws, outcome, "plain.pdf", version, "not-esdk")
    assert "Personnummer" not in json.dumps(alarms) and "PDF" not in json.dumps(alarms)
    body = fake_aws.s3.get_object(Bucket=BUCKET, Key="plain.pdf", VersionId=version)["Body"].read()
    assert body == PDF  # never deleted, never altered


def test_kms_wrapped_data_key_is_quarantined(fake_aws: FakeAws) -> None:
    # GIVEN a message whose data key is wrapped by AWS KMS (moto KMS), i.e. AWS could decrypt it
    kms = boto3.client("kms", region_name=REGION)
    key_arn = kms.create_key(Description="not the municipality's key")["KeyMetadata"]["Arn"]
    provider = StrictAwsKmsMasterKeyProvider(key_ids=[key_arn], botocore_session=botocore.session.Session())
    version = fake_aws.put(KEY, encrypt(b"x" * 64, key_provider=provider, context=context_for(KEY)))
    # WHEN validated THEN it is quarantined for the AWS-wrapped key
    outcome = _validate(fake_aws, KEY, version)
    assert any("'aws-kms'" in reason for reason in outcome.reasons)
    _assert_quarantined(fake_aws, outcome, KEY, version, "aws-wrapped-key")


def test_non_committing_suite_is_quarantined(fake_aws: FakeAws) -> None:
    version = fake_aws.put(KEY, encrypt(b"x" * 64, context=context_for(KEY), committing=False))
    outcome = _validate(fake_aws, KEY, version)
    _assert_quarantined(fake_aws, outcome, KEY, version, "non-committing-suite")


def test_key_namespace_outside_the_allow_list_is_quarantined(fake_aws: FakeAws) -> None:
    message = encrypt(b"x", key_provider=aes_key(namespace="grannkommun"), context=context_for(KEY))
    version = fake_aws.put(KEY, message)
    outcome = _validate(fake_aws, KEY, version)
    _assert_quarantined(fake_aws, outcome, KEY, version, "namespace-not-allowed")


def test_truncated_header_is_quarantined(fake_aws: FakeAws) -> None:
    # GIVEN an object holding only the first 100 bytes of a real message
    version = fake_aws.put(KEY, encrypt(b"x" * 64, context=context_for(KEY))[:100])
    outcome = _validate(fake_aws, KEY, version)
    assert outcome.bytes_read == 100
    _assert_quarantined(fake_aws, outcome, KEY, version, "truncated-header")


def test_empty_object_is_quarantined(fake_aws: FakeAws) -> None:
    # GIVEN a zero-byte object (S3 answers a ranged GET with InvalidRange)
    version = fake_aws.put(KEY, b"")
    outcome = _validate(fake_aws, KEY, version)
    assert outcome.bytes_read == 0
    _assert_quarantined(fake_aws, outcome, KEY, version, "empty-object")


def test_object_moved_to_another_key_is_quarantined(fake_aws: FakeAws) -> None:
    # GIVEN a valid object copied to another key (its context still names the original key)
    original = "a/original.esdk"
    fake_aws.put(original, encrypt(b"x", context=context_for(original)))
    copied = fake_aws.s3.copy_object(
        Bucket=BUCKET, Key="b/moved.esdk", CopySource={"Bucket": BUCKET, "Key": original}, TaggingDirective="COPY"
    )
    # WHEN the copy is validated THEN it is quarantined: it would not decrypt under its new name
    outcome = _validate(fake_aws, "b/moved.esdk", copied["VersionId"])
    _assert_quarantined(fake_aws, outcome, "b/moved.esdk", copied["VersionId"], "context-mismatch")


def test_header_larger_than_the_read_bound_is_quarantined(fake_aws: FakeAws) -> None:
    # GIVEN a valid message whose header (a large context) ends after the configured bound
    settings = Settings.from_env(settings_env(fake_aws.topic_arn, **{names.ENV_HEADER_READ_BYTES: "1024"}))
    context = {**context_for(KEY), "kommunmoln:note": "n" * 3000}
    version = fake_aws.put(KEY, encrypt(b"x" * 10, context=context))
    outcome = _validate(fake_aws, KEY, version, settings)
    assert outcome.bytes_read == 1024
    _assert_quarantined(fake_aws, outcome, KEY, version, "header-too-large")


# --- bounded read ---------------------------------------------------------------------------
def test_large_object_is_judged_from_one_bounded_ranged_get(fake_aws: FakeAws) -> None:
    # GIVEN a 20 MiB valid message
    message = encrypt(os.urandom(20 * 1024 * 1024), context=context_for(KEY), frame_length=1024 * 1024)
    version = fake_aws.put(KEY, message)
    calls: list[dict] = []
    fake_aws.s3.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: calls.append(dict(params))
    )
    # WHEN checked
    outcome = check_object(fake_aws.s3, bucket=BUCKET, key=KEY, version_id=version, settings=fake_aws.settings)
    # THEN exactly one GET of exactly the bound was made, and it decided
    assert outcome.status == STATUS_VALIDATED
    assert outcome.bytes_read == fake_aws.settings.header_read_bytes == 65536
    assert calls == [{"Bucket": BUCKET, "Key": KEY, "VersionId": version, "Range": "bytes=0-65535"}]


def test_small_object_is_read_with_the_same_range(fake_aws: FakeAws) -> None:
    version = fake_aws.put(KEY, encrypt(b"x", context=context_for(KEY)))
    calls: list[dict] = []
    fake_aws.s3.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: calls.append(dict(params))
    )
    outcome = check_object(fake_aws.s3, bucket=BUCKET, key=KEY, version_id=version, settings=fake_aws.settings)
    assert outcome.bytes_read < 1024
    assert [c["Range"] for c in calls] == ["bytes=0-65535"]


# --- idempotency ------------------------------------------------------------------------------
def test_duplicate_delivery_alarms_once_and_does_not_retag(fake_aws: FakeAws) -> None:
    # GIVEN a plaintext object that was already validated once
    version = fake_aws.put("dup.pdf", PDF)
    first = _validate(fake_aws, "dup.pdf", version)
    tags_after_first = fake_aws.tags("dup.pdf", version)
    calls: list[str] = []
    fake_aws.s3.meta.events.register("provide-client-params.s3.*", lambda params, model, **_: calls.append(model.name))
    # WHEN the same event is delivered again
    second = _validate(fake_aws, "dup.pdf", version)
    # THEN the recorded outcome is returned, nothing is read or tagged again, one alarm in total
    assert second.repeated and not first.repeated
    assert (second.status, second.reason_codes) == (first.status, first.reason_codes)
    assert calls == ["GetObjectTagging"]
    assert fake_aws.tags("dup.pdf", version) == tags_after_first
    assert len(fake_aws.alarms()) == 1


def test_each_version_is_judged_on_its_own(fake_aws: FakeAws) -> None:
    # GIVEN a valid version and then a plaintext overwrite of the same key
    good = fake_aws.put(KEY, encrypt(b"x", context=context_for(KEY)))
    bad = fake_aws.put(KEY, PDF)
    # WHEN both events arrive THEN each version carries its own status
    assert _validate(fake_aws, KEY, good).status == STATUS_VALIDATED
    assert _validate(fake_aws, KEY, bad).status == STATUS_QUARANTINED
    assert fake_aws.tags(KEY, good)[names.OBJECT_TAG_STATUS] == "validated"
    assert fake_aws.tags(KEY, bad)[names.OBJECT_TAG_STATUS] == "quarantined"


# --- gone before validation -------------------------------------------------------------------
def test_version_deleted_before_validation_is_missing_not_an_error(fake_aws: FakeAws) -> None:
    # GIVEN a version that was permanently deleted (by the security role) before the event was handled
    version = fake_aws.put(KEY, PDF)
    fake_aws.s3.delete_object(Bucket=BUCKET, Key=KEY, VersionId=version)
    # WHEN validated THEN the outcome says so, and nothing is tagged or published
    outcome = _validate(fake_aws, KEY, version)
    assert outcome.status == STATUS_MISSING and outcome.bytes_read == 0
    assert fake_aws.alarms() == []


def test_key_deleted_in_an_unversioned_bucket_is_missing(fake_aws: FakeAws) -> None:
    fake_aws.s3.create_bucket(Bucket="plain-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
    outcome = validate_object(
        fake_aws.s3, fake_aws.sns, bucket="plain-bucket", key="gone", version_id=None, settings=fake_aws.settings
    )
    assert outcome.status == STATUS_MISSING


def test_delete_marker_does_not_hide_the_version_from_validation(fake_aws: FakeAws) -> None:
    # GIVEN a plaintext version "deleted" with a delete marker (the version itself remains, restorable)
    version = fake_aws.put(KEY, PDF)
    fake_aws.s3.delete_object(Bucket=BUCKET, Key=KEY)
    # WHEN validated THEN the remaining version is still judged and quarantined
    assert _validate(fake_aws, KEY, version).status == STATUS_QUARANTINED


# --- errors that prevent a decision --------------------------------------------------------------
@pytest.mark.parametrize("operation", ["get_object_tagging", "put_object_tagging"])
def test_access_denied_on_tags_raises_so_that_lambda_retries(fake_aws: FakeAws, operation: str) -> None:
    # GIVEN S3 refusing one of the validator's calls
    s3 = boto3.client("s3", region_name=REGION)
    stubber = Stubber(s3)
    args = {"Bucket": BUCKET, "Key": KEY, "VersionId": "v1"}
    if operation != "get_object_tagging":
        stubber.add_response("get_object_tagging", {"TagSet": [ENCRYPTION_TAG]}, args)
    if operation == "put_object_tagging":
        body = encrypt(b"x", context=context_for(KEY))  # the version stays untagged: unreadable by policy
        stubber.add_response(
            "get_object", {"Body": StreamingBody(io.BytesIO(body), len(body))}, {**args, "Range": "bytes=0-65535"}
        )
    stubber.add_client_error(operation, service_error_code="AccessDenied", http_status_code=403)
    # WHEN validated THEN the error propagates (no decision, no tag, no alarm)
    with stubber, pytest.raises(ClientError, match="AccessDenied"):
        validate_object(s3, fake_aws.sns, bucket=BUCKET, key=KEY, version_id="v1", settings=fake_aws.settings)
    assert fake_aws.alarms() == []


class _FailingS3:
    """The moto client, except that one operation fails with a scripted S3 error."""

    def __init__(self, s3, operation: str, code: str, status: int) -> None:
        self._s3, self._operation, self._code, self._status = s3, operation, code, status

    def __getattr__(self, name: str):
        if name == self._operation:

            def fail(**_):
                raise ClientError(
                    {
                        "Error": {"Code": self._code, "Message": "scripted"},
                        "ResponseMetadata": {"HTTPStatusCode": self._status},
                    },
                    name,
                )

            return fail
        return getattr(self._s3, name)


def test_too_many_existing_tags_end_in_quarantine_with_the_status_tags(fake_aws: FakeAws) -> None:
    # GIVEN a valid message that already carries S3's maximum of 10 tags (S3 User Guide,
    # "Categorizing your storage using tags": up to 10 tags per object)
    tags = [ENCRYPTION_TAG] + [{"Key": f"t{i}", "Value": "v"} for i in range(9)]
    version = fake_aws.put(KEY, encrypt(b"x", context=context_for(KEY)), tags=tags)
    # WHEN validated THEN it is decided: quarantined, the status tags written, at most 10 tags
    outcome = _validate(fake_aws, KEY, version)
    assert outcome.status == STATUS_QUARANTINED and "too-many-tags" in outcome.reason_codes
    after = fake_aws.tags(KEY, version)
    assert len(after) <= 10 and after[names.OBJECT_TAG_STATUS] == "quarantined"
    assert after[names.OBJECT_TAG_CHECKED_VERSION] == version
    assert len(fake_aws.alarms()) == 1


def test_archived_object_is_quarantined_not_retried(fake_aws: FakeAws) -> None:
    # GIVEN an object in an archive class: GetObject answers 403 InvalidObjectState until it is
    # restored (S3 API Reference, GetObject), while tagging still works. Scripted, because moto
    # 5 also refuses GetObjectTagging on GLACIER objects, which S3 does not.
    version = fake_aws.put(KEY, encrypt(b"x", context=context_for(KEY)))
    s3 = _FailingS3(fake_aws.s3, "get_object", "InvalidObjectState", 403)
    # WHEN validated THEN it is quarantined with a reason, tagged and alarmed
    outcome = validate_object(s3, fake_aws.sns, bucket=BUCKET, key=KEY, version_id=version, settings=fake_aws.settings)
    _assert_quarantined(fake_aws, outcome, KEY, version, "archived-storage-class")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        # SSE-KMS under a key the validator may not use: S3 answers GetObject with 403
        # AccessDenied (S3 User Guide, "Using server-side encryption with AWS KMS keys":
        # reading an SSE-KMS object requires kms:Decrypt on its key).
        ("AccessDenied", 403),
        # SSE-C: GetObject without the customer key is a 400 InvalidRequest (S3 User Guide,
        # "Using server-side encryption with customer-provided keys (SSE-C)").
        ("InvalidRequest", 400),
    ],
)
def test_permanently_unreadable_object_is_quarantined(fake_aws: FakeAws, code: str, status: int) -> None:
    version = fake_aws.put(KEY, encrypt(b"x", context=context_for(KEY)))
    s3 = _FailingS3(fake_aws.s3, "get_object", code, status)
    outcome = validate_object(s3, fake_aws.sns, bucket=BUCKET, key=KEY, version_id=version, settings=fake_aws.settings)
    _assert_quarantined(fake_aws, outcome, KEY, version, "unreadable")


@pytest.mark.parametrize(("code", "status"), [("SlowDown", 503), ("InternalError", 500), ("ThrottlingException", 400)])
def test_only_transient_errors_raise_for_a_retry(fake_aws: FakeAws, code: str, status: int) -> None:
    # S3 error responses: SlowDown (503) and InternalError (500) are the documented retryable
    # answers (S3 API Reference, "Error responses"); the SDKs retry throttling codes.
    version = fake_aws.put(KEY, encrypt(b"x", context=context_for(KEY)))
    s3 = _FailingS3(fake_aws.s3, "get_object", code, status)
    with pytest.raises(ClientError, match=code):
        validate_object(s3, fake_aws.sns, bucket=BUCKET, key=KEY, version_id=version, settings=fake_aws.settings)
    assert names.OBJECT_TAG_STATUS not in fake_aws.tags(KEY, version) and fake_aws.alarms() == []


def test_tag_is_written_even_when_the_alarm_cannot_be_published(fake_aws: FakeAws) -> None:
    # GIVEN SNS refusing the publish (e.g. over its 256 KiB limit: InvalidParameter, SNS Publish API)
    version = fake_aws.put("plain.pdf", PDF)
    sns = _FailingS3(fake_aws.sns, "publish", "InvalidParameter", 400)
    # WHEN validated THEN the decision (the tag) stands and nothing raises
    outcome = validate_object(
        fake_aws.s3, sns, bucket=BUCKET, key="plain.pdf", version_id=version, settings=fake_aws.settings
    )
    assert outcome.status == STATUS_QUARANTINED
    assert fake_aws.tags("plain.pdf", version)[names.OBJECT_TAG_STATUS] == "quarantined"


def test_alarm_for_thousands_of_reasons_stays_below_the_sns_limit() -> None:
    from kommunmoln.object_check import make_outcome
    from lambdas.tier_a_validator.logic import alarm_message

    # A header with thousands of data keys, each outside the namespace allow-list, gives one
    # reason per key; SNS refuses messages over 256 KiB (SNS API Reference, Publish).
    reasons = [f"namespace-not-allowed: data key {i} names namespace '{'x' * 300}'" for i in range(5000)]
    outcome = make_outcome(BUCKET, "k" * 1024, "v1", STATUS_QUARANTINED, reasons, 65536)
    message = alarm_message(outcome)
    assert len(message.encode()) < 256 * 1024
    assert json.loads(message)["reasonsOmitted"] == 5000 - 20


def test_copy_of_a_validated_object_is_checked_again(fake_aws: FakeAws) -> None:
    # GIVEN a validated version, copied to another key: CopyObject copies the source's tags by
    # default (S3 API Reference, CopyObject, x-amz-tagging-directive: COPY is the default)
    version = fake_aws.put(KEY, encrypt(b"x" * 2000, context=context_for(KEY)))
    assert _validate(fake_aws, KEY, version).status == STATUS_VALIDATED
    copy = fake_aws.s3.copy_object(
        Bucket=BUCKET, Key="copied.esdk", CopySource={"Bucket": BUCKET, "Key": KEY, "VersionId": version}
    )
    assert fake_aws.tags("copied.esdk", copy["VersionId"])[names.OBJECT_TAG_STATUS] == "validated"  # copied along
    # WHEN the copy's event is handled THEN the copied tag does not count: the copy is read and
    # quarantined, because its encryption context names the original key
    outcome = _validate(fake_aws, "copied.esdk", copy["VersionId"])
    assert not outcome.repeated
    _assert_quarantined(fake_aws, outcome, "copied.esdk", copy["VersionId"], "context-mismatch")


def test_hand_built_header_followed_by_plaintext_is_quarantined(fake_aws: FakeAws) -> None:
    from kommunmoln.esdk_header import parse_header

    # GIVEN a genuine header followed by text instead of its ciphertext
    message = encrypt(os.urandom(4000), context=context_for(KEY))
    header = parse_header(message)
    forged = (
        message[: header.total_length] + (b"Beslut om bistand enligt SoL. " * 200)[: len(message) - header.total_length]
    )
    version = fake_aws.put(KEY, forged)
    # WHEN validated THEN the body's randomness check quarantines it
    _assert_quarantined(fake_aws, _validate(fake_aws, KEY, version), KEY, version, "body-not-random")


def test_header_without_a_body_is_quarantined_by_the_framing_check(fake_aws: FakeAws) -> None:
    from kommunmoln.esdk_header import parse_header

    message = encrypt(b"x", context=context_for(KEY))
    header = parse_header(message)
    version = fake_aws.put(KEY, message[: header.total_length + 10])
    _assert_quarantined(fake_aws, _validate(fake_aws, KEY, version), KEY, version, "size-does-not-match-framing")


def test_genuine_messages_of_many_sizes_pass_the_body_checks(fake_aws: FakeAws) -> None:
    for size in (0, 1, 700, 4096, 4097, 9000, 20000):
        key = f"size-{size}.esdk"
        version = fake_aws.put(key, encrypt(os.urandom(size), context=context_for(key)))
        assert _validate(fake_aws, key, version).status == STATUS_VALIDATED, size


# --- settings and events ----------------------------------------------------------------------
TOPIC = "arn:aws:sns:eu-north-1:123456789012:tier-a-alarms"


def test_settings_from_a_complete_environment() -> None:
    settings = Settings.from_env(settings_env(TOPIC, **{names.ENV_ALLOWED_NAMESPACES: " kommunmoln , escrow "}))
    assert settings == Settings(("kommunmoln", "escrow"), names.REQUIRED_CONTEXT_KEYS, 65536, TOPIC)


@pytest.mark.parametrize(
    "variable",
    [
        names.ENV_ALLOWED_NAMESPACES,
        names.ENV_REQUIRED_CONTEXT_KEYS,
        names.ENV_HEADER_READ_BYTES,
        names.ENV_ALARM_TOPIC_ARN,
    ],
)
def test_settings_name_the_missing_variable(variable: str) -> None:
    env = settings_env(TOPIC)
    del env[variable]
    with pytest.raises(ValueError, match=variable):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (names.ENV_HEADER_READ_BYTES, "lots"),
        (names.ENV_HEADER_READ_BYTES, "100"),
        (names.ENV_HEADER_READ_BYTES, "99999999"),
        (names.ENV_ALARM_TOPIC_ARN, "arn:aws:sqs:eu-north-1:123456789012:q"),
        (names.ENV_ALLOWED_NAMESPACES, " , "),
    ],
)
def test_settings_reject_bad_values(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        Settings.from_env(settings_env(TOPIC, **{variable: value}))


def test_event_keys_are_url_decoded_and_versions_kept() -> None:
    refs = object_refs(event_for("socialtjansten/2026/beslut åtgärd: 12.pdf.esdk", "v-1"))
    assert [(r.bucket, r.key, r.version_id) for r in refs] == [
        (BUCKET, "socialtjansten/2026/beslut åtgärd: 12.pdf.esdk", "v-1")
    ]


def test_event_fixture_as_s3_sends_it() -> None:
    event = json.loads((EVENTS / "tier_a_object_created.json").read_text())
    assert object_refs(event)[0].key == "socialtjansten/2026/beslut åtgärd: 12.pdf.esdk"
    unversioned = json.loads((EVENTS / "tier_a_unversioned_created.json").read_text())
    assert [(r.key, r.version_id) for r in object_refs(unversioned)] == [("a b+c.bin", None)]


def test_other_event_types_are_skipped() -> None:
    assert object_refs(json.loads((EVENTS / "tier_a_object_removed.json").read_text())) == []


@pytest.mark.parametrize(
    "event",
    [{}, {"Records": "x"}, {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}],
)
def test_malformed_events_raise(event: dict) -> None:
    with pytest.raises(ValueError):
        object_refs(event)


class _UploadAfterRead:
    """An S3 client whose GetObject is followed at once by another upload to the same key (the race)."""

    def __init__(self, aws: FakeAws, key: str, later_body: bytes) -> None:
        self._aws, self._key, self._later = aws, key, later_body
        self.later_version: str | None = None

    def __getattr__(self, name: str):
        return getattr(self._aws.s3, name)

    def get_object(self, **kwargs):
        response = self._aws.s3.get_object(**kwargs)
        if self.later_version is None:
            self.later_version = self._aws.put(self._key, self._later)
        return response


def test_an_event_without_version_tags_the_version_read_not_a_newer_one(fake_aws: FakeAws) -> None:
    # GIVEN a valid object and an event naming no version (an unversioned or suspended bucket's event), and a
    # plaintext upload to the same key landing right after the validator's GetObject. S3 returns the version
    # it served in x-amz-version-id (S3 API Reference, GetObject, "Response Syntax": VersionId); moto does too.
    key = "race/utan-version.pdf.esdk"
    first = fake_aws.put(key, encrypt(b"beslut" * 500, context=context_for(key)))
    racing = _UploadAfterRead(fake_aws, key, PDF)
    # WHEN validated
    outcome = validate_object(racing, fake_aws.sns, bucket=BUCKET, key=key, version_id=None, settings=fake_aws.settings)
    # THEN the version read is the one tagged validated, for that version id
    assert outcome.status == STATUS_VALIDATED and outcome.version_id == first
    tags = fake_aws.tags(key, first)
    assert tags[names.OBJECT_TAG_STATUS] == names.STATUS_VALIDATED
    assert tags[names.OBJECT_TAG_CHECKED_VERSION] == first
    # AND the newer (plaintext) version stays untagged, hence unreadable, until its own event checks it
    assert racing.later_version not in (None, first)
    assert names.OBJECT_TAG_STATUS not in fake_aws.tags(key, racing.later_version)
