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
