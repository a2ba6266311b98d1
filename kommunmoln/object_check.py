"""The read-only tier A check of one S3 object version, shared by the validator and the client.

One ranged GET of a fixed bound reads the head of the object; its AWS Encryption SDK
header is judged against the tier A rules (`kommunmoln.esdk_header`). Nothing is tagged,
published or deleted here: the validator Lambda (`lambdas/tier_a_validator/logic.py`) adds
the decision, and the client's `verify` reports it. boto3/botocore and the standard library
only, so the module goes into the validator's Lambda asset as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import ClientError

from kommunmoln import names
from kommunmoln.body_check import body_problems
from kommunmoln.esdk_header import HeaderError, HeaderTruncated, header_problems, parse_header, problem_code

STATUS_VALIDATED = names.STATUS_VALIDATED
STATUS_QUARANTINED = names.STATUS_QUARANTINED
STATUS_MISSING = "missing"  # the version was gone before a decision: nothing to tag (never a tag value)

EMPTY_OBJECT = "empty-object"
HEADER_TOO_LARGE = "header-too-large"
MIN_HEADER_READ_BYTES = 1024
MAX_HEADER_READ_BYTES = 1024 * 1024

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound", "MethodNotAllowed"})
_CONTENT_RANGE_TOTAL = re.compile(r"bytes \d+-\d+/(\d+)")


class CheckRules(Protocol):
    """What the check needs to know: the validator's Settings and the client's rules both qualify."""

    @property
    def allowed_namespaces(self) -> tuple[str, ...]: ...

    @property
    def required_context_keys(self) -> tuple[str, ...]: ...

    @property
    def header_read_bytes(self) -> int: ...


@dataclass(frozen=True)
class Rules:
    """The tier A rules without the validator's Lambda-only settings (the client's `verify`)."""

    allowed_namespaces: tuple[str, ...]
    required_context_keys: tuple[str, ...]
    header_read_bytes: int


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


def error_code(error: ClientError) -> str:
    """The S3 error code of a ClientError ("" if it has none)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def is_missing(error: ClientError) -> bool:
    """True when S3 says the object version does not exist (any more)."""
    return error_code(error) in _MISSING_CODES


def make_outcome(
    bucket: str, key: str, version_id: str | None, status: str, reasons: list[str], bytes_read: int
) -> Outcome:
    """An Outcome whose reason codes are derived from the reasons (each reason starts with its code)."""
    codes = tuple(dict.fromkeys(problem_code(reason) for reason in reasons))
    return Outcome(bucket, key, version_id, status, tuple(reasons), bytes_read, reason_codes=codes)


def version_args(bucket: str, key: str, version_id: str | None) -> dict[str, str]:
    """Bucket/Key(/VersionId) keyword arguments for an S3 call on one object version."""
    args = {"Bucket": bucket, "Key": key}
    if version_id:
        args["VersionId"] = version_id
    return args


def check_object(s3: Any, *, bucket: str, key: str, version_id: str | None, settings: CheckRules) -> Outcome:
    """Read-only check of one version: ONE ranged GET of at most `settings.header_read_bytes`.

    Returns 'validated', 'quarantined' (with reasons) or 'missing'. Raises ClientError for
    anything that prevents a decision (access denied, throttling after the client's retries).
    """
    bound = settings.header_read_bytes
    try:
        response = s3.get_object(**version_args(bucket, key, version_id), Range=f"bytes=0-{bound - 1}")
    except ClientError as error:
        if is_missing(error):
            return make_outcome(
                bucket, key, version_id, STATUS_MISSING, ["missing: the object version no longer exists"], 0
            )
        if error_code(error) == "InvalidRange":  # S3's answer to a range over a zero-byte object
            return make_outcome(
                bucket, key, version_id, STATUS_QUARANTINED, [f"{EMPTY_OBJECT}: the object has no bytes"], 0
            )
        raise
    # Without a version id (an event of an unversioned or suspended bucket) the outcome names the version
    # actually read (GetObject's x-amz-version-id), so that its tag cannot land on a newer version.
    version_id = version_id or response.get("VersionId") or None
    body = response["Body"]
    try:
        head = body.read(bound)  # bounded even if a server ignored the Range header
    finally:
        body.close()
    if not head:
        return make_outcome(
            bucket, key, version_id, STATUS_QUARANTINED, [f"{EMPTY_OBJECT}: the object has no bytes"], 0
        )

    try:
        header = parse_header(head)
    except HeaderTruncated as error:
        total = _total_size(response, len(head))
        if len(head) >= bound and total > bound:
            reason = f"{HEADER_TOO_LARGE}: the ESDK header does not end within the first {bound} bytes"
        else:
            reason = f"{error.code}: {error}"
        return make_outcome(bucket, key, version_id, STATUS_QUARANTINED, [reason], len(head))
    except HeaderError as error:
        return make_outcome(bucket, key, version_id, STATUS_QUARANTINED, [f"{error.code}: {error}"], len(head))

    problems = header_problems(
        header,
        allowed_namespaces=settings.allowed_namespaces,
        bucket=bucket,
        key=key,
        required_context_keys=settings.required_context_keys,
    )
    if not problems:  # the header is right: does the rest look like its ciphertext?
        problems = body_problems(header, head, _total_size(response, len(head)))
    status = STATUS_QUARANTINED if problems else STATUS_VALIDATED
    return make_outcome(bucket, key, version_id, status, problems, len(head))


def _total_size(response: Mapping[str, Any], read: int) -> int:
    match = _CONTENT_RANGE_TOTAL.fullmatch(str(response.get("ContentRange", "")))
    return int(match.group(1)) if match else read
