"""Process evidence (kommunmoln/compliance/evidence.py): static checks on the app and dated proving tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kommunmoln.compliance import evidence
from kommunmoln.compliance.catalog import REQ_ARCHIVES, REQ_CYBERSECURITY
from kommunmoln.compliance.model import AppModel, StackModel
from kommunmoln.compliance.report import Row
from kommunmoln.compliance.results import FORMAT, TestResults

ROOT = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::", {"Ref": "AWS::AccountId"}, ":root"]]}


def _role(principal: dict, condition: dict | None = None) -> dict:
    stmt = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": principal}
    if condition is not None:
        stmt["Condition"] = condition
    return {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Statement": [stmt]}}}


def _model(resources: dict) -> AppModel:
    model = AppModel()
    model.add(StackModel("s", {"Resources": resources}, "eu-north-1", None))
    return model


def test_project_roles_people_assume_require_mfa_and_a_role_without_is_a_gap(synthesized) -> None:
    # GIVEN the project's synthesized app  THEN every role people assume requires MFA
    assert evidence.roles_without_mfa(AppModel.from_outdir(synthesized.outdir)) == []
    # GIVEN roles assumed by the account without MFA, with BoolIfExists, with MFA, and by a service
    model = _model({
        "NoMfa": _role({"AWS": ROOT}),
        "IfExists": _role({"AWS": ROOT}, {"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}),
        "Mfa": _role({"AWS": ROOT}, {"Bool": {"aws:MultiFactorAuthPresent": "true"}}),
        "Saml": _role({"Federated": "arn:aws:iam::123456789012:saml-provider/idp"}),
        "Lambda": _role({"Service": "lambda.amazonaws.com"}),
    })  # fmt: skip
    # THEN the account-assumed and federated roles without a Bool MFA condition are gaps, the others not
    gaps = evidence.roles_without_mfa(model)
    assert sorted(g.split(":")[0] for g in gaps) == ["s/IfExists", "s/NoMfa", "s/Saml"]


def test_project_keys_rotate_and_a_key_without_rotation_is_a_gap(synthesized) -> None:
    # GIVEN the project's app  THEN every AWS KMS symmetric key rotates yearly
    assert evidence.keys_without_rotation(AppModel.from_outdir(synthesized.outdir)) == []
    # GIVEN keys: rotating, not rotating, asymmetric (cannot rotate automatically)
    model = _model({
        "Rotating": {"Type": "AWS::KMS::Key", "Properties": {"EnableKeyRotation": True}},
        "Still": {"Type": "AWS::KMS::Key", "Properties": {}},
        "Rsa": {"Type": "AWS::KMS::Key", "Properties": {"KeySpec": "RSA_4096"}},
    })  # fmt: skip
    assert [g.split(":")[0] for g in evidence.keys_without_rotation(model)] == ["s/Still"]


def test_project_alarms_notify_and_an_alarm_without_actions_is_a_gap(synthesized) -> None:
    # GIVEN the project's app  THEN every CloudWatch alarm notifies someone
    assert evidence.alarms_without_actions(AppModel.from_outdir(synthesized.outdir)) == []
    # GIVEN alarms with an action, without one, and with actions disabled; and an app without alarms
    topic = {"Ref": "Topic"}
    model = _model({
        "Notifies": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"AlarmActions": [topic]}},
        "Silent": {"Type": "AWS::CloudWatch::Alarm", "Properties": {}},
        "Disabled": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"AlarmActions": [topic], "ActionsEnabled": False}},
    })  # fmt: skip
    # THEN the silent and disabled ones are gaps, and no alarm at all is a gap
    assert sorted(g.split(":")[0] for g in evidence.alarms_without_actions(model)) == ["s/Disabled", "s/Silent"]
    assert evidence.alarms_without_actions(_model({})) == ["the app defines no CloudWatch alarm"]


def _results(tmp_path: Path, outcomes: dict[str, str]) -> TestResults:
    path = tmp_path / "results.json"
    tests = {t: {"outcome": o, "finished": "2026-12-02T19:00:00Z"} for t, o in outcomes.items()}
    path.write_text(json.dumps({"format": FORMAT, "commit": "abc", "started": "", "finished": "", "tests": tests}))
    return TestResults.load(path)


@pytest.fixture
def continuity() -> evidence.ProcessControl:
    return next(c for c in evidence.CONTROLS if c.control == "KommunmolnEvidence-continuity")


def test_a_control_passes_only_when_every_proving_test_passed(tmp_path: Path, continuity) -> None:
    # GIVEN no results file  THEN `not run`, never pass
    status, detail = evidence.status_of(continuity, None, TestResults())
    assert status == evidence.NOT_RUN and "restore" in detail
    # GIVEN one test passed and one skipped  THEN still `not run`
    first, second = continuity.tests
    assert (
        evidence.status_of(continuity, None, _results(tmp_path, {first: "passed", second: "skipped"}))[0] == "not run"
    )
    # GIVEN one failed  THEN fail, naming it
    failed = evidence.status_of(continuity, None, _results(tmp_path, {first: "passed", second: "failed"}))
    assert failed[0] == "fail" and second.split("::")[-1] in failed[1]
    # GIVEN both passed  THEN pass, dated
    passed = evidence.status_of(continuity, None, _results(tmp_path, {first: "passed", second: "passed"}))
    assert passed == ("pass", f"{continuity.where}; last proven 2026-12-02T19:00:00Z")


def test_a_static_gap_fails_the_control_even_with_passing_tests(tmp_path: Path) -> None:
    mfa = next(c for c in evidence.CONTROLS if c.control == "KommunmolnEvidence-mfa")
    results = _results(tmp_path, dict.fromkeys(mfa.tests, "passed"))
    status, detail = evidence.status_of(mfa, _model({"NoMfa": _role({"AWS": ROOT})}), results)
    assert status == "fail" and "s/NoMfa" in detail


def test_every_process_control_is_a_report_row_naming_existing_tests() -> None:
    # GIVEN the controls  WHEN they become report rows  THEN each is a Row under its requirements
    rows = [Row(**row) for row in evidence.process_rows(None, TestResults())]
    assert {r.control for r in rows} == {c.control for c in evidence.CONTROLS}
    assert all(r.status in ("fail", "not run") for r in rows)  # no app and no results: nothing passes
    covered = {req for r in rows for req in r.requirement_ids}
    assert {REQ_CYBERSECURITY, REQ_ARCHIVES} <= covered
    # AND every proving test named exists in its file (a renamed test would otherwise be `not run` forever)
    root = Path(__file__).resolve().parents[3]
    for control in evidence.CONTROLS:
        for test in control.tests:
            path, name = test.split("::")
            assert f"def {name}(" in (root / path).read_text(), test
