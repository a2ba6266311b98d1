"""HSM custody against a SoftHSM2 token created by the test (a real PKCS#11 implementation)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kommunmoln.tier_a.codec import decrypt_file, encrypt_file, read_file_head, summarize_header
from kommunmoln.tier_a.errors import HsmError
from kommunmoln.tier_a.keys import Keyring, RawAesKey, raw_aes_master_key
from kommunmoln.tier_a.pkcs11_key import open_hsm_key

SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4711-test"
pytestmark = [
    pytest.mark.softhsm,
    pytest.mark.skipif(
        not (Path(SOFTHSM_LIB).exists() and shutil.which("softhsm2-util")),
        reason="SoftHSM2 is not installed (make system-deps installs the Debian package softhsm2)",
    ),
]


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SoftHSM2 token in a temporary directory; yields its label."""
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    label = f"kommunmoln-test-{os.getpid()}"
    subprocess.run(
        [shutil.which("softhsm2-util") or "softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "so-" + PIN],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield label
    finally:
        if saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = saved


def _open(token: str, label: str, *, generate: bool = False):
    return open_hsm_key(lib_path=SOFTHSM_LIB, token_label=token, pin=PIN, key_label=label, generate=generate)


def _import_known_material(token: str, label: str, material: bytes) -> None:
    """TEST ONLY: put known AES material into the token, to compare with a raw AES key."""
    import pkcs11

    slot_token = pkcs11.lib(SOFTHSM_LIB).get_token(token_label=token)
    try:
        session = slot_token.open(rw=True, user_pin=PIN)
    except pkcs11.exceptions.UserAlreadyLoggedIn:  # another session of this process is logged in
        session = slot_token.open(rw=True)
    with session:
        _create(session, label, material)


def _create(session, label: str, material: bytes) -> None:
    import pkcs11

    session.create_object(
        {
            pkcs11.Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY,
            pkcs11.Attribute.KEY_TYPE: pkcs11.KeyType.AES,
            pkcs11.Attribute.VALUE: material,
            pkcs11.Attribute.TOKEN: True,
            pkcs11.Attribute.PRIVATE: True,
            pkcs11.Attribute.ENCRYPT: True,
            pkcs11.Attribute.DECRYPT: True,
            pkcs11.Attribute.LABEL: label,
        }
    )


def test_generated_key_is_sensitive_and_never_extractable(token: str) -> None:
    # GIVEN a key generated through our code WHEN its attributes are read
    hsm, master_key = _open(token, "generated-1", generate=True)
    try:
        attributes = hsm.attributes()
        # THEN it lives in the token, is sensitive and was never extractable
        assert attributes == {
            "sensitive": True, "extractable": False, "never_extractable": True, "always_sensitive": True, "token": True,
        }  # fmt: skip
        # AND its value cannot be read out
        import pkcs11

        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            hsm._key[pkcs11.Attribute.VALUE]
        # AND the PIN does not appear in any repr
        assert PIN not in repr(hsm) and PIN not in repr(master_key)
    finally:
        hsm.close()


def test_generate_refuses_a_duplicate_label(token: str) -> None:
    # GIVEN a key labelled L WHEN another key with label L is generated THEN refused
    hsm, _ = _open(token, "dup-1", generate=True)
    hsm.close()
    with pytest.raises(HsmError, match="already holds"):
        _open(token, "dup-1", generate=True)


def test_roundtrip_inside_the_hsm(tmp_path: Path, token: str) -> None:
    # GIVEN an HSM key WHEN a file is encrypted and decrypted through it THEN it round-trips
    hsm, master_key = _open(token, "roundtrip-1", generate=True)
    try:
        (tmp_path / "p").write_bytes(os.urandom(1_500_000))
        encrypt_file(tmp_path / "p", tmp_path / "c", Keyring(master_key), {"kommunmoln:key": "x"})
        decrypt_file(tmp_path / "c", tmp_path / "out", Keyring(master_key))
        assert (tmp_path / "out").read_bytes() == (tmp_path / "p").read_bytes()
        assert summarize_header(read_file_head(tmp_path / "c")).wrapping_keys == (("kommunmoln", "roundtrip-1"),)
    finally:
        hsm.close()


def test_hsm_messages_interoperate_with_the_raw_aes_keyring(tmp_path: Path, token: str) -> None:
    # GIVEN the same AES material in the token (imported for this test) and as a plain ESDK raw AES key
    material = os.urandom(32)
    _import_known_material(token, "interop-1", material)
    hsm, hsm_key = _open(token, "interop-1")
    raw_key = raw_aes_master_key("kommunmoln", "interop-1", material)
    (tmp_path / "p").write_bytes(os.urandom(300_000))
    try:
        # WHEN the HSM wraps THEN the raw AES key unwraps (identical EDK format and AAD)
        encrypt_file(tmp_path / "p", tmp_path / "c1", Keyring(hsm_key), {"a": "b"})
        decrypt_file(tmp_path / "c1", tmp_path / "o1", Keyring(raw_key))
        # AND the reverse: a raw-AES message unwraps inside the HSM
        encrypt_file(tmp_path / "p", tmp_path / "c2", Keyring(raw_key), {"c": "d"})
        decrypt_file(tmp_path / "c2", tmp_path / "o2", Keyring(hsm_key))
    finally:
        hsm.close()
    assert (tmp_path / "o1").read_bytes() == (tmp_path / "o2").read_bytes() == (tmp_path / "p").read_bytes()


def test_wrong_hsm_key_is_refused(tmp_path: Path, token: str) -> None:
    # GIVEN a message for a raw key WHEN an HSM key of the same name but other material tries THEN refused
    _import_known_material(token, "interop-2", os.urandom(32))
    hsm, hsm_key = _open(token, "interop-2")
    try:
        (tmp_path / "p").write_bytes(b"x" * 100)
        encrypt_file(
            tmp_path / "p",
            tmp_path / "c",
            Keyring(RawAesKey("kommunmoln", "interop-2", os.urandom(32)).master_key()),
            {},
        )
        with pytest.raises(Exception, match=r"does not authenticate|wrong key"):
            decrypt_file(tmp_path / "c", tmp_path / "out", Keyring(hsm_key))
        assert not (tmp_path / "out").exists()
    finally:
        hsm.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token_label": "no-such-token"}, "no PKCS#11 token"),
        ({"key_label": "no-such-key"}, "no AES key labelled"),
        ({"lib_path": "/nonexistent/lib.so"}, "does not exist"),
    ],
)
def test_bad_hsm_settings_give_one_line_errors(token: str, kwargs: dict, message: str) -> None:
    # GIVEN a wrong token / key / library WHEN opened THEN a clear error
    settings = {"lib_path": SOFTHSM_LIB, "token_label": token, "pin": PIN, "key_label": "generated-1", **kwargs}
    with pytest.raises(Exception, match=message) as error:
        open_hsm_key(**settings)
    assert "\n" not in str(error.value)
