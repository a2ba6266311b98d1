"""Tier A validator logic: plain functions taking boto3 clients, no module-level state.

For one object version: read only the head of the object (one ranged GET of a fixed
bound, the same for 1 KB and 10 GB), check its AWS Encryption SDK header against the
tier A rules, tag that version `validated` or `quarantined` (keeping its other tags), and
on quarantine publish one SNS alarm. Never deletes. Idempotent: a version that already
carries a status tag is reported as it is, without a second read, tag or alarm. Only the
validator and the security role may set that tag (the bucket policy denies everyone else).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from kommunmoln import names
from kommunmoln.esdk_header import HeaderError, HeaderTruncated, header_problems, parse_header, problem_code

STATUS_VALIDATED = names.STATUS_VALIDATED
STATUS_QUARANTINED = names.STATUS_QUARANTINED
STATUS_MISSING = "missing"  # the version was gone before a decision: nothing to tag (never a tag value)

EMPTY_OBJECT = "empty-object"
HEADER_TOO_LARGE = "header-too-large"
MIN_HEADER_READ_BYTES = 1024
MAX_HEADER_READ_BYTES = 1024 * 1024
MAX_TAGS_PER_OBJECT = 10  # S3 limit
MAX_TAG_VALUE = 256  # S3 limit (characters)

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound", "MethodNotAllowed"})
_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")
_CONTENT_RANGE_TOTAL = re.compile(r"bytes \d+-\d+/(\d+)")


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
class Outcome:
    """What the validator decided about one object version (never any of its content)."""

    bucket: str
    key: str
    version_id: str | None
    status: str  # STATUS_VALIDATED | STATUS_QUARANTINED | STATUS_MISSING (or a status tag set by the security role)
    reasons: tuple[str, ...]
    bytes_read: int
    repeated: bool = False  # the version already carried a status tag: nothing was read, tagged or published
    reason_codes: tuple[str, ...] = field(default=())

    def as_log(self) -> dict[str, Any]:
        """The structured-log / alarm form."""
        return {
            "bucket": self.bucket,
            "key": self.key,
            "versionId": self.version_id,
            "status": self.status,
            "reasons": list(self.reasons),
            "reasonCodes": list(self.reason_codes),
            "bytesRead": self.bytes_read,
            "repeated": self.repeated,
        }


@dataclass(frozen=True)
class ObjectRef:
    """One object version named by an S3 event record."""

    bucket: str
    key: str
    version_id: str | None


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _is_missing(error: ClientError) -> bool:
    return _error_code(error) in _MISSING_CODES


def _outcome(
    bucket: str, key: str, version_id: str | None, status: str, reasons: list[str], bytes_read: int
) -> Outcome:
    codes = tuple(dict.fromkeys(problem_code(reason) for reason in reasons))
    return Outcome(bucket, key, version_id, status, tuple(reasons), bytes_read, reason_codes=codes)


def _version_args(bucket: str, key: str, version_id: str | None) -> dict[str, str]:
    args = {"Bucket": bucket, "Key": key}
    if version_id:
        args["VersionId"] = version_id
    return args


def check_object(s3: Any, *, bucket: str, key: str, version_id: str | None, settings: Settings) -> Outcome:
    """Read-only check of one version: ONE ranged GET of at most `settings.header_read_bytes`.

    Returns 'validated', 'quarantined' (with reasons) or 'missing'. Raises ClientError for
    anything that prevents a decision (access denied, throttling after the client's retries).
    """
    bound = settings.header_read_bytes
    try:
        response = s3.get_object(**_version_args(bucket, key, version_id), Range=f"bytes=0-{bound - 1}")
    except ClientError as error:
        if _is_missing(error):
            return _outcome(
                bucket, key, version_id, STATUS_MISSING, ["missing: the object version no longer exists"], 0
            )
        if _error_code(error) == "InvalidRange":  # S3's answer to a range over a zero-byte object
            return _outcome(
                bucket, key, version_id, STATUS_QUARANTINED, [f"{EMPTY_OBJECT}: the object has no bytes"], 0
            )
        raise
    body = response["Body"]
    try:
        head = body.read(bound)  # bounded even if a server ignored the Range header
    finally:
        body.close()
    if not head:
        return _outcome(bucket, key, version_id, STATUS_QUARANTINED, [f"{EMPTY_OBJECT}: the object has no bytes"], 0)

    try:
        header = parse_header(head)
    except HeaderTruncated as error:
        total = _total_size(response, len(head))
        if len(head) >= bound and total > bound:
            reason = f"{HEADER_TOO_LARGE}: the ESDK header does not end within the first {bound} bytes"
        else:
            reason = f"{error.code}: {error}"
        return _outcome(bucket, key, version_id, STATUS_QUARANTINED, [reason], len(head))
    except HeaderError as error:
        return _outcome(bucket, key, version_id, STATUS_QUARANTINED, [f"{error.code}: {error}"], len(head))

    problems = header_problems(
        header,
        allowed_namespaces=settings.allowed_namespaces,
        bucket=bucket,
        key=key,
        required_context_keys=settings.required_context_keys,
    )
    status = STATUS_QUARANTINED if problems else STATUS_VALIDATED
    return _outcome(bucket, key, version_id, status, problems, len(head))


def _total_size(response: Mapping[str, Any], read: int) -> int:
    match = _CONTENT_RANGE_TOTAL.fullmatch(str(response.get("ContentRange", "")))
    return int(match.group(1)) if match else read


def _tag_value(codes: tuple[str, ...]) -> str:
    return " ".join(codes)[:MAX_TAG_VALUE] or "unspecified"


def validate_object(s3: Any, sns: Any, *, bucket: str, key: str, version_id: str | None, settings: Settings) -> Outcome:
    """Check one version, tag it, and alarm on quarantine. Idempotent; never deletes.

    The alarm is published before the tag is written: if tagging fails, the retry alarms
    again (at least once), whereas the reverse order could lose the alarm.
    """
    version = _version_args(bucket, key, version_id)
    try:
        existing = s3.get_object_tagging(**version)["TagSet"]
    except ClientError as error:
        if _is_missing(error):
            return _outcome(
                bucket, key, version_id, STATUS_MISSING, ["missing: the object version no longer exists"], 0
            )
        raise
    tags = {tag["Key"]: tag["Value"] for tag in existing}
    if names.OBJECT_TAG_STATUS in tags:
        codes = tuple(tags.get(names.OBJECT_TAG_REASON, "").split())
        return Outcome(
            bucket, key, version_id, tags[names.OBJECT_TAG_STATUS], codes, 0, repeated=True, reason_codes=codes
        )

    outcome = check_object(s3, bucket=bucket, key=key, version_id=version_id, settings=settings)
    if outcome.status == STATUS_MISSING:
        return outcome
    if outcome.status == STATUS_QUARANTINED:
        publish_alarm(sns, settings.alarm_topic_arn, outcome)

    tags.pop(names.OBJECT_TAG_REASON, None)
    tags[names.OBJECT_TAG_STATUS] = outcome.status
    if outcome.status == STATUS_QUARANTINED:
        tags[names.OBJECT_TAG_REASON] = _tag_value(outcome.reason_codes)
    if len(tags) > MAX_TAGS_PER_OBJECT:
        raise ValueError(
            f"cannot tag s3://{bucket}/{key}: it already has {len(existing)} tags and S3 allows {MAX_TAGS_PER_OBJECT}"
        )
    try:
        s3.put_object_tagging(**version, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
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
    return outcome


def publish_alarm(sns: Any, topic_arn: str, outcome: Outcome) -> None:
    """One SNS message naming the version and the reasons; never object content."""
    sns.publish(
        TopicArn=topic_arn,
        Subject="kommunmoln: object quarantined (tier A)",
        Message=json.dumps({"event": "object-quarantined", **outcome.as_log()}, ensure_ascii=False),
    )


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
