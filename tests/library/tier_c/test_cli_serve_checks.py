"""`kommunmoln xks serve` with an unusable TLS certificate or key, or audit log: one line naming the setting, exit 2.

The check runs before the HSM is opened (the configuration below names a PKCS#11 library that does not
exist: reaching it would fail differently), and its message names paths, never the key's contents.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kommunmoln.tier_a import cli
from kommunmoln.tier_c import cli as xks_cli
from kommunmoln.tier_c.config import load_config
from tests.library.tier_c.test_cli import CONFIG

pytest.importorskip("pkcs11", reason="`serve` needs the [xks] extra")
pytest.importorskip("uvicorn", reason="`serve` needs the [xks] extra")
SECRET = "B" * 43
TLS = 'tls_certificate = "cert.pem"\ntls_private_key = "key.pem"'


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey, encryption=None) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption or serialization.NoEncryption()
    )


def _pem_cert(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xks.kommun.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("XKS_TEST_SECRET", SECRET)
    path = tmp_path / "proxy.toml"
    text = CONFIG.replace("plain_http_for_tests = true", TLS).replace(
        "/usr/lib/softhsm/libsofthsm2.so", str(tmp_path / "no-such-pkcs11.so")
    )
    path.write_text(text)
    return path


def serve(config) -> int:
    return cli.main(["xks", "serve", "--config", str(config)])


def test_missing_certificate_and_key_files_are_named_exit_2(config, capsys) -> None:
    # GIVEN a TLS configuration whose files do not exist WHEN the proxy is started
    assert serve(config) == 2
    # THEN one line naming both settings and the cause, and no traceback
    err = capsys.readouterr().err
    assert err.startswith("error: server.tls_certificate/server.tls_private_key: cannot use ")
    assert "cert.pem" in err and "No such file or directory" in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("problem", ["not PEM", "key of another certificate", "encrypted key"])
def test_an_unusable_certificate_or_key_is_refused_without_echoing_it(config, capsys, problem) -> None:
    # GIVEN a certificate and a key that TLS cannot use together
    key = _key()
    (config.parent / "cert.pem").write_bytes(b"garbage\n" if problem == "not PEM" else _pem_cert(key))
    if problem == "key of another certificate":
        key_pem = _pem_key(_key())
    elif problem == "encrypted key":  # the configuration has no passphrase: a service cannot type one
        key_pem = _pem_key(key, serialization.BestAvailableEncryption(b"a passphrase"))
    else:
        key_pem = _pem_key(key)
    (config.parent / "key.pem").write_bytes(key_pem)
    # WHEN the proxy is started THEN exit 2 with one line naming the settings, never the key itself
    assert serve(config) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: server.tls_certificate/server.tls_private_key: cannot use ")
    assert err.count("\n") == 1 and "Traceback" not in err and "PRIVATE KEY" not in err


def test_a_matching_certificate_and_key_pass_the_check(config) -> None:
    # GIVEN a certificate and its own unencrypted key
    key = _key()
    (config.parent / "cert.pem").write_bytes(_pem_cert(key))
    (config.parent / "key.pem").write_bytes(_pem_key(key))
    # WHEN checked before serving THEN nothing is raised
    xks_cli._check_tls(load_config(config))


def test_an_audit_log_that_cannot_be_appended_to_is_named_exit_2(config, capsys) -> None:
    # GIVEN a valid certificate and key, and an audit log path below a regular file (no directory can be made)
    key = _key()
    (config.parent / "cert.pem").write_bytes(_pem_cert(key))
    (config.parent / "key.pem").write_bytes(_pem_key(key))
    (config.parent / "not-a-directory").write_text("")
    config.write_text(config.read_text().replace('path = "audit.jsonl"', 'path = "not-a-directory/audit.jsonl"'))
    # WHEN the proxy is started THEN one line naming audit.path and the cause, before the HSM is opened
    assert serve(config) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: audit.path: cannot append to ") and "not-a-directory/audit.jsonl" in err
    assert err.count("\n") == 1 and "Traceback" not in err
