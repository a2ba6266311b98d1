"""Symmetric escrow: a second AES-256 key file, kept offline, wraps every data key too (issue 16 item 13).

The RSA escrow key is exposed to "harvest now, decrypt later"; an AES-256 wrapping key is not
in the same way. These tests prove the option works end to end through the custody layer the
CLI uses, and that it fails closed where it would silently not add a second copy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kommunmoln.tier_a.cli import main
from kommunmoln.tier_a.codec import decrypt_file, encrypt_file, read_file_head, summarize_header
from kommunmoln.tier_a.custody import CustodyOptions, open_custody
from kommunmoln.tier_a.errors import DecryptionError, UsageError
from kommunmoln.tier_a.keys import RawAesKey, load_key_file, write_key_file


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def escrow_key_file(tmp_path: Path, key: RawAesKey) -> Path:
    return write_key_file(tmp_path / "escrow.key.json", RawAesKey.generate(key.namespace, "escrow-aes-2026"))


def test_escrow_key_alone_recovers_what_primary_and_escrow_encrypted(
    tmp_path: Path, plaintext: Path, key_file: Path, escrow_key_file: Path
) -> None:
    # GIVEN a file encrypted with the primary key file and the symmetric escrow key file
    with open_custody(
        CustodyOptions(key_file=str(key_file), escrow_key_file=str(escrow_key_file)), need_primary=True
    ) as c:
        encrypt_file(plaintext, tmp_path / "c", c.encrypting_keyring(), {"k": "v"})
    # THEN the message carries two encrypted data keys, one per wrapping key
    summary = summarize_header(read_file_head(tmp_path / "c"))
    assert {name for _, name in summary.wrapping_keys} == {load_key_file(key_file).name, "escrow-aes-2026"}
    # WHEN the primary key is lost and only the offline escrow key file is brought back
    with open_custody(CustodyOptions(escrow_key_file=str(escrow_key_file)), need_primary=False) as recovery:
        result = decrypt_file(tmp_path / "c", tmp_path / "out", recovery.decrypting_keyring())
    # THEN the plaintext is recovered exactly
    assert _sha(tmp_path / "out") == _sha(plaintext) and result.encryption_context == {"k": "v"}
    # AND the primary key alone still decrypts
    with open_custody(CustodyOptions(key_file=str(key_file)), need_primary=True) as primary:
        decrypt_file(tmp_path / "c", tmp_path / "out2", primary.decrypting_keyring())
    assert _sha(tmp_path / "out2") == _sha(plaintext)


def test_escrow_key_cannot_open_a_message_encrypted_without_it(
    tmp_path: Path, plaintext: Path, key_file: Path, escrow_key_file: Path
) -> None:
    # GIVEN a message encrypted with the primary key only
    with open_custody(CustodyOptions(key_file=str(key_file)), need_primary=True) as c:
        encrypt_file(plaintext, tmp_path / "c", c.encrypting_keyring(), {})
    # WHEN recovery is tried with the escrow key file THEN it fails and writes nothing
    recovery = open_custody(CustodyOptions(escrow_key_file=str(escrow_key_file)), need_primary=False)
    with recovery, pytest.raises(DecryptionError):
        decrypt_file(tmp_path / "c", tmp_path / "out", recovery.decrypting_keyring())
    assert not (tmp_path / "out").exists()


def test_escrow_key_with_the_primary_keys_name_is_refused(tmp_path: Path, key: RawAesKey, key_file: Path) -> None:
    # GIVEN an "escrow" key file with the primary key's namespace and name (the ESDK would treat it as the same
    # key, so there would be no second, independent copy) WHEN custody is opened THEN a usage error names it
    twin = write_key_file(tmp_path / "twin.key.json", RawAesKey.generate(key.namespace, key.name))
    with pytest.raises(UsageError, match="its own --name"):
        open_custody(CustodyOptions(key_file=str(key_file), escrow_key_file=str(twin)), need_primary=True)


def test_escrow_key_is_not_a_primary_for_encryption(escrow_key_file: Path) -> None:
    # GIVEN only the escrow key file WHEN asked to encrypt THEN refused: escrow is recovery, not a second primary
    custody = open_custody(CustodyOptions(escrow_key_file=str(escrow_key_file)), need_primary=False)
    with custody, pytest.raises(UsageError, match="primary"):
        custody.encrypting_keyring()


def test_cli_encrypts_with_and_recovers_by_the_escrow_key_flag(
    tmp_path: Path, plaintext: Path, key_file: Path, escrow_key_file: Path
) -> None:
    # GIVEN the CLI flags WHEN encrypting with --key and --escrow-key, then decrypting with --escrow-key alone
    assert (
        main(
            [
                "encrypt",
                str(plaintext),
                str(tmp_path / "c"),
                "--key",
                str(key_file),
                "--escrow-key",
                str(escrow_key_file),
            ]
        )
        == 0
    )
    assert main(["decrypt", str(tmp_path / "c"), str(tmp_path / "out"), "--escrow-key", str(escrow_key_file)]) == 0
    # THEN the plaintext comes back
    assert _sha(tmp_path / "out") == _sha(plaintext)
