"""Read the header of an AWS Encryption SDK message and judge it against the tier A rules.

Standard library only: this module is packaged into the tier A validator Lambda, where the
Encryption SDK is not available. It parses the documented message format (AWS Encryption
SDK developer guide, "Message format reference", header versions 1 and 2); it does no
cryptography and does not authenticate the header (that needs the data key, which only
the municipality holds). Every length field is bounded by the bytes actually available,
so any input, however short or hostile, ends in a `MessageHeader` or a `HeaderError`.

Header layout (all integers big-endian):

    v1: version=0x01 | type=0x80 | algorithm id (2) | message id (16) | AAD length (2) |
        AAD | EDK count (2) | EDKs | content type (1) | reserved=0 (4) | IV length (1) |
        frame length (4) || header auth: IV (12) + tag (16)
    v2: version=0x02 | algorithm id (2) | message id (32) | AAD length (2) | AAD |
        EDK count (2) | EDKs | content type (1) | frame length (4) | suite data (32) ||
        header auth: tag (16)
    AAD: pair count (2) | { key length (2) | key | value length (2) | value }  (empty when AAD length is 0)
    EDK: provider id length (2) | provider id | provider info length (2) | provider info |
         ciphertext length (2) | ciphertext
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kommunmoln import names

# --- Algorithm suites (AWS Encryption SDK "Supported algorithm suites") -------------------
_V1_SUITES = frozenset({0x0014, 0x0046, 0x0078, 0x0114, 0x0146, 0x0178, 0x0214, 0x0346, 0x0378})
COMMITTING_SUITES: frozenset[int] = frozenset({0x0478, 0x0578})
_IV_LENGTH = 12
_TAG_LENGTH = 16
_COMMIT_SUITE_DATA_LENGTH = 32
_MAX_FRAME_LENGTH = 2**31 - 1
_V1_MESSAGE_TYPE = 0x80
_CONTENT_NON_FRAMED = 0x01
_CONTENT_FRAMED = 0x02

# Key providers that belong to AWS: a data key wrapped by one of them can be unwrapped by AWS.
AWS_PROVIDER_PREFIX = "aws-"
AWS_KMS_PROVIDER = "aws-kms"

# --- Problem codes: the first word of every problem and of every HeaderError code ---------
# They end up in an S3 object tag value (letters, digits, spaces and + - = . _ : / @ only).
NOT_ESDK = "not-esdk"
TRUNCATED_HEADER = "truncated-header"
MALFORMED_HEADER = "malformed-header"
NON_COMMITTING_SUITE = "non-committing-suite"
NO_DATA_KEYS = "no-data-keys"
AWS_WRAPPED_KEY = "aws-wrapped-key"
NAMESPACE_NOT_ALLOWED = "namespace-not-allowed"
CONTEXT_MISSING = "context-missing"
CONTEXT_MISMATCH = "context-mismatch"


class HeaderError(ValueError):
    """The bytes are not a well-formed ESDK message header. `str()` is a one-line reason.

    `code` is a short reason code (NOT_ESDK, TRUNCATED_HEADER or MALFORMED_HEADER).
    Messages name offsets and fields, never the bytes themselves (they may be plaintext).
    """

    code: str = MALFORMED_HEADER

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        if code is not None:
            self.code = code


class HeaderTruncated(HeaderError):
    """The bytes end before the header does (a short object, or a header beyond the bound)."""

    code = TRUNCATED_HEADER


@dataclass(frozen=True)
class EncryptedDataKey:
    """One encrypted data key: who wrapped it (provider id = key namespace) and with which key."""

    provider_id: str
    provider_info: bytes
    ciphertext_length: int


@dataclass(frozen=True)
class MessageHeader:
    """The parsed, unauthenticated header of an ESDK message."""

    version: int
    algorithm_id: int
    message_id: bytes
    encryption_context: dict[str, str]
    encrypted_data_keys: tuple[EncryptedDataKey, ...]
    content_type: int
    frame_length: int
    header_length: int  # bytes of the header body, without the header authentication section
    total_length: int = 0  # header body plus the header authentication section (IV and/or tag)

    @property
    def committing(self) -> bool:
        return self.algorithm_id in COMMITTING_SUITES


class _Reader:
    """A cursor over a byte string that never reads past its end."""

    def __init__(
        self,
        data: bytes,
        *,
        base: int = 0,
        truncation: type[HeaderError] = HeaderTruncated,
        overrun: str = "truncated header",
    ) -> None:
        self._data = data
        self._offset = 0
        self._base = base  # offset of data[0] in the whole message, for messages
        self._truncation = truncation
        self._overrun = overrun

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def take(self, length: int, field: str) -> bytes:
        if length > self.remaining:
            raise self._truncation(
                f"{self._overrun}: {field} needs {length} bytes at offset {self._base + self._offset}, "
                f"only {self.remaining} remain"
            )
        chunk = self._data[self._offset : self._offset + length]
        self._offset += length
        return chunk

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def text(self, length_field: str, field: str) -> str:
        raw = self.take(self.uint(2, length_field), field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HeaderError(f"{field} at offset {self._base + self._offset - len(raw)} is not valid UTF-8") from None


def parse_header(prefix: bytes) -> MessageHeader:
    """Parse the ESDK message header at the start of `prefix` (bytes after it are ignored).

    Raises `HeaderError` (`HeaderTruncated` when `prefix` ends inside the header, including
    its authentication section) with a one-line reason. Never raises anything else.
    """
    data = bytes(prefix)
    if not data:
        raise HeaderTruncated("not an AWS Encryption SDK message (no bytes)")
    reader = _Reader(data)
    version = reader.uint(1, "version")
    if version == 1:
        message_type = reader.uint(1, "message type")
        if message_type != _V1_MESSAGE_TYPE:
            raise HeaderError(
                f"not an AWS Encryption SDK message (version 1 with message type 0x{message_type:02x})", code=NOT_ESDK
            )
    elif version != 2:
        raise HeaderError(f"not an AWS Encryption SDK message (version byte 0x{version:02x})", code=NOT_ESDK)

    algorithm_id = reader.uint(2, "algorithm suite id")
    if version == 1 and algorithm_id not in _V1_SUITES:
        raise HeaderError(f"algorithm suite 0x{algorithm_id:04x} is not valid in a version 1 message")
    if version == 2 and algorithm_id not in COMMITTING_SUITES:
        raise HeaderError(f"algorithm suite 0x{algorithm_id:04x} is not valid in a version 2 message")
    message_id = reader.take(16 if version == 1 else 32, "message id")

    aad_offset = reader.offset + 2
    aad = reader.take(reader.uint(2, "AAD length"), "AAD")
    encryption_context = _parse_context(aad, base=aad_offset)

    edk_count = reader.uint(2, "encrypted data key count")
    keys = []
    for index in range(edk_count):
        provider_id = reader.text(f"provider id length of data key {index}", f"provider id of data key {index}")
        provider_info = reader.take(
            reader.uint(2, f"provider info length of data key {index}"), f"provider info of data key {index}"
        )
        ciphertext_length = reader.uint(2, f"ciphertext length of data key {index}")
        reader.take(ciphertext_length, f"ciphertext of data key {index}")
        keys.append(EncryptedDataKey(provider_id, provider_info, ciphertext_length))

    content_type = reader.uint(1, "content type")
    if content_type not in (_CONTENT_NON_FRAMED, _CONTENT_FRAMED):
        raise HeaderError(f"unknown content type 0x{content_type:02x}")
    if version == 1:
        if reader.uint(4, "reserved field") != 0:
            raise HeaderError("reserved field of a version 1 header is not zero")
        iv_length = reader.uint(1, "IV length")
        if iv_length != _IV_LENGTH:
            raise HeaderError(f"IV length {iv_length} does not match the algorithm suite ({_IV_LENGTH})")
    frame_length = reader.uint(4, "frame length")
    if content_type == _CONTENT_NON_FRAMED and frame_length != 0:
        raise HeaderError("non-framed message with a non-zero frame length")
    if frame_length > _MAX_FRAME_LENGTH:
        raise HeaderError(f"frame length {frame_length} exceeds the maximum {_MAX_FRAME_LENGTH}")
    if version == 2:
        reader.take(_COMMIT_SUITE_DATA_LENGTH, "algorithm suite data (key commitment)")
    header_length = reader.offset
    reader.take((_IV_LENGTH if version == 1 else 0) + _TAG_LENGTH, "header authentication")

    return MessageHeader(
        version=version,
        algorithm_id=algorithm_id,
        message_id=message_id,
        encryption_context=encryption_context,
        encrypted_data_keys=tuple(keys),
        content_type=content_type,
        frame_length=frame_length,
        header_length=header_length,
        total_length=reader.offset,
    )


def _parse_context(aad: bytes, *, base: int) -> dict[str, str]:
    """The encryption context from the AAD field. The AAD length bounds it: overrunning it is malformed."""
    if not aad:
        return {}
    reader = _Reader(
        aad, base=base, truncation=HeaderError, overrun="malformed encryption context (overruns the AAD length)"
    )
    count = reader.uint(2, "encryption context pair count")
    context: dict[str, str] = {}
    for index in range(count):
        key = reader.text(f"length of context key {index}", f"context key {index}")
        value = reader.text(f"length of context value {index}", f"context value {index}")
        if key in context:
            raise HeaderError(f"duplicate encryption context key at pair {index}")
        context[key] = value
    if reader.remaining:
        raise HeaderError(f"{reader.remaining} unexpected bytes after the encryption context")
    return context


def _show(value: str, limit: int = 64) -> str:
    """A bounded repr for problem text (header fields are attacker-controlled)."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def header_problems(
    header: MessageHeader,
    *,
    allowed_namespaces: Iterable[str],
    bucket: str,
    key: str,
    required_context_keys: Iterable[str],
) -> list[str]:
    """Why this header breaks the tier A rules; [] means it passes.

    Each problem is one line starting with its code (`problem_code()` returns it).
    """
    problems: list[str] = []
    if header.algorithm_id not in COMMITTING_SUITES:
        committing = " or ".join(f"0x{suite:04x}" for suite in sorted(COMMITTING_SUITES))
        problems.append(
            f"{NON_COMMITTING_SUITE}: algorithm suite 0x{header.algorithm_id:04x} does not commit to its data key "
            f"(expected {committing})"
        )
    if not header.encrypted_data_keys:
        problems.append(f"{NO_DATA_KEYS}: the message carries no encrypted data key")
    allowed = frozenset(allowed_namespaces)
    for edk in header.encrypted_data_keys:
        if edk.provider_id == AWS_KMS_PROVIDER or edk.provider_id.startswith(AWS_PROVIDER_PREFIX):
            problems.append(
                f"{AWS_WRAPPED_KEY}: a data key is wrapped by provider {_show(edk.provider_id)}, so AWS could decrypt it"
            )
        elif edk.provider_id not in allowed:
            problems.append(
                f"{NAMESPACE_NOT_ALLOWED}: a data key is wrapped under key namespace {_show(edk.provider_id)}, "
                "which is not an allowed municipality namespace"
            )
    context = header.encryption_context
    for required in required_context_keys:
        if required not in context:
            problems.append(f"{CONTEXT_MISSING}: the encryption context lacks {_show(required)}")
    for context_key, actual, what in ((names.CONTEXT_BUCKET, bucket, "bucket"), (names.CONTEXT_KEY, key, "key")):
        if context_key in context and context[context_key] != actual:
            problems.append(
                f"{CONTEXT_MISMATCH}: the encryption context binds {what} {_show(context[context_key])}, "
                f"the object is at {_show(actual)} (moved or copied)"
            )
    return problems


def problem_code(problem: str) -> str:
    """The reason code a problem line starts with."""
    return problem.split(":", 1)[0].strip()


def check_prefix(
    prefix: bytes,
    *,
    allowed_namespaces: Iterable[str],
    bucket: str,
    key: str,
    required_context_keys: Iterable[str] = names.REQUIRED_CONTEXT_KEYS,
) -> list[str]:
    """Parse and judge in one call: the problems, with a HeaderError turned into one problem."""
    try:
        header = parse_header(prefix)
    except HeaderError as error:
        return [f"{error.code}: {error}"]
    return header_problems(
        header,
        allowed_namespaces=allowed_namespaces,
        bucket=bucket,
        key=key,
        required_context_keys=required_context_keys,
    )


def context_summary(context: Mapping[str, str]) -> str:
    """A one-line, bounded rendering of an encryption context (for CLI output)."""
    return ", ".join(f"{_show(k, 40)}={_show(v, 80)}" for k, v in sorted(context.items()))
