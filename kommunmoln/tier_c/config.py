"""The proxy's configuration file (TOML), parsed into one validated, typed object.

A bad value fails loading with a message naming the key, so a misconfigured proxy never starts. So
does a setting the proxy does not know (fail closed: a misspelt `max_body_bytes` or `session_pool_size`
would otherwise silently fall back to its default).
Secrets (SigV4 secret access keys, the HSM PIN) are never in the file: the file names the
environment variables that hold them.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# The spec's rules for what KMS accepts (xks_proxy_api_spec.md, "Appendix A" and "API operations").
ACCESS_KEY_ID = re.compile(r"^[A-Z2-7]{20,30}$")
SECRET_ACCESS_KEY = re.compile(r"^[A-Za-z0-9+/=]{43,64}$")
EXTERNAL_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# Every setting the file may hold, per table ("" is the top level); anything else is refused.
SETTINGS: dict[str, frozenset[str]] = {
    "": frozenset({"server", "sigv4", "hsm", "audit", "keys"}),
    "server": frozenset(
        {
            "host",
            "port",
            "tls_certificate",
            "tls_private_key",
            "plain_http_for_tests",
            "uri_path_prefix",
            "kill_switch_file",
            "max_body_bytes",
            "max_concurrent_requests",
            "fleet_size",
        }
    ),
    "sigv4": frozenset({"region", "credentials"}),
    "sigv4.credentials": frozenset({"access_key_id", "secret_env"}),
    "hsm": frozenset({"library", "token_label", "pin_env", "health_key_label", "session_pool_size"}),
    "audit": frozenset({"path"}),
    "keys.*": frozenset({"label", "operations", "status", "principals", "via_services", "require_via_service"}),
}
OPERATIONS = ("ENCRYPT", "DECRYPT")
STATUSES = ("ENABLED", "DISABLED")


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or has a bad value (the message names the key)."""


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str = field(repr=False)

    def __repr__(self) -> str:  # never print the secret
        return f"Credential(access_key_id={self.access_key_id!r})"


@dataclass(frozen=True)
class KeyRule:
    """One external key: its HSM label, what it may do, and who may use it (secondary authorization)."""

    external_key_id: str
    label: str
    operations: frozenset[str]
    status: str = "ENABLED"
    principals: tuple[str, ...] = ()  # fnmatch patterns of awsPrincipalArn; empty = any principal
    via_services: tuple[str, ...] = ()  # allowed kmsViaService values; empty = any (or none)
    require_via_service: bool = False  # True: a request without kmsViaService is denied


@dataclass(frozen=True)
class ProxyConfig:
    host: str
    port: int
    tls_certificate: Path | None
    tls_private_key: Path | None
    plain_http_for_tests: bool
    uri_path_prefix: str  # "" or "/something"; the API lives at {prefix}/kms/xks/v1
    region: str
    credentials: tuple[Credential, ...]
    pkcs11_library: Path
    token_label: str
    pin_env: str
    health_key_label: str
    session_pool_size: int
    audit_log: Path
    kill_switch_file: Path
    max_body_bytes: int
    max_concurrent_requests: int
    keys: dict[str, KeyRule]
    fleet_size: int = 1

    @property
    def api_base(self) -> str:
        return f"{self.uri_path_prefix}/kms/xks/v1"

    def hsm_pin(self) -> str:
        pin = os.environ.get(self.pin_env)
        if not pin:
            raise ConfigError(f"hsm.pin_env: environment variable {self.pin_env} is not set")
        return pin


def _get(table: dict, dotted: str, kind: type | tuple[type, ...], default=...):
    value = table.get(dotted.rsplit(".", 1)[-1], default)
    if value is ...:
        raise ConfigError(f"{dotted}: missing")
    if (value is not None and not isinstance(value, kind)) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{dotted}: expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


def _only_known(table: dict, where: str, settings: str) -> None:
    """Refuse a setting that `settings` (a SETTINGS entry) does not list, naming it and its table."""
    unknown = set(table) - SETTINGS[settings]
    if unknown:
        raise ConfigError(f"{where or 'top level'}: unknown setting(s) {sorted(unknown)}")


def _key_rule(key_id: str, table: dict) -> KeyRule:
    where = f"keys.{key_id}"
    if not EXTERNAL_KEY_ID.match(key_id):
        raise ConfigError(f"{where}: an external key id is 1-128 of A-Z a-z 0-9 . - _ (XKS spec)")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    _only_known(table, where, "keys.*")
    operations = _get(table, f"{where}.operations", list)
    bad = [op for op in operations if op not in OPERATIONS]
    if bad:
        raise ConfigError(f"{where}.operations: {bad} not in {list(OPERATIONS)}")
    status = _get(table, f"{where}.status", str, "ENABLED")
    if status not in STATUSES:
        raise ConfigError(f"{where}.status: {status!r} not in {list(STATUSES)}")
    principals = _get(table, f"{where}.principals", list, [])
    via = _get(table, f"{where}.via_services", list, [])
    for name, values in (("principals", principals), ("via_services", via)):
        if not all(isinstance(v, str) and v for v in values):
            raise ConfigError(f"{where}.{name}: expected a list of non-empty strings")
    return KeyRule(
        external_key_id=key_id,
        label=_get(table, f"{where}.label", str),
        operations=frozenset(operations),
        status=status,
        principals=tuple(principals),
        via_services=tuple(via),
        require_via_service=_get(table, f"{where}.require_via_service", bool, False),
    )


def _credentials(sigv4: dict, environ: dict[str, str]) -> tuple[Credential, ...]:
    entries = _get(sigv4, "sigv4.credentials", list)
    if not 1 <= len(entries) <= 2:
        raise ConfigError("sigv4.credentials: one or two credential pairs (two while rotating)")
    result = []
    for index, entry in enumerate(entries):
        where = f"sigv4.credentials[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        _only_known(entry, where, "sigv4.credentials")
        access_key_id = _get(entry, f"{where}.access_key_id", str)
        if not ACCESS_KEY_ID.match(access_key_id):
            raise ConfigError(f"{where}.access_key_id: 20-30 characters of A-Z and 2-7 (XKS spec, Appendix A)")
        env = _get(entry, f"{where}.secret_env", str)
        secret = environ.get(env, "")
        if not SECRET_ACCESS_KEY.match(secret):
            raise ConfigError(
                f"{where}.secret_env: environment variable {env} must hold 43-64 characters of A-Z a-z 0-9 + / ="
            )
        result.append(Credential(access_key_id, secret))
    if len({c.access_key_id for c in result}) != len(result):
        raise ConfigError("sigv4.credentials: access key ids must differ (each identifies one secret)")
    return tuple(result)


def load_config(path: Path | str, environ: dict[str, str] | None = None, *, secrets: bool = True) -> ProxyConfig:
    """Read and validate the proxy configuration file; secrets are read from `environ` (default os.environ).

    `secrets=False` (the kill switch and status commands) skips reading the SigV4 secrets, so an
    operator can cut AWS off without access to them.
    """
    environ = dict(os.environ if environ is None else environ)
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the configuration ({error})") from None
    base = path.parent
    _only_known(data, "", "")
    server = _get(data, "server", dict)
    sigv4 = _get(data, "sigv4", dict)
    hsm = _get(data, "hsm", dict)
    audit = _get(data, "audit", dict)
    for name, table in (("server", server), ("sigv4", sigv4), ("hsm", hsm), ("audit", audit)):
        _only_known(table, name, name)
    keys = _get(data, "keys", dict, {})

    def rel(value: str | None) -> Path | None:
        return None if value is None else (base / value if not Path(value).is_absolute() else Path(value))

    plain = _get(server, "server.plain_http_for_tests", bool, False)
    cert = rel(_get(server, "server.tls_certificate", str, None))
    key = rel(_get(server, "server.tls_private_key", str, None))
    if not plain and (cert is None or key is None):
        raise ConfigError("server.tls_certificate/server.tls_private_key: required unless plain_http_for_tests")
    host = _get(server, "server.host", str)
    if plain and host not in LOOPBACK_HOSTS:
        # Plain HTTP carries the SigV4-signed requests and the data keys in clear: a test on this machine only.
        raise ConfigError(
            f"server.plain_http_for_tests: only with a loopback host {sorted(LOOPBACK_HOSTS)}, not {host!r}"
        )
    prefix = _get(server, "server.uri_path_prefix", str, "")
    if prefix and (not prefix.startswith("/") or prefix.endswith("/") or not re.match(r"^[A-Za-z0-9/._~-]*$", prefix)):
        raise ConfigError("server.uri_path_prefix: '' or '/path' without a trailing slash")
    if len(prefix) + len("/kms/xks/v1") > 128:
        raise ConfigError("server.uri_path_prefix: too long (KMS: XksProxyUriPath at most 128 characters)")
    port = _get(server, "server.port", int)
    if not 1 <= port <= 65535:
        raise ConfigError("server.port: 1-65535")
    region = _get(sigv4, "sigv4.region", str)
    if not re.match(r"^[a-z]{2,4}(-[a-z]+)+-\d+$", region):
        raise ConfigError(f"sigv4.region: {region!r} is not a region name")
    pool = _get(hsm, "hsm.session_pool_size", int, 4)
    if not 1 <= pool <= 64:
        raise ConfigError("hsm.session_pool_size: 1-64")
    max_body = _get(server, "server.max_body_bytes", int, 32768)
    if not 16384 <= max_body <= 1048576:
        raise ConfigError("server.max_body_bytes: 16384-1048576 (the spec's largest request is about 17 KiB)")
    concurrency = _get(server, "server.max_concurrent_requests", int, 256)
    if not 1 <= concurrency <= 10000:
        raise ConfigError("server.max_concurrent_requests: 1-10000")
    rules = {key_id: _key_rule(key_id, table) for key_id, table in keys.items()}
    labels = [rule.label for rule in rules.values()]
    health_label = _get(hsm, "hsm.health_key_label", str, "xks-health-check")
    if len(set(labels)) != len(labels) or health_label in labels:
        raise ConfigError("keys.*.label: each external key needs its own HSM key, apart from hsm.health_key_label")
    return ProxyConfig(
        host=host,
        port=port,
        tls_certificate=cert,
        tls_private_key=key,
        plain_http_for_tests=plain,
        uri_path_prefix=prefix,
        region=region,
        credentials=_credentials(sigv4, environ) if secrets else (),
        pkcs11_library=rel(_get(hsm, "hsm.library", str)),
        token_label=_get(hsm, "hsm.token_label", str),
        pin_env=_get(hsm, "hsm.pin_env", str),
        health_key_label=health_label,
        session_pool_size=pool,
        audit_log=rel(_get(audit, "audit.path", str)),
        kill_switch_file=rel(_get(server, "server.kill_switch_file", str)),
        max_body_bytes=max_body,
        max_concurrent_requests=concurrency,
        keys=rules,
        fleet_size=_get(server, "server.fleet_size", int, 1),
    )
