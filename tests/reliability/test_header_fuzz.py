"""Fuzzing the tier A validator's header check (`kommunmoln.esdk_header`) with Hypothesis.

Properties:
- crash-free: any bytes -> MessageHeader or HeaderError (never another exception);
- agreement: headers built by an independent encoder (tests/reliability/esdk_samples.py)
  parse back to the fields they were built from, and `header_problems` is [] exactly when
  the tier A rules (restated as an oracle) hold; the reported codes equal the oracle's;
- no false pass on mutation: real ESDK headers with random byte edits either fail, or
  pass only when the AWS Encryption SDK's own parser reads the same, conforming fields;
- bounded read: `check_object` never asks for or consumes more than `header_read_bytes`,
  for objects from 0 bytes to 10 GiB, even when the server ignores the Range header.
Default: a few hundred seeded examples per property; `--slow-fuzz`: thousands.
"""

from __future__ import annotations

import os

import aws_encryption_sdk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kommunmoln import names
from kommunmoln.esdk_header import HeaderError, MessageHeader, check_prefix, header_problems, parse_header
from lambdas.tier_a_validator.logic import STATUS_QUARANTINED, STATUS_VALIDATED, Settings, check_object
from tests.reliability import esdk_samples as samples
from tests.reliability.fakes import FakeS3, NoDeleteS3

CATEGORY = "header_fuzz"
FAST = settings(max_examples=250, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=4000, deadline=None, suppress_health_check=list(HealthCheck))
RULES = {
    "allowed_namespaces": samples.ALLOWED_NAMESPACES,
    "bucket": samples.BUCKET,
    "key": samples.KEY,
    "required_context_keys": names.REQUIRED_CONTEXT_KEYS,
}


def _parse(ledger, data: bytes) -> MessageHeader | HeaderError:
    ledger.add(CATEGORY, inputs=1)
    try:
        return parse_header(data)
    except HeaderError as error:
        assert "\n" not in str(error), f"HeaderError is not one line: {error!r}"
        return error
    except Exception:
        ledger.add(CATEGORY, crashes=1)
        raise


# --- 1. Any bytes: MessageHeader or HeaderError --------------------------------------------
_prefixes = st.sampled_from([b"", b"\x01\x80", b"\x02\x04\x78", b"\x02\x05\x78", b"\x01\x80\x03\x78", b"%PDF-1.7\n"])
ARBITRARY = st.builds(lambda p, b: p + b, _prefixes, st.binary(max_size=600))


def _arbitrary_property(ledger, data: bytes) -> None:
    # GIVEN arbitrary bytes (biased to start like an ESDK header)
    # WHEN parsed and judged
    result = _parse(ledger, data)
    problems = check_prefix(data, allowed_namespaces=samples.ALLOWED_NAMESPACES, bucket=samples.BUCKET, key=samples.KEY)
    # THEN no crash, and random bytes never pass the rules
    if isinstance(result, HeaderError):
        assert problems and problems[0].startswith(result.code)
    elif not problems:
        ledger.add(CATEGORY, false_passes=1)
        pytest.fail(f"random bytes passed the header check: {data[:80]!r}")


@FAST
@given(data=ARBITRARY)
def test_arbitrary_bytes_never_crash_or_pass(ledger, data: bytes) -> None:
    _arbitrary_property(ledger, data)


@pytest.mark.slow_fuzz
@SLOW
@given(data=ARBITRARY)
def test_slow_arbitrary_bytes(ledger, data: bytes) -> None:
    _arbitrary_property(ledger, data)


# --- 2. Independently encoded headers: parse == fields, problems == oracle -----------------
_namespaces = st.sampled_from(
    [
        "kommunmoln",
        "arkiv",
        "aws-kms",
        "aws-other",
        "kommunmolN",
        "kommunmoln ",
        "",
        "ar",
        "arkiv/x",
        "Kommunmoln",
        "åäö",
    ]
) | st.text(max_size=12)
_context_keys = st.sampled_from(
    [
        names.CONTEXT_BUCKET,
        names.CONTEXT_KEY,
        names.CONTEXT_MUNICIPALITY,
        "kommunmoln:Bucket",
        "aws-crypto-public-key",
        "",
    ]
) | st.text(max_size=8)
_context_values = st.sampled_from([samples.BUCKET, samples.KEY, samples.KEY + " ", "other-bucket", ""]) | st.text(
    max_size=10
)


@st.composite
def encoded_headers(draw) -> tuple[bytes, dict]:
    version = draw(st.sampled_from([1, 2, 2, 2]))
    if version == 2:
        algorithm_id = draw(st.sampled_from(samples.COMMITTING))
    else:
        algorithm_id = draw(st.sampled_from(samples.V1_SUITES))
    # Usually the right context, sometimes altered: drop, change, add keys.
    context = dict(samples.CONTEXT)
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            action = draw(st.sampled_from(["drop", "set", "add"]))
            if action == "drop" and context:
                context.pop(draw(st.sampled_from(sorted(context))))
            elif action == "set" and context:
                context[draw(st.sampled_from(sorted(context)))] = draw(_context_values)
            else:
                context[draw(_context_keys)] = draw(_context_values)
    if draw(st.booleans()):
        provider_ids = [draw(st.sampled_from(samples.ALLOWED_NAMESPACES))]
    else:
        provider_ids = draw(st.lists(_namespaces, min_size=0, max_size=4))
    edks = [
        samples.Edk(pid.encode("utf-8"), draw(st.binary(max_size=40)), draw(st.binary(min_size=0, max_size=64)))
        for pid in provider_ids
    ]
    pairs = [(k.encode("utf-8"), v.encode("utf-8")) for k, v in draw(st.permutations(sorted(context.items())))]
    content_type = draw(st.sampled_from([2, 2, 1]))
    frame_length = 0 if content_type == 1 else draw(st.integers(1, 2**31 - 1))
    data = samples.encode_header(
        version=version,
        algorithm_id=algorithm_id,
        pairs=pairs,
        edks=edks,
        content_type=content_type,
        frame_length=frame_length,
        message_id=draw(st.binary(min_size=32 if version == 2 else 16, max_size=32 if version == 2 else 16)),
    )
    trailer = draw(st.binary(max_size=30))
    fields = {
        "version": version,
        "algorithm_id": algorithm_id,
        "context": context,
        "provider_ids": provider_ids,
        "content_type": content_type,
        "frame_length": frame_length,
        "length": len(data),
    }
    return data + trailer, fields


def _encoded_property(ledger, case: tuple[bytes, dict]) -> None:
    data, fields = case
    # GIVEN a well-formed header built from known fields
    # WHEN parsed and judged
    header = _parse(ledger, data)
    # THEN it parses to exactly those fields ...
    assert isinstance(header, MessageHeader), f"well-formed header refused: {header}"
    assert header.version == fields["version"]
    assert header.algorithm_id == fields["algorithm_id"]
    assert header.encryption_context == fields["context"]
    assert [e.provider_id for e in header.encrypted_data_keys] == fields["provider_ids"]
    assert header.content_type == fields["content_type"]
    assert header.frame_length == fields["frame_length"]
    assert header.total_length == fields["length"]
    # ... and the verdict equals the rules: no problem exactly when the header conforms
    problems = header_problems(header, **RULES)
    expected = samples.oracle_codes(
        algorithm_id=fields["algorithm_id"], provider_ids=fields["provider_ids"], context=fields["context"]
    )
    got = {p.split(":", 1)[0] for p in problems}
    if expected and not problems:
        ledger.add(CATEGORY, false_passes=1)
    assert got == expected, f"codes {sorted(got)} but the rules say {sorted(expected)} for {fields}"
    assert all("\n" not in p for p in problems)


@FAST
@given(case=encoded_headers())
def test_encoded_headers_parse_and_judge_like_the_rules(ledger, case) -> None:
    _encoded_property(ledger, case)


@pytest.mark.slow_fuzz
@SLOW
@given(case=encoded_headers())
def test_slow_encoded_headers(ledger, case) -> None:
    _encoded_property(ledger, case)


@FAST
@given(case=encoded_headers(), cut=st.integers(min_value=0, max_value=10_000))
def test_every_truncation_of_a_header_is_a_header_error(ledger, case, cut: int) -> None:
    data, fields = case
    # GIVEN a well-formed header cut short anywhere before its end
    cut = cut % fields["length"]
    # WHEN parsed THEN HeaderError (truncated or malformed), never a header, never a crash
    result = _parse(ledger, data[:cut])
    if isinstance(result, MessageHeader):
        ledger.add(CATEGORY, false_passes=1)
    assert isinstance(result, HeaderError), f"a header cut at {cut}/{fields['length']} parsed"


# --- 3. Mutated real ESDK headers -------------------------------------------------------------
def _real_messages() -> list[bytes]:
    escrowish = samples.raw_master_key("arkiv", "second", b"\x09" * 32)

    messages = [
        samples.encrypt(b"hello" * 100),
        samples.encrypt(b"", context={**samples.CONTEXT, names.CONTEXT_MUNICIPALITY: "exempel"}),
        samples.encrypt(
            b"x" * 3000, algorithm=aws_encryption_sdk.Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
        ),
        samples.encrypt(b"v1", algorithm=aws_encryption_sdk.Algorithm.AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384),
        samples.encrypt(b"x" * 10, master_key=escrowish),
    ]
    return [m[: parse_header(m).total_length + 64] for m in messages]


REAL = _real_messages()


@st.composite
def mutations(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


def _mutation_property(ledger, data: bytes) -> None:
    # GIVEN a real ESDK header with random edits
    # WHEN parsed and judged
    result = _parse(ledger, data)
    if isinstance(result, HeaderError):
        return
    problems = header_problems(result, **RULES)
    if problems:
        return
    # THEN a pass is only allowed when the ESDK itself reads the same, conforming fields
    try:
        esdk_header, _ = samples.esdk_parse(data)
    except Exception as error:
        ledger.add(CATEGORY, false_passes=1)
        pytest.fail(f"our parser passed a header the ESDK refuses ({type(error).__name__}: {error})")
    esdk_ids = [edk.key_provider.provider_id for edk in esdk_header.encrypted_data_keys]
    esdk_context = dict(esdk_header.encryption_context)
    verdict = samples.oracle_codes(
        algorithm_id=esdk_header.algorithm.algorithm_id, provider_ids=esdk_ids, context=esdk_context
    )
    if verdict:
        ledger.add(CATEGORY, false_passes=1)
    assert not verdict, f"passed, but the ESDK reads a header that breaks {sorted(verdict)}"
    assert sorted(esdk_ids) == sorted(e.provider_id for e in result.encrypted_data_keys)
    assert esdk_context == result.encryption_context


@FAST
@given(data=mutations())
def test_mutated_real_headers_never_falsely_pass(ledger, data: bytes) -> None:
    _mutation_property(ledger, data)


@pytest.mark.slow_fuzz
@SLOW
@given(data=mutations())
def test_slow_mutated_real_headers(ledger, data: bytes) -> None:
    _mutation_property(ledger, data)


def test_real_headers_pass_and_non_committing_is_refused(ledger) -> None:
    # GIVEN the unmodified real messages  WHEN judged
    verdicts = [
        check_prefix(m, allowed_namespaces=samples.ALLOWED_NAMESPACES, bucket=samples.BUCKET, key=samples.KEY)
        for m in REAL
    ]
    ledger.add(CATEGORY, inputs=len(REAL))
    # THEN committing ones pass, the v1 (non-committing) one is refused for exactly that
    assert verdicts[0] == [] and verdicts[1] == [] and verdicts[2] == [] and verdicts[4] == []
    assert [p.split(":")[0] for p in verdicts[3]] == ["non-committing-suite"]


# --- 4. Bounded reads through the validator -----------------------------------------------------
SIZES = st.sampled_from([0, 1, 17, 239, 1023, 1024, 4096, 65535, 65536, 65537, 10 * 2**30]) | st.integers(0, 3 * 2**20)


def _bounded_property(ledger, size: int, bound: int, honour_range: bool, start_with_header: bool) -> None:
    # GIVEN an object of `size` bytes (a real header first, or filler) and a read bound
    s3 = FakeS3()
    s3.honour_range = honour_range
    head = REAL[0] if start_with_header else b"%PDF"
    if size <= 4 * 2**20:
        data = (head + os.urandom(max(0, size - len(head))))[:size]
        s3.put(samples.BUCKET, samples.KEY, "v1", data)
    else:
        # The body behind a real header must look like ciphertext (the validator's randomness
        # check); the fake repeats its fill from offset 0, so one random block longer than any
        # bound suffices.
        s3.put(samples.BUCKET, samples.KEY, "v1", size=size, fill=head + os.urandom(2**20))
    config = Settings(
        samples.ALLOWED_NAMESPACES, names.REQUIRED_CONTEXT_KEYS, bound, "arn:aws:sns:eu-north-1:123456789012:t"
    )
    ledger.add(CATEGORY, inputs=1)
    # WHEN the validator checks it
    outcome = check_object(NoDeleteS3(s3), bucket=samples.BUCKET, key=samples.KEY, version_id="v1", settings=config)
    # THEN it asked for at most `bound` bytes, consumed at most that, read once, and decided
    assert s3.counter["gets"] <= 1
    assert all(r == f"bytes=0-{bound - 1}" for r in s3.ranges), s3.ranges
    assert s3.counter["unbounded_reads"] == 0
    assert s3.counter["bytes_served"] <= bound
    assert outcome.bytes_read <= bound
    assert outcome.status in (STATUS_VALIDATED, STATUS_QUARANTINED)
    expected_pass = start_with_header and _size_fits_real_framing(size)
    assert (outcome.status == STATUS_VALIDATED) == expected_pass, outcome


def _size_fits_real_framing(size: int) -> bool:
    """Whether REAL[0]'s header (unsigned suite) can start an ESDK message of `size` bytes.

    Written from the ESDK message format ("Message Body", framed data): regular frames are
    sequence number 4 + IV 12 + frame length + tag 16 bytes; the final frame is end marker 4 +
    sequence number 4 + IV 12 + content length 4 + 0..frame length bytes + tag 16.
    """
    header_length = len(REAL[0]) - 64
    frame = parse_header(REAL[0]).frame_length
    body = size - header_length
    return body >= 40 and (body - 40) % (frame + 32) <= frame


@FAST
@given(
    size=SIZES,
    bound=st.integers(1024, 2**20) | st.sampled_from([1024, 65536, 2**20]),
    honour_range=st.booleans(),
    start_with_header=st.booleans(),
)
def test_validator_never_reads_past_its_bound(ledger, size, bound, honour_range, start_with_header) -> None:
    _bounded_property(ledger, size, bound, honour_range, start_with_header)


def test_header_beyond_the_bound_is_quarantined_not_read_further(ledger) -> None:
    # GIVEN a valid header with a 3000-byte encryption context and a 1024-byte bound
    data = samples.encode_header(
        version=2,
        algorithm_id=0x0478,
        pairs=[(k.encode(), v.encode()) for k, v in {**samples.CONTEXT, "pad": "p" * 3000}.items()],
        edks=[samples.Edk(b"kommunmoln", b"k", b"c" * 48)],
    )
    s3 = FakeS3()
    s3.put(samples.BUCKET, samples.KEY, None, data + b"\0" * 5000)
    config = Settings(
        samples.ALLOWED_NAMESPACES, names.REQUIRED_CONTEXT_KEYS, 1024, "arn:aws:sns:eu-north-1:123456789012:t"
    )
    ledger.add(CATEGORY, inputs=1)
    # WHEN checked
    outcome = check_object(NoDeleteS3(s3), bucket=samples.BUCKET, key=samples.KEY, version_id=None, settings=config)
    # THEN quarantined as header-too-large after reading exactly the bound
    assert outcome.status == STATUS_QUARANTINED
    assert outcome.reason_codes == ("header-too-large",)
    assert s3.counter["bytes_served"] == 1024
