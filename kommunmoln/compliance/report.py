"""The compliance evidence report: requirement -> controls -> resources -> status -> proving test.

    python -m kommunmoln.compliance.report [--out docs/compliance-report.md] [-c key=value ...]

Synthesizes the app from `cdk.json` (in a temporary directory, no AWS calls) with every
pack, then writes a Markdown and a plain HTML report. Status per resource and control:
`pass`, `acknowledged` (with the recorded reason) or `fail`. The OSL pack's rules are
re-evaluated here on the same templates, so a pass is a positive result, not the absence
of a finding; for the AwsSolutions and NIST controls a pass means the control applies to
the resource type and reported no finding. `summary_line()` gives the one line `make demo`
prints. Engineering evidence, not legal advice.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import html
import json
import platform
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from kommunmoln.compliance.catalog import (
    PACK_NAME,
    REQ_DISCLOSURE,
    REQ_EDPB_UC1,
    REQUIREMENTS,
    RULES,
    RULES_BY_NUMBER,
    Requirement,
    Rule,
)
from kommunmoln.compliance.checks import COMPLIANT, NOT_APPLICABLE, Evaluator, Options, Outcome
from kommunmoln.compliance.dpia import KeyPolicy, key_policies
from kommunmoln.compliance.evidence import NOT_RUN, process_rows
from kommunmoln.compliance.facts import FactSheet, fact_sheets
from kommunmoln.compliance.mappings import SOURCES as MAPPING_SOURCES
from kommunmoln.compliance.mappings import mapping_line
from kommunmoln.compliance.model import AppModel, ResourceRef
from kommunmoln.compliance.results import TestResults
from kommunmoln.config import REPO_ROOT, load_config

PASS, ACKNOWLEDGED, FAIL = "pass", "acknowledged", "fail"
# A requirement the deployment does not meet by design (tier B/C under "no disclosure"), or an
# organisation-level control that is absent (rule 8): not a template defect, and never a pass.
NOT_MET = "not met"
# Rows of an assessment requirement (OSL 10 kap. 2 a §): facts for the municipality's assessment.
FACT = "fact"
# Requirements only client-side encryption (tier A) meets: S3 must never see the plaintext.
_CLIENT_SIDE_ONLY = (REQ_DISCLOSURE, REQ_EDPB_UC1)
_SERVER_SIDE = "server-side"
_GATES_TEST = "tests/infrastructure/test_compliance_gates.py::test_default_app_has_no_unacknowledged_findings"
_PROJECT_TEST = "tests/infrastructure/compliance/test_report.py::test_project_app_passes_the_osl_pack"


@dataclass(frozen=True)
class ExternalControl:
    """A rule of a built-in cdk-nag pack that serves one of the requirements."""

    plugin: str
    rule_name: str
    title: str
    requirements: tuple[str, ...]
    resource_types: tuple[str, ...]
    tests: tuple[str, ...] = (_GATES_TEST,)


_AWS, _NIST = "AwsSolutions", "NIST.800.53.R5"
_B, _K, _T, _L = "AWS::S3::Bucket", "AWS::KMS::Key", "AWS::CloudTrail::Trail", "AWS::Logs::LogGroup"
EXTERNAL_CONTROLS: tuple[ExternalControl, ...] = (
    ExternalControl(_AWS, "AwsSolutions-S1", "S3 server access logs enabled", ("logging",), (_B,)),
    # Generic hardening evidences protective security, never non-disclosure to the provider.
    ExternalControl(_AWS, "AwsSolutions-S2", "S3 public access blocked", ("protective-security",), (_B,)),
    ExternalControl(_AWS, "AwsSolutions-S10", "S3 requires TLS", ("protective-security",), (_B,)),
    ExternalControl(_AWS, "AwsSolutions-KMS5", "KMS key rotation", ("protective-security", "cybersecurity"), (_K,)),
    ExternalControl(_NIST, "NIST.800.53.R5-S3BucketLoggingEnabled", "S3 logging (AU-2, AU-12)", ("logging",), (_B,)),
    ExternalControl(
        _NIST,
        "NIST.800.53.R5-S3BucketVersioningEnabled",
        "S3 versioning (CP-9, CP-10)",
        ("deletion-protection",),
        (_B,),
    ),
    ExternalControl(
        _NIST, "NIST.800.53.R5-S3BucketSSLRequestsOnly", "S3 TLS only (SC-8)", ("protective-security",), (_B,)
    ),
    ExternalControl(
        _NIST,
        "NIST.800.53.R5-S3BucketLevelPublicAccessProhibited",
        "S3 public access prohibited (AC-3, AC-4)",
        ("protective-security",),
        (_B,),
    ),
    ExternalControl(
        _NIST,
        "NIST.800.53.R5-S3DefaultEncryptionKMS",
        "S3 default encryption with KMS (SC-28)",
        ("protective-security",),
        (_B,),
    ),
    ExternalControl(
        _NIST,
        "NIST.800.53.R5-S3BucketReplicationEnabled",
        "S3 replication (CP-6, CP-9); acknowledged where it would move data",
        ("residency",),
        (_B,),
    ),
    ExternalControl(
        _NIST, "NIST.800.53.R5-KMSBackingKeyRotationEnabled", "KMS rotation (SC-12)", ("protective-security",), (_K,)
    ),
    ExternalControl(
        _NIST,
        "NIST.800.53.R5-CloudTrailLogFileValidationEnabled",
        "Trail log integrity (AU-9)",
        ("logging", "cybersecurity"),
        (_T,),
    ),
    ExternalControl(_NIST, "NIST.800.53.R5-CloudTrailEncryptionEnabled", "Trail encrypted (AU-9)", ("logging",), (_T,)),
    ExternalControl(_NIST, "NIST.800.53.R5-CloudWatchLogGroupEncrypted", "Log groups encrypted", ("logging",), (_L,)),
    ExternalControl(
        _NIST,
        "NIST.800.53.R5-CloudWatchLogGroupRetentionPeriod",
        "Log retention set (AU-11); acknowledged while no gallring decision is configured",
        ("logging", "archives"),
        (_L,),
    ),
)


@dataclass(frozen=True)
class Row:
    """One control on one resource."""

    requirement_ids: tuple[str, ...]
    control: str  # the rule id, e.g. KommunmolnOSL-2 or AwsSolutions-S1
    title: str
    resource: str  # construct path (or stack/logical id)
    resource_type: str
    status: str
    detail: str
    tests: tuple[str, ...]
    tier: str = ""  # rule 2 on a protected bucket: "client-side" (tier A) or "server-side" (tier B/C)


@dataclass
class Evidence:
    """Everything the report shows, from one synthesis."""

    config: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    synthesis_error: str = ""
    # What makes the report traceable: date, git commit, template hashes, tool versions (see `provenance`).
    provenance: dict[str, str] = field(default_factory=dict)
    # Dated outcomes of the proving tests (build/test-results.json from `make test`); empty: `not run`.
    results: TestResults = field(default_factory=TestResults)
    # The evaluated templates, for the fact sheets and the DPIA annex (None in hand-built evidence).
    model: AppModel | None = None
    paths: dict[ResourceRef, str] = field(default_factory=dict)
    options: Options = field(default_factory=Options)
    app_config: Any = None

    @property
    def summary(self) -> str:
        return summary_line(self)

    def proof(self, test_id: str) -> str:
        """The dated result of one proving test, `not run` without one."""
        return self.results.describe(test_id, self.provenance.get("git commit", ""))

    def fact_sheets(self) -> list[FactSheet]:
        if self.model is None:
            return []
        return fact_sheets(self.model, Evaluator(self.model, self.options), self.paths, self.app_config)

    def key_policies(self) -> list[KeyPolicy]:
        return key_policies(self.model) if self.model is not None else []

    def controls(self) -> list[str]:
        return sorted({row.control for row in self.rows})

    def counts(self) -> Counter[str]:
        return Counter(row.status for row in self.rows)

    def rows_for(self, requirement: Requirement) -> list[Row]:
        """The rows that evidence the requirement, with the status they have *for it* (see `_as_evidence`)."""
        return [_as_evidence(requirement, row) for row in self.rows if requirement.id in row.requirement_ids]


def _as_evidence(requirement: Requirement, row: Row) -> Row:
    """A control's result read against one requirement.

    A tier B/C bucket passes rule 2 (it is protected server-side), but S3 receives its plaintext, so it
    does not meet "no disclosure to the provider" or EDPB Use Case 1. An assessment requirement gets
    facts, because whether handing over is inappropriate is the municipality's assessment.
    """
    if requirement.assessment:
        shown = f"the control reports {row.status}" + (f": {row.detail}" if row.detail else "")
        return replace(row, status=FACT, detail=shown)
    if requirement.id in _CLIENT_SIDE_ONLY and row.tier == _SERVER_SIDE and row.status in (PASS, ACKNOWLEDGED):
        return replace(
            row,
            status=NOT_MET,
            detail="server-side encryption (tier B/C): S3 receives the plaintext object and data key during "
            "processing, so the provider can read it; only tier A (client-side) meets this requirement",
        )
    return row


# --- collecting ---------------------------------------------------------------------------
def _context(overrides: dict[str, Any] | None) -> dict[str, Any]:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    context.update(overrides or {})
    return context


DEFAULT_RESULTS = REPO_ROOT / "build" / "test-results.json"


def collect_evidence(
    context: dict[str, Any] | None = None, outdir: Path | None = None, results_path: Path = DEFAULT_RESULTS
) -> Evidence:
    """Synthesize the app (cdk.json context plus `context` overrides) and evaluate every control.

    `results_path` is the test run's results file; the proving tests are `not run` without it.
    """
    import aws_cdk as cdk

    from stacks.app_builder import build_app

    ctx = _context(context)
    config = load_config(ctx)
    with tempfile.TemporaryDirectory(prefix="kommunmoln-report-") as tmp:
        out = Path(outdir or tmp)
        app = cdk.App(outdir=str(out), context=ctx)
        if config.account:
            app.node.set_context(
                f"availability-zones:account={config.account}:region={config.region}", list(config.availability_zones)
            )
        build_app(app, config)
        error = ""
        try:
            app.synth()
        except RuntimeError as exc:  # findings: the report is still written, and we show them
            if "ValidationFailed" not in str(exc):
                raise
            error = str(exc).splitlines()[0]
        paths = _construct_paths(app)
        template_hashes = _template_hashes(out)
        report_file = out / "validation-report.json"
        report = json.loads(report_file.read_text()) if report_file.exists() else {"pluginReports": []}
        model = AppModel.from_outdir(out)
    evidence = Evidence(
        config={
            "municipality": config.municipality_name,
            "region": config.region,
            "allowed_regions": list(config.allowed_regions),
            "use_cases": list(config.use_cases),
            "workshop_mode": config.workshop_mode,
            "tier_b_keystore_enabled": config.tier_b.keystore_enabled,
            "residency_guardrail_policy_ids": list(config.residency_guardrail_policy_ids),
            "gallring_decision": config.gallring_decision or "(none: nothing expires)",
        },
        synthesis_error=error,
        provenance=provenance(template_hashes),
        results=TestResults.load(results_path),
        model=model,
        paths=paths,
        options=Options(config.allowed_regions, config.workshop_mode, config.residency_guardrail_policy_ids),
        app_config=config,
    )
    failed, acknowledged = _findings(report)
    evaluator = Evaluator(model, evidence.options)
    evidence.rows.extend(_pack_rows(evaluator, paths, failed, acknowledged))
    evidence.rows.extend(_external_rows(model, paths, failed, acknowledged))
    # Drills, lock, MFA and rotation checks: dated by the results file (kommunmoln/compliance/evidence.py).
    evidence.rows.extend(Row(**row) for row in process_rows(model, evidence.results))
    return evidence


def _template_hashes(outdir: Path) -> dict[str, str]:
    """SHA-256 of every template the report evaluated, by file name."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(outdir.glob("*.template.json"))}


def _command_output(*command: str) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=20, cwd=REPO_ROOT, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def provenance(template_hashes: dict[str, str]) -> dict[str, str]:
    """Date (UTC), git commit (with `+dirty` for uncommitted changes), tool versions and template hashes."""
    commit = _command_output("git", "rev-parse", "HEAD") or "unknown (not a git checkout)"
    if commit[:1] != "u" and _command_output("git", "status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    facts = {
        "generated (UTC)": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git commit": commit,
        "python": platform.python_version(),
        "node": _command_output("node", "--version") or "unknown",
    }
    for distribution in ("aws-cdk-lib", "constructs", "cdk-nag", "jsii"):
        facts[distribution] = _version(distribution)
    facts.update({f"sha256 {name}": digest for name, digest in template_hashes.items()})
    return facts


def _construct_paths(app: Any) -> dict[ResourceRef, str]:
    import aws_cdk as cdk

    paths: dict[ResourceRef, str] = {}
    for construct in app.node.find_all():
        if cdk.CfnResource.is_cfn_resource(construct):
            stack = cdk.Stack.of(construct)
            paths[ResourceRef(stack.artifact_id, stack.resolve(construct.logical_id))] = construct.node.path
    return paths


Key = tuple[str, str, str]  # plugin, rule name, construct path


def _findings(report: dict[str, Any]) -> tuple[dict[Key, str], dict[Key, str]]:
    failed: dict[Key, str] = {}
    acknowledged: dict[Key, str] = {}
    for plugin in report.get("pluginReports", []):
        name = plugin.get("pluginName", "")
        for violation in plugin.get("violations", []):
            for construct in violation.get("violatingConstructs", []):
                failed[(name, violation["ruleName"], construct.get("constructPath", ""))] = violation.get(
                    "description", ""
                )
        for violation in plugin.get("suppressedViolations", []):
            for construct in violation.get("violatingConstructs", []):
                acknowledged[(name, violation["ruleName"], construct.get("constructPath", ""))] = violation.get(
                    "reason", ""
                )
    return failed, acknowledged


def _pack_rows(
    evaluator: Evaluator, paths: dict[ResourceRef, str], failed: dict[Key, str], acknowledged: dict[Key, str]
) -> list[Row]:
    rows = []
    for rule in RULES:
        for resource_type in rule.resource_types:
            for ref, _ in evaluator.model.all_of_type(resource_type):
                outcome = evaluator.evaluate(rule, ref)
                if outcome.status == NOT_APPLICABLE:
                    continue
                path = paths.get(ref, f"{ref.stack}/{ref.logical_id}")
                if _per_finding(rule, outcome):
                    rows += _finding_rows(rule, outcome, path, resource_type, acknowledged)
                    continue
                status, detail = PASS, "; ".join(outcome.reasons)
                if outcome.status != "COMPLIANT":
                    ids = [f"{rule.rule_id}[{f}]" for f in outcome.findings] or [rule.rule_id]
                    reasons = [acknowledged.get((PACK_NAME, rule_id, path)) for rule_id in ids]
                    if all(reason is not None for reason in reasons):
                        status = ACKNOWLEDGED
                        detail = "; ".join(f"{i}: {r}" for i, r in zip(ids, reasons, strict=True))
                    else:
                        status, detail = FAIL, "; ".join(outcome.reasons)
                tier = ""
                if rule.number == 2:
                    client_side = evaluator.is_client_side(ref, evaluator.model.resource(ref) or {})
                    tier = "client-side" if client_side else _SERVER_SIDE
                rows.append(
                    Row(
                        rule.requirements,
                        rule.rule_id,
                        rule.title,
                        path,
                        resource_type,
                        status,
                        detail,
                        rule.tests,
                        tier,
                    )
                )
    rows.append(_guardrail_row(evaluator))
    return rows


def _per_finding(rule: Rule, outcome: Outcome) -> bool:
    """Rows per finding only when every failure is a known finding (fail closed: an unreadable resource's
    failure without findings stays one failing row under all of the rule's requirements)."""
    known = {finding for finding, _ in rule.finding_requirements}
    if not known:
        return False
    if outcome.status == COMPLIANT:
        return True
    return bool(outcome.findings) and set(outcome.findings) <= known and len(outcome.findings) == len(outcome.reasons)


def _finding_rows(
    rule: Rule, outcome: Outcome, path: str, resource_type: str, acknowledged: dict[Key, str]
) -> list[Row]:
    """One row per sub-finding of `rule`, under that finding's requirements only (`Rule.finding_requirements`).

    A finding the outcome does not name passed; one it names is acknowledged only by an acknowledgement of
    exactly `RULE[finding]` on the resource, else it fails with its own reason.
    """
    reasons = dict(zip(outcome.findings, outcome.reasons, strict=False))
    rows = []
    for finding, requirements in rule.finding_requirements:
        status, detail = PASS, ""
        if finding in reasons:
            rule_id = f"{rule.rule_id}[{finding}]"
            reason = acknowledged.get((PACK_NAME, rule_id, path))
            status, detail = (ACKNOWLEDGED, f"{rule_id}: {reason}") if reason is not None else (FAIL, reasons[finding])
        title = f"{rule.title} [{finding}]"
        rows.append(Row(requirements, rule.rule_id, title, path, resource_type, status, detail, rule.tests))
    return rows


def _guardrail_row(evaluator: Evaluator) -> Row:
    """Rule 8, once per app: an absent guardrail set is `not met` (the organisation's step, not a template's)."""
    rule = RULES_BY_NUMBER[8]
    outcome, where = evaluator.residency_guardrails()
    status = PASS if outcome.status == COMPLIANT else NOT_MET
    detail = "; ".join(outcome.reasons) + ("" if status == PASS else f". Fix: {rule.fix}")
    return Row(
        rule.requirements, rule.rule_id, rule.title, where, "AWS::Organizations::Policy", status, detail, rule.tests
    )


def _external_rows(
    model: AppModel, paths: dict[ResourceRef, str], failed: dict[Key, str], acknowledged: dict[Key, str]
) -> list[Row]:
    rows = []
    for control in EXTERNAL_CONTROLS:
        for resource_type in control.resource_types:
            for ref, _ in model.all_of_type(resource_type):
                path = paths.get(ref, f"{ref.stack}/{ref.logical_id}")
                status, detail = PASS, ""
                hits = {FAIL: [], ACKNOWLEDGED: []}
                for status_name, source in ((FAIL, failed), (ACKNOWLEDGED, acknowledged)):
                    for (plugin, rule_name, where), text in source.items():
                        same_rule = rule_name == control.rule_name or rule_name.startswith(control.rule_name + "[")
                        if plugin == control.plugin and where == path and same_rule:
                            hits[status_name].append(text)
                if hits[FAIL] or hits[ACKNOWLEDGED]:
                    status = FAIL if hits[FAIL] else ACKNOWLEDGED
                    detail = "; ".join(hits[status])
                rows.append(
                    Row(
                        control.requirements,
                        control.rule_name,
                        control.title,
                        path,
                        resource_type,
                        status,
                        detail,
                        control.tests,
                    )
                )
    return rows


# --- rendering ----------------------------------------------------------------------------
# A requirement's result, from the statuses of its rows as read against it (`requirement_tally`).
REQUIREMENT_MET, REQUIREMENT_NOT_MET, REQUIREMENT_NOT_RUN, REQUIREMENT_ASSESSMENT = (
    "met",
    "not met",
    "not run",
    "assessment",
)
_SUMMARY = {
    "en": (
        "Compliance: {n} requirements: {met} met, {not_met} not met, {not_run} with proving tests not run, "
        "{assessment} for the municipality's own assessment (facts, not pass/fail). "
        "Rule outcomes (per control and resource, before they are read against a requirement; {controls} "
        "controls): {pass_} pass, {ack} acknowledged, {fail} fail, {nm} not met, {nr} not run"
    ),
    "sv": (
        "Efterlevnad: {n} krav: {met} uppfyllda, {not_met} inte uppfyllda, {not_run} med beläggande tester som "
        "inte körts, {assessment} för kommunens egen bedömning (fakta, inte godkänt/underkänt). "
        "Regelutfall (per kontroll och resurs, innan de läses mot ett krav; {controls} kontroller): "
        "{pass_} godkända, {ack} kvitterade, {fail} underkända, {nm} inte uppfyllda, {nr} ej körda"
    ),
}


def requirement_result(requirement: Requirement, counts: Counter[str]) -> str:
    """`met` only when every row read against the requirement passes or is acknowledged (fail closed).

    Any `fail` or `not met` row makes it `not met`; otherwise any `not run` makes it `not run`; an
    assessment requirement (OSL 10 kap. 2 a §) is never met or not met: its rows are facts.
    """
    if requirement.assessment:
        return REQUIREMENT_ASSESSMENT
    if counts[FAIL] or counts[NOT_MET] or not counts:
        return REQUIREMENT_NOT_MET
    if counts[NOT_RUN]:
        return REQUIREMENT_NOT_RUN
    return REQUIREMENT_MET


def summary_line(evidence: Evidence | None = None, language: str = "en") -> str:
    """The headline: requirements met / not met first, then the rule outcomes, labelled as such.

    The per-requirement result comes from `requirement_tally` (a tier B bucket's rule 2 pass is
    `not met` under the non-disclosure requirements). The rule outcomes are per control and resource,
    before they are read against a requirement, and are labelled so they are not read as requirement
    results. `language` is `en` or `sv` (the Swedish PDF).
    """
    evidence = evidence or collect_evidence()
    results = Counter(requirement_result(req, counts) for req, counts in requirement_tally(evidence))
    counts = evidence.counts()
    return _SUMMARY[language].format(
        n=sum(1 for req in REQUIREMENTS if evidence.rows_for(req)),
        met=results[REQUIREMENT_MET],
        not_met=results[REQUIREMENT_NOT_MET],
        not_run=results[REQUIREMENT_NOT_RUN],
        assessment=results[REQUIREMENT_ASSESSMENT],
        controls=len(evidence.controls()),
        pass_=counts[PASS],
        ack=counts[ACKNOWLEDGED],
        fail=counts[FAIL],
        nm=counts[NOT_MET],
        nr=counts[NOT_RUN],
    )


def requirement_tally(evidence: Evidence) -> list[tuple[Requirement, Counter[str]]]:
    """Per requirement, the statuses of its rows as read against it: the headline "not met" count per requirement."""
    return [(req, Counter(row.status for row in evidence.rows_for(req))) for req in REQUIREMENTS]


def _tally_text(requirement: Requirement, counts: Counter[str]) -> str:
    if requirement.assessment:
        return f"{counts[FACT]} facts for the assessment (not pass/fail)"
    return (
        f"{counts[NOT_MET]} not met, {counts[FAIL]} fail, {counts[NOT_RUN]} not run, "
        f"{counts[ACKNOWLEDGED]} acknowledged, {counts[PASS]} pass"
    )


def tier_fact_rows(evidence: Evidence) -> list[tuple[str, dict[str, str]]]:
    """(bucket, facts) for every protected bucket: its tier (A, B, or B+ for tier C) and what it does not meet.

    Server-access-log buckets are left out (rule 2 does not apply to them, see `Evaluator.log_destinations`).
    """
    if evidence.model is None:
        return []
    evaluator = Evaluator(evidence.model, evidence.options)
    rows = []
    for ref, bucket in sorted(
        evaluator.protected_buckets.items(), key=lambda item: (item[0].stack, item[0].logical_id)
    ):
        if ref in evaluator.log_destinations:
            continue
        rows.append((evidence.paths.get(ref, f"{ref.stack}/{ref.logical_id}"), evaluator.tier_facts(ref, bucket)))
    return rows


_TIER_FACTS_TITLE = "Tier facts per protected bucket (what each tier does and does not meet)"
_TIER_FACT_KEYS = ("tier", "key material", "no-disclosure rules")


def _sources_markdown(requirement: Requirement) -> list[str]:
    lines = ["| Source | Date | Reference | Checked |", "|---|---|---|---|"]
    lines += [
        f"| {_cell(s.name)} | {_cell(s.date)} | {_cell(s.reference)} | {_cell(s.checked_label())} |"
        for s in requirement.sources
    ]
    return lines


_DISCLAIMER = (
    "Engineering evidence generated from the synthesized CloudFormation templates. It is not legal advice and does "
    "not replace the municipality's own assessments (OSL 10 kap. 2 a §, Säkerhetsskyddslagen, DPIA); see "
    "docs/compliance.md. Handling: a report generated for a live account's configuration may itself contain "
    "secret information (OSL 18 kap. 8 §, security measures); assess that before filing or sharing it."
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _order(row: Row) -> tuple[int, str, str]:
    rank = {FAIL: 0, NOT_MET: 1, ACKNOWLEDGED: 2}.get(row.status, 3)
    return rank, row.control, row.resource


def render_markdown(evidence: Evidence) -> str:
    lines = [
        "# Compliance evidence report",
        "",
        f"_{_DISCLAIMER}_",
        "",
        f"**{summary_line(evidence)}**",
        "",
        "Per requirement (each row read against the requirement; a tier B/C bucket is `not met` under the "
        "non-disclosure requirements even where its rule passes):",
        "",
        "| Requirement | Not met | Fail | Not run | Acknowledged | Pass |",
        "|---|---|---|---|---|---|",
    ]
    for requirement, counts in requirement_tally(evidence):
        if requirement.assessment:
            lines.append(
                f"| {_cell(requirement.title)} | {counts[FACT]} facts for the assessment (not pass/fail) |||||"
            )
        else:
            lines.append(
                f"| {_cell(requirement.title)} | **{counts[NOT_MET]}** | {counts[FAIL]} | {counts[NOT_RUN]} | "
                f"{counts[ACKNOWLEDGED]} | {counts[PASS]} |"
            )
    lines += ["", "Configuration: " + ", ".join(f"{k}={v}" for k, v in evidence.config.items()), ""]
    if evidence.provenance:
        lines += ["**Provenance**", "", "| Fact | Value |", "|---|---|"]
        lines += [f"| {_cell(k)} | `{_cell(v)}` |" for k, v in evidence.provenance.items()]
        lines += [
            f"| test results | {_cell(evidence.results.summary(evidence.provenance.get('git commit', '')))} |",
            "",
        ]
    if evidence.synthesis_error:
        lines += [f"> Synthesis reported unacknowledged findings: `{_cell(evidence.synthesis_error)}`", ""]
    for requirement in REQUIREMENTS:
        rows = evidence.rows_for(requirement)
        counts = Counter(row.status for row in rows)
        tally = (
            f"{len(rows)} facts for the municipality's own assessment (not pass/fail)."
            if requirement.assessment
            else f"{counts[PASS]} pass, {counts[ACKNOWLEDGED]} acknowledged, {counts[FAIL]} fail, "
            f"{counts[NOT_MET]} not met, {counts[NOT_RUN]} not run."
        )
        lines += [
            f"## {requirement.title}",
            "",
            requirement.summary,
            "",
            *_sources_markdown(requirement),
            "",
            f"Mapped to: {mapping_line(requirement.id)}.",
            "",
            f"{len({r.control for r in rows})} controls: {tally}",
            "",
        ]
        facts = tier_fact_rows(evidence) if requirement.id == REQ_DISCLOSURE else []
        if facts:
            lines += [
                f"{_TIER_FACTS_TITLE}:",
                "",
                "| Bucket | " + " | ".join(_TIER_FACT_KEYS) + " |",
                "|---|---|---|---|",
            ]
            lines += [f"| `{_cell(b)}` | " + " | ".join(_cell(f[k]) for k in _TIER_FACT_KEYS) + " |" for b, f in facts]
            lines.append("")
        lines += [
            "| Control | Resource | Status | Detail | Proven by (dated test results) |",
            "|---|---|---|---|---|",
        ]
        for row in sorted(rows, key=_order):
            lines.append(
                f"| `{row.control}` {_cell(row.title)} | `{_cell(row.resource)}` ({row.resource_type}) | "
                f"**{row.status}** | {_cell(row.detail)} | {'<br>'.join(f'`{t}`: {evidence.proof(t)}' for t in row.tests)} |"
            )
        lines.append("")
    lines += ["**Sources of the mappings**", ""] + [f"- {source}" for source in MAPPING_SOURCES] + [""]
    return "\n".join(lines)


def render_html(evidence: Evidence) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>kommunmoln compliance evidence</title>',
        "<style>body{font-family:sans-serif;max-width:80em;margin:auto}table{border-collapse:collapse;width:100%}"
        "td,th{border:1px solid #999;padding:4px;vertical-align:top;font-size:90%}.fail{background:#fdd}"
        ".acknowledged{background:#ffd}.pass{background:#dfd}.not-met{background:#fdb}code{font-size:95%}</style></head><body>",
        "<h1>Compliance evidence report</h1>",
        f"<p><em>{esc(_DISCLAIMER)}</em></p>",
        f"<p><strong>{esc(summary_line(evidence))}</strong></p>",
        "<table><tr><th>Requirement</th><th>Per requirement (read against it)</th></tr>",
        *(f"<tr><td>{esc(r.title)}</td><td>{esc(_tally_text(r, c))}</td></tr>" for r, c in requirement_tally(evidence)),
        "</table>",
        "<p>Configuration: " + esc(", ".join(f"{k}={v}" for k, v in evidence.config.items())) + "</p>",
    ]
    if evidence.provenance:
        parts.append("<p><strong>Provenance</strong></p><table>")
        parts += [f"<tr><td>{esc(k)}</td><td><code>{esc(v)}</code></td></tr>" for k, v in evidence.provenance.items()]
        results = evidence.results.summary(evidence.provenance.get("git commit", ""))
        parts.append(f"<tr><td>test results</td><td>{esc(results)}</td></tr></table>")
    if evidence.synthesis_error:
        parts.append(f"<p class='fail'>Synthesis reported unacknowledged findings: {esc(evidence.synthesis_error)}</p>")
    for requirement in REQUIREMENTS:
        rows = evidence.rows_for(requirement)
        parts += [
            f"<h2>{esc(requirement.title)}</h2>",
            f"<p>{esc(requirement.summary)}</p>",
            "<table><tr><th>Source</th><th>Date</th><th>Reference</th><th>Checked</th></tr>",
            *(
                f"<tr><td>{esc(s.name)}</td><td>{esc(s.date)}</td><td>{esc(s.reference)}</td>"
                f"<td>{esc(s.checked_label())}</td></tr>"
                for s in requirement.sources
            ),
            "</table>",
            f"<p>Mapped to: {esc(mapping_line(requirement.id))}.</p>",
            "<table><tr><th>Control</th><th>Resource</th><th>Status</th><th>Detail</th><th>Proven by (dated test results)</th></tr>",
        ]
        for row in sorted(rows, key=_order):
            tests = "<br>".join(f"<code>{esc(t)}</code>: {esc(evidence.proof(t))}" for t in row.tests)
            parts.append(
                f"<tr class='{esc(row.status.replace(' ', '-'))}'><td><code>{esc(row.control)}</code> {esc(row.title)}</td>"
                f"<td><code>{esc(row.resource)}</code> ({esc(row.resource_type)})</td><td>{esc(row.status)}</td>"
                f"<td>{esc(row.detail)}</td><td>{tests}</td></tr>"
            )
        parts.append("</table>")
        facts = tier_fact_rows(evidence) if requirement.id == REQ_DISCLOSURE else []
        if facts:
            parts.append(f"<p>{esc(_TIER_FACTS_TITLE)}</p><table><tr><th>Bucket</th>")
            parts += [f"<th>{esc(k)}</th>" for k in _TIER_FACT_KEYS] + ["</tr>"]
            for bucket, fact in facts:
                cells = "".join(f"<td>{esc(fact[k])}</td>" for k in _TIER_FACT_KEYS)
                parts.append(f"<tr><td><code>{esc(bucket)}</code></td>{cells}</tr>")
            parts.append("</table>")
    parts.append("<p><strong>Sources of the mappings</strong></p><ul>")
    parts += [f"<li>{esc(source)}</li>" for source in MAPPING_SOURCES]
    parts.append("</ul></body></html>")
    return "\n".join(parts)


def write_reports(evidence: Evidence, markdown_path: Path) -> tuple[Path, Path]:
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    html_path = markdown_path.with_suffix(".html")
    markdown_path.write_text(render_markdown(evidence), encoding="utf-8")
    html_path.write_text(render_html(evidence), encoding="utf-8")
    return markdown_path, html_path


def context_with_overrides(pairs: list[str]) -> dict[str, Any]:
    """The cdk.json context with `-c key=value` overrides applied."""
    return _context(_parse_overrides(pairs))


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"kommunmoln: -c expects key=value, got {pair!r}")
        overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the compliance evidence report (Markdown, HTML) and the PDF/A documents (sv, en)."
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "compliance-report.md")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the test run's results file")
    parser.add_argument(
        "--pdf-dir", type=Path, default=REPO_ROOT / "build" / "report", help="where the PDFs and key policies go"
    )
    parser.add_argument("--no-pdf", action="store_true", help="Markdown and HTML only")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any control fails")
    args = parser.parse_args(argv)
    evidence = collect_evidence(_parse_overrides(args.context), results_path=args.results)
    markdown, html_file = write_reports(evidence, args.out)
    print(summary_line(evidence))
    print(f"wrote {markdown} and {html_file}")
    if not args.no_pdf:
        from kommunmoln.compliance.pdf import write_pdfs

        written = write_pdfs(evidence, args.pdf_dir)
        print(
            f"wrote {len(written)} files to {args.pdf_dir}: " + ", ".join(p.name for p in written if p.suffix == ".pdf")
        )
    return 1 if args.strict and evidence.counts()[FAIL] else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "EXTERNAL_CONTROLS",
    "Evidence",
    "collect_evidence",
    "main",
    "requirement_result",
    "requirement_tally",
    "summary_line",
    "tier_fact_rows",
    "write_reports",
]
