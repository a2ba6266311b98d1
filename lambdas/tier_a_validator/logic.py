"""Tier A validator logic: plain functions taking boto3 clients, no module-level state.

For one object version: read only the head of the object (one ranged GET of a fixed
bound, the same for 1 KB and 10 GB), check its AWS Encryption SDK header against the
tier A rules, tag that version `validated` or `quarantined` (keeping its other tags), and
on quarantine publish one SNS alarm. Never deletes.

Fail closed: every object gets a decision. Whatever stops the check for good (an archive
storage class, a key the validator may not use, SSE-C, an object at S3's tag limit) ends in
`quarantined`; the bucket policy keeps every version not tagged `validated` unreadable
anyway. Only transient errors (throttling, 5xx) raise, so that Lambda retries the event.

Idempotent: a version whose status tag was written for *that* version (the
`kommunmoln-checked-version` tag names its version id) is reported as it is. A status tag
copied to another version (CopyObject copies tags by default) does not count: the copy is
checked again. Only the validator and the security role may set these tags.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from kommunmoln import names
from kommunmoln.object_check import (
    EMPTY_OBJECT,
    HEADER_TOO_LARGE,
    MAX_HEADER_READ_BYTES,
    MIN_HEADER_READ_BYTES,
    STATUS_MISSING,
    STATUS_QUARANTINED,
    STATUS_VALIDATED,
    Outcome,
    check_object,
    error_code,
)
from kommunmoln.object_check import is_missing as _is_missing
from kommunmoln.object_check import make_outcome as _outcome
from kommunmoln.object_check import version_args as _version_args

# The read-only check lives in kommunmoln.object_check (the client's `verify` runs it too);
# its names stay importable from here for the handler and the tests.
__all__ = [
    "EMPTY_OBJECT",
    "HEADER_TOO_LARGE",
    "STATUS_MISSING",
    "STATUS_QUARANTINED",
    "STATUS_VALIDATED",
    "ObjectRef",
    "Outcome",
    "Settings",
    "check_object",
    "object_refs",
    "publish_alarm",
    "validate_object",
]

MAX_TAGS_PER_OBJECT = 10  # S3 limit
MAX_TAG_VALUE = 256  # S3 limit (characters)
MAX_ALARM_REASONS = 20  # with MAX_REASON_CHARS: an alarm stays far below SNS's 256 KiB
MAX_REASON_CHARS = 500
MAX_ALARM_KEY_CHARS = 1024
ARCHIVED = "archived-storage-class"
UNREADABLE = "unreadable"
TOO_MANY_TAGS = "too-many-tags"
# Errors worth a retry (the SDKs' throttling and transient classes, S3's 5xx codes); any other
# GetObject error is permanent for this version and ends in quarantine.
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
        "RequestLimitExceeded", "TooManyRequestsException", "RequestTimeout", "RequestTimeoutException",
        "InternalError", "ServiceUnavailable", "500", "503",
    }
)  # fmt: skip
_log = logging.getLogger(__name__)

_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")


@dataclass(frozen=True)
class Settings:
    """The validator's settings, validated once per cold start from its environment."""

    allowed_namespaces: tuple[str, ...]
    required_context_keys: tuple[str, ...]
    header_read_bytes: int
    alarm_topic_arn: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Raises ValueError naming the environment variable that is missing or bad."""

        def get(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                raise ValueError(f"environment variable {name} is missing or empty")
            return value

        def listed(name: str) -> tuple[str, ...]:
            items = tuple(part.strip() for part in get(name).split(",") if part.strip())
            if not items:
                raise ValueError(f"environment variable {name} names no values (expected a comma-separated list)")
            return items

        raw_bytes = get(names.ENV_HEADER_READ_BYTES)
        if not raw_bytes.isdigit() or not MIN_HEADER_READ_BYTES <= int(raw_bytes) <= MAX_HEADER_READ_BYTES:
            raise ValueError(
                f"environment variable {names.ENV_HEADER_READ_BYTES} must be a whole number from "
                f"{MIN_HEADER_READ_BYTES} to {MAX_HEADER_READ_BYTES}, got {raw_bytes[:20]!r}"
            )
        topic = get(names.ENV_ALARM_TOPIC_ARN)
        if not _TOPIC_ARN.fullmatch(topic):
            raise ValueError(f"environment variable {names.ENV_ALARM_TOPIC_ARN} is not an SNS topic ARN")
        return cls(
            allowed_namespaces=listed(names.ENV_ALLOWED_NAMESPACES),
            required_context_keys=listed(names.ENV_REQUIRED_CONTEXT_KEYS),
            header_read_bytes=int(raw_bytes),
            alarm_topic_arn=topic,
        )


@dataclass(frozen=True)
class ObjectRef:
    """One object version named by an S3 event record."""

    bucket: str
    key: str
    version_id: str | None


def _tag_value(codes: tuple[str, ...]) -> str:
    return " ".join(codes)[:MAX_TAG_VALUE] or "unspecified"


def is_transient(error: ClientError) -> bool:
    """Throttling or a server-side (5xx) error: worth a retry, unlike anything else."""
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return error_code(error) in _TRANSIENT_CODES or status >= 500


def unreadable_reason(error: ClientError) -> str:
    """Why GetObject refused this version for good (the error code only: messages may quote names)."""
    code = error_code(error) or "unknown"
    if code == "InvalidObjectState":
        # S3 API Reference, GetObject: an object in S3 Glacier Flexible Retrieval, Glacier Deep
        # Archive or an Intelligent-Tiering archive tier must be restored first (403 InvalidObjectState).
        return f"{ARCHIVED}: the object is in an archive storage class (InvalidObjectState)"
    # AccessDenied: typically SSE-KMS under a key the validator may not use (S3 needs the
    # caller's kms:Decrypt). InvalidRequest: an SSE-C object, which S3 returns only with its key.
    return f"{UNREADABLE}: S3 refused to return the object's head ({code[:64]})"


def decide_object(s3: Any, *, bucket: str, key: str, version_id: str | None, settings: Settings) -> Outcome:
    """`check_object`, but every permanent GetObject error is a decision (quarantine) too."""
    try:
        return check_object(s3, bucket=bucket, key=key, version_id=version_id, settings=settings)
    except ClientError as error:
        if is_transient(error):
            raise
        return _outcome(bucket, key, version_id, STATUS_QUARANTINED, [unreadable_reason(error)], 0)


def validate_object(s3: Any, sns: Any, *, bucket: str, key: str, version_id: str | None, settings: Settings) -> Outcome:
    """Check one version, tag it, then alarm on quarantine. Idempotent; never deletes.

    The tag is written before the alarm: the tag is the decision (the bucket policy reads
    it), the alarm only tells people. A failed publish is logged, not retried: the handler's
    quarantine metric drives a CloudWatch alarm of its own.
    """
    version = _version_args(bucket, key, version_id)
    this_version = version_id or "null"
    try:
        existing = s3.get_object_tagging(**version)["TagSet"]
    except ClientError as error:
        if _is_missing(error):
            return _outcome(
                bucket, key, version_id, STATUS_MISSING, ["missing: the object version no longer exists"], 0
            )
        raise
    tags = {tag["Key"]: tag["Value"] for tag in existing}
    # A status tag counts only for the version it was written for; a copied one does not.
    if names.OBJECT_TAG_STATUS in tags and tags.get(names.OBJECT_TAG_CHECKED_VERSION) == this_version:
        codes = tuple(tags.get(names.OBJECT_TAG_REASON, "").split())
        return Outcome(
            bucket, key, version_id, tags[names.OBJECT_TAG_STATUS], codes, 0, repeated=True, reason_codes=codes
        )

    outcome = decide_object(s3, bucket=bucket, key=key, version_id=version_id, settings=settings)
    if outcome.status == STATUS_MISSING:
        return outcome
    if version_id is None and outcome.version_id:
        # The event named no version: tag the version GetObject actually returned, never "the latest",
        # which a new upload may have replaced since (its own event checks that one). Its tags are re-read.
        version = _version_args(bucket, key, outcome.version_id)
        this_version = outcome.version_id
        tags = {tag["Key"]: tag["Value"] for tag in s3.get_object_tagging(**version)["TagSet"]}
    others = {k: v for k, v in tags.items() if k not in names.OBJECT_TAG_KEYS_STATUS}
    if len(others) + (3 if outcome.status == STATUS_QUARANTINED else 2) > MAX_TAGS_PER_OBJECT:
        # S3 allows 10 tags per object: the status tags replace those that do not fit. The
        # bucket policy admits only allow-listed keys, so such a version predates that guard.
        kept = dict(list(others.items())[: MAX_TAGS_PER_OBJECT - 3])
        reason = f"{TOO_MANY_TAGS}: {len(others)} other tags; {len(others) - len(kept)} dropped for the status tags"
        outcome = _outcome(bucket, key, version_id, STATUS_QUARANTINED, [*outcome.reasons, reason], outcome.bytes_read)
        others = kept
    new_tags = {**others, names.OBJECT_TAG_STATUS: outcome.status, names.OBJECT_TAG_CHECKED_VERSION: this_version}
    if outcome.status == STATUS_QUARANTINED:
        new_tags[names.OBJECT_TAG_REASON] = _tag_value(outcome.reason_codes)
    try:
        s3.put_object_tagging(**version, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in new_tags.items()]})
    except ClientError as error:
        if _is_missing(error):
            return _outcome(
                bucket,
                key,
                version_id,
                STATUS_MISSING,
                ["missing: the object version was deleted during validation"],
                0,
            )
        raise
    if outcome.status == STATUS_QUARANTINED:
        try:
            publish_alarm(sns, settings.alarm_topic_arn, outcome)
        except ClientError:
            _log.exception("quarantine alarm not published (the metric alarm still fires)")
    return outcome


def alarm_message(outcome: Outcome) -> str:
    """The alarm as JSON, bounded well below SNS's 256 KiB message limit (SNS Publish API)."""
    reasons = [reason[:MAX_REASON_CHARS] for reason in outcome.reasons[:MAX_ALARM_REASONS]]
    body: dict[str, Any] = {"event": "object-quarantined", **outcome.as_log(), "reasons": reasons}
    if len(outcome.reasons) > len(reasons):
        body["reasonsOmitted"] = len(outcome.reasons) - len(reasons)
    body["reasonCodes"] = body["reasonCodes"][:MAX_ALARM_REASONS]
    body["key"] = outcome.key[:MAX_ALARM_KEY_CHARS]  # S3 keys are at most 1,024 bytes anyway
    return json.dumps(body, ensure_ascii=False)


def publish_alarm(sns: Any, topic_arn: str, outcome: Outcome) -> None:
    """One SNS message naming the version and the reasons; never object content."""
    sns.publish(TopicArn=topic_arn, Subject="kommunmoln: object quarantined (tier A)", Message=alarm_message(outcome))


def object_refs(event: Mapping[str, Any]) -> list[ObjectRef]:
    """The object versions named by an S3 'ObjectCreated' event (keys URL-decoded).

    Records of other sources or event types are left out. Raises ValueError for an event
    that is not an S3 notification at all: it can never be processed, so it belongs in
    the dead-letter queue, where someone will look at it.
    """
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        raise ValueError("not an S3 event notification: no 'Records' list")
    refs = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping) or record.get("eventSource") != "aws:s3":
            continue
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        try:
            bucket = record["s3"]["bucket"]["name"]
            obj = record["s3"]["object"]
            key = unquote_plus(obj["key"])
        except (KeyError, TypeError):
            raise ValueError(f"S3 event record {index} lacks s3.bucket.name or s3.object.key") from None
        if not isinstance(bucket, str) or not bucket or not key:
            raise ValueError(f"S3 event record {index} has an empty bucket or key")
        version_id = obj.get("versionId") or None
        refs.append(ObjectRef(bucket=bucket, key=key, version_id=version_id))
    return refs
