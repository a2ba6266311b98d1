"""Encryption format, interoperability with a plain ESDK raw keyring, all-or-nothing decryption."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import aws_encryption_sdk
import pytest
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.identifiers import Algorithm, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey, RawMasterKeyConfig

from kommunmoln.tier_a.codec import (
    ALGORITHM,
    FRAME_LENGTH,
    decrypt_file,
    encrypt_file,
    parse_context_items,
    read_file_head,
    summarize_header,
)
from kommunmoln.tier_a.errors import ContextMismatchError, DecryptionError, UsageError
from kommunmoln.tier_a.keys import EscrowPrivateKey, EscrowPublicKey, Keyring, RawAesKey, load_key_file

pytestmark = pytest.mark.usefixtures("codec_engine")  # both engines: frames and the ESDK's stream


def _independent_raw_key(key_file: Path) -> RawMasterKey:
    """What another program builds from the key file with the ESDK alone (no kommunmoln code)."""
    import base64
    import json

    document = json.loads(key_file.read_text())
    return RawMasterKey(
        config=RawMasterKeyConfig(
            key_id=document["name"].encode(),
            provider_id=document["namespace"],
            wrapping_key=WrappingKey(
                wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                wrapping_key=base64.b64decode(document["material_b64"]),
                wrapping_key_type=EncryptionKeyType.SYMMETRIC,
            ),
        )
    )


def _client() -> aws_encryption_sdk.EncryptionSDKClient:
    return aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _only(tmp_path: Path) -> set[str]:
    return {p.name for p in tmp_path.iterdir()}


def test_roundtrip_reports_context_and_suite(tmp_path: Path, plaintext: Path, keyring: Keyring) -> None:
    # GIVEN a multi-frame file WHEN encrypted and decrypted
    size = encrypt_file(plaintext, tmp_path / "c", keyring, {"dept": "soc"})
    result = decrypt_file(tmp_path / "c", tmp_path / "out", keyring, expected_context={"dept": "soc"})
    # THEN the plaintext comes back and the reported header is the committing, unsigned suite
    assert _sha(tmp_path / "out") == _sha(plaintext)
    assert result.encryption_context == {"dept": "soc"}
    assert result.algorithm == ALGORITHM.name == "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"
    assert result.ciphertext_bytes == size
    summary = summarize_header(read_file_head(tmp_path / "c"))
    assert summary.committing and summary.frame_length == FRAME_LENGTH
    assert summary.wrapping_keys == (("kommunmoln", "test-key-1"),)


def test_empty_file_roundtrip(tmp_path: Path, keyring: Keyring) -> None:
    # GIVEN an empty file WHEN round-tripped THEN an empty file comes back
    (tmp_path / "e").write_bytes(b"")
    encrypt_file(tmp_path / "e", tmp_path / "c", keyring, {})
    assert decrypt_file(tmp_path / "c", tmp_path / "out", keyring).plaintext_bytes == 0
    assert (tmp_path / "out").read_bytes() == b""


def test_our_message_decrypts_with_a_plain_esdk_raw_key(tmp_path: Path, key_file: Path, plaintext: Path) -> None:
    # GIVEN a message written by `encrypt` with the key file
    encrypt_file(plaintext, tmp_path / "c", Keyring(load_key_file(key_file).master_key()), {"a": "b"})
    # WHEN another program decrypts it with a RawMasterKey built from the file's namespace/name/material
    decrypted, header = _client().decrypt(
        source=(tmp_path / "c").read_bytes(), key_provider=_independent_raw_key(key_file)
    )
    # THEN it reads the same plaintext and context
    assert decrypted == plaintext.read_bytes()
    assert header.encryption_context == {"a": "b"}


@pytest.mark.parametrize("algorithm", [Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384, ALGORITHM])
def test_plain_esdk_message_decrypts_with_our_decrypt(tmp_path: Path, key_file: Path, algorithm: Algorithm) -> None:
    # GIVEN a message written by plain ESDK code with a RawMasterKey from the key file (any committing suite)
    body = os.urandom(200_000)
    ciphertext, _ = _client().encrypt(
        source=body, key_provider=_independent_raw_key(key_file), encryption_context={"x": "y"}, algorithm=algorithm,
        frame_length=4096,
    )  # fmt: skip
    (tmp_path / "c").write_bytes(ciphertext)
    # WHEN our decrypt reads it with the key file THEN the plaintext and context come back
    result = decrypt_file(tmp_path / "c", tmp_path / "out", Keyring(load_key_file(key_file).master_key()))
    assert (tmp_path / "out").read_bytes() == body
    assert result.encryption_context == {"x": "y"}  # the ECDSA public key entry is not reported


def test_non_committing_message_is_refused(tmp_path: Path, key_file: Path) -> None:
    # GIVEN a message with a non-committing suite (allowed only by a laxer policy)
    lax = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT)
    ciphertext, _ = lax.encrypt(
        source=b"old",
        key_provider=_independent_raw_key(key_file),
        algorithm=Algorithm.AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384,
    )
    (tmp_path / "c").write_bytes(ciphertext)
    # WHEN decrypted THEN refused, no output
    with pytest.raises(DecryptionError, match="commitment"):
        decrypt_file(tmp_path / "c", tmp_path / "out", Keyring(load_key_file(key_file).master_key()))
    assert not (tmp_path / "out").exists()


def _mutations(size: int) -> dict[str, object]:
    return {
        "flipped body byte": lambda d: d.__setitem__(size // 2, d[size // 2] ^ 1),
        "flipped last byte": lambda d: d.__setitem__(size - 1, d[size - 1] ^ 1),
        "truncated mid-frame": lambda d: d.__delitem__(slice(size - 100, None)),
        "truncated at a frame boundary": lambda d: d.__delitem__(slice(size - FRAME_LENGTH // 2, None)),
        "trailing garbage": lambda d: d.extend(b"x"),
        "header only": lambda d: d.__delitem__(slice(400, None)),
    }


@pytest.mark.parametrize("mutation", list(_mutations(0)))
def test_tampered_or_truncated_leaves_no_output(
    tmp_path: Path, plaintext: Path, keyring: Keyring, mutation: str
) -> None:
    # GIVEN a valid message, altered
    encrypt_file(plaintext, tmp_path / "c", keyring, {})
    data = bytearray((tmp_path / "c").read_bytes())
    _mutations(len(data))[mutation](data)
    (tmp_path / "bad").write_bytes(bytes(data))
    # AND an older plaintext at the destination
    (tmp_path / "out").write_bytes(b"previous")
    # WHEN decrypted THEN it fails with a one-line reason, the destination is untouched, no temp file remains
    with pytest.raises(DecryptionError) as error:
        decrypt_file(tmp_path / "bad", tmp_path / "out", keyring)
    assert "\n" not in str(error.value)
    assert (tmp_path / "out").read_bytes() == b"previous"
    assert _only(tmp_path) == {"c", "bad", "out", "plain.bin"}


def test_wrong_key_names_the_keys(tmp_path: Path, plaintext: Path, keyring: Keyring) -> None:
    # GIVEN a message for one key WHEN another key tries THEN "wrong key" names both, no output
    encrypt_file(plaintext, tmp_path / "c", keyring, {})
    other = Keyring(RawAesKey.generate("kommunmoln", "other-key").master_key())
    with pytest.raises(DecryptionError, match=r"wrong key: .*kommunmoln/test-key-1.*kommunmoln/other-key"):
        decrypt_file(tmp_path / "c", tmp_path / "out", other)
    assert not (tmp_path / "out").exists()


def test_same_name_different_material_is_explained(tmp_path: Path, plaintext: Path, keyring: Keyring) -> None:
    # GIVEN a key with the same namespace/name but other material WHEN it decrypts THEN a specific reason
    encrypt_file(plaintext, tmp_path / "c", keyring, {})
    impostor = Keyring(RawAesKey.generate("kommunmoln", "test-key-1").master_key())
    with pytest.raises(DecryptionError, match="key material differs"):
        decrypt_file(tmp_path / "c", tmp_path / "out", impostor)


@pytest.mark.parametrize("content", [b"", b"%PDF-1.7 not encrypted at all" * 10, b"\x02"])
def test_not_an_esdk_message(tmp_path: Path, keyring: Keyring, content: bytes) -> None:
    # GIVEN plaintext / empty / a lone version byte WHEN decrypted THEN "not an AWS Encryption SDK message"
    (tmp_path / "p").write_bytes(content)
    with pytest.raises(DecryptionError, match="not an AWS Encryption SDK message"):
        decrypt_file(tmp_path / "p", tmp_path / "out", keyring)
    assert not (tmp_path / "out").exists()


def test_context_mismatch_and_missing_key(tmp_path: Path, keyring: Keyring) -> None:
    # GIVEN a message bound to bucket/key
    (tmp_path / "p").write_bytes(b"secret")
    encrypt_file(tmp_path / "p", tmp_path / "c", keyring, {"kommunmoln:key": "a/b.txt"})
    # WHEN the caller expects another key or an absent entry THEN refused before any plaintext is written
    with pytest.raises(ContextMismatchError, match="moved or renamed"):
        decrypt_file(tmp_path / "c", tmp_path / "out", keyring, expected_context={"kommunmoln:key": "a/c.txt"})
    with pytest.raises(ContextMismatchError, match="has no 'dept'"):
        decrypt_file(tmp_path / "c", tmp_path / "out", keyring, expected_context={"dept": "soc"})
    assert not (tmp_path / "out").exists()


def test_escrow_recovery_with_the_private_key_alone(
    tmp_path: Path, plaintext: Path, key: RawAesKey, escrow_pair
) -> None:
    # GIVEN messages encrypted with the primary key and the escrow public key (two data keys)
    public = EscrowPublicKey.load(escrow_pair[0], namespace=key.namespace)
    encrypt_file(plaintext, tmp_path / "c", Keyring(key.master_key(), public.master_key()), {"k": "v"})
    summary = summarize_header(read_file_head(tmp_path / "c"))
    assert len(summary.wrapping_keys) == 2
    # WHEN the primary key is lost and only the offline RSA private key is available
    private = EscrowPrivateKey.load(escrow_pair[1])
    result = decrypt_file(tmp_path / "c", tmp_path / "out", Keyring(private.master_key(key.namespace)))
    # THEN the plaintext is recovered
    assert _sha(tmp_path / "out") == _sha(plaintext) and result.encryption_context == {"k": "v"}
    # AND the primary key alone still works too
    decrypt_file(tmp_path / "c", tmp_path / "out2", Keyring(key.master_key()))


def test_encrypt_refuses_missing_input_and_output_dir(tmp_path: Path, keyring: Keyring) -> None:
    # GIVEN a missing input / a missing output directory WHEN encrypting THEN usage errors, nothing written
    with pytest.raises(UsageError, match="does not exist"):
        encrypt_file(tmp_path / "nope", tmp_path / "c", keyring, {})
    (tmp_path / "p").write_bytes(b"x")
    with pytest.raises(UsageError, match="output directory"):
        encrypt_file(tmp_path / "p", tmp_path / "no" / "c", keyring, {})


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["novalue"], "key=value"),
        (["=v"], "key=value"),
        (["aws-crypto-public-key=x"], "reserved"),
        (["a=1", "a=2"], "twice"),
    ],
)
def test_context_items_are_validated(items: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_context_items(items)


def test_decrypt_reads_from_a_non_seekable_stream(tmp_path: Path, keyring: Keyring) -> None:
    # GIVEN a message behind a pipe-like, non-seekable reader (as an S3 body is)
    (tmp_path / "p").write_bytes(b"abc" * 1000)
    encrypt_file(tmp_path / "p", tmp_path / "c", keyring, {})

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return self._data.read(min(size, 7) if size and size > 0 else size)

    from kommunmoln.tier_a.codec import decrypt_to_file

    # WHEN decrypted THEN it works
    decrypt_to_file(Pipe((tmp_path / "c").read_bytes()), tmp_path / "out", keyring)
    assert (tmp_path / "out").read_bytes() == b"abc" * 1000
