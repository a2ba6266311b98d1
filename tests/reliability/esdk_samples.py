"""Test helpers: real ESDK messages, an independent header encoder, the tier A rules as an oracle.

The encoder follows the AWS Encryption SDK "Message format reference" (header versions 1
and 2), written from the specification and not from `kommunmoln.esdk_header`, so that the
fuzz tests compare two independent readings of the format.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy

from kommunmoln import names

COMMITTING = (0x0478, 0x0578)
V1_SUITES = (0x0014, 0x0046, 0x0078, 0x0114, 0x0146, 0x0178, 0x0214, 0x0346, 0x0378)
ALLOWED_NAMESPACES = ("kommunmoln", "arkiv")
BUCKET = "kommun-data"
KEY = "socialtjanst/akt-0001.pdf"
CONTEXT = {names.CONTEXT_BUCKET: BUCKET, names.CONTEXT_KEY: KEY}


@dataclass(frozen=True)
class Edk:
    provider_id: bytes
    provider_info: bytes
    ciphertext: bytes


def _u16(n: int) -> bytes:
    return struct.pack(">H", n)


def encode_aad(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
    if not pairs:
        return b""
    body = _u16(len(pairs)) + b"".join(_u16(len(k)) + k + _u16(len(v)) + v for k, v in pairs)
    return body


def encode_edks(edks: Sequence[Edk]) -> bytes:
    return _u16(len(edks)) + b"".join(
        _u16(len(e.provider_id))
        + e.provider_id
        + _u16(len(e.provider_info))
        + e.provider_info
        + _u16(len(e.ciphertext))
        + e.ciphertext
        for e in edks
    )


def encode_header(
    *,
    version: int,
    algorithm_id: int,
    pairs: Sequence[tuple[bytes, bytes]],
    edks: Sequence[Edk],
    content_type: int = 2,
    frame_length: int = 4096,
    message_id: bytes | None = None,
    suite_data: bytes = b"\x11" * 32,
    auth: bytes | None = None,
) -> bytes:
    """A complete header (body + authentication section) of ESDK message format v1 or v2."""
    aad = encode_aad(pairs)
    if version == 2:
        mid = message_id if message_id is not None else b"\x22" * 32
        body = b"\x02" + _u16(algorithm_id) + mid + _u16(len(aad)) + aad + encode_edks(edks)
        body += bytes([content_type]) + struct.pack(">I", frame_length) + suite_data
        return body + (auth if auth is not None else b"\x33" * 16)
    mid = message_id if message_id is not None else b"\x22" * 16
    body = b"\x01\x80" + _u16(algorithm_id) + mid + _u16(len(aad)) + aad + encode_edks(edks)
    body += bytes([content_type]) + b"\x00\x00\x00\x00" + bytes([12]) + struct.pack(">I", frame_length)
    return body + (auth if auth is not None else b"\x44" * 28)


def oracle_codes(
    *,
    algorithm_id: int,
    provider_ids: Iterable[str],
    context: Mapping[str, str],
    allowed: Iterable[str] = ALLOWED_NAMESPACES,
    bucket: str = BUCKET,
    key: str = KEY,
    required: Iterable[str] = names.REQUIRED_CONTEXT_KEYS,
) -> set[str]:
    """The tier A rules (issue 3), restated: which rule codes a parsed header breaks."""
    codes: set[str] = set()
    provider_ids = list(provider_ids)
    allowed = set(allowed)
    if algorithm_id not in COMMITTING:
        codes.add("non-committing-suite")
    if not provider_ids:
        codes.add("no-data-keys")
    for pid in provider_ids:
        if pid == "aws-kms" or pid.startswith("aws-"):
            codes.add("aws-wrapped-key")
        elif pid not in allowed:
            codes.add("namespace-not-allowed")
    for name in required:
        if name not in context:
            codes.add("context-missing")
    if context.get(names.CONTEXT_BUCKET, bucket) != bucket or context.get(names.CONTEXT_KEY, key) != key:
        codes.add("context-mismatch")
    return codes


def esdk_parse(data: bytes):
    """The ESDK's own header parser (an internal module; pinned by requirements-dev)."""
    from aws_encryption_sdk.internal.formatting.deserialize import deserialize_header

    header, raw = deserialize_header(io.BytesIO(data))
    return header, raw


# --- Real messages ---------------------------------------------------------------------------
def raw_master_key(namespace: str = "kommunmoln", name: str = "reliability-key", material: bytes = b"\x07" * 32):
    from kommunmoln.tier_a.keys import raw_aes_master_key

    return raw_aes_master_key(namespace, name, material)


def encrypt(
    plaintext: bytes,
    *,
    context: Mapping[str, str] = CONTEXT,
    master_key=None,
    algorithm=aws_encryption_sdk.Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    frame_length: int = 1024,
) -> bytes:
    """An ESDK message (any suite; non-committing suites via a permissive commitment policy)."""
    committing = algorithm.is_committing()
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
        if committing
        else CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
    )
    ciphertext, _ = client.encrypt(
        source=plaintext,
        key_provider=master_key or raw_master_key(),
        encryption_context=dict(context),
        algorithm=algorithm,
        frame_length=frame_length,
    )
    return ciphertext


@dataclass(frozen=True)
class Region:
    name: str
    start: int
    end: int  # exclusive


def message_regions(message: bytes) -> list[Region]:
    """Named byte ranges of a framed v2 message: header fields, EDKs, each frame, footer."""
    from kommunmoln.esdk_header import parse_header

    header = parse_header(message)
    regions = [Region("version+suite", 0, 3), Region("message-id", 3, 35)]
    offset = 35
    aad_len = struct.unpack(">H", message[offset : offset + 2])[0]
    regions.append(Region("encryption-context", offset, offset + 2 + aad_len))
    offset += 2 + aad_len
    edk_start = offset
    count = struct.unpack(">H", message[offset : offset + 2])[0]
    offset += 2
    for index in range(count):
        begin = offset
        for _ in range(3):
            length = struct.unpack(">H", message[offset : offset + 2])[0]
            offset += 2 + length
        regions.append(Region(f"edk-{index}", begin, offset))
    assert edk_start < offset
    regions.append(Region("content-type+frame-length", offset, offset + 5))
    offset += 5
    regions.append(Region("suite-data(commitment)", offset, offset + 32))
    offset += 32
    assert offset == header.header_length
    regions.append(Region("header-auth-tag", offset, offset + 16))
    offset += 16
    frame = header.frame_length
    index = 0
    while True:
        seq = struct.unpack(">I", message[offset : offset + 4])[0]
        if seq == 0xFFFFFFFF:
            length = struct.unpack(">I", message[offset + 20 : offset + 24])[0]
            end = offset + 24 + length + 16
            regions.append(Region("final-frame-header", offset, offset + 24))
            if length:
                regions.append(Region("final-frame-body", offset + 24, offset + 24 + length))
            regions.append(Region("final-frame-tag", end - 16, end))
            offset = end
            break
        end = offset + 4 + 12 + frame + 16
        regions.append(Region(f"frame-{index}-seq+iv", offset, offset + 16))
        regions.append(Region(f"frame-{index}-body", offset + 16, end - 16))
        regions.append(Region(f"frame-{index}-tag", end - 16, end))
        offset = end
        index += 1
    if offset < len(message):
        regions.append(Region("footer(signature)", offset, len(message)))
    return regions
