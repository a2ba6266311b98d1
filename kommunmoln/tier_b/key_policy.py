"""Canonical comparison of KMS key policies: the template's policy against the live one.

KMS hands back a key policy as a JSON string (GetKeyPolicy, "A key policy document in JSON
format"), not necessarily byte for byte what PutKeyPolicy received. So the comparison is on
meaning-preserving canonical JSON: object keys sorted, no whitespace, a one-element list the
same as its single value, and lists of values or statements in sorted order (IAM treats
`"Action": "kms:Decrypt"` and `"Action": ["kms:Decrypt"]` alike and the order of values and
statements carries no meaning; IAM User Guide, "IAM JSON policy element reference").
Everything else (a changed principal, condition, action or Sid) is a difference.

Used by the provisioner (apply the template policy to an adopted key) and the tier B key
store monitor (alarm when the live policy drifts from the template's).
"""

from __future__ import annotations

import json
from typing import Any


class PolicyNotJson(ValueError):
    """The policy text is not a JSON policy document."""


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_normal(item) for item in value]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, separators=(",", ":")))
    return value


def _document(policy: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(policy, dict):
        return policy
    try:
        parsed = json.loads(policy)
    except (TypeError, ValueError) as err:
        raise PolicyNotJson(f"key policy is not JSON: {err}") from None
    if not isinstance(parsed, dict):
        raise PolicyNotJson("key policy is not a JSON object")
    return parsed


def canonical(policy: str | dict[str, Any]) -> str:
    """The canonical JSON text of a policy document (equal for equal meaning, see the module docstring)."""
    document = _normal(_document(policy))
    statements = document.get("Statement")
    if isinstance(statements, dict):  # a single statement object is a one-statement list
        document["Statement"] = [statements]
    elif statements is not None and not isinstance(statements, list):
        raise PolicyNotJson("key policy Statement must be a list or an object")
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def same_policy(expected: str | dict[str, Any], live: str | dict[str, Any]) -> bool:
    """Whether two policy documents are the same once canonical."""
    return canonical(expected) == canonical(live)


def _statements(policy: str | dict[str, Any]) -> dict[str, str]:
    document = json.loads(canonical(policy))
    statements = document.get("Statement", [])
    named: dict[str, str] = {}
    for statement in statements if isinstance(statements, list) else [statements]:
        text = json.dumps(statement, sort_keys=True, separators=(",", ":"))
        sid = statement.get("Sid") if isinstance(statement, dict) else None
        named[f"Sid {sid}" if sid else f"unnamed statement {text[:80]}"] = text
    return named


def differences(expected: str | dict[str, Any], live: str | dict[str, Any]) -> list[str]:
    """Human-readable differences, by statement Sid (empty when the policies are the same)."""
    if same_policy(expected, live):
        return []
    want, have = _statements(expected), _statements(live)
    found = [f"{name} missing" for name in sorted(want.keys() - have.keys())]
    found += [f"{name} added" for name in sorted(have.keys() - want.keys())]
    found += [f"{name} changed" for name in sorted(want.keys() & have.keys()) if want[name] != have[name]]
    return found or ["the policy's top-level elements differ (Version, Id)"]
