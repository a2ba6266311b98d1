"""The proxy's HSM layer refuses a key that could leave the HSM or is not AES-256 (fail closed).

XKS Proxy API spec (aws/aws-kms-xksproxy-api-spec, "GetKeyMetadata"): external keys of XKS v1 are AES_256;
the point of tier C is that the key material never leaves the municipality's HSM, so a key whose PKCS#11
attributes allow export (CKA_EXTRACTABLE true, or CKA_SENSITIVE false: PKCS#11 v2.40 section 4.4, "a key with
CKA_SENSITIVE false can be revealed in plaintext") must not be used. Each case makes the key in a fresh SoftHSM2
token with python-pkcs11 and asks `HsmPool` to use it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys

import pytest

from kommunmoln.tier_c import local

pytestmark = [
    pytest.mark.softhsm,
    pytest.mark.skipif(not local.available(), reason="SoftHSM2 is not installed (make system-deps)"),
]
TOKEN = "kommunmoln-attr-test"


# SoftHSM2 reads SOFTHSM2_CONF once, when the library is first initialized in a process, and python-pkcs11 keeps
# one initialized library per path: a token made here would be invisible to a test process that already used
# SoftHSM2 with another configuration (tests/library/tier_a/test_pkcs11.py runs first). So the keys are made
# and used in a child process of their own, which reports each outcome as JSON.
_CHILD = r"""
import json, sys
import pkcs11
from kommunmoln.tier_c import local
from kommunmoln.tier_c.hsm import HsmError, HsmPool

token, pin = sys.argv[1], sys.argv[2]
lib = pkcs11.lib(str(local.SOFTHSM_LIBRARY))
attr = pkcs11.Attribute
with lib.get_token(token_label=token).open(user_pin=pin, rw=True) as session:
    for label, bits, extractable, sensitive in (("good", 256, False, True), ("extractable", 256, True, True),
                                                ("not-sensitive", 256, False, False), ("aes-128", 128, False, True)):
        session.generate_key(pkcs11.KeyType.AES, bits, label=label, store=True,
                             template={attr.EXTRACTABLE: extractable, attr.SENSITIVE: sensitive,
                                       attr.ENCRYPT: True, attr.DECRYPT: True})
pool = HsmPool(library=local.SOFTHSM_LIBRARY, token_label=token, pin=pin, size=1)
results = {}
for label in ("good", "extractable", "not-sensitive", "aes-128"):
    outcome = {}
    try:
        sealed = pool.encrypt(label, b"data key", b"aad")
        outcome["round_trip"] = pool.decrypt(label, sealed, b"aad") == b"data key"
    except HsmError as error:
        outcome["encrypt_error"] = str(error)
    try:
        outcome["has_key"] = pool.has_key(label)
    except HsmError as error:
        outcome["has_key_error"] = str(error)
    results[label] = outcome
pool.close()
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("softhsm-attributes")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    pin = secrets.token_hex(8)
    subprocess.run(
        [shutil.which("softhsm2-util") or "softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", pin,
         "--so-pin", secrets.token_hex(8)],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, TOKEN, pin], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout.splitlines()[-1])


def test_a_sensitive_non_extractable_aes_256_key_is_used(outcomes: dict[str, dict]) -> None:
    # GIVEN the key the proxy's create-keys command makes WHEN it encrypts and decrypts THEN it round-trips
    assert outcomes["good"].get("round_trip") is True, outcomes["good"]


@pytest.mark.parametrize("label", ["extractable", "not-sensitive", "aes-128"])
def test_a_key_that_could_leave_the_hsm_or_is_not_aes_256_is_refused(outcomes: dict[str, dict], label: str) -> None:
    # GIVEN a key whose attributes allow export, or of the wrong size
    # WHEN the proxy would use it THEN it refuses, saying what the key must be (the app answers InternalException)
    outcome = outcomes[label]
    assert "round_trip" not in outcome, outcome
    assert "must be AES-256, sensitive and non-extractable" in outcome.get("encrypt_error", ""), outcome
    # AND it is refused again on the next request (never cached as usable)
    assert "has_key_error" in outcome, outcome
