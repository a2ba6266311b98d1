"""A local tier C setup for the demo, tests and bench: a SoftHSM2 token, four keys, a config file.

Everything lives in one directory; the environment returned holds SOFTHSM2_CONF, the HSM PIN and
two SigV4 secrets (random, for this run only). The proxy runs as a child process
(`python -m usecases.external_key_store serve`), so its PKCS#11 library never clashes with another
token loaded in the calling process.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kommunmoln.tier_c import sigv4

SOFTHSM_LIBRARY = Path("/usr/lib/softhsm/libsofthsm2.so")
REGION = "eu-north-1"
PREFIX = "/kommunmoln-xks"
# The four example keys of docs/use-case-3.md: every combination of allowed operations.
EXAMPLE_KEYS = {
    "sekretess-s3-data": ("ENCRYPT", "DECRYPT"),
    "inkorg-encrypt-only": ("ENCRYPT",),
    "arkiv-decrypt-only": ("DECRYPT",),
    "parkerad-neither": (),
}


def available() -> bool:
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return False
    return SOFTHSM_LIBRARY.exists() and shutil.which("softhsm2-util") is not None


def _access_key_id() -> str:
    return base64.b32encode(secrets.token_bytes(15)).decode()  # 24 characters of A-Z2-7


@dataclass
class LocalSetup:
    root: Path
    config_path: Path
    env: dict[str, str]
    port: int
    credentials: list[tuple[str, str]]  # (access key id, secret) pairs; two, as during rotation
    ca_file: Path | None = None  # set by use_tls: the self-signed certificate clients trust

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}{PREFIX}/kms/xks/v1"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "usecases.external_key_store", *args, "--config", str(self.config_path)],
            env=self.env, capture_output=True, text=True, check=check, timeout=120,
        )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_setup(root: Path, *, pool_size: int = 4, principals: tuple[str, ...] = ()) -> LocalSetup:
    """Token, keys and config under `root` (plain HTTP on loopback: the test flag)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokens").mkdir(exist_ok=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    pin = secrets.token_hex(8)
    env = {**os.environ, "SOFTHSM2_CONF": str(conf), "XKS_HSM_PIN": pin}
    creds = []
    for name in ("XKS_SECRET_CURRENT", "XKS_SECRET_NEXT"):
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        env[name] = secret
        creds.append((_access_key_id(), secret))
    subprocess.run(
        [shutil.which("softhsm2-util") or "softhsm2-util", "--init-token", "--free", "--label", "kommunmoln-xks",
         "--pin", pin, "--so-pin", secrets.token_hex(8)],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    port = free_port()
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "plain_http_for_tests = true  # loopback only; production uses tls_certificate/tls_private_key",
        f'uri_path_prefix = "{PREFIX}"',
        'kill_switch_file = "killswitch.json"',
        "",
        "[sigv4]",
        f'region = "{REGION}"',
        "[[sigv4.credentials]]",
        f'access_key_id = "{creds[0][0]}"',
        'secret_env = "XKS_SECRET_CURRENT"',
        "[[sigv4.credentials]]",
        f'access_key_id = "{creds[1][0]}"',
        'secret_env = "XKS_SECRET_NEXT"',
        "",
        "[hsm]",
        f'library = "{SOFTHSM_LIBRARY}"',
        'token_label = "kommunmoln-xks"',
        'pin_env = "XKS_HSM_PIN"',
        'health_key_label = "xks-health-check"',
        f"session_pool_size = {pool_size}",
        "",
        "[audit]",
        'path = "audit.jsonl"',
        "",
    ]
    for key_id, ops in EXAMPLE_KEYS.items():
        lines += [f'[keys."{key_id}"]', f'label = "xks-{key_id}"', f"operations = {list(ops)!r}".replace("'", '"')]
        if principals:
            lines.append(f"principals = {list(principals)!r}".replace("'", '"'))
        if key_id == "sekretess-s3-data":
            lines.append('via_services = ["s3"]')
        lines.append("")
    config_path = root / "proxy.toml"
    config_path.write_text("\n".join(lines), encoding="utf-8")
    setup = LocalSetup(root=root, config_path=config_path, env=env, port=port, credentials=creds)
    setup.run("create-keys")
    return setup


def use_tls(setup: LocalSetup) -> None:
    """Serve TLS (the production mode) with a fresh self-signed certificate for 127.0.0.1 that clients trust."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1)).add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (setup.root / "tls-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = setup.root / "tls-key.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    text = setup.config_path.read_text(encoding="utf-8")
    plain = next(line for line in text.splitlines() if line.startswith("plain_http_for_tests"))
    setup.config_path.write_text(
        text.replace(plain, 'tls_certificate = "tls-cert.pem"\ntls_private_key = "tls-key.pem"'), encoding="utf-8"
    )
    setup.ca_file = setup.root / "tls-cert.pem"


@contextlib.contextmanager
def running_proxy(setup: LocalSetup, *, timeout: float = 30) -> Iterator[subprocess.Popen]:
    """Start `serve` as a child process, wait until /health reports a usable HSM, stop it with SIGTERM afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "usecases.external_key_store", "serve", "--config", str(setup.config_path)],
        env=setup.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the proxy exited: {process.stderr.read()[-500:]}")
            try:
                status, health = call(
                    setup, "/health", {"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "start"}}
                )
                if status == 200 and health["ekmFleetDetails"][0]["healthStatus"] != "UNAVAILABLE":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the proxy did not become healthy in time")
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def call(
    setup: LocalSetup,
    api_path: str,
    body: dict | bytes,
    *,
    credential: int = 0,
    service: str = sigv4.SERVICE,
    region: str = REGION,
    method: str = "POST",
    tamper=None,
) -> tuple[int, dict]:
    """Send one request signed as KMS signs it; returns (HTTP status, JSON body)."""
    import json

    url = setup.base_url + api_path
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    akid, secret = setup.credentials[credential]
    headers = sigv4.sign(
        url=url, body=raw, access_key_id=akid, secret_access_key=secret, region=region, service=service
    )
    if tamper:
        raw, headers = tamper(raw, headers)
    request = urllib.request.Request(url, data=raw if method == "POST" else None, headers=headers, method=method)  # noqa: S310 - http://127.0.0.1 URL built above
    context = ssl.create_default_context(cafile=str(setup.ca_file)) if setup.ca_file else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310 - loopback URL built above
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        payload = error.read()
        return error.code, json.loads(payload) if payload else {}
