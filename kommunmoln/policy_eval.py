"""A small offline IAM policy evaluator: exactly the semantics this project's policies use.

Used by the policy matrices (tests/infrastructure/policy/, which re-export it from
`evaluator.py`) and by `make demo` (usecases/guard_demo.py), which evaluates the synthesized
tier A bucket policy because the local emulation does not enforce bucket policies. It decides
what these policies say, nothing more: it is no substitute for AWS's own authorization.

Why our own: no maintained offline evaluator on PyPI evaluates resource policies with
conditions (principalmapper, the closest, last released in January 2022 and models
identity policies of a live account). This one implements, from AWS's documentation:

- Policy evaluation logic (IAM User Guide, "Policy evaluation logic"): an explicit Deny in
  any applicable policy wins; otherwise an Allow in an identity policy or the resource
  policy allows (same account); otherwise the request is implicitly denied. Across
  accounts both the identity policy and the resource policy must allow.
- KMS key policies (KMS Developer Guide, "Key policies"): IAM policies count only if the key
  policy delegates to the account (a statement whose principal is the account root).
- Principal / NotPrincipal, Action / NotAction, Resource / NotResource with `*` and `?`
  wildcards (actions case-insensitive).
- Conditions (IAM User Guide, "Condition operators", "Conditions with multiple context keys
  or values", "Single-valued vs. multivalued context keys"): operators AND, keys AND,
  values OR, values of a negated operator NOR; a key absent from the request makes an
  operator false, a negated operator true, an ...IfExists operator true; Null tests
  presence; ForAnyValue over an absent key is false, ForAllValues over it is true.

Operators it does not know raise: a scenario must never pass because a condition was skipped.
CloudFormation intrinsics in the templates are resolved to stable fake names by `Resolver`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "111111111111"
REGION = "eu-north-1"
PARTITION = "aws"

ALLOW = "Allow"
EXPLICIT_DENY = "ExplicitDeny"
IMPLICIT_DENY = "ImplicitDeny"

_NEGATED = {
    "StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike", "NotIpAddress"
}  # fmt: skip
_NUMERIC = {
    "NumericEquals": lambda a, b: a == b,
    "NumericLessThan": lambda a, b: a < b,
    "NumericLessThanEquals": lambda a, b: a <= b,
    "NumericGreaterThan": lambda a, b: a > b,
    "NumericGreaterThanEquals": lambda a, b: a >= b,
}
_KNOWN = (
    _NEGATED
    | set(_NUMERIC)
    | {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike", "Bool", "Null", "IpAddress"}
)


class UnsupportedPolicy(ValueError):
    """The policy uses something this evaluator does not implement."""


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _positive_match(base: str, request_value: str, policy_value: str) -> bool:
    if base in ("StringEquals", "StringNotEquals"):
        return request_value == policy_value
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return request_value.lower() == policy_value.lower()
    if base in ("StringLike", "StringNotLike", "ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike"):
        # ArnEquals and ArnLike both accept wildcards (IAM User Guide, ARN condition operators).
        return _glob(policy_value, request_value)
    if base == "Bool":
        return request_value.lower() == str(policy_value).lower()
    if base in _NUMERIC:
        return _NUMERIC[base](float(request_value), float(policy_value))
    if base in ("IpAddress", "NotIpAddress"):
        # The request's address lies in the policy's CIDR range (IAM User Guide, IP address condition operators).
        return ipaddress.ip_address(request_value) in ipaddress.ip_network(policy_value, strict=False)
    raise UnsupportedPolicy(f"condition operator {base}")


def _lookup(context: Mapping[str, Any], key: str) -> list[str] | None:
    """The request's values for a condition key (key names are case-insensitive), or None if absent."""
    for name, value in context.items():
        if name.lower() == key.lower():
            if value is None:
                return None
            values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(value)]
            return values
    return None


def condition_holds(block: Mapping[str, Mapping[str, Any]], context: Mapping[str, Any]) -> bool:
    """Whether a statement's Condition block holds for the request context."""
    for operator, keys in block.items():
        qualifier, _, base = operator.rpartition(":")
        if qualifier not in ("", "ForAnyValue", "ForAllValues"):
            raise UnsupportedPolicy(f"set operator {qualifier}")
        if_exists = base.endswith("IfExists")
        base = base.removesuffix("IfExists")
        if base not in _KNOWN:
            raise UnsupportedPolicy(f"condition operator {operator}")
        for key, raw_policy_values in keys.items():
            policy_values = [str(v) for v in _as_list(raw_policy_values)]
            request_values = _lookup(context, key)
            if not _key_holds(base, qualifier, if_exists, policy_values, request_values):
                return False
    return True


def _key_holds(
    base: str, qualifier: str, if_exists: bool, policy_values: list[str], request_values: list[str] | None
) -> bool:
    present = bool(request_values)
    if base == "Null":
        # "true": the key must be absent; "false": it must be present (and not empty).
        return any((value.lower() == "true") == (not present) for value in policy_values)
    negated = base in _NEGATED

    def one_value_holds(value: str) -> bool:
        matches = any(_positive_match(base, value, policy_value) for policy_value in policy_values)
        return not matches if negated else matches

    if qualifier == "ForAllValues":
        return all(one_value_holds(v) for v in request_values or [])
    if qualifier == "ForAnyValue":
        return any(one_value_holds(v) for v in request_values or [])
    if not present:
        return if_exists or negated
    if len(request_values) != 1:
        raise UnsupportedPolicy(f"a multivalued key under {base} needs ForAnyValue/ForAllValues")
    return one_value_holds(request_values[0])


@dataclass(frozen=True)
class Request:
    """One API request as the authorization engine sees it."""

    principal: str  # ARN of the calling principal (a role ARN for role sessions); "service:<name>" for a service
    action: str  # e.g. "s3:GetObject"
    resource: str  # ARN
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def principal_account(self) -> str | None:
        parts = self.principal.split(":")
        return parts[4] if self.principal.startswith("arn:") and len(parts) > 4 else None

    def full_context(self) -> dict[str, Any]:
        """The context with the keys AWS always sets for a principal (aws:PrincipalArn, aws:PrincipalAccount)."""
        context = dict(self.context)
        if self.principal.startswith("arn:"):
            context.setdefault("aws:PrincipalArn", self.principal)
            context.setdefault("aws:PrincipalAccount", self.principal_account)
        return context


def _principal_matches(principal: Any, request: Request) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        raise UnsupportedPolicy(f"principal {principal!r}")
    for kind, values in principal.items():
        for value in _as_list(values):
            if kind == "AWS":
                if value == "*" or value == request.principal:
                    return True
                account_root = re.fullmatch(r"arn:aws:iam::(\d{12}):root|(\d{12})", value)
                if account_root and (account_root.group(1) or account_root.group(2)) == request.principal_account:
                    return True
            elif kind == "Service":
                if request.principal == f"service:{value}":
                    return True
            else:
                raise UnsupportedPolicy(f"principal type {kind}")
    return False


def _statement_applies(statement: Mapping[str, Any], request: Request, *, resource_policy: bool) -> bool:
    if resource_policy:
        if "Principal" in statement:
            if not _principal_matches(statement["Principal"], request):
                return False
        elif "NotPrincipal" in statement:
            if _principal_matches(statement["NotPrincipal"], request):
                return False
        else:
            raise UnsupportedPolicy("a resource-policy statement without Principal or NotPrincipal")
    if "Action" in statement:
        if not any(_glob(a, request.action, ignore_case=True) for a in _as_list(statement["Action"])):
            return False
    elif any(_glob(a, request.action, ignore_case=True) for a in _as_list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(_glob(r, request.resource) for r in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(_glob(r, request.resource) for r in _as_list(statement["NotResource"])):
            return False
    elif not resource_policy:
        raise UnsupportedPolicy("an identity-policy statement without Resource")
    return condition_holds(statement.get("Condition", {}), request.full_context())


def _statements(policy: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not policy:
        return []
    return _as_list(policy.get("Statement", []))


def _effects(policy: Mapping[str, Any] | None, request: Request, *, resource_policy: bool) -> set[str]:
    return {s["Effect"] for s in _statements(policy) if _statement_applies(s, request, resource_policy=resource_policy)}


def evaluate(
    request: Request,
    *,
    identity_policies: Iterable[Mapping[str, Any]] = (),
    resource_policy: Mapping[str, Any] | None = None,
    resource_account: str = ACCOUNT,
    key_policy: bool = False,
) -> str:
    """ALLOW, EXPLICIT_DENY or IMPLICIT_DENY for one request (no SCPs, boundaries or session policies)."""
    identity = set()
    for policy in identity_policies:
        identity |= _effects(policy, request, resource_policy=False)
    resource = _effects(resource_policy, request, resource_policy=True)
    if "Deny" in identity or "Deny" in resource:
        return EXPLICIT_DENY
    resource_allows = "Allow" in resource
    identity_allows = "Allow" in identity
    if key_policy:
        # A key-policy statement naming the account root only enables IAM policies (it
        # delegates); one naming the principal itself allows on its own.
        applicable = [
            st for st in _statements(resource_policy)
            if st["Effect"] == "Allow" and _statement_applies(st, request, resource_policy=True)
        ]  # fmt: skip
        direct = any(not _principal_is_account(st.get("Principal"), request.principal_account) for st in applicable)
        delegated = any(_principal_is_account(st.get("Principal"), request.principal_account) for st in applicable)
        if request.principal_account not in (None, resource_account) and not identity_allows:
            return IMPLICIT_DENY
        return ALLOW if direct or (delegated and identity_allows) else IMPLICIT_DENY
    if request.principal_account not in (None, resource_account):
        return ALLOW if resource_allows and identity_allows else IMPLICIT_DENY
    return ALLOW if resource_allows or identity_allows else IMPLICIT_DENY


def _principal_is_account(principal: Any, account: str | None) -> bool:
    if not isinstance(principal, Mapping) or account is None:
        return False
    return any(value in (f"arn:aws:iam::{account}:root", account) for value in _as_list(principal.get("AWS", [])))


# --- CloudFormation -> concrete policies ---------------------------------------------------
class Resolver:
    """Resolves CloudFormation intrinsics in synthesized templates to stable fake values.

    A bucket's Ref is its BucketName (or its logical id); an ARN attribute is built from the
    logical id, e.g. a role `arn:aws:iam::111111111111:role/<LogicalId>`; Fn::ImportValue
    follows the export to the stack that defines it.
    """

    def __init__(self, templates: Mapping[str, Mapping[str, Any]]) -> None:
        self.templates = dict(templates)

    def template_of(self, suffix: str) -> Mapping[str, Any]:
        (found,) = [t for name, t in self.templates.items() if name.endswith(suffix)]
        return found

    def resolve(self, value: Any, template: Mapping[str, Any]) -> Any:
        if isinstance(value, list):
            return [self.resolve(v, template) for v in value]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((name, arg),) = value.items()
            if name == "Ref":
                return self._ref(arg, template)
            if name == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._attribute(logical, attribute, template)
            if name == "Fn::Join":
                separator, parts = arg
                return separator.join(str(p) for p in self.resolve(parts, template))
            if name == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1], template))
                return re.sub(
                    r"\$\{([^}]+)\}",
                    lambda m: (
                        str(variables[m.group(1)]) if m.group(1) in variables else self._sub_var(m.group(1), template)
                    ),
                    text,
                )
            if name == "Fn::ImportValue":
                return self._import(self.resolve(arg, template))
            if name == "Fn::Select":
                index, items = arg
                return self.resolve(items, template)[int(index)]
            if name.startswith("Fn::"):
                raise UnsupportedPolicy(f"intrinsic {name}")
        return {k: self.resolve(v, template) for k, v in value.items()}

    def _sub_var(self, name: str, template: Mapping[str, Any]) -> str:
        if "." in name:
            logical, attribute = name.split(".", 1)
            return str(self._attribute(logical, attribute, template))
        return str(self._ref(name, template))

    def _ref(self, logical: str, template: Mapping[str, Any]) -> str:
        pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if logical in pseudo:
            return pseudo[logical]
        resource = template["Resources"].get(logical)
        if resource is None:
            parameter = template.get("Parameters", {}).get(logical)
            if parameter is not None and "Default" in parameter:
                return str(parameter["Default"])
            raise UnsupportedPolicy(f"Ref to unknown {logical}")
        kind = resource["Type"]
        if kind == "AWS::S3::Bucket":
            name = resource.get("Properties", {}).get("BucketName")
            return str(self.resolve(name, template)) if name is not None else logical.lower()
        if kind == "AWS::EC2::VPCEndpoint":
            return f"vpce-{logical.lower()}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{logical}"
        return logical

    def _attribute(self, logical: str, attribute: str, template: Mapping[str, Any]) -> str:
        kind = template["Resources"][logical]["Type"]
        if attribute != "Arn":
            return f"{logical}.{attribute}"
        arns = {
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{logical}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{self._ref(logical, template)}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{logical}",
            "AWS::CloudTrail::Trail": f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{logical}",
        }
        return arns.get(kind, f"arn:aws:{kind.split('::')[1].lower()}:{REGION}:{ACCOUNT}:{logical}")

    def _import(self, export_name: str) -> Any:
        for template in self.templates.values():
            for output in template.get("Outputs", {}).values():
                export = output.get("Export")
                if export and self.resolve(export["Name"], template) == export_name:
                    return self.resolve(output["Value"], template)
        raise UnsupportedPolicy(f"no stack exports {export_name}")

    # --- the policies of one stack --------------------------------------------------------
    def bucket_policy(self, suffix: str, bucket_logical_id: str) -> dict[str, Any]:
        template = self.template_of(suffix)
        (policy,) = [
            r["Properties"]["PolicyDocument"]
            for r in template["Resources"].values()
            if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket_logical_id}
        ]
        return self.resolve(policy, template)

    def key_policy(self, suffix: str, key_logical_id: str) -> dict[str, Any]:
        template = self.template_of(suffix)
        return self.resolve(template["Resources"][key_logical_id]["Properties"]["KeyPolicy"], template)

    def role_policies(self, suffix: str, role_logical_id: str) -> list[dict[str, Any]]:
        """The identity policies of a role: inline, attached managed policies of the same template."""
        template = self.template_of(suffix)
        role = template["Resources"][role_logical_id]
        policies = [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
        for logical, resource in template["Resources"].items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": logical} in role["Properties"].get(
                "ManagedPolicyArns", []
            ):
                policies.append(properties["PolicyDocument"])
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {
                "Ref": role_logical_id
            } in properties.get("Roles", []):
                policies.append(properties["PolicyDocument"])
        return [self.resolve(p, template) for p in policies]

    def protected_bucket(self, suffix: str) -> tuple[str, str]:
        """The logical id and name of the one bucket of a stack tagged as holding Secrecy-Act data."""
        template = self.template_of(suffix)
        tag = {"Key": "kommunmoln:classification", "Value": "osl-protected"}
        (logical,) = [
            k for k, v in template["Resources"].items()
            if v["Type"] == "AWS::S3::Bucket" and tag in v.get("Properties", {}).get("Tags", [])
        ]  # fmt: skip
        return logical, str(self.resolve({"Ref": logical}, template))

    def s3_endpoint_id(self, network_suffix: str = "-network") -> str:
        """The id (as resolved here) of the network stack's S3 gateway endpoint."""
        network = self.template_of(network_suffix)
        (logical,) = [k for k, v in network["Resources"].items() if v["Type"] == "AWS::EC2::VPCEndpoint" and "S3" in k]
        return str(self.resolve({"Ref": logical}, network))

    def role_arn(self, role_logical_id: str) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{role_logical_id}"

    def role(self, suffix: str, path_part: str) -> tuple[str, list[dict[str, Any]]]:
        """The ARN and identity policies of the one role whose construct path contains `path_part`."""
        (logical,) = logical_ids(self.template_of(suffix), "AWS::IAM::Role", path_part)
        return self.role_arn(logical), self.role_policies(suffix, logical)


def logical_ids(template: Mapping[str, Any], resource_type: str, path_part: str) -> list[str]:
    """Logical ids of a type whose construct path contains `path_part` (ids derive from paths)."""
    prefix = "".join(ch for ch in path_part if ch.isalnum())
    return [k for k, v in template["Resources"].items() if v["Type"] == resource_type and prefix in k]


def deny_statements_matching(policy: Mapping[str, Any], sids: Sequence[str]) -> list[Mapping[str, Any]]:
    """The statements of `policy` with these Sids (for messages in failing scenarios)."""
    return [s for s in _statements(policy) if s.get("Sid") in sids]
