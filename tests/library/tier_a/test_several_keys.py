"""Several wrapping keys at once (key rotation): the first key encrypts, every key decrypts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kommunmoln import names
from kommunmoln.tier_a import cli
from kommunmoln.tier_a.codec import read_file_head, summarize_header
from kommunmoln.tier_a.custody import CustodyOptions, open_custody
from kommunmoln.tier_a.errors import UsageError
from kommunmoln.tier_a.keys import RawAesKey, write_key_file


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    return write_key_file(tmp_path / "old.json", RawAesKey.generate("kommunmoln", "tier-a-old"))


@pytest.fixture
def new_file(tmp_path: Path) -> Path:
    return write_key_file(tmp_path / "new.json", RawAesKey.generate("kommunmoln", "tier-a-new"))


def _encrypt(tmp_path: Path, key_files: list[Path], name: str) -> Path:
    source = tmp_path / f"{name}.txt"
    source.write_bytes(os.urandom(5000))
    out = tmp_path / f"{name}.esdk"
    argv = [arg for k in key_files for arg in ("--key", str(k))]
    assert cli.main([*argv, "-q", "encrypt", str(source), str(out)]) == 0
    return out


def test_first_key_encrypts_and_every_key_decrypts(tmp_path: Path, old_file: Path, new_file: Path, capsys) -> None:
    # GIVEN a message written under the old key
    old_message = _encrypt(tmp_path, [old_file], "old")
    # WHEN a message is encrypted with --key new --key old
    new_message = _encrypt(tmp_path, [new_file, old_file], "new")
    # THEN only the first key wraps its data key (the others never encrypt)
    assert summarize_header(read_file_head(new_message)).wrapping_keys == (("kommunmoln", "tier-a-new"),)
    # AND both messages decrypt with the same two keys, whichever order they are given in
    for message in (old_message, new_message):
        out = tmp_path / f"{message.stem}.plain"
        code = cli.main(["--key", str(new_file), "--key", str(old_file), "-q", "decrypt", str(message), str(out)])
        assert code == 0 and out.read_bytes() == (tmp_path / f"{message.stem}.txt").read_bytes()
    capsys.readouterr()


def test_an_unknown_key_fails_naming_the_keys_tried(tmp_path: Path, old_file: Path, new_file: Path, capsys) -> None:
    # GIVEN a message under a third key
    third = write_key_file(tmp_path / "third.json", RawAesKey.generate("kommunmoln", "tier-a-third"))
    message = _encrypt(tmp_path, [third], "third")
    capsys.readouterr()
    # WHEN it is decrypted with two other keys
    code = cli.main(["--key", str(new_file), "--key", str(old_file), "decrypt", str(message), str(tmp_path / "x")])
    # THEN it fails (exit 1), naming what it is wrapped for and both keys tried, and writes nothing
    err = capsys.readouterr().err
    assert code == 1
    assert "kommunmoln/tier-a-third" in err and "kommunmoln/tier-a-new" in err and "kommunmoln/tier-a-old" in err
    assert not (tmp_path / "x").exists()


def test_two_keys_with_one_name_are_refused(tmp_path: Path, old_file: Path, capsys) -> None:
    # GIVEN a second key file that reuses the old key's name with other material
    twin = write_key_file(tmp_path / "twin.json", RawAesKey.generate("kommunmoln", "tier-a-old"))
    # WHEN both are given THEN the command refuses (exit 2): the ESDK would treat them as one key
    code = cli.main(["--key", str(twin), "--key", str(old_file), "encrypt", str(old_file), str(tmp_path / "y")])
    assert code == 2 and "both named kommunmoln/tier-a-old" in capsys.readouterr().err


def test_key_given_on_the_command_line_replaces_the_environment_default(
    tmp_path: Path, old_file: Path, new_file: Path, monkeypatch
) -> None:
    # GIVEN $KOMMUNMOLN_KEY_FILE names the old key
    monkeypatch.setenv(names.ENV_KEY_FILE, str(old_file))
    # WHEN no --key is given THEN the default is the one key; WHEN --key is given THEN it alone counts
    assert cli.custody_options(cli.build_parser().parse_args(["ls", "s3://b/"])).key_file == str(old_file)
    options = cli.custody_options(cli.build_parser().parse_args(["ls", "--key", str(new_file), "s3://b/"]))
    assert (options.key_file, options.decrypt_key_files) == (str(new_file), ())


def test_with_the_hsm_options_every_key_file_is_decrypt_only(old_file: Path, new_file: Path) -> None:
    # GIVEN the HSM options and two key files WHEN parsed THEN the HSM key encrypts, both files only decrypt
    args = cli.build_parser().parse_args(
        ["--pkcs11-lib", "/x.so", "--pkcs11-token", "t", "--pkcs11-key-label", "hsm-new",
         "--pkcs11-key-label", "hsm-old", "--key", str(old_file), "--key", str(new_file), "ls", "s3://b/"]
    )  # fmt: skip
    options = cli.custody_options(args)
    assert options.key_file is None and options.pkcs11_key_label == "hsm-new"
    assert options.decrypt_key_files == (str(old_file), str(new_file))
    assert options.decrypt_pkcs11_labels == ("hsm-old",)


def test_decrypt_only_keys_never_join_the_encrypting_keyring(old_file: Path, new_file: Path) -> None:
    # GIVEN custody of a new key with the old one as decrypt-only
    with open_custody(
        CustodyOptions(key_file=str(new_file), decrypt_key_files=(str(old_file),)), need_primary=True
    ) as custody:
        # THEN the encrypting keyring is the new key alone and the decrypting keyring holds both
        assert custody.encrypting_names() == {("kommunmoln", "tier-a-new")}
        assert custody.decrypt_only_names() == {("kommunmoln", "tier-a-old")}
        assert custody.decrypting_keyring().describe() == "kommunmoln/tier-a-new, kommunmoln/tier-a-old"
        assert "decrypt-only kommunmoln/tier-a-old" in custody.description


def test_decrypt_only_keys_alone_can_decrypt_but_not_encrypt(old_file: Path) -> None:
    with open_custody(CustodyOptions(decrypt_key_files=(str(old_file),)), need_primary=False) as custody:
        assert custody.decrypting_keyring().describe() == "kommunmoln/tier-a-old"
        with pytest.raises(UsageError, match="encryption needs the primary key"):
            custody.encrypting_keyring()


def test_json_mode_reports_the_decrypt_of_an_old_message(tmp_path: Path, old_file: Path, new_file: Path, capsys):
    message = _encrypt(tmp_path, [old_file], "j")
    capsys.readouterr()
    code = cli.main(["--json", "--key", str(new_file), "--key", str(old_file), "decrypt", str(message),
                     str(tmp_path / "j.out")])  # fmt: skip
    event = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0 and event["plaintext_bytes"] == 5000
