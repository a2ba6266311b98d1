"""The proxy's configuration file (bad values name their key) and its TLS 1.2+ listener."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
import sys
import urllib.request

import pytest

from kommunmoln.tier_c import local, sigv4
from kommunmoln.tier_c.config import ConfigError, load_config

SECRET = "A" * 43
GOOD = """
[server]
host = "127.0.0.1"
port = 8443
tls_certificate = "cert.pem"
tls_private_key = "key.pem"
uri_path_prefix = "/xks"
kill_switch_file = "kill.json"
[sigv4]
region = "eu-north-1"
[[sigv4.credentials]]
access_key_id = "ABCDEFGHIJKLMNOPQRST"
secret_env = "S1"
[hsm]
library = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "t"
pin_env = "PIN"
[audit]
path = "audit.jsonl"
[keys.k1]
label = "xks-k1"
operations = ["ENCRYPT", "DECRYPT"]
"""


def load(tmp_path, text, env=None):
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    return load_config(path, env if env is not None else {"S1": SECRET})


def test_a_valid_file_loads_with_relative_paths_resolved_and_secrets_hidden(tmp_path):
    config = load(tmp_path, GOOD)
    assert config.api_base == "/xks/kms/xks/v1"
    assert config.tls_certificate == tmp_path / "cert.pem"
    assert config.keys["k1"].operations == {"ENCRYPT", "DECRYPT"}
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("port = 8443", "port = 0", "server.port"),
        ('tls_certificate = "cert.pem"\n', "", "server.tls_certificate"),
        ('uri_path_prefix = "/xks"', 'uri_path_prefix = "xks/"', "server.uri_path_prefix"),
        ('region = "eu-north-1"', 'region = "Stockholm"', "sigv4.region"),
        ('access_key_id = "ABCDEFGHIJKLMNOPQRST"', 'access_key_id = "short"', "sigv4.credentials[0].access_key_id"),
        ('secret_env = "S1"', 'secret_env = "UNSET"', "sigv4.credentials[0].secret_env"),
        ('operations = ["ENCRYPT", "DECRYPT"]', 'operations = ["SIGN"]', "keys.k1.operations"),
        ("[keys.k1]", '[keys."bad id!"]', "keys.bad id!"),
        ('label = "xks-k1"', 'label = "xks-k1"\nstatus = "PAUSED"', "keys.k1.status"),
        ('label = "xks-k1"', 'label = "xks-k1"\nprincipal = ["x"]', "keys.k1: unknown"),
    ],
)
def test_a_bad_value_fails_with_a_message_naming_the_key(tmp_path, old, new, key):
    assert old in GOOD
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]").replace("!", "!")):
        load(tmp_path, GOOD.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('uri_path_prefix = "/xks"', 'uri_path_prefx = "/xks"', "server: unknown setting(s) ['uri_path_prefx']"),
        ('pin_env = "PIN"', 'pin_env = "PIN"\nsession_pool_siz = 64', "hsm: unknown setting(s) ['session_pool_siz']"),
        ('region = "eu-north-1"', 'region = "eu-north-1"\nservice = "kms"', "sigv4: unknown setting(s) ['service']"),
        ('secret_env = "S1"', 'secret_env = "S1"\nsecret = "x"', "sigv4.credentials[0]: unknown setting(s) ['secret']"),
        ('path = "audit.jsonl"', 'path = "audit.jsonl"\nrotate = true', "audit: unknown setting(s) ['rotate']"),
        ("[server]", "[proxy]\nhost = 1\n[server]", "top level: unknown setting(s) ['proxy']"),
    ],
)
def test_an_unknown_setting_is_refused_naming_it_and_its_table(tmp_path, old, new, message):
    # GIVEN a valid file with one setting the proxy does not know (a misspelt optional one would
    # otherwise fall back to its default without a word)
    assert old in GOOD
    # WHEN it is loaded THEN loading fails, naming the table and the setting
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, GOOD.replace(old, new, 1))
    assert str(refused.value) == message


def test_a_credential_that_is_not_a_table_is_refused_without_a_traceback(tmp_path):
    # GIVEN sigv4.credentials as a list of strings instead of tables
    text = GOOD.replace('[[sigv4.credentials]]\naccess_key_id = "ABCDEFGHIJKLMNOPQRST"\nsecret_env = "S1"\n',
                        'credentials = ["ABCDEFGHIJKLMNOPQRST"]\n')  # fmt: skip
    assert text != GOOD
    # WHEN it is loaded THEN a ConfigError names the entry (not an AttributeError)
    with pytest.raises(ConfigError, match=r"^sigv4\.credentials\[0\]: expected a table$"):
        load(tmp_path, text)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "xks.kommun.example"])  # noqa: S104 - addresses the check refuses
def test_plain_http_is_refused_on_any_but_a_loopback_host(tmp_path, host):
    # GIVEN the plain-HTTP test flag instead of a TLS certificate
    plain = GOOD.replace('tls_certificate = "cert.pem"\ntls_private_key = "key.pem"', "plain_http_for_tests = true")
    assert plain != GOOD
    # WHEN the proxy would listen on loopback THEN it loads; on any other address THEN it is refused
    assert load(tmp_path, plain).plain_http_for_tests
    with pytest.raises(
        ConfigError, match=rf"^server\.plain_http_for_tests: only with a loopback host .* not '{host}'$"
    ):
        load(tmp_path, plain.replace('host = "127.0.0.1"', f'host = "{host}"'))


def test_three_credentials_are_refused_two_are_accepted(tmp_path):
    second = '[[sigv4.credentials]]\naccess_key_id = "ABCDEFGHIJKLMNOPQRS2"\nsecret_env = "S1"\n'
    two = GOOD.replace("[hsm]", second + "[hsm]")
    assert len(load(tmp_path, two).credentials) == 2
    three = two.replace("[hsm]", second.replace("RS2", "RS3") + "[hsm]")
    with pytest.raises(ConfigError, match=r"sigv4\.credentials"):
        load(tmp_path, three)


@pytest.mark.softhsm
@pytest.mark.skipif(not local.available(), reason="SoftHSM2 is not installed (make system-deps)")
def test_tls_listener_serves_tls12_and_13_and_sets_tls12_as_minimum(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    setup = local.make_setup(tmp_path / "xks")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (setup.root / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (setup.root / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    text = setup.config_path.read_text().replace(
        "plain_http_for_tests = true", 'tls_certificate = "cert.pem"\ntls_private_key = "key.pem"'
    )
    setup.config_path.write_text(text)
    process = subprocess.Popen([sys.executable, "-m", "usecases.external_key_store", "serve", "--config", str(setup.config_path)],
                               env=setup.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    url = f"https://localhost:{setup.port}{local.PREFIX}/kms/xks/v1/health"
    body = json.dumps({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "tls"}}).encode()

    def health(max_version):
        context = ssl.create_default_context(cafile=str(setup.root / "cert.pem"))
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = max_version
        akid, secret = setup.credentials[0]
        headers = sigv4.sign(url=url, body=body, access_key_id=akid, secret_access_key=secret, region=local.REGION)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, context=context, timeout=5) as response:  # noqa: S310
            return response.status

    try:
        import time

        deadline = time.monotonic() + 30
        while True:
            try:
                assert health(ssl.TLSVersion.TLSv1_2) == 200
                break
            except (ConnectionError, urllib.error.URLError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        assert health(ssl.TLSVersion.TLSv1_3) == 200
        # The listener's own context refuses anything older than TLS 1.2 (the system OpenSSL would also
        # refuse TLS 1.1 at its default security level, so a TLS 1.1 handshake proves nothing here).
        from kommunmoln.tier_c.server import uvicorn_config

        listener = uvicorn_config(load_config(setup.config_path, setup.env), app=None)
        assert listener.ssl.minimum_version == ssl.TLSVersion.TLSv1_2
    finally:
        process.terminate()
        process.wait(timeout=15)
