"""The Lambda network-interface permissions serve Lambda, not the function code (issue 11 item 13).

Rule (AWS Lambda Developer Guide, "Using source function ARN to control function access behavior",
https://docs.aws.amazon.com/lambda/latest/dg/permissions-source-function-arn.html): Lambda injects
`lambda:SourceFunctionArn` into the credentials context of every AWS request made from the execution
environment (the function code); the EC2 calls Lambda makes outside it to create the network
interfaces of a VPC-enabled function do not carry it. So a Deny conditioned on the key's presence
takes the permissions away from the code and leaves them to Lambda.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Synthesized
from tests.infrastructure.policy.evaluator import ACCOUNT, ALLOW, EXPLICIT_DENY, REGION, Request, Resolver, evaluate

ENI_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "ec2:DescribeNetworkInterfaces",
)
ENI = f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/eni-0123456789abcdef0"


def _vpc_functions(synth: Synthesized) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(stack, function logical id, identity policies of its role) for every function in the VPC."""
    resolver = Resolver(synth.templates)
    found = []
    for stack, template in synth.templates.items():
        for logical, resource in template["Resources"].items():
            properties = resource.get("Properties", {})
            if resource["Type"] != "AWS::Lambda::Function" or "VpcConfig" not in properties:
                continue
            role = properties["Role"]["Fn::GetAtt"][0]
            found.append((stack, logical, resolver.role_policies(stack, role)))
    return found


@pytest.fixture(scope="module")
def functions(synthesized: Synthesized) -> list[tuple[str, str, list[dict[str, Any]]]]:
    return _vpc_functions(synthesized)


def _decide(policies: list[dict[str, Any]], action: str, *, from_code: str | None) -> str:
    context = {"lambda:SourceFunctionArn": from_code} if from_code else {}
    return evaluate(
        Request(f"arn:aws:iam::{ACCOUNT}:role/FunctionRole", action, ENI, context), identity_policies=policies
    )


def test_function_code_cannot_use_the_network_interface_permissions(functions) -> None:
    # GIVEN every VPC function of the default app except the CloudHSM provisioner (next test)
    others = [f for f in functions if "Provisioner" not in f[1]]
    # (phase 1: the tier A validator and the key store monitor; phase 2 adds the tier B functions)
    assert {"Validator", "Monitor"} <= {next(p for p in ("Validator", "Monitor") if p in f[1]) for f in others}
    for stack, logical, policies in others:
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical}"
        for action in ENI_ACTIONS:
            # WHEN Lambda itself manages the function's network interfaces THEN it is allowed
            assert _decide(policies, action, from_code=None) == ALLOW, (stack, logical, action)
            # WHEN the function code calls the same action THEN it is explicitly denied
            assert _decide(policies, action, from_code=arn) == EXPLICIT_DENY, (stack, logical, action)


def test_the_provisioner_code_keeps_what_create_hsm_needs(functions) -> None:
    # Rule: CreateHsm/DeleteHsm need ec2:CreateNetworkInterface/DeleteNetworkInterface on the caller (Service
    # Authorization Reference, AWS CloudHSM, dependent actions), and the provisioner's code is the caller.
    provisioners = [f for f in functions if "Provisioner" in f[1]]
    assert len(provisioners) == 2  # on_event and is_complete
    for _, logical, policies in provisioners:
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical}"
        for action in ("ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface"):
            assert _decide(policies, action, from_code=arn) == ALLOW


def test_the_tier_c_provisioner_code_is_denied_them_too(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.conftest import synthesize
    from tests.infrastructure.test_tier_c_stack import BASE, SECRET

    # GIVEN tier C, whose provisioner reuses tier B's construct but never calls CreateHsm
    context = {**BASE, "tier_c_credential_secret_arn": SECRET.format(p="aws", r="eu-north-1")}
    synth = synthesize(tmp_path_factory.mktemp("tier-c-eni"), context)
    xks = [f for f in _vpc_functions(synth) if "tier-c" in f[0]]
    assert xks
    for _, logical, policies in xks:
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical}"
        # THEN its code is denied the network-interface actions as well; Lambda itself keeps them
        assert _decide(policies, "ec2:CreateNetworkInterface", from_code=arn) == EXPLICIT_DENY, logical
        assert _decide(policies, "ec2:CreateNetworkInterface", from_code=None) == ALLOW, logical
