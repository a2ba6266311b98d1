"""The proxy survives concurrent requests: PKCS#11 calls are serialised as the library was told.

python-pkcs11 initialises the PKCS#11 library with C_Initialize(NULL_PTR). PKCS#11 v2.40 base spec, 5.4
C_Initialize: with no CKF_OS_LOCKING_OK flag and no mutex callbacks, "the application won't be accessing the
Cryptoki library from multiple threads simultaneously", and SoftHSM2 then runs without its own locks
(OpenSC/libp11 issue 91: SoftHSMv2 needs non-NULL init args for multi-threading). Before the proxy held one
lock around every call, its HSM threads raced inside SoftHSM2 and the process died of SIGSEGV under load:
every later request was refused, which is how the committed XKS bench came to show only errors.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from kommunmoln.tier_c import local

pytestmark = [
    pytest.mark.softhsm,
    pytest.mark.skipif(not local.available(), reason="SoftHSM2 is not installed (make system-deps)"),
]

META = {
    "awsPrincipalArn": "arn:aws:iam::111122223333:role/kommun-handlaggare",
    "kmsKeyArn": "arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
    "kmsViaService": "s3",
}
AAD = base64.b64encode(b"kms-binds-this-context").decode()
CLIENTS = 8
ROUND_TRIPS = 40


def _round_trips(setup: local.LocalSetup) -> list[tuple[int, int, bool]]:
    """One client: ROUND_TRIPS encrypt+decrypt of fresh data keys; (encrypt status, decrypt status, same key?), 0 = no answer."""
    outcomes = []
    for _ in range(ROUND_TRIPS):
        data_key = os.urandom(32)
        body = {"requestMetadata": {**META, "kmsOperation": "GenerateDataKey"}, "encryptionAlgorithm": "AES_GCM",
                "plaintext": base64.b64encode(data_key).decode(), "additionalAuthenticatedData": AAD}  # fmt: skip
        try:
            status, sealed = local.call(setup, "/keys/sekretess-s3-data/encrypt", body)
        except OSError:  # refused or reset: the proxy is gone
            status, sealed = 0, {}
        if status != 200:
            outcomes.append((status, 0, False))
            continue
        body = {"requestMetadata": {**META, "kmsOperation": "Decrypt"}, "encryptionAlgorithm": "AES_GCM",
                "additionalAuthenticatedData": AAD, **sealed}  # fmt: skip
        try:
            status2, opened = local.call(setup, "/keys/sekretess-s3-data/decrypt", body)
        except OSError:
            status2, opened = 0, {}
        outcomes.append((status, status2, opened.get("plaintext") == base64.b64encode(data_key).decode()))
    return outcomes


def test_concurrent_encrypt_and_decrypt_all_succeed_and_the_proxy_keeps_running(tmp_path):
    # GIVEN the proxy on a SoftHSM2 token with a pool of four HSM sessions
    setup = local.make_setup(tmp_path, pool_size=4)
    with local.running_proxy(setup) as process:
        # WHEN eight clients send encrypt/decrypt round trips at the same time
        with ThreadPoolExecutor(CLIENTS) as clients:
            results = [r for part in clients.map(lambda _: _round_trips(setup), range(CLIENTS)) for r in part]
        alive = process.poll() is None
    # THEN every request was answered 200, every data key came back, and the proxy did not crash
    assert alive, f"the proxy died under concurrent load (exit code {process.returncode})"
    failed = [r for r in results if r != (200, 200, True)]
    assert not failed, f"{len(failed)} of {len(results)} round trips failed, first {failed[0]}"
    assert len(results) == CLIENTS * ROUND_TRIPS


# The pool itself, called from many threads at once (the proxy uses one HSM thread; a caller may use more).
# In a child process: SoftHSM2 reads SOFTHSM2_CONF once per process (see test_hsm_key_attributes.py).
_CHILD = r"""
import json, os, sys
from concurrent.futures import ThreadPoolExecutor
from kommunmoln.tier_c import local
from kommunmoln.tier_c.hsm import HsmPool

pool = HsmPool(library=local.SOFTHSM_LIBRARY, token_label="kommunmoln-xks", pin=os.environ["XKS_HSM_PIN"], size=4,
               acquire_timeout=30)

def round_trips(_):
    good = 0
    for _ in range(150):
        key = os.urandom(32)
        good += pool.decrypt("xks-sekretess-s3-data", pool.encrypt("xks-sekretess-s3-data", key, b"aad"), b"aad") == key
    return good

with ThreadPoolExecutor(8) as threads:
    print(json.dumps(sum(threads.map(round_trips, range(8)))))
pool.close()
"""


def test_the_session_pool_serves_eight_threads_at_once_without_crashing(tmp_path):
    # GIVEN a SoftHSM2 token with the example keys and a pool of four sessions in a fresh process
    setup = local.make_setup(tmp_path)
    # WHEN eight threads encrypt and decrypt 150 data keys each through the pool at the same time
    child = subprocess.run([sys.executable, "-c", _CHILD], env=setup.env, capture_output=True, text=True, timeout=300,
                           check=False)  # fmt: skip
    # THEN the process did not crash (SIGSEGV is -11) and every data key came back
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-1500:]}"
    assert json.loads(child.stdout.splitlines()[-1]) == 8 * 150
