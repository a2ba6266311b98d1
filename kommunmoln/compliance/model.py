"""A read-only model of a synthesized cloud assembly: templates, regions, cross-stack exports.

The pack evaluates the templates CDK has written (validation plugins run after the cloud
assembly is built), so it sees exactly what CloudFormation will deploy, overrides and
aspects included, and works in plain Python without a jsii round trip per property.
Intrinsic functions are read, never evaluated: a reference names a resource, `Fn::Join`
and `Fn::Sub` flatten to strings with `${Ref}` placeholders.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT_PLACEHOLDER = "${AWS::AccountId}"
_UNKNOWN = ("unknown-account", "unknown-region")


@dataclass(frozen=True)
class ResourceRef:
    """A resource of the app: its stack (artifact id) and logical id."""

    stack: str
    logical_id: str


@dataclass
class StackModel:
    """One stack's template and environment (None where the environment is agnostic)."""

    artifact_id: str
    template: dict[str, Any]
    region: str | None
    account: str | None
    display_name: str = ""

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources = self.template.get("Resources")
        return resources if isinstance(resources, dict) else {}

    def resource(self, logical_id: str) -> dict[str, Any] | None:
        value = self.resources.get(logical_id)
        return value if isinstance(value, dict) else None

    def of_type(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.resources.items():
            if isinstance(resource, dict) and resource.get("Type") == resource_type:
                yield logical_id, resource


@dataclass
class AppModel:
    """All stacks of one cloud assembly, with the exports that join them."""

    stacks: dict[str, StackModel] = field(default_factory=dict)
    _exports: dict[str, tuple[str, Any]] | None = field(default=None, repr=False)

    @classmethod
    def from_outdir(cls, outdir: str | Path) -> AppModel:
        """Read `manifest.json` and every stack template of a cloud assembly directory."""
        outdir = Path(outdir)
        manifest = json.loads((outdir / "manifest.json").read_text())
        model = cls()
        for artifact_id, artifact in (manifest.get("artifacts") or {}).items():
            if artifact.get("type") != "aws:cloudformation:stack":
                continue
            template_file = (artifact.get("properties") or {}).get("templateFile")
            if not template_file or not (outdir / template_file).is_file():
                continue
            account, region = _parse_environment(artifact.get("environment", ""))
            model.add(
                StackModel(
                    artifact_id=artifact_id,
                    template=json.loads((outdir / template_file).read_text()),
                    region=region,
                    account=account,
                    display_name=artifact.get("displayName", artifact_id),
                )
            )
        return model

    def add(self, stack: StackModel) -> None:
        self.stacks[stack.artifact_id] = stack
        self._exports = None

    def resource(self, ref: ResourceRef) -> dict[str, Any] | None:
        stack = self.stacks.get(ref.stack)
        return stack.resource(ref.logical_id) if stack else None

    def all_of_type(self, resource_type: str) -> Iterator[tuple[ResourceRef, dict[str, Any]]]:
        for stack_id, stack in self.stacks.items():
            for logical_id, resource in stack.of_type(resource_type):
                yield ResourceRef(stack_id, logical_id), resource

    # --- references ------------------------------------------------------------------------
    @property
    def exports(self) -> dict[str, tuple[str, Any]]:
        """Export name -> (exporting stack, exported value expression)."""
        if self._exports is None:
            exports: dict[str, tuple[str, Any]] = {}
            for stack_id, stack in self.stacks.items():
                outputs = stack.template.get("Outputs")
                for output in (outputs or {}).values() if isinstance(outputs, dict) else ():
                    name = (output.get("Export") or {}).get("Name") if isinstance(output, dict) else None
                    if isinstance(name, str):
                        exports[name] = (stack_id, output.get("Value"))
            self._exports = exports
        return self._exports

    def target(self, stack_id: str, value: Any) -> ResourceRef | None:
        """The resource a value points at: `Ref`, `Fn::GetAtt` or an `Fn::ImportValue` of one."""
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and isinstance(arg, str) and not arg.startswith("AWS::"):
                return ResourceRef(stack_id, arg)
            if key == "Fn::GetAtt":
                name = arg[0] if isinstance(arg, list) and arg else arg.split(".")[0] if isinstance(arg, str) else None
                return ResourceRef(stack_id, name) if isinstance(name, str) else None
            if key == "Fn::ImportValue" and isinstance(arg, str) and arg in self.exports:
                exporting_stack, exported = self.exports[arg]
                return self.target(exporting_stack, exported)
        return None

    def references(self, stack_id: str, value: Any) -> set[ResourceRef]:
        """Every app resource a value mentions anywhere (Ref, GetAtt, Sub placeholders, imports)."""
        found: set[ResourceRef] = set()
        self._collect(stack_id, value, found, depth=0)
        return {ref for ref in found if self.resource(ref) is not None}

    def _collect(self, stack_id: str, value: Any, found: set[ResourceRef], depth: int) -> None:
        if depth > 50:
            return
        if isinstance(value, list):
            for item in value:
                self._collect(stack_id, item, found, depth + 1)
        elif isinstance(value, dict):
            ref = self.target(stack_id, value)
            if ref is not None:
                found.add(ref)
                return
            if len(value) == 1 and "Fn::Sub" in value:
                sub = value["Fn::Sub"]
                text = sub[0] if isinstance(sub, list) and sub else sub
                if isinstance(text, str):
                    for name in re.findall(r"\$\{([^}!]+)\}", text):
                        if not name.startswith("AWS::"):
                            found.add(ResourceRef(stack_id, name.split(".")[0]))
            for item in value.values():
                self._collect(stack_id, item, found, depth + 1)
        elif isinstance(value, str) and "${" in value:
            # A flattened string (see `flatten`) or a JSON document string.
            for name in re.findall(r"\$\{([^}!:.]+)(?:\.[^}]*)?\}", value):
                found.add(ResourceRef(stack_id, name))
            for name in re.findall(r"\$\{ImportValue!([^}]+)\}", value):
                ref = self.target(stack_id, {"Fn::ImportValue": name})
                if ref is not None:
                    found.add(ref)


def _parse_environment(environment: str) -> tuple[str | None, str | None]:
    match = re.fullmatch(r"aws://([^/]*)/(.*)", environment or "")
    if not match:
        return None, None
    account, region = match.groups()
    return (None if account in _UNKNOWN else account), (None if region in _UNKNOWN else region)


# --- Intrinsic helpers ---------------------------------------------------------------------
def flatten(value: Any, depth: int = 0) -> str | None:
    """A string expression as text: `Ref X` -> `${X}`, `GetAtt X.A` -> `${X.A}`, Join/Sub joined.

    Returns None for values that are not string expressions (lists, numbers, unknown shapes).
    """
    if depth > 50:
        return None
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((key, arg),) = value.items()
    if key == "Ref" and isinstance(arg, str):
        return "${" + arg + "}"
    if key == "Fn::GetAtt":
        if isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg):
            return "${" + f"{arg[0]}.{arg[1]}" + "}"
        if isinstance(arg, str):
            return "${" + arg + "}"
        return None
    if key == "Fn::ImportValue":
        name = flatten(arg, depth + 1)
        return None if name is None else "${ImportValue!" + name + "}"
    if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str):
        parts = arg[1]
        if not isinstance(parts, list):
            return None
        texts = [flatten(part, depth + 1) for part in parts]
        return None if any(t is None for t in texts) else arg[0].join(texts)  # type: ignore[arg-type]
    if key == "Fn::Sub":
        if isinstance(arg, str):
            return arg
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], dict):
            text = arg[0]
            for name, sub_value in arg[1].items():
                flat = flatten(sub_value, depth + 1)
                if flat is None:
                    return None
                text = text.replace("${" + name + "}", flat)
            return text
    return None


def truthy(value: Any) -> bool:
    """CloudFormation booleans arrive as JSON booleans or the strings 'true'/'false'."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def tags(resource: dict[str, Any]) -> dict[str, str]:
    """The literal tags of a resource (Properties.Tags as a list of Key/Value)."""
    raw = (resource.get("Properties") or {}).get("Tags")
    result: dict[str, str] = {}
    for tag in raw if isinstance(raw, list) else ():
        if isinstance(tag, dict) and isinstance(tag.get("Key"), str) and isinstance(tag.get("Value"), str):
            result[tag["Key"]] = tag["Value"]
    return result


def properties(resource: dict[str, Any] | None) -> dict[str, Any]:
    props = (resource or {}).get("Properties")
    return props if isinstance(props, dict) else {}


def policy_document(value: Any) -> dict[str, Any] | None:
    """A policy as a dict: an object, a JSON string, or a Join/Sub that flattens to JSON."""
    if isinstance(value, dict) and "Statement" in value:
        return value
    text = flatten(value)
    if text is None:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def statements(document: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not document:
        return []
    return [s for s in as_list(document.get("Statement")) if isinstance(s, dict)]
