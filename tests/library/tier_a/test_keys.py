"""Key custody: the workshop key file, escrow keys, and what never leaks."""

from __future__ import annotations

import base64
import json
import os
import pickle
import stat
from pathlib import Path

import pytest

from kommunmoln.tier_a.errors import KeyFileError, UsageError
from kommunmoln.tier_a.keys import (
    EscrowPrivateKey,
    EscrowPublicKey,
    Keyring,
    RawAesKey,
    load_key_file,
    write_escrow_pair,
    write_key_file,
)


def _write(path: Path, document: object, mode: int = 0o600) -> Path:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    path.chmod(mode)
    return path


def _doc(material: bytes = b"k" * 32, **overrides: object) -> dict:
    return {"namespace": "kommunmoln", "name": "k1", "material_b64": base64.b64encode(material).decode(), **overrides}


def test_keygen_writes_0600_and_loads_back(tmp_path: Path) -> None:
    # GIVEN a fresh key WHEN it is written and read back
    key = RawAesKey.generate("kommunmoln", "k1")
    path = write_key_file(tmp_path / "k.key.json", key)
    loaded = load_key_file(path)
    # THEN the file is owner-only and holds the same key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (loaded.namespace, loaded.name, loaded.material()) == ("kommunmoln", "k1", key.material())
    assert set(json.loads(path.read_text())) == {"namespace", "name", "material_b64"}


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    # GIVEN an existing key file WHEN keygen targets it THEN it refuses and the file is unchanged
    path = write_key_file(tmp_path / "k.key.json", RawAesKey.generate())
    before = path.read_bytes()
    with pytest.raises(UsageError, match="already exists"):
        write_key_file(path, RawAesKey.generate())
    assert path.read_bytes() == before


def test_keygen_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    # GIVEN a umask of 0 WHEN a key file is written THEN it is still 0600
    old = os.umask(0)
    try:
        path = write_key_file(tmp_path / "k.key.json", RawAesKey.generate())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_world_access_is_refused(tmp_path: Path, mode: int) -> None:
    # GIVEN a key file readable by group or others WHEN loaded THEN refused with the chmod fix
    path = _write(tmp_path / "k.json", _doc(), mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_file(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        (_doc(material=b"short"), "expected 32"),
        (_doc(material_b64="***"), "not valid base64"),
        ({"namespace": "kommunmoln", "name": "k1"}, "missing material_b64"),
        ({**_doc(), "extra": 1}, "unknown field extra"),
        (_doc(namespace="aws-kms"), "reserved"),
        (_doc(name="../x"), "key name"),
        (_doc(name=7), "must be strings"),
    ],
)
def test_bad_key_files_are_refused_with_a_reason(tmp_path: Path, content: object, message: str) -> None:
    # GIVEN a malformed key file WHEN loaded THEN a one-line KeyFileError names the problem
    path = _write(tmp_path / "k.json", content)
    with pytest.raises(KeyFileError, match=message) as error:
        load_key_file(path)
    assert "\n" not in str(error.value)


def test_missing_key_file_and_directory(tmp_path: Path) -> None:
    # GIVEN no file / a directory WHEN loaded THEN a clear error
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key_file(tmp_path / "nope.json")
    with pytest.raises(KeyFileError):
        load_key_file(tmp_path)


def test_repr_and_errors_never_show_material(tmp_path: Path) -> None:
    # GIVEN a key WHEN it is repr'd, str'd, or put in a keyring's repr THEN no material appears
    key = RawAesKey.generate("kommunmoln", "k1")
    texts = [repr(key), str(key), repr(Keyring(key.master_key())), repr(key.master_key())]
    for text in texts:
        assert key.material().hex() not in text
        assert base64.b64encode(key.material()).decode() not in text
    assert "hidden" in repr(key)
    # AND a key cannot be pickled (no accidental serialization)
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_wrong_length_material_in_constructor() -> None:
    # GIVEN 16 bytes WHEN a key is built THEN refused (AES-256 only)
    with pytest.raises(KeyFileError, match="32 bytes"):
        RawAesKey("kommunmoln", "k1", b"x" * 16)


def test_escrow_pair_modes_and_names(tmp_path: Path, escrow_pair: tuple[Path, Path]) -> None:
    # GIVEN the session's escrow pair WHEN loaded THEN the private key is 0600 and both halves share a name
    public_path, private_path = escrow_pair
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    public = EscrowPublicKey.load(public_path, namespace="kommunmoln")
    private = EscrowPrivateKey.load(private_path)
    assert public.name == private.name and public.name.startswith("escrow-rsa-")
    assert "PRIVATE" not in repr(private)


def test_escrow_private_key_too_open_is_refused(tmp_path: Path, escrow_pair: tuple[Path, Path]) -> None:
    # GIVEN a copy of the private key readable by others WHEN loaded THEN refused
    copy = tmp_path / "open.key.pem"
    copy.write_bytes(escrow_pair[1].read_bytes())
    copy.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        EscrowPrivateKey.load(copy)


def test_escrow_public_key_must_be_rsa_pem(tmp_path: Path) -> None:
    # GIVEN garbage instead of a PEM WHEN loaded THEN a clear error
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        EscrowPublicKey.load(bad, namespace="kommunmoln")


def test_write_escrow_pair_refuses_existing(tmp_path: Path) -> None:
    # GIVEN an existing PREFIX.key.pem WHEN a pair is generated with that prefix THEN refused
    (tmp_path / "e.key.pem").write_text("x")
    with pytest.raises(UsageError, match="already exists"):
        write_escrow_pair(tmp_path / "e")
