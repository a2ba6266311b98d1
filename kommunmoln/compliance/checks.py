"""The rules of the pack as plain functions over the synthesized templates (`AppModel`).

`Evaluator.evaluate(rule, ref)` returns an `Outcome`: COMPLIANT, NON_COMPLIANT (with the
failing sub-findings and a reason per failure) or NOT_APPLICABLE. It never raises on an
unexpected template shape: what it cannot read it reports as a failure with the reason,
because a protected resource that cannot be verified is not verified.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from kommunmoln import names
from kommunmoln.compliance.catalog import RULES_BY_NUMBER, Rule
from kommunmoln.compliance.model import (
    ACCOUNT_PLACEHOLDER,
    AppModel,
    ResourceRef,
    as_list,
    flatten,
    policy_document,
    properties,
    statements,
    tags,
    truthy,
)

COMPLIANT = "COMPLIANT"
NON_COMPLIANT = "NON_COMPLIANT"
NOT_APPLICABLE = "NOT_APPLICABLE"

BUCKET = "AWS::S3::Bucket"
BUCKET_POLICY = "AWS::S3::BucketPolicy"
KMS_KEY = "AWS::KMS::Key"
HSM_KEY = names.RESOURCE_KMS_HSM_KEY
XKS_KEY = names.RESOURCE_KMS_XKS_KEY  # tier C: Origin EXTERNAL_KEY_STORE, key material on the municipality's premises
TRAIL = "AWS::CloudTrail::Trail"
NOTIFICATIONS = "Custom::S3BucketNotifications"

_RETAIN_DELETION = ("Retain", "RetainExceptOnCreate")
_NEGATED_STRING_OPERATORS = {
    op + suffix
    for op in ("StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike")
    for suffix in ("", "IfExists")
}
_ACCOUNT_CONDITION_KEYS = {
    "aws:principalaccount",
    "aws:sourceaccount",
    "aws:sourceowner",
    "kms:calleraccount",
    "aws:principalarn",
    "aws:sourcearn",
}
_WILDCARD_ACTIONS = {"*", "kms:*"}


KEY_MATERIAL_ON_PREMISES = "on the municipality's premises (external key store)"
KEY_MATERIAL_CLOUDHSM = "in a CloudHSM cluster operated by AWS for the municipality"
KEY_MATERIAL_AWS = "in AWS (AWS KMS or S3)"


@dataclass(frozen=True)
class Options:
    """How the pack was configured."""

    allowed_regions: tuple[str, ...] = ("eu-north-1",)
    workshop_mode: bool = False
    # Ids of organisation policies (SCP/RCP) the configuration declares attached (rule 8).
    residency_guardrail_policy_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """The result of one rule on one resource."""

    status: str
    findings: tuple[str, ...] = ()  # failing sub-findings (rules with `Rule.findings`)
    reasons: tuple[str, ...] = ()  # what failed, one sentence each

    @classmethod
    def fail(cls, *reasons: str, findings: Iterable[str] = ()) -> Outcome:
        return cls(NON_COMPLIANT, tuple(findings), tuple(reasons))


PASS = Outcome(COMPLIANT)
SKIP = Outcome(NOT_APPLICABLE)


@dataclass
class Evaluator:
    """Evaluates the pack's rules on one cloud assembly."""

    model: AppModel
    options: Options = field(default_factory=Options)

    def evaluate(self, rule: Rule, ref: ResourceRef) -> Outcome:
        resource = self.model.resource(ref)
        if resource is None or resource.get("Type") not in rule.resource_types:
            return SKIP
        check: Callable[[ResourceRef, dict[str, Any]], Outcome] = getattr(self, f"_rule{rule.number}")
        try:
            return check(ref, resource)
        except Exception as error:  # a shape we did not foresee: never crash the synthesis
            return Outcome.fail(f"the rule could not read this resource ({type(error).__name__}: {error})")

    def message(self, rule: Rule, outcome: Outcome, ref: ResourceRef | None = None) -> str:
        """The one-paragraph finding text: rule, what failed, the fix hint."""
        failed = "; ".join(outcome.reasons) or "see the rule"
        where = f" ({ref.logical_id})" if ref is not None else ""
        return f"[{rule.rule_id}] {rule.title}. Failed{where}: {failed}. Fix: {rule.fix}."

    # --- shared facts --------------------------------------------------------------------
    def is_protected(self, resource: dict[str, Any] | None) -> bool:
        return tags(resource or {}).get(names.TAG_CLASSIFICATION) == names.CLASSIFICATION_PROTECTED

    @cached_property
    def protected_buckets(self) -> dict[ResourceRef, dict[str, Any]]:
        return {ref: res for ref, res in self.model.all_of_type(BUCKET) if self.is_protected(res)}

    @cached_property
    def strict_keys(self) -> set[ResourceRef]:
        """Keys of protected buckets (their default encryption key) and every HSM-backed key."""
        keys = {ref for ref, _ in self.model.all_of_type(HSM_KEY)} | {ref for ref, _ in self.model.all_of_type(XKS_KEY)}
        for ref, bucket in self.protected_buckets.items():
            for key_value in _default_encryption_keys(bucket):
                target = self.model.target(ref.stack, key_value)
                if target is not None and self.model.resource(target) is not None:
                    keys.add(target)
        return keys

    @cached_property
    def log_destinations(self) -> set[ResourceRef]:
        """Buckets that receive another bucket's server access logs (written by S3 itself)."""
        found = set()
        for ref, bucket in self.model.all_of_type(BUCKET):
            destination = (properties(bucket).get("LoggingConfiguration") or {}).get("DestinationBucketName")
            if destination is None:
                continue
            target = self.model.target(ref.stack, destination)
            if target is not None:
                found.add(target)
                continue
            for other_ref, _ in self.model.all_of_type(BUCKET):
                if self._mentions(ref.stack, destination, other_ref):
                    found.add(other_ref)
        return found

    def bucket_policies(self, bucket_ref: ResourceRef) -> list[tuple[ResourceRef, dict[str, Any]]]:
        bucket_name = properties(self.model.resource(bucket_ref)).get("BucketName")
        found = []
        for ref, policy in self.model.all_of_type(BUCKET_POLICY):
            target_value = properties(policy).get("Bucket")
            if self.model.target(ref.stack, target_value) == bucket_ref or (
                isinstance(bucket_name, str) and target_value == bucket_name
            ):
                found.append((ref, policy))
        return found

    def bucket_statements(self, bucket_ref: ResourceRef) -> list[tuple[str, dict[str, Any]]]:
        """(stack of the policy, statement) for every statement of the bucket's policies."""
        return [
            (ref.stack, stmt)
            for ref, policy in self.bucket_policies(bucket_ref)
            for stmt in statements(policy_document(properties(policy).get("PolicyDocument")))
        ]

    def _mentions(self, stack_id: str, value: Any, bucket_ref: ResourceRef) -> bool:
        if bucket_ref in self.model.references(stack_id, value):
            return True
        name = flatten(properties(self.model.resource(bucket_ref)).get("BucketName"))
        flat = flatten(value)
        if not name or flat is None:
            return False
        return flat == name or re.search(rf":::{re.escape(name)}(/|$)", flat) is not None

    # --- account helpers -----------------------------------------------------------------------
    def _account_of(self, stack_id: str) -> str | None:
        stack = self.model.stacks.get(stack_id)
        return stack.account if stack else None

    def _is_own_account_value(self, stack_id: str, flat: str | None) -> bool:
        """An account id or ARN that is this account's (placeholder or the configured literal)."""
        if flat is None:
            return False
        own = self._account_of(stack_id)
        text = _normalize(flat)
        if text == _OWN or (own is not None and text == own):
            return True
        match = re.match(r"^arn:[^:]*:[a-z0-9-]+:[^:]*:([^:]*):", text)
        if match:
            return match.group(1) == _OWN or (own is not None and match.group(1) == own)
        return False

    def _is_own_principal(self, stack_id: str, flat: str | None) -> bool:
        if flat is None or flat == "*":
            return False
        if self._is_own_account_value(stack_id, flat):
            return True
        # A reference to a resource of the app (a role's ARN) or an import from a stack of the app.
        if re.fullmatch(r"\$\{[^}!:.]+\.Arn\}|\$\{[^}!:.]+\}", flat):
            return bool(self.model.references(stack_id, flat))
        return bool(re.fullmatch(r"\$\{ImportValue![^}]+\}", flat))

    def _is_own_root(self, stack_id: str, flat: str | None) -> bool:
        if flat is None:
            return False
        if flat == ACCOUNT_PLACEHOLDER or flat == self._account_of(stack_id):
            return True
        match = re.fullmatch(r"arn:[^:]*:iam::([^:]+):root", _normalize(flat))
        return bool(match) and self._is_own_account_value(stack_id, match.group(1))

    def _condition_pins_account(self, stack_id: str, condition: Any) -> bool:
        """A positive condition whose values all name this account (caller, source or ARN)."""
        if not isinstance(condition, dict):
            return False
        for operator, pairs in condition.items():
            if not isinstance(pairs, dict) or "Not" in operator or operator.endswith("IfExists"):
                continue
            for key, values in pairs.items():
                flats = [flatten(v) for v in as_list(values)]
                if not flats or any(f is None for f in flats):
                    continue
                if key.lower() in _ACCOUNT_CONDITION_KEYS and all(
                    self._is_own_account_value(stack_id, f) for f in flats
                ):
                    return True
        return False

    def _condition_mentions_account(self, stack_id: str, condition: Any) -> bool:
        """Any positive condition value that names this account (for service principals)."""
        if self._condition_pins_account(stack_id, condition):
            return True
        if not isinstance(condition, dict):
            return False
        own = self._account_of(stack_id)
        for operator, pairs in condition.items():
            if not isinstance(pairs, dict) or "Not" in operator or operator.endswith("IfExists"):
                continue
            for values in pairs.values():
                for value in as_list(values):
                    flat = flatten(value) or ""
                    if ACCOUNT_PLACEHOLDER in flat or (own and own in flat):
                        return True
        return False

    def _external_principals(self, stack_id: str, stmt: dict[str, Any]) -> list[str]:
        """Why an Allow statement reaches beyond the account (empty: it does not)."""
        if stmt.get("Effect") != "Allow":
            return []
        sid = stmt.get("Sid", "(no Sid)")
        if "NotPrincipal" in stmt:
            return [f"statement {sid} allows NotPrincipal (everyone else)"]
        principal = stmt.get("Principal")
        entries: list[tuple[str, Any]] = []
        if principal == "*":
            entries.append(("AWS", "*"))
        elif isinstance(principal, dict):
            entries.extend((kind, value) for kind, values in principal.items() for value in as_list(values))
        else:
            return [f"statement {sid} has a principal the rule cannot read"]
        problems = []
        condition = stmt.get("Condition")
        for kind, value in entries:
            flat = flatten(value)
            if kind == "AWS" and flat == "*":
                if not self._condition_pins_account(stack_id, condition):
                    problems.append(f"statement {sid} allows principal * without an own-account condition")
            elif kind == "AWS":
                if not self._is_own_principal(stack_id, flat):
                    problems.append(f"statement {sid} allows {flat or value!r}, which is not this account")
            elif kind == "Service":
                if not self._condition_mentions_account(stack_id, condition):
                    problems.append(f"statement {sid} allows service {flat} without a condition naming this account")
            else:
                problems.append(f"statement {sid} allows a {kind} principal ({flat or value!r})")
        return problems

    # --- rule 1: residency -----------------------------------------------------------------
    def _rule1(self, ref: ResourceRef, resource: dict[str, Any]) -> Outcome:
        stack = self.model.stacks[ref.stack]
        reasons = []
        allowed = ", ".join(self.options.allowed_regions)
        if stack.region is None:
            reasons.append(
                f"stack {stack.display_name or ref.stack} is environment-agnostic (no resolved region), so its "
                f"data and keys could be deployed anywhere; allowed: {allowed}"
            )
        elif stack.region not in self.options.allowed_regions:
            reasons.append(f"stack {stack.display_name or ref.stack} is in {stack.region}, not in {allowed}")
        props = properties(resource)
        if resource.get("Type") == KMS_KEY and truthy(props.get("MultiRegion")):
            reasons.append("the key is multi-Region: replicas can be created in any region")
        for replica in as_list(props.get("Replicas")) if resource.get("Type") == "AWS::DynamoDB::GlobalTable" else []:
            region = replica.get("Region") if isinstance(replica, dict) else None
            if region not in self.options.allowed_regions:
                reasons.append(f"a table replica is in {region}, not in {allowed}")
        if resource.get("Type") == BUCKET and self.is_protected(resource):
            reasons += self.replication_problems(ref, resource)
        return Outcome.fail(*reasons) if reasons else PASS

    def replication_problems(self, ref: ResourceRef, bucket: dict[str, Any]) -> list[str]:
        """Every replication rule not `Disabled` must copy to a bucket provably in an allowed region.

        Fail closed: a destination is allowed only when it resolves to a bucket of this app (a Ref,
        GetAtt or import of one, or its literal BucketName) whose stack has an allowed region. An ARN
        of a bucket elsewhere names no region (S3 bucket ARNs carry none), so it fails; `make audit`
        reads the live destination with GetBucketLocation. Status is Enabled or Disabled
        (AWS::S3::Bucket ReplicationRule, CloudFormation reference); anything else counts as enabled.
        """
        config = properties(bucket).get("ReplicationConfiguration")
        if config is None:
            return []
        if not isinstance(config, dict) or not isinstance(config.get("Rules"), list):
            return ["the ReplicationConfiguration cannot be read, so its destinations are not shown to be allowed"]
        allowed = ", ".join(self.options.allowed_regions)
        problems = []
        for index, replication in enumerate(config["Rules"]):
            if isinstance(replication, dict) and replication.get("Status") == "Disabled":
                continue
            destination = (replication.get("Destination") or {}) if isinstance(replication, dict) else {}
            value = destination.get("Bucket") if isinstance(destination, dict) else None
            region = self._bucket_region(ref.stack, value)
            if region in self.options.allowed_regions:
                continue
            name = (replication.get("Id") if isinstance(replication, dict) else None) or f"#{index + 1}"
            where = f"in {region}" if region else "not resolvable to a region from the templates"
            problems.append(
                f"replication rule {name} copies objects to {flatten(value) or value!r}, which is {where}; "
                f"allowed: {allowed}"
            )
        return problems

    def _bucket_region(self, stack_id: str, value: Any) -> str | None:
        """The region of the app's bucket a value names (a reference or its literal ARN/name), else None."""
        target = self.model.target(stack_id, value)
        if target is None:
            flat = flatten(value)
            name = flat.removeprefix("arn:aws:s3:::") if isinstance(flat, str) else None
            target = next(
                (r for r, b in self.model.all_of_type(BUCKET) if name and properties(b).get("BucketName") == name),
                None,
            )
        resource = self.model.resource(target) if target else None
        if target is None or resource is None or resource.get("Type") != BUCKET:
            return None
        return self.model.stacks[target.stack].region

    # --- rule 2: tier A or tier B ----------------------------------------------------------------
    def _rule2(self, ref: ResourceRef, bucket: dict[str, Any]) -> Outcome:
        # A server access log bucket is written by S3 itself, which supports only SSE-S3 there: it
        # holds request metadata (names, sizes, times) that S3 sees in both tiers anyway.
        if not self.is_protected(bucket) or ref in self.log_destinations:
            return SKIP
        tier = tags(bucket).get(names.TAG_TIER)
        if tier == names.TIER_A:
            problems = self.tier_a_problems(ref, bucket)
            return Outcome.fail(*(f"tier A: {p}" for p in problems)) if problems else PASS
        if tier == names.TIER_B:
            problems = self.tier_b_problems(ref, bucket)
            return Outcome.fail(*(f"tier B: {p}" for p in problems)) if problems else PASS
        if tier == names.TIER_C:
            problems = self.tier_c_problems(ref, bucket)
            return Outcome.fail(*(f"tier C: {p}" for p in problems)) if problems else PASS
        if tier is not None:
            return Outcome.fail(
                f"tag {names.TAG_TIER}={tier!r} is none of {names.TIER_A}, {names.TIER_B}, {names.TIER_C}"
            )
        tier_a, tier_b = self.tier_a_problems(ref, bucket), self.tier_b_problems(ref, bucket)
        if not tier_a or not tier_b:
            return PASS
        return Outcome.fail(
            "the bucket is tagged protected but is neither tier A ("
            + "; ".join(tier_a)
            + ") nor tier B ("
            + "; ".join(tier_b)
            + ")"
        )

    def tier_a_problems(self, ref: ResourceRef, bucket: dict[str, Any]) -> list[str]:
        problems = []
        if not any(self._denies_untagged_put(stack_id, stmt, ref) for stack_id, stmt in self.bucket_statements(ref)):
            problems.append(
                "no bucket policy statement denies s3:PutObject to * without the object tag "
                f"s3:RequestObjectTag/{names.OBJECT_TAG_ENCRYPTION}"
            )
        if not self._has_validator(ref, bucket):
            problems.append("no validator: no s3:ObjectCreated notification to a Lambda function")
        return problems

    def _denies_untagged_put(self, stack_id: str, stmt: dict[str, Any], bucket_ref: ResourceRef) -> bool:
        if stmt.get("Effect") != "Deny" or not _is_everyone(stmt.get("Principal")):
            return False
        actions = [a.lower() for a in as_list(stmt.get("Action")) if isinstance(a, str)]
        if not any(fnmatch.fnmatchcase("s3:putobject", action) for action in actions):
            return False
        resources = as_list(stmt.get("Resource"))
        if not any(r == "*" or self._mentions(stack_id, r, bucket_ref) for r in resources):
            return False
        tag_key = f"s3:requestobjecttag/{names.OBJECT_TAG_ENCRYPTION}".lower()
        condition = stmt.get("Condition")
        for operator, pairs in condition.items() if isinstance(condition, dict) else ():
            for key, value in pairs.items() if isinstance(pairs, dict) else ():
                if key.lower() != tag_key:
                    continue
                if operator in _NEGATED_STRING_OPERATORS or (operator == "Null" and truthy(value)):
                    return True
        return False

    def _has_validator(self, ref: ResourceRef, bucket: dict[str, Any]) -> bool:
        own = properties(bucket).get("NotificationConfiguration") or {}
        for config in as_list(own.get("LambdaConfigurations")):
            if isinstance(config, dict) and str(config.get("Event", "")).startswith("s3:ObjectCreated"):
                return True
        eventbridge = truthy((own.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled"))
        for notif_ref, notif in self.model.all_of_type(NOTIFICATIONS):
            props = properties(notif)
            if self.model.target(notif_ref.stack, props.get("BucketName")) != ref:
                continue
            configuration = props.get("NotificationConfiguration") or {}
            for config in as_list(configuration.get("LambdaFunctionConfigurations")):
                events = as_list(config.get("Events")) if isinstance(config, dict) else []
                if any(str(e).startswith("s3:ObjectCreated") for e in events) and config.get("LambdaFunctionArn"):
                    return True
            eventbridge = eventbridge or "EventBridgeConfiguration" in configuration
        return eventbridge and self._eventbridge_validator(ref)

    def _eventbridge_validator(self, bucket_ref: ResourceRef) -> bool:
        for rule_ref, rule in self.model.all_of_type("AWS::Events::Rule"):
            props = properties(rule)
            if not self._mentions(rule_ref.stack, props.get("EventPattern"), bucket_ref):
                continue
            for target in as_list(props.get("Targets")):
                arn = target.get("Arn") if isinstance(target, dict) else None
                hit = self.model.target(rule_ref.stack, arn)
                if hit is not None and (self.model.resource(hit) or {}).get("Type") == "AWS::Lambda::Function":
                    return True
        return False

    def tier_b_problems(self, ref: ResourceRef, bucket: dict[str, Any]) -> list[str]:
        encryption = properties(bucket).get("BucketEncryption") or {}
        configs = [c for c in as_list(encryption.get("ServerSideEncryptionConfiguration")) if isinstance(c, dict)]
        if not configs:
            return ["no default encryption (S3 applies SSE-S3, whose key AWS alone holds)"]
        problems = []
        for config in configs:
            default = config.get("ServerSideEncryptionByDefault") or {}
            algorithm = default.get("SSEAlgorithm")
            if algorithm == "AES256":
                problems.append("SSE-S3 (AES256) encryption, whose key AWS alone holds")
            elif algorithm in ("aws:kms", "aws:kms:dsse"):
                problem = self._key_origin_problem(ref.stack, default.get("KMSMasterKeyID"))
                if problem:
                    problems.append(problem)
            else:
                problems.append(f"default encryption {algorithm!r} is not SSE-KMS")
        return problems

    def tier_c_problems(self, ref: ResourceRef, bucket: dict[str, Any]) -> list[str]:
        """Tier C ("tier B+"): tier B's server-side rule, and every default key is in an external key store."""
        problems = self.tier_b_problems(ref, bucket)
        if not problems and self.key_material_location(ref, bucket) != KEY_MATERIAL_ON_PREMISES:
            problems.append(
                f"the default encryption key is not a {XKS_KEY} (Origin EXTERNAL_KEY_STORE): its key material is in AWS"
            )
        return problems

    def key_material_location(self, ref: ResourceRef, bucket: dict[str, Any]) -> str:
        """A fact for the assessment: where the bucket's key material lives, as far as the template shows it.

        KEY_MATERIAL_ON_PREMISES: every default key is an external-key-store key (tier C: KMS never holds the key;
        each use is a request to the municipality's proxy and HSM). KEY_MATERIAL_CLOUDHSM: CloudHSM keys (tier B).
        KEY_MATERIAL_AWS: anything else (AWS KMS, SSE-S3, or a key the template cannot show).
        """
        kinds = set()
        for key_value in _default_encryption_keys(bucket):
            target = self.model.target(ref.stack, key_value)
            key = self.model.resource(target) if target else None
            key_type = (key or {}).get("Type")
            external = key_type == XKS_KEY and bool(properties(key).get("XksKeyId"))
            kinds.add(
                KEY_MATERIAL_ON_PREMISES
                if external
                else KEY_MATERIAL_CLOUDHSM
                if key_type == HSM_KEY
                else KEY_MATERIAL_AWS
            )
        return kinds.pop() if len(kinds) == 1 else KEY_MATERIAL_AWS

    def _key_origin_problem(self, stack_id: str, key_value: Any) -> str | None:
        if key_value is None:
            return "SSE-KMS with the AWS managed key aws/s3 (origin AWS_KMS)"
        target = self.model.target(stack_id, key_value)
        key = self.model.resource(target) if target else None
        if key is None:
            shown = flatten(key_value) or repr(key_value)
            return (
                f"the key {shown} is not a resource of this app, so the template cannot show that its origin is "
                "AWS_CLOUDHSM or EXTERNAL_KEY_STORE"
            )
        key_type = key.get("Type")
        if properties(key).get("Origin") == "EXTERNAL_KEY_STORE":
            return None  # key material in the municipality's external key store (tier C, XKS)
        if key_type == XKS_KEY and not properties(key).get("XksKeyId"):
            return f"the {XKS_KEY} {target.logical_id} has no XksKeyId (the external key it uses)"
        if key_type in (HSM_KEY, XKS_KEY):
            store = properties(key).get("CustomKeyStoreId")
            if store in (None, "") or (isinstance(store, str) and not store.strip()):
                return f"the {HSM_KEY} {target.logical_id} has no CustomKeyStoreId"
            return None
        if key_type == KMS_KEY:
            origin = properties(key).get("Origin", "AWS_KMS")
            return (
                f"the key {target.logical_id} is an AWS::KMS::Key of origin {origin}: its material is held and used "
                "by AWS KMS (EXTERNAL means imported material, still held by AWS KMS); CloudFormation cannot create "
                f"a key in a custom key store, use the {HSM_KEY} custom resource"
            )
        return f"the key reference points at {target.logical_id} of type {key_type}, not a KMS key"

    def tier_facts(self, ref: ResourceRef, bucket: dict[str, Any]) -> dict[str, str]:
        """Facts on a protected bucket's tier for the evidence report (what it meets and does not meet)."""
        if self.is_client_side(ref, bucket):
            return {"tier": "A", "key material": "municipality only (client-side)", "no-disclosure rules": "met"}
        location = self.key_material_location(ref, bucket)
        tier = {KEY_MATERIAL_ON_PREMISES: "B+ (tier C)", KEY_MATERIAL_CLOUDHSM: "B"}.get(location, "none")
        return {
            "tier": tier,
            "key material": location,
            # S3 receives the plaintext object and KMS the plaintext data key while it processes a request, in
            # tier C too: the provider can read the data then, so "the provider cannot read it" is not met.
            "no-disclosure rules": "not met: S3 sees plaintext while it processes each request",
        }

    def is_client_side(self, ref: ResourceRef, bucket: dict[str, Any]) -> bool:
        """The bucket meets tier A: only client-side encrypted objects, so S3 never sees plaintext."""
        return self.is_protected(bucket) and not self.tier_a_problems(ref, bucket)

    # --- rule 8: residency guardrails (app-wide) ---------------------------------------------
    def residency_guardrails(self) -> tuple[Outcome, str]:
        """(outcome, where): an organisation policy in the app denying what rule 8 names, or declared ids."""
        from kommunmoln.compliance.guardrails import CROSS_REGION_COPY_ACTIONS, gaps

        incomplete = []
        for ref, policy in self.model.all_of_type("AWS::Organizations::Policy"):
            props = properties(policy)
            if props.get("Type") not in ("SERVICE_CONTROL_POLICY", "RESOURCE_CONTROL_POLICY"):
                continue
            missing = gaps(policy_document(props.get("Content")), self.options.allowed_regions)
            if not missing:
                return Outcome(
                    COMPLIANT, reasons=(f"policy {ref.logical_id} in the app",)
                ), f"{ref.stack}/{ref.logical_id}"
            incomplete.append(f"policy {ref.logical_id}: {'; '.join(missing)}")
        declared = self.options.residency_guardrail_policy_ids
        if declared:
            reason = (
                f"declared in residency_guardrail_policy_ids: {', '.join(declared)} (attached by the organisation; "
                "not verified from the templates)"
            )
            return Outcome(COMPLIANT, reasons=(reason,)), "organisation: " + ", ".join(declared)
        reasons = incomplete or [
            "no organisation policy (SCP/RCP) in the app and none declared: cross-region copies ("
            f"{', '.join(CROSS_REGION_COPY_ACTIONS)}) and requests outside "
            f"{', '.join(self.options.allowed_regions)} are not prevented"
        ]
        return Outcome.fail(*reasons), "organisation (no policy)"

    # --- rule 3: bucket hardening ------------------------------------------------------------
    def _rule3(self, ref: ResourceRef, bucket: dict[str, Any]) -> Outcome:
        if not self.is_protected(bucket):
            return SKIP
        props = properties(bucket)
        failed: dict[str, str] = {}
        if not any(_denies_insecure_transport(stmt) for _, stmt in self.bucket_statements(ref)):
            failed["TLS"] = "no bucket policy statement denies s3:* when aws:SecureTransport is false"
        block = props.get("PublicAccessBlockConfiguration") or {}
        missing = [
            k
            for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
            if not truthy(block.get(k))
        ]
        if missing:
            failed["PublicAccessBlock"] = f"Block Public Access is not on for {', '.join(missing)}"
        if (props.get("VersioningConfiguration") or {}).get("Status") != "Enabled":
            failed["Versioning"] = "versioning is not enabled"
        if not _keeps_versions(bucket):
            failed["Retention"] = (
                "overwritten and deleted versions are not kept: a lifecycle rule expires them without a gallring "
                f"decision ({names.TAG_GALLRING_DECISION} tag) and there is no Object Lock default retention"
            )
        if (
            not (props.get("LoggingConfiguration") or {}).get("DestinationBucketName")
            and ref not in self.log_destinations
        ):
            failed["AccessLogging"] = "server access logging is off"
        if not failed:
            return PASS
        return Outcome.fail(*failed.values(), findings=failed.keys())

    # --- rule 4: no external principals ------------------------------------------------------
    def _rule4(self, ref: ResourceRef, resource: dict[str, Any]) -> Outcome:
        props = properties(resource)
        if resource.get("Type") == BUCKET_POLICY:
            bucket_ref = self.model.target(ref.stack, props.get("Bucket"))
            if bucket_ref not in self.protected_buckets:
                return SKIP
            document = policy_document(props.get("PolicyDocument"))
        else:
            if ref not in self.strict_keys:
                return SKIP
            if "KeyPolicy" not in props:
                return PASS  # the KMS default key policy names only the account root
            document = policy_document(props.get("KeyPolicy"))
        if document is None:
            return Outcome.fail("the policy document cannot be read from the template")
        problems = [p for stmt in statements(document) for p in self._external_principals(ref.stack, stmt)]
        return Outcome.fail(*problems) if problems else PASS

    # --- rule 5: no wildcard key actions --------------------------------------------------------
    def _rule5(self, ref: ResourceRef, key: dict[str, Any]) -> Outcome:
        props = properties(key)
        strict = ref in self.strict_keys
        if "KeyPolicy" not in props:
            if strict:
                return Outcome.fail("no key policy: the KMS default policy gives kms:* to the account root")
            return PASS
        document = policy_document(props.get("KeyPolicy"))
        if document is None:
            return Outcome.fail("the key policy cannot be read from the template")
        problems = []
        for stmt in statements(document):
            if stmt.get("Effect") != "Allow":
                continue
            sid = stmt.get("Sid", "(no Sid)")
            if "NotAction" in stmt:
                problems.append(f"statement {sid} allows NotAction (every other action)")
                continue
            wildcards = [
                a for a in as_list(stmt.get("Action")) if isinstance(a, str) and a.lower() in _WILDCARD_ACTIONS
            ]
            if not wildcards:
                continue
            if strict:
                problems.append(
                    f"statement {sid} grants {', '.join(wildcards)} on a key of protected data (name the actions)"
                )
                continue
            principal = stmt.get("Principal")
            values = (
                [flatten(v) for v in as_list(principal.get("AWS"))]
                if isinstance(principal, dict) and set(principal) == {"AWS"}
                else [None]
            )
            if not all(self._is_own_root(ref.stack, v) for v in values):
                problems.append(
                    f"statement {sid} grants {', '.join(wildcards)} to a principal other than the account root"
                )
        return Outcome.fail(*problems) if problems else PASS

    # --- rule 9: expiry only by gallring decision ----------------------------------------------
    def _rule9(self, ref: ResourceRef, resource: dict[str, Any]) -> Outcome:
        expiry = _expiry(resource)
        if not expiry:
            return Outcome(COMPLIANT, reasons=("keeps its records (no expiry)",))
        decision = tags(resource).get(names.TAG_GALLRING_DECISION, "").strip()
        if not decision:
            return Outcome.fail(f"{expiry} without a gallring decision (tag {names.TAG_GALLRING_DECISION})")
        return Outcome(COMPLIANT, reasons=(f"{expiry} under gallring decision {decision!r}",))

    # --- rule 6: deletion protection -----------------------------------------------------------
    def _rule6(self, ref: ResourceRef, resource: dict[str, Any]) -> Outcome:
        if self.options.workshop_mode:
            return SKIP
        reasons = []
        deletion = resource.get("DeletionPolicy", "Delete")
        if deletion not in _RETAIN_DELETION:
            reasons.append(f"DeletionPolicy is {deletion}")
        replace = resource.get("UpdateReplacePolicy", "Delete")
        if replace != "Retain":
            reasons.append(f"UpdateReplacePolicy is {replace}")
        if resource.get("Type") in (KMS_KEY, HSM_KEY, XKS_KEY):
            window = properties(resource).get("PendingWindowInDays")
            if window is not None and str(window) != "30":
                reasons.append(f"PendingWindowInDays is {window}, not 30")
        return Outcome.fail(*reasons) if reasons else PASS

    # --- rule 7: logging ---------------------------------------------------------------------
    def _rule7(self, ref: ResourceRef, bucket: dict[str, Any]) -> Outcome:
        if not self.is_protected(bucket):
            return SKIP
        if tags(bucket).get(names.TAG_ORGANIZATION_TRAIL) == names.ORGANIZATION_TRAIL_TRUE:
            return PASS
        data_logged = kms_logged = False
        for trail_ref, trail in self.model.all_of_type(TRAIL):
            data, kms = self._trail_logs(trail_ref, trail, ref)
            data_logged, kms_logged = data_logged or data, kms_logged or kms
        reasons = []
        if not data_logged:
            reasons.append("no CloudTrail trail of the app logs S3 data events (read and write) for this bucket")
        if not kms_logged:
            reasons.append("no CloudTrail trail of the app logs KMS management events (key use)")
        return Outcome.fail(*reasons) if reasons else PASS

    def _trail_logs(self, trail_ref: ResourceRef, trail: dict[str, Any], bucket_ref: ResourceRef) -> tuple[bool, bool]:
        """(logs S3 data events of the bucket, logs KMS events) for one trail."""
        props = properties(trail)
        if not truthy(props.get("IsLogging")):
            return False, False
        advanced = [s for s in as_list(props.get("AdvancedEventSelectors")) if isinstance(s, dict)]
        if advanced:
            return self._advanced_selectors_log(trail_ref, advanced, bucket_ref)
        selectors = [s for s in as_list(props.get("EventSelectors")) if isinstance(s, dict)]
        if not selectors:
            return False, True  # management events only (the default)
        data = kms = False
        for selector in selectors:
            all_events = selector.get("ReadWriteType", "All") == "All"
            if all_events and selector.get("IncludeManagementEvents", True) is not False:
                excluded = [str(s) for s in as_list(selector.get("ExcludeManagementEventSources"))]
                kms = kms or "kms.amazonaws.com" not in excluded
            for data_resource in as_list(selector.get("DataResources")):
                if not isinstance(data_resource, dict) or data_resource.get("Type") != "AWS::S3::Object":
                    continue
                if all_events and any(
                    self._arn_covers(trail_ref.stack, v, bucket_ref) for v in as_list(data_resource.get("Values"))
                ):
                    data = True
        return data, kms

    def _advanced_selectors_log(
        self, trail_ref: ResourceRef, selectors: list[dict[str, Any]], bucket_ref: ResourceRef
    ) -> tuple[bool, bool]:
        data = kms = False
        for selector in selectors:
            fields = {f.get("Field"): f for f in as_list(selector.get("FieldSelectors")) if isinstance(f, dict)}
            category = as_list((fields.get("eventCategory") or {}).get("Equals"))
            if "readOnly" in fields:
                continue  # only reads or only writes: not every access
            if "Management" in category:
                source = fields.get("eventSource") or {}
                equals = as_list(source.get("Equals"))
                if "kms.amazonaws.com" not in as_list(source.get("NotEquals")) and (
                    not equals or "kms.amazonaws.com" in equals
                ):
                    kms = True
            if "Data" in category and "AWS::S3::Object" in as_list((fields.get("resources.type") or {}).get("Equals")):
                arn = fields.get("resources.ARN")
                if arn is None:
                    data = True
                    continue
                excluded = any(
                    self._arn_covers(trail_ref.stack, v, bucket_ref)
                    for op in ("NotStartsWith", "NotEquals")
                    for v in as_list(arn.get(op))
                )
                included = any(
                    self._arn_covers(trail_ref.stack, v, bucket_ref)
                    for op in ("StartsWith", "Equals")
                    for v in as_list(arn.get(op))
                ) or not any(op in arn for op in ("StartsWith", "Equals"))
                data = data or (included and not excluded)
        return data, kms

    def _arn_covers(self, stack_id: str, value: Any, bucket_ref: ResourceRef) -> bool:
        flat = (flatten(value) or "").replace("${AWS::Partition}", "aws")
        if re.fullmatch(r"arn:aws[a-z-]*:s3(:::)?\*?", flat):
            return True  # every bucket of the account
        return self._mentions(stack_id, value, bucket_ref)


# --- module helpers ------------------------------------------------------------------------
_OWN = "OWN-ACCOUNT"


def _normalize(flat: str) -> str:
    """Pseudo-parameter placeholders without colons, so that ARNs split on ':' cleanly."""
    return (
        flat.replace(ACCOUNT_PLACEHOLDER, _OWN)
        .replace("${AWS::Partition}", "aws")
        .replace("${AWS::Region}", "region")
        .replace("${AWS::URLSuffix}", "amazonaws.com")
    )


def _is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, dict) and "*" in as_list(principal.get("AWS"))


def _denies_insecure_transport(stmt: dict[str, Any]) -> bool:
    if stmt.get("Effect") != "Deny" or not _is_everyone(stmt.get("Principal")):
        return False
    actions = [a.lower() for a in as_list(stmt.get("Action")) if isinstance(a, str)]
    if not any(a in ("*", "s3:*") for a in actions):
        return False
    condition = stmt.get("Condition") or {}
    for operator in ("Bool", "BoolIfExists"):
        value = (condition.get(operator) or {}).get("aws:SecureTransport")
        if value is False or (isinstance(value, str) and value.lower() == "false"):
            return True
    return False


def _keeps_versions(bucket: dict[str, Any]) -> bool:
    """Noncurrent versions are kept: Object Lock retention, no expiry of them, or expiry by a gallring decision."""
    props = properties(bucket)
    if (props.get("VersioningConfiguration") or {}).get("Status") != "Enabled":
        return False  # an overwrite or delete destroys the only version
    lock = props.get("ObjectLockConfiguration") or {}
    if truthy(props.get("ObjectLockEnabled")) and ((lock.get("Rule") or {}).get("DefaultRetention")):
        return True
    expires = any(
        (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")
        or rule.get("NoncurrentVersionExpirationInDays")
        for rule in _enabled_lifecycle_rules(props)
    )
    return not expires or bool(tags(bucket).get(names.TAG_GALLRING_DECISION, "").strip())


def _enabled_lifecycle_rules(props: dict[str, Any]) -> list[dict[str, Any]]:
    rules = as_list((props.get("LifecycleConfiguration") or {}).get("Rules"))
    return [r for r in rules if isinstance(r, dict) and r.get("Status") == "Enabled"]


def _expiry(resource: dict[str, Any]) -> str:
    """What the resource destroys on a schedule ("" for nothing): the words of a finding."""
    props = properties(resource)
    if resource.get("Type") == "AWS::Logs::LogGroup":
        days = props.get("RetentionInDays")
        return f"log events expire after {days} days" if days is not None else ""
    found = []
    for rule in _enabled_lifecycle_rules(props):
        if (rule.get("ExpirationInDays") or rule.get("ExpirationDate")) and "objects" not in found:
            found.append("objects")
        noncurrent = (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays") or rule.get(
            "NoncurrentVersionExpirationInDays"
        )
        if noncurrent and "noncurrent versions" not in found:
            found.append("noncurrent versions")
    return f"a lifecycle rule expires {' and '.join(found)}" if found else ""


def _default_encryption_keys(bucket: dict[str, Any]) -> list[Any]:
    encryption = properties(bucket).get("BucketEncryption") or {}
    keys = []
    for config in as_list(encryption.get("ServerSideEncryptionConfiguration")):
        default = (config or {}).get("ServerSideEncryptionByDefault") if isinstance(config, dict) else None
        if isinstance(default, dict) and default.get("KMSMasterKeyID") is not None:
            keys.append(default["KMSMasterKeyID"])
    return keys


def rule(number: int) -> Rule:
    return RULES_BY_NUMBER[number]
