"""The ESDK header parser: real messages from the Encryption SDK, hand-made edge cases, garbage."""

from __future__ import annotations

import contextlib
import io
import struct

import pytest
from aws_encryption_sdk.identifiers import Algorithm
from aws_encryption_sdk.internal.formatting.deserialize import deserialize_header
from hypothesis import given, settings
from hypothesis import strategies as st

from kommunmoln import names
from kommunmoln.esdk_header import (
    AWS_WRAPPED_KEY,
    COMMITTING_SUITES,
    CONTEXT_MISMATCH,
    CONTEXT_MISSING,
    NAMESPACE_NOT_ALLOWED,
    NO_DATA_KEYS,
    NON_COMMITTING_SUITE,
    NOT_ESDK,
    TRUNCATED_HEADER,
    EncryptedDataKey,
    HeaderError,
    HeaderTruncated,
    MessageHeader,
    check_prefix,
    header_problems,
    parse_header,
    problem_code,
)
from tests.handlers.tier_a.conftest import BUCKET, NAMESPACE, PDF, aes_key, context_for, encrypt, key_ring

KEY = "socialtjansten/2026/beslut.pdf.esdk"


@pytest.fixture(scope="module")
def v2_message() -> bytes:
    return encrypt(b"hemlig uppgift " * 100, context=context_for(KEY))


@pytest.fixture(scope="module")
def v1_message() -> bytes:
    return encrypt(b"hemlig uppgift", context=context_for(KEY), committing=False)


def _codes(problems: list[str]) -> set[str]:
    return {problem_code(p) for p in problems}


def _v2_header(
    *, edks: list[tuple[bytes, bytes, bytes]], aad: bytes = b"", content_type: int = 2, frame: int = 4096
) -> bytes:
    """A hand-built version 2 header (structure only; no valid authentication tag)."""
    body = struct.pack(">BH", 2, 0x0478) + bytes(32) + struct.pack(">H", len(aad)) + aad
    body += struct.pack(">H", len(edks))
    for provider, info, ciphertext in edks:
        body += struct.pack(">H", len(provider)) + provider + struct.pack(">H", len(info)) + info
        body += struct.pack(">H", len(ciphertext)) + ciphertext
    body += struct.pack(">BI", content_type, frame) + bytes(32)
    return body + bytes(16)


def _aad(pairs: list[tuple[bytes, bytes]]) -> bytes:
    out = struct.pack(">H", len(pairs))
    for key, value in pairs:
        out += struct.pack(">H", len(key)) + key + struct.pack(">H", len(value)) + value
    return out


# --- real messages ------------------------------------------------------------------------
def test_v2_message_parses_like_the_encryption_sdk_reads_it(v2_message: bytes) -> None:
    # GIVEN a committing message written by the AWS Encryption SDK
    reference, raw_header = deserialize_header(io.BytesIO(v2_message))
    # WHEN we parse it
    header = parse_header(v2_message)
    # THEN every field agrees with the SDK's own reader
    assert header.version == 2
    assert header.algorithm_id == reference.algorithm.algorithm_id == 0x0578
    assert header.algorithm_id in COMMITTING_SUITES and header.committing
    assert header.message_id == reference.message_id
    assert header.encryption_context == reference.encryption_context
    assert [(k.provider_id, k.provider_info) for k in header.encrypted_data_keys] == [
        (k.key_provider.provider_id, k.key_provider.key_info) for k in reference.encrypted_data_keys
    ]
    assert header.encrypted_data_keys[0].ciphertext_length == len(
        next(iter(reference.encrypted_data_keys)).encrypted_data_key
    )
    assert header.content_type == 2 and header.frame_length == reference.frame_length
    assert header.header_length == len(raw_header)
    assert header.total_length == len(raw_header) + 16


def test_v1_message_with_a_non_committing_suite_parses(v1_message: bytes) -> None:
    # GIVEN a message written with the legacy policy (version 1 header, suite 0x0378)
    reference, raw_header = deserialize_header(io.BytesIO(v1_message))
    # WHEN parsed
    header = parse_header(v1_message)
    # THEN it is a v1 header of that suite, with the IV + tag after the body
    assert (header.version, header.algorithm_id) == (1, reference.algorithm.algorithm_id)
    assert header.algorithm_id not in COMMITTING_SUITES
    assert header.header_length == len(raw_header) and header.total_length == len(raw_header) + 12 + 16
    assert header.encryption_context[names.CONTEXT_KEY] == KEY


def test_unframed_message_without_context_and_with_the_unsigned_suite() -> None:
    # GIVEN a non-framed message (frame length 0) with an empty context and suite 0x0478
    message = encrypt(b"x" * 10, algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, frame_length=0)
    # WHEN parsed
    header = parse_header(message)
    # THEN the parser reports exactly that
    assert (header.content_type, header.frame_length, header.encryption_context) == (1, 0, {})
    assert header.algorithm_id == 0x0478


def test_two_wrapping_keys_both_appear(rsa_escrow_key) -> None:
    # GIVEN a message whose data key is wrapped by the primary AES key and an RSA escrow key
    message = encrypt(b"data", key_provider=key_ring(aes_key(), rsa_escrow_key), context=context_for(KEY))
    # WHEN parsed THEN both key namespaces are listed
    providers = [k.provider_id for k in parse_header(message).encrypted_data_keys]
    assert sorted(providers) == [NAMESPACE, "kommunmoln-escrow"]


def test_bytes_after_the_header_are_ignored(v2_message: bytes) -> None:
    # GIVEN a prefix cut right after the header authentication tag
    header = parse_header(v2_message)
    # WHEN only that much is parsed THEN the result is the same header
    assert parse_header(v2_message[: header.total_length]) == header


# --- truncation and corruption -------------------------------------------------------------
def test_every_truncation_of_a_real_header_is_a_truncation_error(v2_message: bytes, v1_message: bytes) -> None:
    for message in (v2_message, v1_message):
        total = parse_header(message).total_length
        # GIVEN every prefix shorter than the whole header
        for cut in range(total):
            # WHEN parsed THEN it fails as truncated, never with another exception
            with pytest.raises(HeaderTruncated) as error:
                parse_header(message[:cut])
            assert error.value.code == TRUNCATED_HEADER
            assert "\n" not in str(error.value)


def test_every_single_byte_corruption_ends_in_a_header_or_a_header_error(v2_message: bytes) -> None:
    header_bytes = v2_message[: parse_header(v2_message).total_length]
    # GIVEN the header with each byte flipped in turn
    for offset in range(len(header_bytes)):
        corrupted = header_bytes[:offset] + bytes([header_bytes[offset] ^ 0xFF]) + header_bytes[offset + 1 :]
        # WHEN parsed THEN the parser returns a header or raises HeaderError, nothing else
        with contextlib.suppress(HeaderError):
            assert isinstance(parse_header(corrupted), MessageHeader)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_never_crashes_the_parser(data: bytes) -> None:
    # GIVEN arbitrary bytes WHEN parsed THEN only a header or a HeaderError comes out
    try:
        parse_header(data)
    except HeaderError as error:
        assert str(error) and "\n" not in str(error)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_behind_a_plausible_start_never_crashes_the_parser(tail: bytes) -> None:
    # GIVEN a valid version 2 start followed by arbitrary bytes WHEN parsed THEN no other exception
    with contextlib.suppress(HeaderError):
        parse_header(b"\x02\x05\x78" + tail)


def test_plaintext_pdf_is_not_an_esdk_message() -> None:
    # GIVEN a PDF WHEN parsed THEN the reason names the version byte ('%' = 0x25), not content
    with pytest.raises(HeaderError) as error:
        parse_header(PDF)
    assert error.value.code == NOT_ESDK
    assert str(error.value) == "not an AWS Encryption SDK message (version byte 0x25)"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "no bytes"),
        (b"\x01\x81" + bytes(40), "message type 0x81"),
        (b"\x01\x80\x04\x78" + bytes(40), "not valid in a version 1 message"),
        (b"\x02\x01\x78" + bytes(60), "not valid in a version 2 message"),
    ],
)
def test_wrong_version_type_or_suite_is_rejected(data: bytes, fragment: str) -> None:
    with pytest.raises(HeaderError) as error:
        parse_header(data)
    assert fragment in str(error.value)


def test_length_fields_larger_than_the_buffer_are_bounded() -> None:
    # GIVEN a header that claims 65535 data keys of 65535-byte provider ids, in 50 bytes
    data = struct.pack(">BH", 2, 0x0478) + bytes(32) + struct.pack(">HHH", 0, 0xFFFF, 0xFFFF) + bytes(9)
    # WHEN parsed THEN it is a truncation, found without reading past the buffer
    with pytest.raises(HeaderTruncated, match="provider id of data key 0 needs 65535 bytes"):
        parse_header(data)


def test_hand_built_header_with_zero_data_keys_parses_and_fails_the_rules() -> None:
    # GIVEN a structurally valid header without encrypted data keys
    header = parse_header(
        _v2_header(edks=[], aad=_aad([(b"kommunmoln:bucket", BUCKET.encode()), (b"kommunmoln:key", KEY.encode())]))
    )
    # WHEN judged THEN "no data keys" is the one problem
    problems = header_problems(
        header,
        allowed_namespaces=[NAMESPACE],
        bucket=BUCKET,
        key=KEY,
        required_context_keys=names.REQUIRED_CONTEXT_KEYS,
    )
    assert _codes(problems) == {NO_DATA_KEYS}


@pytest.mark.parametrize(
    ("header_bytes", "fragment"),
    [
        (
            _v2_header(edks=[(b"a", b"", b"")], aad=_aad([(b"k", b"1"), (b"k", b"2")])),
            "duplicate encryption context key",
        ),
        (
            _v2_header(edks=[(b"a", b"", b"")], aad=_aad([(b"k", b"1")]) + b"xx"),
            "unexpected bytes after the encryption context",
        ),
        (_v2_header(edks=[(b"a", b"", b"")], aad=struct.pack(">HH", 1, 200) + b"k"), "encryption context"),
        (_v2_header(edks=[(b"\xff\xfe", b"", b"")]), "not valid UTF-8"),
        (_v2_header(edks=[(b"a", b"", b"")], content_type=3), "unknown content type 0x03"),
        (
            _v2_header(edks=[(b"a", b"", b"")], content_type=1, frame=4096),
            "non-framed message with a non-zero frame length",
        ),
        (_v2_header(edks=[(b"a", b"", b"")], frame=2**31), "exceeds the maximum"),
    ],
)
def test_malformed_fields_give_a_one_line_reason(header_bytes: bytes, fragment: str) -> None:
    with pytest.raises(HeaderError) as error:
        parse_header(header_bytes)
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert not isinstance(error.value, HeaderTruncated)


# --- the tier A rules ----------------------------------------------------------------------
def _header(
    *, suite: int = 0x0578, providers: tuple[str, ...] = (NAMESPACE,), context: dict[str, str] | None = None
) -> MessageHeader:
    return MessageHeader(
        version=2,
        algorithm_id=suite,
        message_id=bytes(32),
        encryption_context=context_for(KEY) if context is None else context,
        encrypted_data_keys=tuple(EncryptedDataKey(p, b"key-1", 48) for p in providers),
        content_type=2,
        frame_length=4096,
        header_length=200,
    )


def _problems(header: MessageHeader, *, key: str = KEY, bucket: str = BUCKET) -> list[str]:
    return header_problems(
        header,
        allowed_namespaces=[NAMESPACE],
        bucket=bucket,
        key=key,
        required_context_keys=names.REQUIRED_CONTEXT_KEYS,
    )


def test_a_conforming_header_has_no_problems() -> None:
    assert _problems(_header()) == []


@pytest.mark.parametrize(
    ("header", "kwargs", "code"),
    [
        (_header(suite=0x0178), {}, NON_COMMITTING_SUITE),
        (_header(providers=("aws-kms",)), {}, AWS_WRAPPED_KEY),
        (_header(providers=(NAMESPACE, "aws-kms")), {}, AWS_WRAPPED_KEY),
        (_header(providers=("aws-kms-hierarchy",)), {}, AWS_WRAPPED_KEY),
        (_header(providers=("grannkommun",)), {}, NAMESPACE_NOT_ALLOWED),
        (_header(context={names.CONTEXT_KEY: KEY}), {}, CONTEXT_MISSING),
        (_header(), {"key": "elsewhere/copy.pdf.esdk"}, CONTEXT_MISMATCH),
        (_header(), {"bucket": "another-bucket"}, CONTEXT_MISMATCH),
    ],
)
def test_each_rule_reports_its_problem(header: MessageHeader, kwargs: dict[str, str], code: str) -> None:
    # GIVEN a header breaking one rule WHEN judged THEN exactly that problem code is reported
    problems = _problems(header, **kwargs)
    assert _codes(problems) == {code}
    assert all("\n" not in p for p in problems)


def test_attacker_controlled_fields_are_shortened_in_problems() -> None:
    problems = _problems(_header(providers=("x" * 5000,)))
    assert len(problems[0]) < 200


def test_check_prefix_turns_parse_errors_into_one_problem() -> None:
    assert check_prefix(PDF, allowed_namespaces=[NAMESPACE], bucket=BUCKET, key=KEY) == [
        "not-esdk: not an AWS Encryption SDK message (version byte 0x25)"
    ]
