"""The VPC endpoint policies as a perimeter, evaluated offline (issue 10 defect 11, issue 11 item 12).

An endpoint policy does not grant anything: a request through the endpoint passes only if a
statement of the endpoint policy allows it (AWS PrivateLink Guide, "Control access to VPC endpoints
using endpoint policies", https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html).
The rules encoded here:

- `aws:PrincipalAccount` is the account of the calling principal, `aws:ResourceAccount` the account
  that owns the resource acted on (IAM User Guide, "AWS global condition context keys",
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html); an
  unsigned (anonymous) request carries no principal keys.
- dnf on Amazon Linux 2023 reads its repository anonymously from the AWS-owned bucket
  `al2023-repos-<region>-de612dc2` through the S3 gateway endpoint (AWS data perimeter examples,
  vpc_endpoint_policies/README.md, citing https://docs.aws.amazon.com/linux/al2023/ug/live-patching.html).
- AWS-owned SSM parameters and documents have ARNs without an account (`arn:aws:ssm:<region>::parameter/aws/...`;
  AWS data perimeter examples, ssm_endpoint_policy.json).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Synthesized
from tests.infrastructure.policy.evaluator import ACCOUNT, ALLOW, IMPLICIT_DENY, REGION, Request, Resolver, evaluate

NETWORK = "-network"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/Validator"
OTHER = "222222222222"
OTHER_ROLE = f"arn:aws:iam::{OTHER}:role/Intruder"
ANONYMOUS = "anonymous"  # an unsigned request: no principal ARN, no aws:PrincipalAccount
AL2023_REPOSITORY = f"arn:aws:s3:::al2023-repos-{REGION}-de612dc2/core/mirrors/latest/x86_64/mirror.list"


def _policies(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """Endpoint policy by service suffix (s3, kms, sts, ssm, secretsmanager, ...) of every stack, resolved."""
    resolver = Resolver(synth.templates)
    policies = {}
    for name in synth.templates:
        template = resolver.template_of(name)
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::EC2::VPCEndpoint" or "PolicyDocument" not in resource["Properties"]:
                continue
            service = str(resolver.resolve(resource["Properties"]["ServiceName"], template)).rsplit(".", 1)[-1]
            assert service not in policies, f"two {service} endpoints"
            policies[service] = resolver.resolve(resource["Properties"]["PolicyDocument"], template)
    return policies


def through(policy: dict[str, Any], principal: str, action: str, resource: str, resource_account: str | None) -> str:
    """The endpoint policy's decision alone (no identity policy is assumed to deny)."""
    context: dict[str, Any] = {} if resource_account is None else {"aws:ResourceAccount": resource_account}
    request = Request(principal, action, resource, context)
    # Evaluated as the only policy in the caller's own account: ALLOW iff an endpoint statement allows.
    return evaluate(request, resource_policy=policy, resource_account=request.principal_account or ACCOUNT)


@pytest.fixture(scope="module")
def policies(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return _policies(synthesized)


# (endpoint, principal, action, resource, resource account, expected)
SCENARIOS = [
    # S3 gateway: this account's buckets only, plus read-only the AL2023 repository
    ("s3", ROLE, "s3:GetObject", "arn:aws:s3:::kommunmoln-data/x", ACCOUNT, ALLOW),
    ("s3", ROLE, "s3:PutObject", "arn:aws:s3:::attacker-bucket/x", OTHER, IMPLICIT_DENY),
    ("s3", OTHER_ROLE, "s3:PutObject", "arn:aws:s3:::attacker-bucket/x", OTHER, IMPLICIT_DENY),
    ("s3", ANONYMOUS, "s3:GetObject", AL2023_REPOSITORY, None, ALLOW),
    ("s3", ANONYMOUS, "s3:PutObject", AL2023_REPOSITORY, None, IMPLICIT_DENY),
    ("s3", ANONYMOUS, "s3:GetObject", "arn:aws:s3:::al2023-repos-eu-west-1-de612dc2/x", None, IMPLICIT_DENY),
    ("s3", ANONYMOUS, "s3:GetObject", "arn:aws:s3:::some-public-bucket/x", None, IMPLICIT_DENY),
    ("s3", ROLE, "s3:PutObject", f"arn:aws:s3:::al2023-repos-{REGION}-de612dc2/x", OTHER, IMPLICIT_DENY),
    # Interface endpoints: this account's principals on this account's resources, both sides
    ("kms", ROLE, "kms:Decrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k", ACCOUNT, ALLOW),
    ("kms", ROLE, "kms:Encrypt", f"arn:aws:kms:{REGION}:{OTHER}:key/theirs", OTHER, IMPLICIT_DENY),
    ("kms", OTHER_ROLE, "kms:Decrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k", ACCOUNT, IMPLICIT_DENY),
    ("sts", ROLE, "sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/Usage", ACCOUNT, ALLOW),
    ("sts", ROLE, "sts:AssumeRole", f"arn:aws:iam::{OTHER}:role/Outside", OTHER, IMPLICIT_DENY),
    ("sns", ROLE, "sns:Publish", f"arn:aws:sns:{REGION}:{OTHER}:exfil", OTHER, IMPLICIT_DENY),
    ("logs", ROLE, "logs:PutLogEvents", f"arn:aws:logs:{REGION}:{OTHER}:log-group:x", OTHER, IMPLICIT_DENY),
    ("monitoring", ROLE, "cloudwatch:PutMetricData", "*", ACCOUNT, ALLOW),
    ("cloudhsmv2", ROLE, "cloudhsm:DescribeClusters", "*", ACCOUNT, ALLOW),
    # Secrets Manager (tier B's stack: the kmsuser password): this account's secrets only
    (
        "secretsmanager",
        ROLE,
        "secretsmanager:GetSecretValue",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:k",
        ACCOUNT,
        ALLOW,
    ),
    (
        "secretsmanager",
        ROLE,
        "secretsmanager:GetSecretValue",
        f"arn:aws:secretsmanager:{REGION}:{OTHER}:secret:x",
        OTHER,
        IMPLICIT_DENY,
    ),
    # SSM: AWS-owned public parameters and documents, read-only, for this account's principals
    (
        "ssm",
        ROLE,
        "ssm:GetParameter",
        f"arn:aws:ssm:{REGION}::parameter/aws/service/ami-amazon-linux-latest/x",
        None,
        ALLOW,
    ),
    ("ssm", ROLE, "ssm:GetDocument", f"arn:aws:ssm:{REGION}::document/AWS-StartInteractiveCommand", None, ALLOW),
    ("ssm", ROLE, "ssm:PutParameter", f"arn:aws:ssm:{REGION}::parameter/aws/x", None, IMPLICIT_DENY),
    ("ssm", OTHER_ROLE, "ssm:GetParameter", f"arn:aws:ssm:{REGION}::parameter/aws/x", None, IMPLICIT_DENY),
    ("ssm", ROLE, "ssm:GetParameter", f"arn:aws:ssm:{REGION}:{OTHER}:parameter/theirs", OTHER, IMPLICIT_DENY),
]


@pytest.mark.parametrize(("endpoint", "principal", "action", "resource", "owner", "expected"), SCENARIOS)
def test_endpoint_perimeter_scenario(
    policies: dict[str, dict[str, Any]], endpoint: str, principal: str, action: str, resource: str, owner: str | None,
    expected: str,
) -> None:  # fmt: skip
    # GIVEN the synthesized endpoint policy WHEN this request goes through the endpoint THEN AWS decides `expected`
    assert through(policies[endpoint], principal, action, resource, owner) == expected


def test_every_policy_capable_interface_endpoint_is_covered(policies: dict[str, dict[str, Any]]) -> None:
    # GIVEN the default app (tier B with the admin host) THEN each endpoint with a policy has a scenario
    # refusing someone else's resource, so none can go back to a principal-only condition unnoticed
    refused_foreign = {e for e, _, _, _, owner, expected in SCENARIOS if owner == OTHER and expected != ALLOW}
    assert set(policies) - {"monitoring", "cloudhsmv2"} <= refused_foreign
    for service in ("monitoring", "cloudhsmv2"):
        assert through(policies[service], ROLE, "cloudwatch:PutMetricData", "*", OTHER) == IMPLICIT_DENY


def test_without_an_admin_host_the_repository_exception_is_absent(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.conftest import synthesize

    # GIVEN tier A only (no admin host, nothing installs packages in the VPC)
    synth = synthesize(tmp_path_factory.mktemp("tier-a-only"), {"use_cases": ["client-side-encryption"]})
    # WHEN dnf asks for the AL2023 repository THEN the S3 endpoint refuses: the exception exists only for the host
    assert through(_policies(synth)["s3"], ANONYMOUS, "s3:GetObject", AL2023_REPOSITORY, None) == IMPLICIT_DENY
