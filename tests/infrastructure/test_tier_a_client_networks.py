"""Tier A on-premises clients, optionally held to the municipality's networks (issue 10 defect 5).

Rules encoded (IAM User Guide, "AWS global condition context keys",
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html):
`aws:SourceIp` is the requester's public IP address and is *not* in the request context when the
request comes through a VPC endpoint; `aws:ViaAWSService` is true when a service calls with the
principal's credentials. So the source-IP deny spares requests through the VPC's endpoint and
requests a service makes on the client's behalf.
"""

from __future__ import annotations

import pytest

from kommunmoln.config import ConfigError, load_config
from tests.conftest import REPO_ROOT, Synthesized, synthesize
from tests.infrastructure.policy.evaluator import ACCOUNT, ALLOW, EXPLICIT_DENY
from tests.infrastructure.policy.scenarios import Scenario
from tests.infrastructure.policy.test_tier_a_matrix import ENDPOINT, VALIDATED, Matrix

CLIENT = f"arn:aws:iam::{ACCOUNT}:role/MunicipalityClient"
NETWORK = "193.44.0.0/24"  # an arbitrary public range standing for the municipality's NAT/VPN egress


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    synth: Synthesized = synthesize(
        tmp_path_factory.mktemp("client-networks"),
        {
            "use_cases": ["client-side-encryption"],
            "tier_a_data_access_principals": [CLIENT],
            "tier_a_client_source_ips": [NETWORK],
        },
    )
    return Matrix(synth)


def _read(expected: str, **context: object) -> Scenario:
    return Scenario("client reads a validated version", "client-network", "client", "s3:GetObject", "object",
                    expected, {**VALIDATED, **context})  # fmt: skip


@pytest.mark.parametrize(
    ("where", "scenario"),
    [
        ("from the municipality's network", _read(ALLOW, **{"aws:SourceIp": "193.44.0.17"})),
        ("from anywhere else (stolen credentials)", _read(EXPLICIT_DENY, **{"aws:SourceIp": "81.2.69.160"})),
        ("through the VPC's S3 endpoint (no aws:SourceIp)", _read(ALLOW, **{"aws:SourceVpce": ENDPOINT})),
        ("by a service on its behalf", _read(ALLOW, **{"aws:SourceIp": "52.94.0.1", "aws:ViaAWSService": True})),
    ],
)
def test_on_premises_principal_only_from_its_networks(matrix: Matrix, where: str, scenario: Scenario) -> None:
    # GIVEN tier_a_data_access_principals with tier_a_client_source_ips WHEN the client reads THEN as expected
    assert matrix.decide(scenario) == scenario.expected, where


def test_the_source_ip_rule_binds_only_the_listed_principals(matrix: Matrix) -> None:
    # GIVEN an account administrator (not a listed on-premises principal) outside the VPC, from the listed network
    scenario = Scenario("admin from the client network", "client-network", "admin", "s3:GetObject", "object",
                        EXPLICIT_DENY, {**VALIDATED, "aws:SourceIp": "193.44.0.17"})  # fmt: skip
    # THEN the perimeter still refuses: the network admits the listed principals, nobody else
    assert matrix.decide(scenario) == EXPLICIT_DENY


def _context(**overrides: object) -> dict:
    import json

    return {**json.loads((REPO_ROOT / "cdk.json").read_text())["context"], **overrides}


@pytest.mark.parametrize(
    ("networks", "problem"),
    [
        (["10.0.0.0/8"], "not a public network"),  # a VPN's private side: S3 never sees it as aws:SourceIp
        (["192.168.1.0/24"], "not a public network"),
        (["193.44.0.1/24"], "CIDR"),  # host bits set: not a network
        (["not-an-ip"], "CIDR"),
        ({"cidr": "193.44.0.0/24"}, "list"),
    ],
)
def test_source_ips_must_be_public_networks(networks: object, problem: str) -> None:
    # GIVEN a malformed or private tier_a_client_source_ips WHEN the config loads THEN it is refused, naming the key
    with pytest.raises(ConfigError, match="tier_a_client_source_ips") as raised:
        load_config(_context(tier_a_data_access_principals=[CLIENT], tier_a_client_source_ips=networks))
    assert problem in str(raised.value)


def test_source_ips_without_principals_are_refused() -> None:
    # GIVEN networks but no on-premises principal they could apply to THEN the config says what is missing
    with pytest.raises(ConfigError, match="tier_a_data_access_principals"):
        load_config(_context(tier_a_client_source_ips=[NETWORK]))
    # AND with principals the networks are kept in the config, normalised
    config = load_config(_context(tier_a_data_access_principals=[CLIENT], tier_a_client_source_ips=["2A00:1450::/32"]))
    assert config.tier_a.client_source_ips == ("2a00:1450::/32",)
