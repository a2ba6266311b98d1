"""Tier B object validator: every new object version must be SSE-KMS with the stack's key.

Rule (HeadObject on the exact version): `ServerSideEncryption == "aws:kms"`, `SSEKMSKeyId`
names the configured key (key id, key ARN, alias name or alias ARN: all accepted), and
`BucketKeyEnabled` is true. A version that passes is tagged `validated`; one that fails is
tagged `quarantined` with a short reason code (other tags are kept), and an alarm goes to
SNS. Nothing is ever deleted. A second delivery of the same event finds the tag already
set and changes nothing (no second alarm). A version that no longer exists is reported
as missing, not as an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from kommunmoln import names

# Reason codes (tag values): short, never object content.
REASON_NOT_SSE_KMS = "not-sse-kms"
REASON_WRONG_KEY = "wrong-kms-key"
REASON_NO_BUCKET_KEY = "no-bucket-key"

OUTCOME_VALIDATED = names.STATUS_VALIDATED
OUTCOME_QUARANTINED = names.STATUS_QUARANTINED
OUTCOME_MISSING = "missing"

_KEY_ARN = re.compile(r"arn:(aws[\w-]*):kms:([a-z0-9-]+):(\d{12}):key/([A-Za-z0-9-]+)")
_ALIAS_ARN = re.compile(r"arn:(aws[\w-]*):kms:([a-z0-9-]+):(\d{12}):(alias/[A-Za-z0-9/_-]+)")
_MAX_OBJECT_TAGS = 10


class ValidatorConfigError(ValueError):
    """The configured key cannot be understood or resolved."""


@dataclass(frozen=True)
class KeyMatcher:
    """Every spelling of the one key that may protect tier B objects."""

    key_id: str
    key_arn: str  # "" when configured as a bare key id
    aliases: frozenset[str]  # alias names ("alias/x") and alias ARNs

    def matches(self, observed: str | None) -> bool:
        if not observed:
            return False
        if observed in (self.key_id, self.key_arn) or observed in self.aliases:
            return True
        arn = _KEY_ARN.fullmatch(observed)
        if arn and arn.group(4) == self.key_id:
            # A bare key id was configured: any ARN of that id is the same key only if the
            # account and Region agree with the configured ARN (when we know it).
            return not self.key_arn or observed == self.key_arn
        return False

    @staticmethod
    def build(configured: str, describe_key: Any = None) -> KeyMatcher:
        """From the configured id/ARN/alias; `describe_key(KeyId=...)` resolves aliases (one call)."""
        configured = configured.strip()
        if not configured:
            raise ValidatorConfigError("no expected KMS key configured")
        arn = _KEY_ARN.fullmatch(configured)
        if arn:
            return KeyMatcher(key_id=arn.group(4), key_arn=configured, aliases=frozenset())
        if re.fullmatch(r"[A-Za-z0-9-]{1,64}", configured) and not configured.startswith("alias"):
            return KeyMatcher(key_id=configured, key_arn="", aliases=frozenset())
        alias_arn = _ALIAS_ARN.fullmatch(configured)
        if alias_arn or configured.startswith("alias/"):
            if describe_key is None:
                raise ValidatorConfigError(f"alias {configured} needs a DescribeKey call to resolve")
            meta = describe_key(KeyId=configured)["KeyMetadata"]
            aliases = {configured}
            if alias_arn:
                aliases.add(alias_arn.group(4))
            else:
                # The alias ARN lives in the key's account and Region.
                key_arn = _KEY_ARN.fullmatch(meta["Arn"])
                if key_arn:
                    aliases.add(f"arn:{key_arn.group(1)}:kms:{key_arn.group(2)}:{key_arn.group(3)}:{configured}")
            return KeyMatcher(key_id=meta["KeyId"], key_arn=meta["Arn"], aliases=frozenset(aliases))
        raise ValidatorConfigError(f"{configured!r} is not a KMS key id, key ARN, alias name or alias ARN")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # "" when ok
    observed_key: str
    detail: str


def evaluate(head: Mapping[str, Any], matcher: KeyMatcher) -> Verdict:
    """The tier B rule applied to a HeadObject response."""
    mode = head.get("ServerSideEncryption") or "none"
    observed = head.get("SSEKMSKeyId") or ""
    if mode != "aws:kms":
        return Verdict(False, REASON_NOT_SSE_KMS, observed, f"server-side encryption is {mode}, not aws:kms")
    if not matcher.matches(observed):
        return Verdict(
            False, REASON_WRONG_KEY, observed, f"encrypted under {observed or 'no key id'}, not the tier B key"
        )
    if head.get("BucketKeyEnabled") is not True:
        return Verdict(False, REASON_NO_BUCKET_KEY, observed, "S3 Bucket Key is not enabled for this object")
    return Verdict(True, "", observed, "SSE-KMS with the tier B key and a bucket key")


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    version_id: str | None

    def version_args(self) -> dict[str, str]:
        return {"VersionId": self.version_id} if self.version_id else {}


def object_refs(event: Mapping[str, Any]) -> Iterator[ObjectRef]:
    """Objects named by an S3 event notification (Records) or an EventBridge "Object Created" event."""
    for record in event.get("Records", []):
        if "body" in record and "s3" not in record:  # S3 -> SQS -> Lambda
            yield from object_refs(json.loads(record["body"]))
            continue
        s3 = record.get("s3", {})
        if not str(record.get("eventName", "ObjectCreated")).startswith("ObjectCreated"):
            continue
        yield ObjectRef(
            bucket=s3["bucket"]["name"],
            key=unquote_plus(s3["object"]["key"]),
            version_id=s3["object"].get("versionId") or None,
        )
    detail = event.get("detail")
    if isinstance(detail, Mapping) and "bucket" in detail:
        yield ObjectRef(
            bucket=detail["bucket"]["name"],
            key=detail["object"]["key"],
            version_id=detail["object"].get("version-id") or None,
        )


@dataclass(frozen=True)
class Outcome:
    ref: ObjectRef
    status: str  # validated | quarantined | missing
    reason: str
    detail: str
    observed_key: str = ""
    changed: bool = False  # False on a duplicate delivery (tags already set)
    alarmed: bool = False


def _is_missing(err: ClientError) -> bool:
    code = str(err.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NoSuchVersion", "NotFound")


def _merged_tags(existing: Iterable[Mapping[str, str]], status: str, reason: str) -> list[dict[str, str]]:
    ours = {names.OBJECT_TAG_STATUS, names.OBJECT_TAG_REASON}
    tags = [{"Key": t["Key"], "Value": t["Value"]} for t in existing if t["Key"] not in ours]
    tags.append({"Key": names.OBJECT_TAG_STATUS, "Value": status})
    if reason and len(tags) < _MAX_OBJECT_TAGS:  # S3 allows 10 tags; the status tag wins
        tags.append({"Key": names.OBJECT_TAG_REASON, "Value": reason})
    if len(tags) > _MAX_OBJECT_TAGS:
        raise ValueError("object already has 10 tags; cannot add the validator's status tag")
    return tags


def validate_object(ref: ObjectRef, *, s3: Any, sns: Any, matcher: KeyMatcher, topic_arn: str) -> Outcome:
    """Check one object version, tag it, alarm when quarantined. Never deletes."""
    try:
        head = s3.head_object(Bucket=ref.bucket, Key=ref.key, **ref.version_args())
    except ClientError as err:
        if _is_missing(err):
            return Outcome(ref, OUTCOME_MISSING, "", "object version no longer exists (deleted before validation)")
        raise
    ref = ObjectRef(ref.bucket, ref.key, ref.version_id or head.get("VersionId") or None)
    verdict = evaluate(head, matcher)
    status = OUTCOME_VALIDATED if verdict.ok else OUTCOME_QUARANTINED
    current = s3.get_object_tagging(Bucket=ref.bucket, Key=ref.key, **ref.version_args()).get("TagSet", [])
    existing = {t["Key"]: t["Value"] for t in current}
    if existing.get(names.OBJECT_TAG_STATUS) == status and existing.get(names.OBJECT_TAG_REASON, "") == verdict.reason:
        return Outcome(ref, status, verdict.reason, verdict.detail, verdict.observed_key, changed=False)
    if existing.get(names.OBJECT_TAG_STATUS) == OUTCOME_QUARANTINED and status == OUTCOME_VALIDATED:
        # Encryption of a version never changes; a quarantine tag set by a person stays.
        return Outcome(ref, OUTCOME_QUARANTINED, existing.get(names.OBJECT_TAG_REASON, ""), "already quarantined")
    s3.put_object_tagging(
        Bucket=ref.bucket,
        Key=ref.key,
        Tagging={"TagSet": _merged_tags(current, status, verdict.reason)},
        **ref.version_args(),
    )
    alarmed = False
    if status == OUTCOME_QUARANTINED:
        sns.publish(
            TopicArn=topic_arn,
            Subject=f"kommunmoln tier B: object quarantined ({verdict.reason})"[:100],
            Message=json.dumps(
                {
                    "event": "tier-b-object-quarantined",
                    "bucket": ref.bucket,
                    "key": ref.key,
                    "versionId": ref.version_id,
                    "reason": verdict.reason,
                    "detail": verdict.detail,
                    "expectedKey": matcher.key_arn or matcher.key_id,
                    "remedy": (
                        "The version was kept and tagged quarantined. Find who wrote it (CloudTrail data events), "
                        "re-upload it with SSE-KMS, the tier B key and BucketKeyEnabled, and fix the client."
                    ),
                },
                indent=2,
            ),
        )
        alarmed = True
    return Outcome(ref, status, verdict.reason, verdict.detail, verdict.observed_key, changed=True, alarmed=alarmed)
