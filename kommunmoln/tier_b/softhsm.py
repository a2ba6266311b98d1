"""A CSR made inside a real PKCS#11 token (SoftHSM2), like the one a CloudHSM cluster makes.

The demo and tests sign this CSR with the workshop CA to show that the CA side works on a
CSR whose private key never left a token. The token is created in a temporary directory
by a child process (`python -m kommunmoln.tier_b.softhsm`), so its SOFTHSM2_CONF never
clashes with another token loaded in the calling process. PINs are random and discarded.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOFTHSM_LIBRARY = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "kommunmoln-cluster-csr"  # noqa: S105 - a token label, not a secret


class SoftHsmUnavailable(RuntimeError):
    """SoftHSM2 or python-pkcs11 is missing, or the token could not make a CSR."""


def available() -> bool:
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return False
    return SOFTHSM_LIBRARY.exists() and shutil.which("softhsm2-util") is not None


def csr_from_softhsm(common_name: str, *, timeout: float = 60) -> str:
    """PEM CSR for `common_name`, signed inside a fresh SoftHSM2 token with a non-extractable RSA key."""
    if not available():
        raise SoftHsmUnavailable("SoftHSM2 (libsofthsm2.so, softhsm2-util) or python-pkcs11 is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "kommunmoln.tier_b.softhsm", common_name],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0 or "BEGIN CERTIFICATE REQUEST" not in result.stdout:
        raise SoftHsmUnavailable(f"SoftHSM2 could not make a CSR: {result.stderr.strip()[-300:]}")
    return result.stdout


def _child(common_name: str) -> str:
    """Runs in the child process: token in a temp dir, key pair on the token, CSR signed by the token."""
    import pkcs11
    from asn1crypto import csr as asn1_csr
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.util.rsa import encode_rsa_public_key

    with tempfile.TemporaryDirectory(prefix="kommunmoln-softhsm-") as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.mkdir()
        conf = Path(tmp) / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        user_pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
        util = shutil.which("softhsm2-util") or "/usr/bin/softhsm2-util"
        subprocess.run(
            [util, "--init-token", "--free", "--label", TOKEN_LABEL, "--so-pin", so_pin, "--pin", user_pin],
            check=True,
            capture_output=True,
        )
        token = pkcs11.lib(str(SOFTHSM_LIBRARY)).get_token(token_label=TOKEN_LABEL)
        with token.open(user_pin=user_pin, rw=True) as session:
            public, private = session.generate_keypair(
                KeyType.RSA,
                2048,
                store=False,
                private_template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True},
            )
            info = asn1_csr.CertificationRequestInfo(
                {
                    "version": "v1",
                    "subject": asn1_x509.Name.build({"common_name": common_name}),
                    "subject_pk_info": asn1_keys.PublicKeyInfo(
                        {
                            "algorithm": {"algorithm": "rsa"},
                            "public_key": asn1_keys.RSAPublicKey.load(encode_rsa_public_key(public)),
                        }
                    ),
                    "attributes": [],
                }
            )
            signature = private.sign(info.dump(), mechanism=Mechanism.SHA256_RSA_PKCS)
        request = asn1_csr.CertificationRequest(
            {
                "certification_request_info": info,
                "signature_algorithm": {"algorithm": "sha256_rsa"},
                "signature": signature,
            }
        )
        csr = x509.load_der_x509_csr(request.dump())
        if not csr.is_signature_valid:
            raise RuntimeError("the token's CSR signature does not verify")
        return csr.public_bytes(serialization.Encoding.PEM).decode()


if __name__ == "__main__":
    sys.stdout.write(_child(sys.argv[1] if len(sys.argv) > 1 else "HSM:demo:PARTN:0, for FIPS mode"))
