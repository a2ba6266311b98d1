"""The frame engine (kommunmoln.tier_a.frames) against the AWS Encryption SDK for Python.

The ESDK is the reference: messages written by either engine must be read by the other,
byte for byte the same length, and malformed bodies must be refused by the frame reader as
the ESDK refuses them. The ESDK's published test vectors (raw AES cases) run when
KOMMUNMOLN_ESDK_TEST_VECTORS names an unzipped `awses-decrypt` vector set.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
from pathlib import Path

import aws_encryption_sdk
import pytest
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.identifiers import EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey

from kommunmoln.tier_a import codec
from kommunmoln.tier_a.errors import DecryptionError
from kommunmoln.tier_a.frames import FrameEncryptor

FRAME = codec.FRAME_LENGTH
CONTEXT = {"purpose": "frames-test"}
VECTORS_ENV = "KOMMUNMOLN_ESDK_TEST_VECTORS"


def _encrypt(data: bytes, keyring, engine: str) -> bytes:
    sink = io.BytesIO()
    codec.encrypt_stream(io.BytesIO(data), sink, keyring, CONTEXT, engine=engine)
    return sink.getvalue()


@pytest.mark.parametrize("size", [0, 1, FRAME - 1, FRAME, FRAME + 1, 2 * FRAME])
def test_frame_engine_and_esdk_read_each_other(keyring, tmp_path, size):
    # GIVEN plaintexts around the frame boundaries (empty, one byte short, exact, one over)
    data = os.urandom(size)
    # WHEN each engine encrypts
    ours, theirs = _encrypt(data, keyring, codec.ENGINE_FRAMES), _encrypt(data, keyring, codec.ENGINE_ESDK)
    # THEN the messages have the same length (same layout: an exact multiple ends with an empty final frame)
    assert len(ours) == len(theirs)
    # AND the ESDK decrypts ours, and the frame reader decrypts the ESDK's
    plain, _ = codec.esdk_client().decrypt(source=ours, key_provider=keyring)
    assert plain == data
    codec.decrypt_to_file(io.BytesIO(theirs), tmp_path / "out", keyring, engine=codec.ENGINE_FRAMES)
    assert (tmp_path / "out").read_bytes() == data


def test_encryptor_fills_any_buffer_size(keyring):
    # GIVEN a 2.5-frame plaintext read through buffers smaller and larger than one frame
    data = os.urandom(FRAME * 5 // 2)
    chunks = []
    encryptor = codec.open_encryptor(io.BytesIO(data), keyring, CONTEXT, engine=codec.ENGINE_FRAMES)
    assert isinstance(encryptor, FrameEncryptor)
    for size in [7, 100_000, 3 * FRAME, 1] * 10:
        buffer = bytearray(size)
        n = encryptor.readinto(buffer)
        chunks.append(bytes(buffer[:n]))
    # WHEN the pieces are joined THEN they are one message the ESDK decrypts, and reading on gives nothing
    plain, _ = codec.esdk_client().decrypt(source=b"".join(chunks), key_provider=keyring)
    assert plain == data and encryptor.readinto(bytearray(10)) == 0


def _frames_of(message: bytes, header_bytes: int) -> list[bytes]:
    """Split a message of 1 MiB frames into its frames (regular ones, then the final one)."""
    body, frames, regular = message[header_bytes:], [], 4 + 12 + FRAME + 16
    while struct.unpack(">I", body[:4])[0] != 0xFFFFFFFF:
        frames.append(body[:regular])
        body = body[regular:]
    return [*frames, body]


@pytest.mark.parametrize("tamper", ["swap-frames", "drop-final", "cut-final", "final-too-long", "trailing-byte"])
def test_malformed_bodies_are_refused_by_both_engines_without_output(keyring, tmp_path, tamper):
    # GIVEN a three-frame message from the ESDK, changed in its body only
    message = _encrypt(os.urandom(2 * FRAME + 10), keyring, codec.ENGINE_ESDK)
    # the header, then its authentication: in format version 2 a 16-byte tag (the IV is all zeros, not stored)
    header_bytes = codec.summarize_header(message[: codec.HEADER_PEEK_BYTES]).header_bytes + 16
    head, (one, two, final) = message[:header_bytes], _frames_of(message, header_bytes)
    changed = {
        "swap-frames": head + two + one + final,
        "drop-final": head + one + two,
        "cut-final": head + one + two + final[:-5],
        "final-too-long": head + one + two + final[:20] + struct.pack(">I", FRAME + 1) + final[24:],
        "trailing-byte": message + b"\0",
    }[tamper]
    for engine in codec.ENGINES:
        # WHEN each engine decrypts it
        with pytest.raises(DecryptionError):
            codec.decrypt_to_file(io.BytesIO(changed), tmp_path / "out", keyring, engine=engine)
        # THEN it is refused and no output appears
        assert not (tmp_path / "out").exists()


# --- the ESDK's published test vectors --------------------------------------------------------
def _vector_cases(root: Path) -> list[tuple[str, dict, dict]]:
    """Raw-AES-keyed cases of the set's decrypt manifest (manifest.json, or decrypt_message.json in older sets)."""
    path = next((root / n for n in ("manifest.json", "decrypt_message.json") if (root / n).exists()), None)
    if path is None:
        pytest.fail(f"{root} has no manifest.json or decrypt_message.json")
    manifest = json.loads(path.read_text())
    keys = json.loads((root / manifest["keys"].removeprefix("file://")).read_text())["keys"]
    cases = []
    for name, case in sorted(manifest["tests"].items()):
        masters = case.get("master-keys", [])
        if masters and all(m.get("type") == "raw" and m.get("encryption-algorithm") == "aes" for m in masters):
            cases.append((name, case, keys))
    return cases


def _raw_aes_master_key(master: dict, keys: dict) -> RawMasterKey:
    key = keys[master["key"]]
    material = base64.b64decode("".join(key["material"]))
    wrapping = {
        128: WrappingAlgorithm.AES_128_GCM_IV12_TAG16_NO_PADDING,
        192: WrappingAlgorithm.AES_192_GCM_IV12_TAG16_NO_PADDING,
        256: WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
    }[key["bits"]]
    return RawMasterKey(
        provider_id=master["provider-id"],
        key_id=key.get("key-id", master["key"]).encode(),
        wrapping_key=WrappingKey(wrapping, material, EncryptionKeyType.SYMMETRIC),
    )


def test_published_test_vectors_raw_aes_cases_decrypt_with_the_frame_reader():
    # GIVEN an unzipped `awses-decrypt` vector set (awslabs/aws-encryption-sdk-test-vectors), if named
    root = os.environ.get(VECTORS_ENV)
    if not root:
        pytest.skip(f"{VECTORS_ENV} is not set: point it at an unzipped awses-decrypt vector set to run them")
    cases = _vector_cases(Path(root))
    if not cases:
        pytest.skip(f"{root} has no raw AES cases (its manifest has only KMS-keyed ones)")
    checked = 0
    for name, case, keys in cases:
        ciphertext = (Path(root) / case["ciphertext"].removeprefix("file://")).read_bytes()
        expected = (Path(root) / case["plaintext"].removeprefix("file://")).read_bytes()
        provider = _raw_aes_master_key(case["master-keys"][0], keys)
        # WHEN the ESDK parses the header and unwraps the key (older vectors are format 1: allowed here)
        client = aws_encryption_sdk.EncryptionSDKClient(
            commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT
        )
        source = io.BytesIO(ciphertext)
        decryptor = client.stream(mode="d", source=source, key_provider=provider)
        if not codec.frames_can_decrypt(decryptor.header):
            continue  # signed or unframed: the frame reader is not used for those
        out = io.BytesIO()
        # THEN the frame reader decrypts the body to the published plaintext, and the message ends there
        codec.decrypt_body(decryptor, source, out)
        assert out.getvalue() == expected, name
        assert source.read(1) == b"", name
        checked += 1
    assert checked, "no framed unsigned raw AES case in the vector set"
