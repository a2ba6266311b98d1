"""Record the AWS calls a Lambda's code makes and check them against its synthesized role policy.

The recorder is a botocore event hook (`before-parameter-build`, which sees the API parameters),
registered on the clients the code under test uses. The checker reads the role of one function from
the template, collects the Allow statements of every policy attached to it, and asks, for each
recorded call, whether some statement allows that IAM action on the resources the Service
Authorization Reference names for it (https://docs.aws.amazon.com/service-authorization/latest/reference/).

Limits (said, not hidden): conditions and Deny statements are not evaluated (an Allow that matches
by action and resource counts); CloudFormation intrinsics in a Resource (Ref/GetAtt of resources
created in the stack) are treated as "any resource of that position", pseudo parameters as the
test account and Region.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# botocore service name -> IAM service prefix, where they differ
_PREFIX = {"cloudhsmv2": "cloudhsm"}

# S3 operations whose IAM action differs from the operation name ("Required permissions for Amazon S3
# API operations", https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html):
# (action without VersionId, action with VersionId). HeadObject needs s3:GetObject (HeadObject API reference).
_S3_ACTIONS = {
    "GetObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "GetObjectTagging": ("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "PutObjectTagging": ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    "DeleteObjectTagging": ("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
    "GetObjectAttributes": ("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
    "ListObjectVersions": ("s3:ListBucketVersions", "s3:ListBucketVersions"),
    "ListObjectsV2": ("s3:ListBucket", "s3:ListBucket"),
}


def iam_action(prefix: str, operation: str, params: Mapping[str, Any]) -> str:
    """The IAM action one API call is authorized as."""
    if prefix == "s3" and operation in _S3_ACTIONS:
        plain, versioned = _S3_ACTIONS[operation]
        return versioned if params.get("VersionId") else plain
    return f"{prefix}:{operation}"


@dataclass(frozen=True)
class Call:
    action: str  # IAM action, e.g. kms:CreateAlias
    params: Mapping[str, Any]


class Recorder:
    """Collects (IAM action, parameters) for every call of the clients it is attached to."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._attached: list[tuple[Any, Callable[..., None]]] = []

    def attach(self, client: Any) -> Any:
        prefix = _PREFIX.get(client.meta.service_model.service_name, client.meta.service_model.service_name)

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            self.calls.append(Call(iam_action(prefix, model.name, params), dict(params)))

        client.meta.events.register("before-parameter-build", record)
        self._attached.append((client, record))
        return client

    def detach(self) -> None:
        """Stop recording (for clients shared with other tests)."""
        for client, record in self._attached:
            client.meta.events.unregister("before-parameter-build", record)
        self._attached.clear()


# --- resources an action is authorized on (Service Authorization Reference) -----------------
ResourceRule = Callable[[Mapping[str, Any], "Arns"], list[str]]


@dataclass(frozen=True)
class Arns:
    partition: str
    region: str
    account: str
    resolve_key: Callable[[str], str]  # key id, ARN or alias -> key id

    def cluster(self, cluster_id: str) -> str:
        return f"arn:{self.partition}:cloudhsm:{self.region}:{self.account}:cluster/{cluster_id}"

    def backup(self, backup_id: str) -> str:
        return f"arn:{self.partition}:cloudhsm:{self.region}:{self.account}:backup/{backup_id}"

    def key(self, key: str) -> str:
        return f"arn:{self.partition}:kms:{self.region}:{self.account}:key/{self.resolve_key(key)}"

    def alias(self, alias: str) -> str:
        return f"arn:{self.partition}:kms:{self.region}:{self.account}:{alias}"

    def s3_object(self, params: Mapping[str, Any]) -> str:
        return f"arn:{self.partition}:s3:::{params['Bucket']}/{params['Key']}"

    def s3_bucket(self, params: Mapping[str, Any]) -> str:
        return f"arn:{self.partition}:s3:::{params['Bucket']}"


_S3_OBJECT_ACTIONS = sorted(
    {action for pair in _S3_ACTIONS.values() for action in pair} - {"s3:ListBucketVersions", "s3:ListBucket"}
)
_ANY: ResourceRule = lambda p, a: ["*"]  # noqa: E731 - actions without resource-level permissions
RESOURCES: dict[str, ResourceRule] = {
    "cloudhsm:DescribeClusters": _ANY,
    "cloudhsm:DescribeBackups": _ANY,
    "cloudhsm:CreateHsm": lambda p, a: [a.cluster(p["ClusterId"])],
    "cloudhsm:DeleteHsm": lambda p, a: [a.cluster(p["ClusterId"])],
    "cloudhsm:DeleteCluster": lambda p, a: [a.cluster(p["ClusterId"])],
    "cloudhsm:ModifyCluster": lambda p, a: [a.cluster(p["ClusterId"])],
    "cloudhsm:CreateCluster": lambda p, a: [a.backup(p["SourceBackupId"])] if p.get("SourceBackupId") else ["*"],
    "kms:CreateCustomKeyStore": _ANY,
    "kms:ConnectCustomKeyStore": _ANY,
    "kms:DisconnectCustomKeyStore": _ANY,
    "kms:DescribeCustomKeyStores": _ANY,
    "kms:UpdateCustomKeyStore": _ANY,
    "kms:DeleteCustomKeyStore": _ANY,
    "kms:ListKeys": _ANY,
    "kms:ListAliases": _ANY,
    "kms:CreateKey": _ANY,
    "kms:DescribeKey": lambda p, a: [a.key(p["KeyId"])],
    "kms:PutKeyPolicy": lambda p, a: [a.key(p["KeyId"])],
    "kms:GetKeyPolicy": lambda p, a: [a.key(p["KeyId"])],
    "kms:ListGrants": lambda p, a: [a.key(p["KeyId"])],
    "kms:UpdateKeyDescription": lambda p, a: [a.key(p["KeyId"])],
    "kms:ScheduleKeyDeletion": lambda p, a: [a.key(p["KeyId"])],
    # Alias actions authorize on the alias and on the key (CreateAlias/UpdateAlias: the target key).
    "kms:CreateAlias": lambda p, a: [a.alias(p["AliasName"]), a.key(p["TargetKeyId"])],
    "kms:UpdateAlias": lambda p, a: [a.alias(p["AliasName"]), a.key(p["TargetKeyId"])],
    "kms:DeleteAlias": lambda p, a: [a.alias(p["AliasName"]), a.key(p["AliasName"])],
    "secretsmanager:GetSecretValue": lambda p, a: [p["SecretId"]],
    # Tier C (lambdas.xks_provisioner): the endpoint service's private DNS verification.
    "ec2:DescribeVpcEndpointServiceConfigurations": _ANY,
    "ec2:StartVpcEndpointServicePrivateDnsVerification": lambda p, a: [
        f"arn:{a.partition}:ec2:{a.region}:{a.account}:vpc-endpoint-service/{p['ServiceId']}"
    ],
    "sns:Publish": lambda p, a: [p["TopicArn"]],
    # S3 object actions authorize on the object ARN, bucket actions on the bucket ARN.
    **dict.fromkeys(_S3_OBJECT_ACTIONS, lambda p, a: [a.s3_object(p)]),
    "s3:ListBucketVersions": lambda p, a: [a.s3_bucket(p)],
    "s3:ListBucket": lambda p, a: [a.s3_bucket(p)],
}


# --- the template side -------------------------------------------------------------------------
def _render(value: Any, arns: Arns) -> str:
    """A Resource value as a glob: intrinsics of stack resources become '*', pseudo parameters the test's."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "Ref" in value:
            return {"AWS::Partition": arns.partition, "AWS::Region": arns.region,
                    "AWS::AccountId": arns.account}.get(value["Ref"], "*")  # fmt: skip
        if "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sep.join(_render(p, arns) for p in parts)
        return "*"
    raise TypeError(f"unexpected Resource value {value!r}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(template: Mapping[str, Any], function_logical_id: str) -> list[Mapping[str, Any]]:
    """Allow statements of every policy attached to the role of one Lambda function."""
    resources = template["Resources"]
    role = resources[function_logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements: list[Mapping[str, Any]] = []
    for resource in resources.values():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy") and {"Ref": role} in props.get(
            "Roles", []
        ):
            statements += props["PolicyDocument"]["Statement"]
    for arn in resources[role]["Properties"].get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and "Ref" in arn and arn["Ref"] in resources:
            statements += resources[arn["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
    return [s for s in statements if s.get("Effect") == "Allow"]


def denied(calls: Iterable[Call], statements: list[Mapping[str, Any]], arns: Arns) -> list[str]:
    """Every recorded call no Allow statement covers (action and each resource), as readable lines."""
    problems: set[str] = set()
    for call in calls:
        rule = RESOURCES.get(call.action)
        if rule is None:
            problems.add(f"{call.action}: no resource rule in tests/controlplane/iam_check.py (add it from the SAR)")
            continue
        for resource in rule(call.params, arns):
            if not any(_allows(s, call.action, resource, arns) for s in statements):
                problems.add(f"{call.action} on {resource}")
    return sorted(problems)


def _allows(statement: Mapping[str, Any], action: str, resource: str, arns: Arns) -> bool:
    actions = [a.lower() for a in _as_list(statement.get("Action", []))]
    if not any(fnmatch.fnmatchcase(action.lower(), pattern) for pattern in actions):
        return False
    patterns = [_render(r, arns) for r in _as_list(statement.get("Resource", []))]
    return any(p == "*" or (resource != "*" and fnmatch.fnmatchcase(resource, p)) for p in patterns)
