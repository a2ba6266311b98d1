"""Configuration fuzzing: every setting, random bad values -> one-line ConfigError naming the key.

Two properties over `kommunmoln.config.load_config`:
1. whatever value any setting gets (any JSON type, control characters, huge numbers,
   nested lists), the outcome is an AppConfig or a ConfigError whose text is one line and
   whose `.key` is a known setting: never another exception type (a stack trace in `cdk synth`);
2. a value that is bad for a setting (per-setting generators, built from the documented
   rules, not from the implementation) raises ConfigError naming exactly that setting.
Default run: a few hundred seeded examples each. `--slow-fuzz`: thousands.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kommunmoln import names
from kommunmoln.config import DEFAULTS, EU_REGIONS, LOG_RETENTION_DAYS, AppConfig, ConfigError, load_config

CATEGORY = "config_fuzz"
FAST = settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=5000, derandomize=False, deadline=None, suppress_health_check=list(HealthCheck))

# Any value a cdk.json or `-c key=value` could carry (text kept below file-name limits:
# over-long paths are a separate, known case below).
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "true", "FALSE", "0", "-1", "1e3", "eu-north-1", "10.0.0.0/8", "a,b", "\n", "\x00"])
)
ANY_VALUE = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
SETTING = st.sampled_from(sorted(DEFAULTS))


def _load(ledger, context: dict[str, Any], *, category: str = CATEGORY) -> AppConfig | ConfigError:
    """load_config, recording the input; anything but ConfigError is a crash."""
    ledger.add(category, inputs=1)
    try:
        return load_config(context)
    except ConfigError as error:
        return error
    except Exception:
        ledger.add(category, crashes=1)
        raise


def _assert_one_line(error: ConfigError) -> None:
    text = str(error)
    assert "\n" not in text and "\r" not in text, f"ConfigError text is not one line: {text!r}"
    assert error.key in DEFAULTS, f"ConfigError names {error.key!r}, not a known setting"
    assert text.startswith(f"context key '{error.key}'"), text


def _any_value_property(ledger, key: str, value: Any) -> None:
    # GIVEN the shipped defaults with one setting replaced by an arbitrary value
    # WHEN the config is loaded
    result = _load(ledger, {**_base_for(key), key: value})
    # THEN it is a config, or a one-line ConfigError naming a known setting (never a crash)
    assert isinstance(result, AppConfig | ConfigError)
    if isinstance(result, ConfigError):
        _assert_one_line(result)


@FAST
@given(key=SETTING, value=ANY_VALUE)
def test_any_value_for_any_setting_gives_config_or_one_line_error(ledger, key: str, value: Any) -> None:
    _any_value_property(ledger, key, value)


@pytest.mark.slow_fuzz
@SLOW
@given(key=SETTING, value=ANY_VALUE)
def test_slow_any_value_for_any_setting(ledger, key: str, value: Any) -> None:
    _any_value_property(ledger, key, value)


# --- Values known to be bad, per setting (from the documented rules) -----------------------
def _not_matching(pattern: str) -> st.SearchStrategy[str]:
    return st.text(max_size=40).filter(lambda s: not re.fullmatch(pattern, s, flags=re.ASCII))


_NON_STRING = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.lists(st.integers(), max_size=2)
)
_NON_LIST = st.none() | st.booleans() | st.integers() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)


def _bad_int(low: int, high: int) -> st.SearchStrategy[Any]:
    return (
        st.integers(max_value=low - 1)
        | st.integers(min_value=high + 1)
        | st.booleans()
        | st.floats(allow_nan=True)
        | st.none()
        # non-ASCII digits are read as the number they spell: accepted, so not generated as bad
        | st.text(max_size=12).filter(lambda s: not re.fullmatch(r"-?\d{1,12}", s.strip()) or not low <= int(s) <= high)
        | st.lists(st.integers(), max_size=2)
    )


def _bad_bool() -> st.SearchStrategy[Any]:
    return (
        st.text(max_size=10).filter(lambda s: s.lower() not in ("true", "false"))
        | st.integers()
        | st.none()
        | st.floats(allow_nan=False)
        | st.lists(st.booleans(), max_size=2)
    )


def _bad_list(bad_item: st.SearchStrategy[Any], *, empty_is_bad: bool) -> st.SearchStrategy[Any]:
    lists = st.lists(bad_item, min_size=1, max_size=3).map(lambda items: [*items])
    strategy = _NON_LIST | lists
    if empty_is_bad:
        strategy = strategy | st.just([]) | st.just("") | st.just(" , ")
    return strategy


def _valid_private_cidr(text: str) -> bool:
    try:
        network = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        return False
    return network.is_private and 16 <= network.prefixlen <= 22


_EU = "|".join(map(re.escape, EU_REGIONS))
BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "municipality_name": _NON_STRING | _not_matching(r"\S.{0,62}\S"),
    "municipality_id": _NON_STRING | _not_matching(r"[a-z][a-z0-9]{1,11}"),
    "account": _NON_STRING | _not_matching(r"|[0-9]{12}"),
    "region": _NON_STRING
    | st.text(max_size=20).filter(lambda s: s != "eu-north-1")
    | st.sampled_from(["eu-west-2", "eu-central-2", "us-east-1"]),
    "allowed_regions": _bad_list(_NON_STRING | _not_matching(_EU) | st.just("eu-west-2"), empty_is_bad=True),
    "availability_zones": _bad_list(_NON_STRING | _not_matching(r"eu-north-1[a-z]"), empty_is_bad=True)
    | st.sampled_from([["eu-north-1a"], ["eu-north-1a", "eu-north-1a"], ["eu-north-1a", "eu-west-1b"]]),
    "use_cases": _bad_list(
        _NON_STRING | st.text(max_size=25).filter(lambda s: s not in names.USE_CASES), empty_is_bad=True
    ),
    "workshop_mode": _bad_bool(),
    "lambda_reserved_concurrency": _bad_bool(),
    "alarm_email": _NON_STRING
    | st.text(min_size=1, max_size=30).filter(lambda s: not re.fullmatch(r"[^@\s,]+@[^@\s,]+\.[A-Za-z]{2,}", s)),
    "vpc_cidr": _NON_STRING
    | st.text(max_size=20).filter(lambda s: not _valid_private_cidr(s))
    | st.sampled_from(["8.8.0.0/16", "10.0.0.0/8", "10.42.0.0/24", "10.42.0.1/16", "192.168.0.0/15", "fd00::/16"]),
    "log_retention_days": _bad_int(1, 3653) | st.integers(1, 3653).filter(lambda n: n not in LOG_RETENTION_DAYS),
    "tier_a_key_namespaces": _bad_list(
        _NON_STRING
        | _not_matching(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
        | st.sampled_from(["aws-kms", "aws-x", "aws-"]),
        empty_is_bad=True,
    ),
    "tier_a_noncurrent_version_days": _bad_int(1, 3650),
    "tier_a_object_lock_days": _bad_int(0, 3650),
    "tier_a_data_access_principals": _bad_list(
        _NON_STRING | _not_matching(r"arn:aws:iam::[0-9]{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+)"),
        empty_is_bad=False,
    ),
    "tier_a_header_read_bytes": _bad_int(1024, 1048576),
    "tier_a_validator_concurrency": _bad_int(1, 100),
    # Archive classes (GetObject answers InvalidObjectState) and unknown spellings.
    "tier_a_storage_classes": _bad_list(
        _NON_STRING | st.sampled_from(["GLACIER", "DEEP_ARCHIVE", "ONEZONE_IA", "REDUCED_REDUNDANCY", "standard", ""]),
        empty_is_bad=True,
    ),
    # Private, documentation and malformed ranges (aws:SourceIp only ever holds a public address).
    "tier_a_client_source_ips": _bad_list(
        _NON_STRING | st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.0.2.0/24", "1.2.3.4/8", "::1/128", "x"]),
        empty_is_bad=False,
    ),
    "tier_b_hsm_count": _bad_int(1, 28),
    "tier_b_backup_retention_days": _bad_int(7, 379),
    "tier_b_restore_backup_id": _NON_STRING | _not_matching(r"|backup-[2-7a-zA-Z]{11,16}"),
    "tier_b_keystore_enabled": _bad_bool(),
    # A short relative path that cannot exist (no file of that name in the repository).
    "tier_b_trust_anchor_path": _NON_STRING | st.from_regex(r"no-such-dir-[a-z0-9]{1,20}/anchor\.pem", fullmatch=True),
    "tier_b_existing_key_store_id": _NON_STRING | _not_matching(r"|cks-[a-z0-9]{17}"),
    "tier_b_admin_host": _bad_bool(),
    "tier_b_admin_host_ami": _NON_STRING | _not_matching(r"|ami-[0-9a-f]{8,17}"),
    "tier_b_cloudhsm_cli_sha256": _NON_STRING | _not_matching(r"|[0-9a-f]{64}"),
    "tier_b_noncurrent_version_days": _bad_int(1, 3650),
    "tier_b_monitor_interval_minutes": _bad_int(1, 60),
    "trail_object_lock_days": _bad_int(1, 3650),
    "residency_guardrail_policy_ids": _bad_list(
        _NON_STRING | _not_matching(r"p-[0-9a-zA-Z_]{8,128}"), empty_is_bad=False
    ),
    # Tier C (validated only when the use case is on: see TIER_C_ON). Patterns from the KMS API reference
    # (CreateCustomKeyStore XksProxyUriEndpoint/XksProxyUriPath, CreateKey XksKeyId), not from config.py.
    "tier_c_connectivity": _NON_STRING | st.sampled_from(["DIRECT", "public_endpoint", "", "VPC"]),
    "tier_c_proxy_uri_endpoint": _NON_STRING
    | st.sampled_from(["http://xks.exempel.se", "https://xks.exempel.se:8443", "https://xks.exempel.se/path", ""]),
    "tier_c_proxy_uri_path": _NON_STRING | st.sampled_from(["/xks/v1", "kms/xks/v1", "/kms/xks/v2", ""]),
    "tier_c_credential_secret_arn": _NON_STRING
    | st.sampled_from(
        [
            "",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:x-AbCdEf",
            "arn:aws-eusc:secretsmanager:eu-north-1:111122223333:secret:x-AbCdEf",
            "arn:aws:kms:eu-north-1:111122223333:key/x",
        ]
    ),
    "tier_c_credential_key_arn": _NON_STRING
    | st.sampled_from(["arn:aws:kms:eu-west-1:111122223333:key/0", "alias/x", "key/1234"]),
    "tier_c_xks_key_id": _NON_STRING | st.sampled_from(["", "kommun key", "x" * 129, "nyckel/1"]),
    "tier_c_proxy_target_ips": _bad_list(
        _NON_STRING | st.sampled_from(["8.8.8.8", "10.0.0.300", "fd00::1", "x"]), empty_is_bad=False
    ),
    "tier_c_proxy_port": _bad_int(1, 65535),
    "tier_c_noncurrent_version_days": _bad_int(1, 3650),
    "tier_c_monitor_interval_minutes": _bad_int(1, 60),
    "tier_c_certificate_alarm_days": _bad_int(1, 365),
    "tier_c_credential_rotation_days": _bad_int(1, 3650),
    "gallring_decision": _NON_STRING
    | _not_matching(r"|[A-Za-z0-9ÅÄÖåäö+=._:/@-][A-Za-z0-9ÅÄÖåäö +=._:/@-]{1,126}[A-Za-z0-9ÅÄÖåäö+=._:/@-]"),
}


def test_every_setting_has_a_bad_value_generator() -> None:
    # GIVEN the settings the app reads  WHEN compared with the generators  THEN none is left unfuzzed
    assert set(BAD_VALUES) == set(DEFAULTS)


# Tier C is off by default and its settings are read only when it is deployed, so they are fuzzed
# with a valid tier C app as the base (the values of tests/infrastructure/test_tier_c_stack.py).
TIER_C_ON = {
    "use_cases": [names.USE_CASE_CLIENT_SIDE, names.USE_CASE_EXTERNAL_KEY_STORE],
    "tier_c_proxy_uri_endpoint": "https://xks.exempel.se",
    "tier_c_xks_key_id": "kommun-key-1",
    "tier_c_credential_secret_arn": "arn:aws:secretsmanager:eu-north-1:111122223333:secret:kommunmoln/xks-AbCdEf",
}


def _base_for(key: str) -> dict[str, Any]:
    return {**DEFAULTS, **TIER_C_ON} if key.startswith("tier_c_") else dict(DEFAULTS)


def test_the_tier_c_base_is_a_valid_app() -> None:
    # GIVEN the base the tier C generators mutate  WHEN loaded  THEN it is a config with tier C on
    assert load_config(_base_for("tier_c_connectivity")).tier_c is not None


def _bad_value_property(ledger, key: str, value: Any) -> None:
    # GIVEN the defaults with one setting given a value its rules forbid
    # WHEN the config is loaded
    result = _load(ledger, {**_base_for(key), key: value})
    # THEN a one-line ConfigError names exactly that setting
    if isinstance(result, AppConfig):
        ledger.add(CATEGORY, false_passes=1)
    assert isinstance(result, ConfigError), f"{key}={value!r} was accepted"
    _assert_one_line(result)
    assert result.key == key, f"{key}={value!r} was reported against {result.key!r}: {result}"


@st.composite
def _bad_setting(draw) -> tuple[str, Any]:
    key = draw(SETTING)
    return key, draw(BAD_VALUES[key])


@FAST
@given(case=_bad_setting())
def test_bad_value_for_a_setting_names_that_setting(ledger, case: tuple[str, Any]) -> None:
    _bad_value_property(ledger, *case)


@pytest.mark.slow_fuzz
@SLOW
@given(case=_bad_setting())
def test_slow_bad_value_for_a_setting_names_that_setting(ledger, case: tuple[str, Any]) -> None:
    _bad_value_property(ledger, *case)


@FAST
@given(
    key=st.text(
        min_size=1, max_size=30, alphabet=st.characters(blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
    )
)
def test_unknown_setting_is_named(ledger, key: str) -> None:
    # GIVEN a context key the app does not know (not a CDK feature flag: those contain ':' or start with '@')
    if key in DEFAULTS or key.startswith("@") or ":" in key:
        return
    # WHEN loaded THEN a one-line error names it
    result = _load(ledger, {**DEFAULTS, key: "x"})
    assert isinstance(result, ConfigError)
    assert result.key == key
    assert len(str(result).splitlines()) == 1


# --- Defects this fuzzing found (fixed in kommunmoln/config.py; kept as regression tests) ---
def test_overlong_trust_anchor_path_is_a_config_error(ledger) -> None:
    # GIVEN a trust anchor path whose file name is longer than the OS allows
    # WHEN loaded THEN a ConfigError names the setting (not an OSError)
    result = _load(ledger, {**DEFAULTS, "tier_b_trust_anchor_path": "x" * 300 + ".pem"})
    assert isinstance(result, ConfigError) and result.key == "tier_b_trust_anchor_path"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("account", "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662"),
        (
            "tier_a_data_access_principals",
            ["arn:aws:iam::\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662:root"],
        ),
    ],
)
def test_non_ascii_digits_are_refused(ledger, key: str, value: Any) -> None:
    # GIVEN an account id written in non-ASCII digits  WHEN loaded  THEN refused, naming the setting
    result = _load(ledger, {**DEFAULTS, key: value})
    if isinstance(result, AppConfig):
        ledger.add(CATEGORY, false_passes=1)
    assert isinstance(result, ConfigError) and result.key == key


def test_unknown_setting_with_newline_gives_one_line(ledger) -> None:
    # GIVEN an unknown context key containing a line break  WHEN loaded  THEN the error is still one line
    result = _load(ledger, {**DEFAULTS, "tier_a\nheader": "x"})
    assert isinstance(result, ConfigError)
    assert len(str(result).splitlines()) == 1


# --- A fuzzed valid config synthesizes (slow: one jsii synthesis) ----------------------------
@pytest.mark.slow_fuzz
def test_fuzzed_valid_config_synthesizes(tmp_path, ledger) -> None:
    import random

    from tests.conftest import synthesize

    # GIVEN a valid but unusual configuration drawn with a fixed seed
    rng = random.Random(7)
    region = rng.choice([r for r in EU_REGIONS if r != "eu-north-1"])
    context = {
        "municipality_id": "k" + "".join(rng.choice("abcdefghij0123456789") for _ in range(6)),
        "municipality_name": "Fuzz kommun Åäö",
        "region": region,
        "allowed_regions": [region, "eu-north-1"],
        "availability_zones": [f"{region}a", f"{region}b", f"{region}c"],
        "workshop_mode": rng.choice([True, False]),
        "log_retention_days": rng.choice(LOG_RETENTION_DAYS),
        "vpc_cidr": "10.77.0.0/20",
        "tier_a_header_read_bytes": rng.randint(1024, 1048576),
        "tier_a_validator_concurrency": rng.randint(1, 100),
        "tier_b_hsm_count": rng.randint(2, 6),
        "tier_b_backup_retention_days": rng.randint(7, 379),
        "trail_object_lock_days": rng.randint(1, 3650),
    }
    ledger.add(CATEGORY, inputs=1)
    # WHEN the whole app is synthesized with the compliance gates
    assembly = synthesize(tmp_path / "cdk.out", context)
    # THEN every stack has a template
    assert assembly.templates
