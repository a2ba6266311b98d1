"""`SwedishPublicSectorChecks`: the cdk-nag 3.x rule pack for OSL-protected storage.

Add it to any CDK app beside the built-in packs, in one line:

    cdk.Validations.of(app).add_plugins(SwedishPublicSectorChecks(allowed_regions=("eu-north-1",)))

Findings have ids `KommunmolnOSL-<n>` (rule 3 per control: `KommunmolnOSL-3[Versioning]`)
and are acknowledged on the one resource they concern as `KommunmolnOSL::KommunmolnOSL-<n>`.

How it works: CDK runs validation plugins after it has written the cloud assembly, and
cdk-nag then calls `_check_resource` for every CfnResource. The pack reads the written
templates once per synthesis (`AppModel`) and evaluates each rule in Python
(`kommunmoln.compliance.checks`), so tokens are already resolved to the CloudFormation
that will be deployed, and cross-stack references are followed through exports. Only
failures cross back to cdk-nag, which applies acknowledgments and reports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aws_cdk as cdk
import cdk_nag
import jsii
from constructs import IConstruct

from kommunmoln.compliance.catalog import PACK_NAME, RULES, Rule, rules_for_type
from kommunmoln.compliance.checks import NON_COMPLIANT, Evaluator, Options, Outcome
from kommunmoln.compliance.model import AppModel, ResourceRef, StackModel
from kommunmoln.config import EU_REGIONS


@jsii.implements(cdk_nag.IApplyRule)
class _Finding:
    """One evaluated rule on one resource, in the shape cdk-nag's `applyRule` reads.

    jsii reads these members from JavaScript, so they must be properties, not attributes.
    """

    def __init__(self, node: cdk.CfnResource, rule: Rule, outcome: Outcome, info: str) -> None:
        self._node = node
        self._rule = rule
        self._outcome = outcome
        self._info = info

    @property
    def node(self) -> cdk.CfnResource:
        return self._node

    @property
    def rule_suffix_override(self) -> str:
        return self._rule.suffix

    @property
    def info(self) -> str:
        return self._info

    @property
    def explanation(self) -> str:
        return self._rule.explanation

    @property
    def level(self) -> cdk_nag.NagMessageLevel:
        return cdk_nag.NagMessageLevel.ERROR

    def rule(self, node: cdk.CfnResource) -> cdk_nag.NagRuleCompliance | list[str]:
        if self._outcome.findings:
            return list(self._outcome.findings)
        if self._outcome.status == NON_COMPLIANT:
            return cdk_nag.NagRuleCompliance.NON_COMPLIANT
        return cdk_nag.NagRuleCompliance.COMPLIANT


class SwedishPublicSectorChecks(cdk_nag.NagPack):
    """Checks for storing information under the Swedish Secrecy Act (OSL) in Amazon S3.

    Args:
        scope: optional, as for the built-in packs (only used with
            write_suppressions_to_cloud_formation).
        allowed_regions: the EU regions data and keys may live in (default eu-north-1).
        workshop_mode: when True, deletion protection (rule 6) is not checked.
        verbose: include each rule's rationale in the findings.
    """

    def __init__(
        self,
        scope: IConstruct | None = None,
        *,
        allowed_regions: Sequence[str] = ("eu-north-1",),
        workshop_mode: bool = False,
        verbose: bool | None = None,
        write_suppressions_to_cloud_formation: bool | None = None,
    ) -> None:
        regions = tuple(allowed_regions)
        outside = [r for r in regions if r not in EU_REGIONS]
        if not regions or outside:
            raise ValueError(f"allowed_regions must be EU regions from {', '.join(EU_REGIONS)}; got {list(regions)}")
        super().__init__(
            scope, verbose=verbose, write_suppressions_to_cloud_formation=write_suppressions_to_cloud_formation
        )
        self._pack_name = PACK_NAME
        self._options = Options(allowed_regions=regions, workshop_mode=workshop_mode)
        self._evaluators: dict[str, tuple[int, Evaluator]] = {}

    @property
    def name(self) -> str:
        return PACK_NAME

    @property
    def rule_ids(self) -> list[str]:
        return [rule.rule_id for rule in RULES]

    @property
    def options(self) -> Options:
        return self._options

    def _check_resource(self, node: cdk.CfnResource) -> None:
        rules = rules_for_type(node.cfn_resource_type)
        if not rules:
            return
        try:
            evaluator, ref = self._locate(node)
        except Exception as error:  # never break synthesis: report the resource as unverifiable
            for rule in rules:
                outcome = Outcome.fail(f"the synthesized template of this resource could not be read ({error})")
                self._apply_rule(_Finding(node, rule, outcome, _message(rule, outcome)))
            return
        for rule in rules:
            outcome = evaluator.evaluate(rule, ref)
            if outcome.status == NON_COMPLIANT:
                self._apply_rule(_Finding(node, rule, outcome, evaluator.message(rule, outcome, ref)))

    def _locate(self, node: cdk.CfnResource) -> tuple[Evaluator, ResourceRef]:
        stack = cdk.Stack.of(node)
        outdir = Path(cdk.Stage.of(stack).outdir)
        manifest = outdir / "manifest.json"
        stamp = manifest.stat().st_mtime_ns
        cached = self._evaluators.get(str(outdir))
        if cached is None or cached[0] != stamp:
            cached = (stamp, Evaluator(AppModel.from_outdir(outdir), self._options))
            self._evaluators[str(outdir)] = cached
        evaluator = cached[1]
        artifact_id = stack.artifact_id
        if artifact_id not in evaluator.model.stacks:  # e.g. a nested stack: not a manifest artifact
            import json

            region = None if cdk.Token.is_unresolved(stack.region) else stack.region
            account = None if cdk.Token.is_unresolved(stack.account) else stack.account
            template = json.loads((outdir / stack.template_file).read_text())
            evaluator.model.add(StackModel(artifact_id, template, region, account, stack.stack_name))
            evaluator.__dict__.pop("protected_buckets", None)
            evaluator.__dict__.pop("strict_keys", None)
        return evaluator, ResourceRef(artifact_id, stack.resolve(node.logical_id))


def _message(rule: Rule, outcome: Outcome) -> str:
    return f"[{rule.rule_id}] {rule.title}. Failed: {'; '.join(outcome.reasons)}. Fix: {rule.fix}."
