"""The proxy's HSM layer refuses a key that could leave the HSM or is not AES-256 (fail closed).

XKS Proxy API spec (aws/aws-kms-xksproxy-api-spec, "GetKeyMetadata"): external keys of XKS v1 are AES_256;
the point of tier C is that the key material never leaves the municipality's HSM, so a key whose PKCS#11
attributes allow export (CKA_EXTRACTABLE true, or CKA_SENSITIVE false: PKCS#11 v2.40 section 4.4, "a key with
CKA_SENSITIVE false can be revealed in plaintext") must not be used. Each case makes the key in a fresh SoftHSM2
token with python-pkcs11 and asks `HsmPool` to use it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest

from kommunmoln.tier_c import local
from kommunmoln.tier_c.hsm import HsmError, HsmPool

pytestmark = [
    pytest.mark.softhsm,
    pytest.mark.skipif(not local.available(), reason="SoftHSM2 is not installed (make system-deps)"),
]
TOKEN = "kommunmoln-attr-test"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory):
    import pkcs11

    root = tmp_path_factory.mktemp("softhsm-attributes")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin = secrets.token_hex(8)
    subprocess.run(
        [shutil.which("softhsm2-util") or "softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", pin,
         "--so-pin", secrets.token_hex(8)],
        check=True, capture_output=True,
    )  # fmt: skip
    lib = pkcs11.lib(str(local.SOFTHSM_LIBRARY))
    with lib.get_token(token_label=TOKEN).open(user_pin=pin, rw=True) as session:
        attr = pkcs11.Attribute
        for label, bits, extractable, sensitive in (
            ("good", 256, False, True),
            ("extractable", 256, True, True),
            ("not-sensitive", 256, False, False),
            ("aes-128", 128, False, True),
        ):
            session.generate_key(
                pkcs11.KeyType.AES, bits, label=label, store=True,
                template={attr.EXTRACTABLE: extractable, attr.SENSITIVE: sensitive, attr.ENCRYPT: True,
                          attr.DECRYPT: True},
            )  # fmt: skip
    yield pin
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def pool(token: str):
    hsm = HsmPool(library=local.SOFTHSM_LIBRARY, token_label=TOKEN, pin=token, size=1)
    yield hsm
    hsm.close()


def test_a_sensitive_non_extractable_aes_256_key_is_used(pool: HsmPool) -> None:
    # GIVEN the key the proxy's create-keys command makes WHEN it encrypts and decrypts THEN it round-trips
    sealed = pool.encrypt("good", b"data key", b"aad")
    assert pool.decrypt("good", sealed, b"aad") == b"data key"


@pytest.mark.parametrize("label", ["extractable", "not-sensitive", "aes-128"])
def test_a_key_that_could_leave_the_hsm_or_is_not_aes_256_is_refused(pool: HsmPool, label: str) -> None:
    # GIVEN a key whose attributes allow export, or of the wrong size
    # WHEN the proxy would use it THEN it refuses, saying what the key must be (the app answers InternalException)
    with pytest.raises(HsmError, match="must be AES-256, sensitive and non-extractable"):
        pool.encrypt(label, b"data key", b"aad")
    # AND it is refused again on the next request (never cached as usable)
    with pytest.raises(HsmError):
        pool.has_key(label)
