"""Process evidence for the report: controls proven by dated drills and tests, not by one template resource.

Cybersäkerhetslagen (2025:1506) and förordning (2025:1507) ask for risk-management measures as in
NIS2 Art. 21(2): continuity (c), supply-chain security (d), cryptography policy (h), access control
and MFA (i, j); arkivlagen (1990:782) and TF 2 kap. ask that records stay deliverable on request
and are not destroyed by losing a key. These controls show, per measure, what was checked:

- a static check run when the report is written (the app's templates, or the lock file): its gaps
  make the row `fail`;
- the proving tests with their dated outcome from the results file (build/test-results.json):
  `pass` only when every one of them passed in that run, `fail` when one failed, and `not run`
  otherwise (no results file, or a test skipped or absent), never a pass that was not seen.

What stays the municipality's: the incident-reporting routine and who reports, the exercise
schedule, the approval of the post-quantum plan, and who may hold the break-glass roles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kommunmoln.compliance.catalog import REQ_ARCHIVES, REQ_CYBERSECURITY, REQ_DELETION, REQ_GDPR_SECURITY
from kommunmoln.compliance.model import AppModel, policy_document, properties, statements, truthy
from kommunmoln.compliance.results import ERROR, FAILED, PASSED, TestResults

PASS, FAIL, NOT_RUN = "pass", "fail", "not run"
EVIDENCE_TYPE = "process evidence"
_DRILLS = "tests/usecases/test_drills.py"
_SUPPLY = "tests/infrastructure/compliance/test_supply_chain.py"
_EVIDENCE = "tests/infrastructure/compliance/test_evidence.py"
_AUDIT = "tests/controlplane/test_audit_live.py"
_ROTATE = "tests/usecases/test_rotate.py"


@dataclass(frozen=True)
class ProcessControl:
    """One measure, the static check (if any) run on the app, and the dated tests that prove it."""

    control: str  # e.g. KommunmolnEvidence-continuity
    title: str
    requirements: tuple[str, ...]
    where: str  # what the evidence is about
    tests: tuple[str, ...]
    check: Callable[[AppModel | None], list[str]] | None = None


def _lock_gaps(_: AppModel | None) -> list[str]:
    from kommunmoln.compliance.supply_chain import lock_gaps

    return lock_gaps()


def roles_without_mfa(model: AppModel | None) -> list[str]:
    """Roles people assume (an AWS or federated principal) whose trust statement does not require MFA.

    The condition must be `Bool` (not `BoolIfExists`, which passes when the key is absent) with
    aws:MultiFactorAuthPresent true. Service principals (Lambda, CloudTrail) are not people.
    """
    if model is None:
        return ["no synthesized app to check"]
    gaps = []
    for ref, role in model.all_of_type("AWS::IAM::Role"):
        document = policy_document(properties(role).get("AssumeRolePolicyDocument"))
        if document is None:
            gaps.append(f"{ref.stack}/{ref.logical_id}: trust policy unreadable")
            continue
        for stmt in statements(document):
            principal = stmt.get("Principal")
            people = principal == "*" or (isinstance(principal, dict) and ({"AWS", "Federated"} & set(principal)))
            if stmt.get("Effect") != "Allow" or not people:
                continue
            mfa = ((stmt.get("Condition") or {}).get("Bool") or {}).get("aws:MultiFactorAuthPresent")
            if not truthy(mfa):
                gaps.append(f"{ref.stack}/{ref.logical_id}: assumed without aws:MultiFactorAuthPresent (Bool true)")
    return gaps


def keys_without_rotation(model: AppModel | None) -> list[str]:
    """AWS KMS keys (origin AWS_KMS, symmetric) without yearly automatic rotation.

    Keys in a custom key store (tier B CloudHSM, tier C external) cannot rotate automatically (AWS KMS
    Developer Guide, "Rotating AWS KMS keys": automatic rotation is not supported for keys in custom key
    stores or asymmetric keys); they rotate by a new key and re-encryption, as tier A does with
    `kommunmoln rotate`.
    """
    if model is None:
        return ["no synthesized app to check"]
    gaps = []
    for ref, key in model.all_of_type("AWS::KMS::Key"):
        props = properties(key)
        symmetric = props.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
        if symmetric and props.get("Origin", "AWS_KMS") == "AWS_KMS" and not truthy(props.get("EnableKeyRotation")):
            gaps.append(f"{ref.stack}/{ref.logical_id}: EnableKeyRotation is not true")
    return gaps


def alarms_without_actions(model: AppModel | None) -> list[str]:
    """CloudWatch alarms of the app that notify nobody (no AlarmActions, or ActionsEnabled false).

    An alarm's state-change time starts the incident-reporting clock only if someone learns of it;
    an app without any alarm is a gap too.
    """
    if model is None:
        return ["no synthesized app to check"]
    alarms = list(model.all_of_type("AWS::CloudWatch::Alarm"))
    if not alarms:
        return ["the app defines no CloudWatch alarm"]
    gaps = []
    for ref, alarm in alarms:
        props = properties(alarm)
        enabled = props.get("ActionsEnabled", True)
        if not props.get("AlarmActions") or enabled is False or str(enabled).lower() == "false":
            gaps.append(f"{ref.stack}/{ref.logical_id}: notifies nobody (no enabled AlarmActions)")
    return gaps


CONTROLS: tuple[ProcessControl, ...] = (
    ProcessControl(
        "KommunmolnEvidence-continuity",
        "Continuity: an overwritten and deleted tier A record restored from its previous version and decrypted",
        (REQ_CYBERSECURITY, REQ_GDPR_SECURITY, REQ_DELETION),
        "restore drill (kommunmoln/compliance/drills.py, `make drills`) on a versioned bucket; NIS2 Art. 21(2)(c), "
        "GDPR Art. 32(1)(c)",
        (
            f"{_DRILLS}::test_restore_drill_restores_an_overwritten_and_deleted_record",
            f"{_DRILLS}::test_restore_drill_fails_without_versioning",
        ),
    ),
    ProcessControl(
        "KommunmolnEvidence-supply-chain",
        "Supply chain: every dependency pinned with its SHA-256 hashes (requirements-lock.txt) and a CycloneDX SBOM",
        (REQ_CYBERSECURITY,),
        "requirements-lock.txt (`make lock`), build/sbom.json (`make sbom`); NIS2 Art. 21(2)(d), (e)",
        (
            f"{_SUPPLY}::test_project_lock_pins_every_requirement_with_hashes",
            f"{_SUPPLY}::test_lock_gaps_flag_a_missing_hash_an_unhashed_option_and_version_drift",
            f"{_SUPPLY}::test_cyclonedx_sbom_of_the_lock_lists_every_locked_distribution",
        ),
        _lock_gaps,
    ),
    ProcessControl(
        "KommunmolnEvidence-cryptography",
        "Cryptography policy: yearly rotation of AWS KMS keys, tier A key rotation, symmetric (post-quantum) escrow",
        (REQ_CYBERSECURITY, REQ_GDPR_SECURITY),
        "the app's KMS keys; `kommunmoln rotate`; AES escrow recovery; docs/compliance.md 'Cryptography policy'; "
        "NIS2 Art. 21(2)(h)",
        (
            f"{_ROTATE}::test_rotate_reencrypts_every_object_and_a_second_run_skips_them",
            f"{_DRILLS}::test_escrow_drill_recovers_without_the_primary_key",
            f"{_EVIDENCE}::test_project_keys_rotate_and_a_key_without_rotation_is_a_gap",
        ),
        keys_without_rotation,
    ),
    ProcessControl(
        "KommunmolnEvidence-mfa",
        "Access control: every role people assume (security, break-glass, key administration) requires MFA",
        (REQ_CYBERSECURITY, REQ_GDPR_SECURITY),
        "trust policies of the app's IAM roles (aws:MultiFactorAuthPresent); NIS2 Art. 21(2)(i), (j)",
        (f"{_EVIDENCE}::test_project_roles_people_assume_require_mfa_and_a_role_without_is_a_gap",),
        roles_without_mfa,
    ),
    ProcessControl(
        "KommunmolnEvidence-incident-clock",
        "Incident reporting: alarm timestamps start the 24 h / 72 h / one-month clock (`make audit`)",
        (REQ_CYBERSECURITY,),
        "every CloudWatch alarm of the app notifies (SNS); alarm state timestamps read by `make audit`; förordning "
        "(2025:1507); NIS2 Art. 23(4)",
        (
            f"{_AUDIT}::test_alarm_timestamps_give_the_reporting_deadlines",
            f"{_AUDIT}::test_reporting_deadlines_follow_nis2_article_23",
            f"{_EVIDENCE}::test_project_alarms_notify_and_an_alarm_without_actions_is_a_gap",
        ),
        alarms_without_actions,
    ),
    ProcessControl(
        "KommunmolnEvidence-deliver",
        "Prompt delivery on request: a record found by name, decrypted with the municipality's key, delivered (timed)",
        (REQ_ARCHIVES,),
        "decrypt-and-deliver drill (`make drills`); TF 2 kap.",
        (
            f"{_DRILLS}::test_deliver_drill_finds_decrypts_and_delivers_the_requested_record",
            f"{_DRILLS}::test_deliver_drill_fails_for_a_record_not_in_the_archive",
            f"{_DRILLS}::test_deliver_drill_fails_when_the_stored_record_was_replaced",
        ),
    ),
    ProcessControl(
        "KommunmolnEvidence-escrow",
        "Key loss is not destruction: records recovered with the escrow key alone (AES and RSA escrow)",
        (REQ_ARCHIVES, REQ_CYBERSECURITY),
        "escrow recovery drill (`make drills`); arkivlagen (1990:782) 3 §",
        (
            f"{_DRILLS}::test_escrow_drill_recovers_without_the_primary_key",
            f"{_DRILLS}::test_escrow_drill_fails_when_the_records_have_no_escrow",
        ),
    ),
)


def status_of(control: ProcessControl, model: AppModel | None, results: TestResults) -> tuple[str, str]:
    """(status, detail): static gaps fail; then the proving tests decide (pass only if all passed)."""
    gaps = control.check(model) if control.check is not None else []
    if gaps:
        return FAIL, "; ".join(gaps)
    outcomes = {test: results.result(test) for test in control.tests}
    bad = [t.split("::")[-1] for t, r in outcomes.items() if r is not None and r.outcome in (FAILED, ERROR)]
    if bad:
        return FAIL, f"failed: {', '.join(bad)}"
    missing = [t.split("::")[-1] for t, r in outcomes.items() if r is None or r.outcome != PASSED]
    if missing:
        return NOT_RUN, f"no passing dated result for: {', '.join(missing)}"
    latest = max(r.finished for r in outcomes.values() if r is not None)
    return PASS, f"{control.where}; last proven {latest}"


def process_rows(model: AppModel | None, results: TestResults) -> list[dict[str, Any]]:
    """One row per control, as plain fields for the report's `Row`."""
    rows = []
    for control in CONTROLS:
        status, detail = status_of(control, model, results)
        rows.append(
            {
                "requirement_ids": control.requirements,
                "control": control.control,
                "title": control.title,
                "resource": "project",
                "resource_type": EVIDENCE_TYPE,
                "status": status,
                "detail": detail,
                "tests": control.tests,
            }
        )
    return rows
