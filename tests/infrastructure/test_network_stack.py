"""Network stack: the security properties of the isolated VPC, asserted on the template."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Synthesized, synthesize

NETWORK = "-network"


def _types(template: dict[str, Any]) -> set[str]:
    return {r["Type"] for r in template["Resources"].values()}


def test_no_internet_path_exists(synthesized: Synthesized) -> None:
    # GIVEN the synthesized network stack
    template = synthesized.template(NETWORK)
    # THEN there is no internet or NAT gateway, no public IPs, and no default route anywhere
    assert not _types(template) & {"AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EIP"}
    for subnet in synthesized.resources(NETWORK, "AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
    assert not synthesized.resources(NETWORK, "AWS::EC2::Route")


def test_isolated_subnets_span_the_configured_zones(synthesized: Synthesized) -> None:
    # GIVEN the default config (eu-north-1a and eu-north-1b, given explicitly: no look-up)
    zones = sorted(
        s["Properties"]["AvailabilityZone"] for s in synthesized.resources(NETWORK, "AWS::EC2::Subnet").values()
    )
    # THEN there is one isolated subnet per configured zone
    assert zones == ["eu-north-1a", "eu-north-1b"]


def test_flow_logs_go_to_an_encrypted_log_group_with_retention(synthesized: Synthesized) -> None:
    # GIVEN the flow log and its destination
    (flow_log,) = synthesized.resources(NETWORK, "AWS::EC2::FlowLog").values()
    groups = synthesized.resources(NETWORK, "AWS::Logs::LogGroup")
    destination = flow_log["Properties"]["LogGroupName"]["Ref"]
    group = groups[destination]
    # THEN all traffic is logged, to a group encrypted with a customer-managed key, kept (no gallring decision)
    assert flow_log["Properties"]["TrafficType"] == "ALL"
    assert "KmsKeyId" in group["Properties"]
    assert "RetentionInDays" not in group["Properties"]
    assert group["DeletionPolicy"] == "RetainExceptOnCreate"
    keys = synthesized.resources(NETWORK, "AWS::KMS::Key")
    assert all(k["Properties"]["EnableKeyRotation"] is True for k in keys.values())
    assert all(k["DeletionPolicy"] == "RetainExceptOnCreate" for k in keys.values())


def test_default_security_group_is_closed(synthesized: Synthesized) -> None:
    # THEN CDK's restrict-default-security-group custom resource strips its rules at deployment
    assert synthesized.resources(NETWORK, "Custom::VpcRestrictDefaultSG")


def test_endpoint_policies_confine_traffic_to_this_account(synthesized: Synthesized) -> None:
    endpoints = synthesized.resources(NETWORK, "AWS::EC2::VPCEndpoint").values()
    gateway = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"]
    interface = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Interface"]
    # THEN the S3 gateway endpoint reaches only this account's buckets (and, read-only, the AL2023
    # repository: tests/infrastructure/test_endpoint_perimeter.py evaluates both)
    (s3,) = gateway
    statements = {st["Sid"]: st for st in s3["Properties"]["PolicyDocument"]["Statement"]}
    assert set(statements) == {"OnlyThisAccountsBuckets", "AmazonLinuxRepositoriesReadOnly"}
    account_only = statements["OnlyThisAccountsBuckets"]
    assert account_only["Effect"] == "Allow"
    assert account_only["Condition"] == {"StringEquals": {"aws:ResourceAccount": {"Ref": "AWS::AccountId"}}}
    # AND every interface endpoint that takes a policy admits only this account's principals on its resources
    services = {_service(e) for e in interface}
    assert {"kms", "sts", "logs", "sns", "monitoring"} <= services
    account = {"Ref": "AWS::AccountId"}
    for endpoint in interface:
        if _service(endpoint) in {"ssmmessages", "ec2messages"}:
            continue  # these endpoints take no custom policy
        first, *exceptions = endpoint["Properties"]["PolicyDocument"]["Statement"]
        assert first["Condition"] == {"StringEquals": {"aws:PrincipalAccount": account, "aws:ResourceAccount": account}}
        assert [e["Sid"] for e in exceptions] == (
            ["ReadAwsOwnedParametersAndDocuments"] if _service(endpoint) == "ssm" else []
        )
        assert endpoint["Properties"]["PrivateDnsEnabled"] is True


def _service(endpoint: dict[str, Any]) -> str:
    name = endpoint["Properties"]["ServiceName"]
    return (
        name.rsplit(".", 1)[-1] if isinstance(name, str) else "".join(map(str, name["Fn::Join"][1])).rsplit(".", 1)[-1]
    )


def test_interface_endpoints_accept_https_from_the_vpc_only(synthesized: Synthesized) -> None:
    groups = synthesized.resources(NETWORK, "AWS::EC2::SecurityGroup")
    endpoint_groups = [g for g in groups.values() if "Interface endpoints" in g["Properties"]["GroupDescription"]]
    (group,) = endpoint_groups
    # THEN the only ingress is 443 from the configured VPC CIDR
    assert group["Properties"]["SecurityGroupIngress"] == [
        {
            "CidrIp": "10.42.0.0/16",
            "Description": "HTTPS from the VPC",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        }
    ]


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(
        tmp_path_factory.mktemp("workshop"), {"workshop_mode": True, "use_cases": ["client-side-encryption"]}
    )


def test_workshop_mode_lets_the_stack_delete_its_state(workshop: Synthesized) -> None:
    # GIVEN workshop mode WHEN synthesized THEN logs and keys are deleted with the stack
    for resource_type in ("AWS::Logs::LogGroup", "AWS::KMS::Key"):
        for resource in workshop.resources(NETWORK, resource_type).values():
            assert resource["DeletionPolicy"] == "Delete"


def test_tier_b_endpoints_only_when_tier_b_is_deployed(workshop: Synthesized, synthesized: Synthesized) -> None:
    def services(s: Synthesized) -> set[str]:
        return {_service(e) for e in s.resources(NETWORK, "AWS::EC2::VPCEndpoint").values()}

    # THEN CloudHSM and SSM endpoints exist with tier B, and not without it
    assert {"cloudhsmv2", "ssm", "ssmmessages", "ec2messages"} <= services(synthesized)
    assert not {"cloudhsmv2", "ssm"} & services(workshop)
