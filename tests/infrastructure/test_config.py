"""Configuration: cdk.json context -> AppConfig, and one-line errors naming the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from kommunmoln import names
from kommunmoln.config import DEFAULTS, EU_REGIONS, ConfigError, load_config
from tests.conftest import REPO_ROOT


def test_defaults_in_cdk_json_are_valid_and_complete() -> None:
    # GIVEN the context shipped in cdk.json
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    # WHEN it is loaded
    config = load_config(context)
    # THEN every setting is present in cdk.json, and the defaults retain everything in Stockholm
    assert set(DEFAULTS) <= set(context)
    assert config.region == "eu-north-1"
    assert config.availability_zones == ("eu-north-1a", "eu-north-1b")
    assert config.workshop_mode is False
    assert set(config.use_cases) == set(names.DEFAULT_USE_CASES)  # tier C is opt-in


def test_cli_style_string_values_are_parsed() -> None:
    # GIVEN values as `cdk synth -c key=value` passes them: always strings
    context = {
        "workshop_mode": "true",
        "use_cases": "client-side-encryption",
        "availability_zones": "eu-north-1a, eu-north-1c",
        "tier_b_hsm_count": "3",
        "tier_a_key_namespaces": "kommunmoln,arkiv",
    }
    # WHEN loaded
    config = load_config(context)
    # THEN they become typed values
    assert config.workshop_mode is True
    assert config.use_cases == (names.USE_CASE_CLIENT_SIDE,)
    assert config.availability_zones == ("eu-north-1a", "eu-north-1c")
    assert config.tier_b.hsm_count == 3
    assert config.tier_a.key_namespaces == ("kommunmoln", "arkiv")


BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"region": "us-east-1"}, "region", "EU region"),
    ({"region": "eu-west-2"}, "region", "EU region"),  # London: Europe, but not the EU
    ({"allowed_regions": ["eu-north-1", "eu-central-2"]}, "allowed_regions", "eu-north-1"),
    ({"allowed_regions": []}, "allowed_regions", "at least one"),
    ({"availability_zones": ["eu-north-1a"]}, "availability_zones", "at least two"),
    ({"availability_zones": ["eu-north-1a", "eu-north-1a"]}, "availability_zones", "at least two different"),
    ({"availability_zones": ["eu-north-1a", "eu-west-1b"]}, "availability_zones", "not in region"),
    ({"municipality_id": "Göteborg"}, "municipality_id", "lower-case"),
    ({"municipality_id": "x"}, "municipality_id", "2 to 12"),
    ({"municipality_name": ""}, "municipality_name", "2 to 64"),
    ({"municipality_name": "Kommun\r\nX"}, "municipality_name", "printable"),
    ({"account": "12345"}, "account", "12-digit"),
    ({"use_cases": ["tier-c"]}, "use_cases", "client-side-encryption"),
    ({"use_cases": ""}, "use_cases", "at least one"),
    ({"workshop_mode": "yes"}, "workshop_mode", "true or false"),
    ({"alarm_email": "not-an-address"}, "alarm_email", "e-mail"),
    ({"vpc_cidr": "10.0.0.0/8"}, "vpc_cidr", "/16 to /22"),
    ({"vpc_cidr": "8.8.0.0/20"}, "vpc_cidr", "private"),
    ({"vpc_cidr": "banana"}, "vpc_cidr", "IPv4 network"),
    ({"log_retention_days": 42}, "log_retention_days", "retention"),
    ({"log_retention_days": True}, "log_retention_days", "whole number"),
    ({"tier_a_key_namespaces": ["aws-kms"]}, "tier_a_key_namespaces", "reserved by AWS"),
    ({"tier_a_key_namespaces": []}, "tier_a_key_namespaces", "at least one"),
    ({"tier_a_object_lock_days": -1}, "tier_a_object_lock_days", "0 to 3650"),
    # Compliance-mode Object Lock on the trail buckets: at least a day (S3 DefaultRetention Days >= 1), never off.
    ({"trail_object_lock_days": 0}, "trail_object_lock_days", "1 to 3650"),
    ({"trail_object_lock_days": 3651}, "trail_object_lock_days", "1 to 3650"),
    ({"trail_object_lock_days": True}, "trail_object_lock_days", "1 to 3650"),
    ({"tier_a_data_access_principals": ["*"]}, "tier_a_data_access_principals", "IAM role"),
    ({"tier_a_header_read_bytes": 10}, "tier_a_header_read_bytes", "1024"),
    ({"tier_b_hsm_count": 0}, "tier_b_hsm_count", "1 to 28"),
    ({"tier_b_backup_retention_days": 400}, "tier_b_backup_retention_days", "7 to 379"),
    ({"tier_b_restore_backup_id": "my-backup"}, "tier_b_restore_backup_id", "backup id"),
    ({"tier_b_existing_key_store_id": "store1"}, "tier_b_existing_key_store_id", "key store id"),
    ({"tier_b_trust_anchor_path": "no/such/ca.pem"}, "tier_b_trust_anchor_path", "no PEM file"),
    ({"tier_b_keystore_enabled": True}, "tier_b_trust_anchor_path", "required"),
    ({"regoin": "eu-north-1"}, "regoin", "unknown setting"),
    ({"region": None}, "region", "required"),
]


@pytest.mark.parametrize(("context", "key", "fragment"), BAD_VALUES, ids=[b[1] + ":" + str(b[0]) for b in BAD_VALUES])
def test_each_bad_value_fails_with_one_line_naming_the_key(context: dict[str, Any], key: str, fragment: str) -> None:
    # GIVEN one bad setting WHEN the config is loaded
    with pytest.raises(ConfigError) as raised:
        load_config(context)
    # THEN the error names that context key, says what is allowed, and is one line
    message = str(raised.value)
    assert raised.value.key == key
    assert message.startswith(f"context key '{key}'")
    assert fragment in message
    assert "\n" not in message


def test_keystore_phase_needs_two_hsms(tmp_path) -> None:
    # GIVEN phase 2 enabled with a trust anchor but a single HSM
    anchor = tmp_path / "ca.pem"
    anchor.write_text("-----BEGIN CERTIFICATE-----\n")
    context = {"tier_b_keystore_enabled": True, "tier_b_trust_anchor_path": str(anchor), "tier_b_hsm_count": 1}
    # WHEN loaded THEN the HSM count is named as the problem
    with pytest.raises(ConfigError, match=r"tier_b_hsm_count.*at least 2 HSMs"):
        load_config(context)


def _run_app(context: dict[str, Any], tmp_path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_app_with_wrong_region_fails_synthesis_with_one_line(tmp_path) -> None:
    # GIVEN the app run as the CDK CLI runs it, with -c region=us-east-1
    result = _run_app({"region": "us-east-1"}, tmp_path)
    # THEN synthesis fails with exactly one line naming the key, and no Python trace
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "kommunmoln: configuration error: context key 'region': 'us-east-1' is not allowed; "
        "expected an EU region from allowed_regions (eu-north-1)"
    ]
    assert not list(tmp_path.glob("*.template.json"))


# Regions outside the EU, written out here (not derived from config.EU_REGIONS, so that adding
# one of them to the allow-list fails this test): London and Zurich are in Europe but not the EU.
NON_EU_REGIONS = (
    "eu-west-2",
    "eu-central-2",
    "us-east-1",
    "us-west-2",
    "il-central-1",
    "me-central-1",
    "ap-northeast-1",
)
# AWS regions in EU member states (Sweden, Ireland, France, Germany, Italy, Spain; eusc-de-east-1: the
# AWS European Sovereign Cloud in Brandenburg, Germany).
EU_MEMBER_STATE_REGIONS = {
    "eu-north-1",
    "eu-west-1",
    "eu-west-3",
    "eu-central-1",
    "eu-south-1",
    "eu-south-2",
    "eusc-de-east-1",
}


@pytest.mark.parametrize("region", NON_EU_REGIONS)
def test_non_eu_regions_are_refused_even_when_listed_as_allowed(region: str) -> None:
    # GIVEN a context that lists a non-EU region as allowed and deploys there
    context = {"allowed_regions": [region], "region": region}
    # WHEN it is loaded THEN the allow-list itself is refused, naming the key
    with pytest.raises(ConfigError) as error:
        load_config(context)
    assert error.value.key == "allowed_regions"


def test_every_allowed_region_is_in_an_eu_member_state() -> None:
    assert set(EU_REGIONS) <= EU_MEMBER_STATE_REGIONS


def test_trail_object_lock_days_defaults_to_a_year_and_comes_from_the_context() -> None:
    # GIVEN no setting, then `cdk synth -c trail_object_lock_days=400` (a string, as the CLI passes it)
    default, configured = load_config({}), load_config({"trail_object_lock_days": "400"})
    # THEN the default is 365 days (as cdk.json repeats) and the given value is used as a number
    assert default.trail_object_lock_days == 365
    assert json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["trail_object_lock_days"] == 365
    assert configured.trail_object_lock_days == 400
