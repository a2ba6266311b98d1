"""One typed, validated configuration for the whole app.

Configuration flows one way: `cdk.json` context (or `cdk synth -c key=value`) ->
`load_config()` -> `AppConfig` -> plain values passed to stacks and constructs.

Every setting is a flat context key so that `-c key=value` overrides it as CDK users
expect. Values from `-c` arrive as strings, values from `cdk.json` as JSON types; each
parser accepts both. A bad or missing value raises `ConfigError`, whose message is one
line naming the context key and what is allowed; `app.py` prints it and exits non-zero.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from kommunmoln import names

REPO_ROOT = Path(__file__).resolve().parent.parent

# Regions inside EU member states. London (eu-west-2) and Zurich (eu-central-2) are in
# Europe but outside the EU, so GDPR transfer rules and national law differ: not allowed.
EU_REGIONS: tuple[str, ...] = (
    "eu-north-1",  # Stockholm
    "eu-west-1",  # Ireland
    "eu-west-3",  # Paris
    "eu-central-1",  # Frankfurt
    "eu-south-1",  # Milan
    "eu-south-2",  # Spain
    # AWS European Sovereign Cloud (partition aws-eusc), Brandenburg, Germany. It offers KMS but, in the
    # SDK's endpoint data, no CloudHSM: tiers A and C only (kommunmoln.regions, `make preflight`).
    "eusc-de-east-1",
)

# The values CloudWatch Logs accepts for a retention period.
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class ConfigError(ValueError):
    """A context value is missing or invalid. `str()` is one line naming the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        # A key typed by a user may hold anything; the message stays one printable line.
        shown = key if key.isprintable() and len(key) <= 60 else repr(key)[:60]
        super().__init__(f"context key '{shown}': {problem}")


T = TypeVar("T")


# --- Parsers: each takes the raw context value and returns the typed value or raises ----
def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string(key: str, value: Any, *, pattern: str | None = None, allowed: str = "") -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {_short(value)}")
    # ASCII semantics: \\w and character classes must not admit look-alike Unicode letters or digits.
    if pattern is not None and not re.fullmatch(pattern, value, flags=re.ASCII):
        raise ConfigError(key, f"{_short(value)} is not allowed; expected {allowed}")
    return value


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(key, f"expected true or false, got {_short(value)}")


def _int(key: str, value: Any, *, low: int, high: int) -> int:
    if isinstance(value, bool):  # bool is an int subclass; `true` is not a number of days
        raise ConfigError(key, f"expected a whole number from {low} to {high}, got {_short(value)}")
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,12}", value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, f"expected a whole number from {low} to {high}, got {_short(value)}")
    return value


def _list(key: str, value: Any, item: Callable[[str, Any], T]) -> tuple[T, ...]:
    """A JSON list, or a comma-separated string as given with `-c key=a,b`."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()] if value.strip() else []
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list or a comma-separated string, got {_short(value)}")
    return tuple(item(key, v) for v in value)


# Storage classes whose objects GetObject reads at once. The archive classes (GLACIER,
# DEEP_ARCHIVE) answer GetObject with InvalidObjectState until restored, so the validator could
# not read the header; INTELLIGENT_TIERING's archive tiers are opt-in by a bucket configuration
# that the bucket policy reserves to the break-glass role.
READABLE_STORAGE_CLASSES: tuple[str, ...] = ("STANDARD", "INTELLIGENT_TIERING", "STANDARD_IA", "GLACIER_IR")


# --- The config objects --------------------------------------------------------------------
@dataclass(frozen=True)
class TierAConfig:
    """Settings of use case 1: client-side encryption (tier A)."""

    key_namespaces: tuple[str, ...]
    noncurrent_version_days: int
    object_lock_days: int  # 0 = no Object Lock
    data_access_principals: tuple[str, ...]
    header_read_bytes: int
    validator_concurrency: int
    storage_classes: tuple[str, ...] = ("STANDARD", "INTELLIGENT_TIERING")  # the only ones uploads may ask for
    # Public networks (CIDR) the on-premises principals must call from, outside the VPC; () = any network.
    client_source_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class TierBConfig:
    """Settings of use case 2: CloudHSM custom key store with SSE-KMS (tier B)."""

    hsm_count: int
    backup_retention_days: int
    restore_backup_id: str  # "" = a new cluster
    keystore_enabled: bool  # phase 2: only once the cluster is initialized and activated
    trust_anchor_path: str  # "" or a PEM file, relative to the repository root
    existing_key_store_id: str  # "" = create one; else reconnect this key store
    admin_host: bool
    admin_host_ami: str  # "" = latest Amazon Linux 2023 at each deployment (replaces the host on a new release)
    noncurrent_version_days: int
    monitor_interval_minutes: int
    # SHA-256 (hex) of the CloudHSM CLI package staged for the admin host; "" = the host refuses to install it.
    cloudhsm_cli_sha256: str = ""

    def trust_anchor_file(self) -> Path | None:
        """The trust anchor path resolved against the repository, not the working directory."""
        if not self.trust_anchor_path:
            return None
        path = Path(self.trust_anchor_path)
        return path if path.is_absolute() else REPO_ROOT / path


XKS_CONNECTIVITY = ("PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE")  # CreateCustomKeyStore XksProxyConnectivity


@dataclass(frozen=True)
class TierCConfig:
    """Settings of use case 3: a KMS external key store (XKS) on the municipality's own proxy and HSM (tier C).

    The proxy's authentication credential is never a setting: `credential_secret_arn` names the Secrets
    Manager secret that holds it (JSON {"AccessKeyId": ..., "RawSecretAccessKey": ...}).
    """

    connectivity: str  # PUBLIC_ENDPOINT or VPC_ENDPOINT_SERVICE
    proxy_uri_endpoint: str  # https://<host>; with VPC_ENDPOINT_SERVICE the host is the private DNS name
    proxy_uri_path: str  # [/prefix]/kms/xks/v1
    credential_secret_arn: str
    credential_key_arn: str  # "" = the secret uses the AWS managed key aws/secretsmanager
    xks_key_id: str  # the external key's id in the proxy (its config's key map)
    proxy_target_ips: tuple[str, ...]  # VPC_ENDPOINT_SERVICE: the proxies' addresses behind the NLB
    proxy_port: int
    noncurrent_version_days: int
    monitor_interval_minutes: int
    certificate_alarm_days: int  # alarm when the proxy's TLS certificate expires in fewer days
    credential_rotation_days: int  # alarm when KMS has held the proxy credential for more days

    @property
    def private_dns_name(self) -> str:
        """The host of the proxy URI (the endpoint service's private DNS name with VPC connectivity)."""
        return self.proxy_uri_endpoint.removeprefix("https://")


@dataclass(frozen=True)
class AppConfig:
    """Everything the CDK app needs, validated once."""

    municipality_name: str
    municipality_id: str
    account: str  # "" = environment-agnostic account
    region: str
    allowed_regions: tuple[str, ...]
    availability_zones: tuple[str, ...]
    use_cases: tuple[str, ...]
    workshop_mode: bool
    alarm_email: str  # "" = no e-mail subscription
    vpc_cidr: str
    log_retention_days: int
    tier_a: TierAConfig = field(repr=False)
    tier_b: TierBConfig = field(repr=False)
    tier_c: TierCConfig | None = field(default=None, repr=False)
    # False: no function reserves concurrency (accounts whose Lambda concurrency quota is too small to
    # reserve any: Lambda keeps 100 unreserved; `make preflight` checks the headroom).
    lambda_reserved_concurrency: bool = True
    # Ids of the organisation policies (SCP/RCP) the management account has attached to this account
    # or its OU to keep data and keys in allowed_regions (compliance rule 8); () = none declared.
    residency_guardrail_policy_ids: tuple[str, ...] = ()
    # The municipality's gallring decision (Arkivlagen 1990:782 10 §) that allows destroying old object
    # versions, access logs and log events: its reference (e.g. "KS 2026/123 p 45"). "" = no decision,
    # so nothing expires (the *_noncurrent_version_days and log_retention_days values are not used).
    gallring_decision: str = ""
    # Object Lock (compliance mode) default retention of every CloudTrail log and digest file, in days:
    # nobody, the account root included, can delete or overwrite one before then. Ignored in workshop mode.
    trail_object_lock_days: int = 365

    def expiry_days(self, days: int) -> int | None:
        """`days` when a gallring decision is configured, else None (keep: records are destroyed only by decision)."""
        return days if self.gallring_decision else None

    @property
    def prefix(self) -> str:
        return names.stack_prefix(self.municipality_id)

    def deploys(self, use_case: str) -> bool:
        return use_case in self.use_cases


# Every context key this app reads, with its default. `cdk.json` repeats the defaults so
# that people see them; these apply when a key is absent (for example in unit tests).
DEFAULTS: dict[str, Any] = {
    "municipality_name": "Exempelkommun",
    "municipality_id": "exempel",
    "account": "",
    "region": "eu-north-1",
    "allowed_regions": ["eu-north-1"],
    "availability_zones": ["eu-north-1a", "eu-north-1b"],
    "use_cases": list(names.DEFAULT_USE_CASES),
    "workshop_mode": False,
    "lambda_reserved_concurrency": True,
    "alarm_email": "",
    "vpc_cidr": "10.42.0.0/16",
    "log_retention_days": 365,
    "residency_guardrail_policy_ids": [],
    "gallring_decision": "",
    "trail_object_lock_days": 365,
    "tier_a_key_namespaces": ["kommunmoln"],
    "tier_a_noncurrent_version_days": 365,
    "tier_a_object_lock_days": 0,
    "tier_a_data_access_principals": [],
    "tier_a_header_read_bytes": 65536,
    "tier_a_validator_concurrency": 5,
    "tier_a_storage_classes": ["STANDARD", "INTELLIGENT_TIERING"],
    "tier_a_client_source_ips": [],
    "tier_b_hsm_count": 2,
    "tier_b_backup_retention_days": 379,
    "tier_b_restore_backup_id": "",
    "tier_b_keystore_enabled": False,
    "tier_b_trust_anchor_path": "",
    "tier_b_existing_key_store_id": "",
    "tier_b_admin_host": True,
    "tier_b_admin_host_ami": "",
    "tier_b_noncurrent_version_days": 365,
    "tier_b_monitor_interval_minutes": 5,
    "tier_b_cloudhsm_cli_sha256": "",
    "tier_c_connectivity": "PUBLIC_ENDPOINT",
    "tier_c_proxy_uri_endpoint": "",
    "tier_c_proxy_uri_path": "/kms/xks/v1",
    "tier_c_credential_secret_arn": "",
    "tier_c_credential_key_arn": "",
    "tier_c_xks_key_id": "",
    "tier_c_proxy_target_ips": [],
    "tier_c_proxy_port": 443,
    "tier_c_noncurrent_version_days": 365,
    "tier_c_monitor_interval_minutes": 5,
    "tier_c_certificate_alarm_days": 30,
    "tier_c_credential_rotation_days": 90,
}

_EMAIL = r"[^@\s,]+@[^@\s,]+\.[A-Za-z]{2,}"
_IAM_PRINCIPAL = r"arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+)"
_NAMESPACE = r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}"


def _availability_zones(key: str, value: Any, region: str) -> tuple[str, ...]:
    zones = _list(
        key,
        value,
        lambda k, v: _string(
            k, v, pattern=r"[a-z]{2,4}(-[a-z]+)+-[0-9][a-z]", allowed="a zone name such as eu-north-1a"
        ),
    )
    if len(zones) < 2 or len(set(zones)) != len(zones):
        raise ConfigError(key, f"expected at least two different availability zones, got {_short(list(zones))}")
    for zone in zones:
        if zone[:-1] != region:
            raise ConfigError(key, f"zone '{zone}' is not in region '{region}'")
    return zones


def _cidr(key: str, value: Any) -> str:
    text = _string(key, value)
    try:
        network = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        raise ConfigError(key, f"{_short(value)} is not an IPv4 network such as 10.42.0.0/16") from None
    if not network.is_private or not 16 <= network.prefixlen <= 22:
        raise ConfigError(key, f"{_short(value)} must be a private IPv4 network with a prefix from /16 to /22")
    return text


def _public_network(key: str, value: Any) -> str:
    """A public IPv4/IPv6 network in CIDR notation, as `aws:SourceIp` sees a request from the internet.

    `aws:SourceIp` holds the requester's public address and is absent for requests through a VPC
    endpoint (IAM User Guide, "AWS global condition context keys"), so a private range could never match.
    """
    text = _string(key, value)
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise ConfigError(key, f"{_short(value)} is not a network in CIDR notation (address/prefix length)") from None
    if not network.is_global:
        raise ConfigError(
            key,
            f"{_short(value)} is not a public network: S3 sees the public (NAT or VPN egress) address of an "
            "on-premises client, never a private one",
        )
    return str(network)


def _trust_anchor(key: str, value: Any) -> str:
    text = _string(key, value)
    if text:
        path = Path(text) if Path(text).is_absolute() else REPO_ROOT / text
        try:
            exists = path.is_file()
        except (OSError, ValueError):  # a name too long for the file system, or a NUL byte
            exists = False
        if not exists:
            raise ConfigError(key, f"no PEM file at {_short(text)} (relative paths start at the repository root)")
    return text


def load_config(context: Mapping[str, Any]) -> AppConfig:
    """Validate the context and build the config. Raises `ConfigError` on the first bad key."""
    unknown = sorted(k for k in context if k not in DEFAULTS and not k.startswith("@") and ":" not in k)
    if unknown:
        raise ConfigError(unknown[0], f"unknown setting; known settings are: {', '.join(DEFAULTS)}")

    def get(key: str) -> Any:
        value = context.get(key, DEFAULTS[key])
        if value is None:
            raise ConfigError(key, "is required")
        return value

    allowed_regions = _list(
        "allowed_regions",
        get("allowed_regions"),
        lambda k, v: _string(
            k, v, pattern="|".join(map(re.escape, EU_REGIONS)), allowed=f"one of {', '.join(EU_REGIONS)}"
        ),
    )
    if not allowed_regions:
        raise ConfigError("allowed_regions", "must name at least one EU region")
    region = _string(
        "region",
        get("region"),
        pattern="|".join(map(re.escape, allowed_regions)),
        allowed=f"an EU region from allowed_regions ({', '.join(allowed_regions)})",
    )
    use_cases = _list(
        "use_cases",
        get("use_cases"),
        lambda k, v: _string(
            k, v, pattern="|".join(map(re.escape, names.USE_CASES)), allowed=" or ".join(names.USE_CASES)
        ),
    )
    if not use_cases:
        raise ConfigError("use_cases", f"name at least one of {', '.join(names.USE_CASES)}")
    log_retention = _int("log_retention_days", get("log_retention_days"), low=1, high=3653)
    if log_retention not in LOG_RETENTION_DAYS:
        raise ConfigError(
            "log_retention_days", f"{log_retention} is not a CloudWatch Logs retention; use one of {LOG_RETENTION_DAYS}"
        )
    alarm_email = _string("alarm_email", get("alarm_email"))
    if alarm_email and not re.fullmatch(_EMAIL, alarm_email):
        raise ConfigError("alarm_email", f"{_short(alarm_email)} is not an e-mail address (or leave it empty)")

    tier_a = TierAConfig(
        key_namespaces=_list("tier_a_key_namespaces", get("tier_a_key_namespaces"), lambda k, v: _namespace(k, v)),
        noncurrent_version_days=_int(
            "tier_a_noncurrent_version_days", get("tier_a_noncurrent_version_days"), low=1, high=3650
        ),
        object_lock_days=_int("tier_a_object_lock_days", get("tier_a_object_lock_days"), low=0, high=3650),
        data_access_principals=_list(
            "tier_a_data_access_principals",
            get("tier_a_data_access_principals"),
            lambda k, v: _string(k, v, pattern=_IAM_PRINCIPAL, allowed="an IAM role, user or account-root ARN"),
        ),
        header_read_bytes=_int("tier_a_header_read_bytes", get("tier_a_header_read_bytes"), low=1024, high=1048576),
        validator_concurrency=_int(
            "tier_a_validator_concurrency", get("tier_a_validator_concurrency"), low=1, high=100
        ),
        storage_classes=_list(
            "tier_a_storage_classes",
            get("tier_a_storage_classes"),
            lambda k, v: _string(
                k,
                v,
                pattern="|".join(READABLE_STORAGE_CLASSES),
                allowed=f"one of {', '.join(READABLE_STORAGE_CLASSES)}",
            ),
        ),
        client_source_ips=_list("tier_a_client_source_ips", get("tier_a_client_source_ips"), _public_network),
    )
    if not tier_a.storage_classes:
        raise ConfigError("tier_a_storage_classes", "name at least one storage class uploads may use")
    if tier_a.client_source_ips and not tier_a.data_access_principals:
        raise ConfigError(
            "tier_a_client_source_ips",
            "limits the on-premises principals, so set tier_a_data_access_principals too (or leave it empty)",
        )
    if not tier_a.key_namespaces:
        raise ConfigError("tier_a_key_namespaces", "name at least one key namespace of the municipality")
    tier_b = TierBConfig(
        hsm_count=_int("tier_b_hsm_count", get("tier_b_hsm_count"), low=1, high=28),
        backup_retention_days=_int(
            "tier_b_backup_retention_days", get("tier_b_backup_retention_days"), low=7, high=379
        ),
        restore_backup_id=_string(
            "tier_b_restore_backup_id",
            get("tier_b_restore_backup_id"),
            pattern=r"|backup-[2-7a-zA-Z]{11,16}",
            allowed="empty or a backup id such as backup-abcdefghijk",
        ),
        keystore_enabled=_bool("tier_b_keystore_enabled", get("tier_b_keystore_enabled")),
        trust_anchor_path=_trust_anchor("tier_b_trust_anchor_path", get("tier_b_trust_anchor_path")),
        existing_key_store_id=_string(
            "tier_b_existing_key_store_id",
            get("tier_b_existing_key_store_id"),
            pattern=r"|cks-[a-z0-9]{17}",
            allowed="empty or a key store id such as cks-1234567890abcdef0",
        ),
        admin_host=_bool("tier_b_admin_host", get("tier_b_admin_host")),
        admin_host_ami=_string(
            "tier_b_admin_host_ami",
            get("tier_b_admin_host_ami"),
            pattern=r"|ami-[0-9a-f]{8,17}",
            allowed="empty or an AMI id (ami- and 8 to 17 hex digits)",
        ),
        noncurrent_version_days=_int(
            "tier_b_noncurrent_version_days", get("tier_b_noncurrent_version_days"), low=1, high=3650
        ),
        monitor_interval_minutes=_int(
            "tier_b_monitor_interval_minutes", get("tier_b_monitor_interval_minutes"), low=1, high=60
        ),
        cloudhsm_cli_sha256=_string(
            "tier_b_cloudhsm_cli_sha256",
            get("tier_b_cloudhsm_cli_sha256"),
            pattern=r"|[0-9a-f]{64}",
            allowed="empty or the package's SHA-256 as 64 lower-case hex digits (sha256sum)",
        ),
    )
    if tier_b.keystore_enabled and not (tier_b.trust_anchor_path or tier_b.existing_key_store_id):
        raise ConfigError(
            "tier_b_trust_anchor_path",
            "is required when tier_b_keystore_enabled is true (or set tier_b_existing_key_store_id)",
        )
    if tier_b.keystore_enabled and tier_b.hsm_count < 2:
        raise ConfigError("tier_b_hsm_count", "a KMS custom key store needs at least 2 HSMs in different zones")
    _refuse_tiers_not_offered(use_cases, region)
    account = _string("account", get("account"), pattern=r"|[0-9]{12}", allowed="empty or a 12-digit AWS account id")
    tier_c = _tier_c(get, region, account) if names.USE_CASE_EXTERNAL_KEY_STORE in use_cases else None

    config = AppConfig(
        municipality_name=_string(
            "municipality_name",
            get("municipality_name"),
            pattern=r"[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]{0,62}[^\s\x00-\x1f\x7f]",
            allowed="2 to 64 printable characters",
        ),
        municipality_id=_string(
            "municipality_id",
            get("municipality_id"),
            pattern=r"[a-z][a-z0-9]{1,11}",
            allowed="2 to 12 lower-case letters and digits, starting with a letter",
        ),
        account=account,
        region=region,
        allowed_regions=allowed_regions,
        availability_zones=_availability_zones("availability_zones", get("availability_zones"), region),
        use_cases=use_cases,
        workshop_mode=_bool("workshop_mode", get("workshop_mode")),
        alarm_email=alarm_email,
        vpc_cidr=_cidr("vpc_cidr", get("vpc_cidr")),
        log_retention_days=log_retention,
        tier_a=tier_a,
        tier_b=tier_b,
        tier_c=tier_c,
        lambda_reserved_concurrency=_bool("lambda_reserved_concurrency", get("lambda_reserved_concurrency")),
        residency_guardrail_policy_ids=_list(
            "residency_guardrail_policy_ids",
            get("residency_guardrail_policy_ids"),
            # The AWS Organizations policy id format (PolicyId: ^p-[0-9a-zA-Z_]{8,128}$).
            lambda k, v: _string(k, v, pattern=r"p-[0-9a-zA-Z_]{8,128}", allowed="an Organizations policy id p-..."),
        ),
        trail_object_lock_days=_int("trail_object_lock_days", get("trail_object_lock_days"), low=1, high=3650),
        gallring_decision=_string(
            "gallring_decision",
            get("gallring_decision"),
            # Tagged on the resources it applies to: AWS tag values allow letters, digits, spaces and + - = . _ : / @.
            pattern=r"|[A-Za-z0-9ÅÄÖåäö+=._:/@-][A-Za-z0-9ÅÄÖåäö +=._:/@-]{1,126}[A-Za-z0-9ÅÄÖåäö+=._:/@-]",
            allowed="empty (keep everything) or the reference of the gallring decision, 3 to 128 letters, digits, "
            "spaces and + - = . _ : / @",
        ),
    )
    return config


def _refuse_tiers_not_offered(use_cases: tuple[str, ...], region: str) -> None:
    """A tier whose services the SDK's endpoint data does not list for the Region (CloudHSM in aws-eusc)."""
    from kommunmoln.regions import missing_services

    for use_case in use_cases:
        missing = missing_services(use_case, region)
        if missing:
            raise ConfigError(
                "use_cases",
                f"{use_case} needs {', '.join(missing)}, which {region} does not offer; drop it from use_cases",
            )


def _tier_c(get: Callable[[str], Any], region: str, account: str) -> TierCConfig:
    """Tier C settings, validated only when the use case is deployed (its required values have no default)."""
    from kommunmoln.regions import partition_of

    partition = partition_of(region)
    account_pattern = re.escape(account) if account else "[0-9]{12}"

    def arn(service: str) -> str:
        return rf"arn:{re.escape(partition)}:{service}:{re.escape(region)}:{account_pattern}:"

    connectivity = _string(
        "tier_c_connectivity", get("tier_c_connectivity"), pattern="|".join(XKS_CONNECTIVITY),
        allowed=" or ".join(XKS_CONNECTIVITY),
    )  # fmt: skip
    # Patterns of the KMS API (CreateCustomKeyStore: XksProxyUriEndpoint, XksProxyUriPath; CreateKey: XksKeyId).
    endpoint = _string(
        "tier_c_proxy_uri_endpoint", get("tier_c_proxy_uri_endpoint"), pattern=r"https://[a-zA-Z0-9.-]{2,120}",
        allowed="https:// and the proxy's host name (no port, no path; KMS always uses port 443)",
    )  # fmt: skip
    target_ips = _list("tier_c_proxy_target_ips", get("tier_c_proxy_target_ips"), lambda k, v: _private_ip(k, v))
    if connectivity == "VPC_ENDPOINT_SERVICE" and not target_ips:
        raise ConfigError("tier_c_proxy_target_ips", "VPC_ENDPOINT_SERVICE needs the address of at least one proxy")
    if connectivity == "VPC_ENDPOINT_SERVICE" and "." not in endpoint.removeprefix("https://"):
        raise ConfigError("tier_c_proxy_uri_endpoint", "the private DNS name must be a domain name you can verify")
    return TierCConfig(
        connectivity=connectivity,
        proxy_uri_endpoint=endpoint,
        proxy_uri_path=_string(
            "tier_c_proxy_uri_path",
            get("tier_c_proxy_uri_path"),
            pattern=r"(/[a-zA-Z0-9/_-]+)?/kms/xks/v1",
            allowed="[/prefix]/kms/xks/v1",
        ),
        credential_secret_arn=_string(
            "tier_c_credential_secret_arn",
            get("tier_c_credential_secret_arn"),
            pattern=arn("secretsmanager") + r"secret:[\w/+=.@-]{1,512}",
            allowed=f"the ARN of a Secrets Manager secret in {region} holding the proxy credential",
        ),
        credential_key_arn=_string(
            "tier_c_credential_key_arn",
            get("tier_c_credential_key_arn"),
            pattern="|" + arn("kms") + r"key/[a-f0-9-]{36}",
            allowed=f"empty or the ARN of the KMS key in {region} that encrypts the credential secret",
        ),
        xks_key_id=_string(
            "tier_c_xks_key_id",
            get("tier_c_xks_key_id"),
            pattern=r"[a-zA-Z0-9_.-]{1,128}",
            allowed="the external key id the proxy serves (1 to 128 letters, digits, - _ .)",
        ),
        proxy_target_ips=target_ips,
        proxy_port=_int("tier_c_proxy_port", get("tier_c_proxy_port"), low=1, high=65535),
        noncurrent_version_days=_int(
            "tier_c_noncurrent_version_days", get("tier_c_noncurrent_version_days"), low=1, high=3650
        ),
        monitor_interval_minutes=_int(
            "tier_c_monitor_interval_minutes", get("tier_c_monitor_interval_minutes"), low=1, high=60
        ),
        certificate_alarm_days=_int(
            "tier_c_certificate_alarm_days", get("tier_c_certificate_alarm_days"), low=1, high=365
        ),
        credential_rotation_days=_int(
            "tier_c_credential_rotation_days", get("tier_c_credential_rotation_days"), low=1, high=3650
        ),
    )


def _private_ip(key: str, value: Any) -> str:
    text = _string(key, value)
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise ConfigError(key, f"{_short(value)} is not an IPv4 address") from None
    if not address.is_private:
        raise ConfigError(
            key, f"{_short(value)} is not a private address (the NLB reaches proxies over a private link)"
        )
    return text


def _namespace(key: str, value: Any) -> str:
    text = _string(key, value, pattern=_NAMESPACE, allowed="a key namespace of letters, digits and ._:/-")
    if text == "aws-kms" or text.startswith("aws-"):
        # The ESDK reserves aws-* provider ids; aws-kms would mean AWS can unwrap the data key.
        raise ConfigError(
            key, f"{_short(text)} is reserved by AWS; a municipality namespace must not start with 'aws-'"
        )
    return text


def config_field_names() -> list[str]:
    """The top-level fields of AppConfig (used by docs and tests)."""
    return [f.name for f in fields(AppConfig)]
