"""`make verify-live` offline: plan, confirmation, CI skip, report, and destroy after any failure.

The live checks themselves need real AWS (bucket policies, S3 events, SNS delivery); against moto they
run end to end but the denials cannot be shown (moto does not enforce bucket policies), which the last
test states.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import boto3
import pytest

from deploy import verify_live
from kommunmoln import names

PLAN = verify_live.plan_text(region="eu-north-1", hsm_price=1.85, caller_arn="arn:aws:iam::1:role/p")


class Recorder:
    def __init__(
        self, *, deploy_code: int = 0, checks: list[verify_live.Check] | None = None, raise_in_checks: bool = False
    ):
        self.commands: list[list[str]] = []
        self.deploy_code, self._checks, self.raise_in_checks = deploy_code, checks or [], raise_in_checks
        self.lines: list[str] = []

    def command(self, cmd: Sequence[str]) -> int:
        self.commands.append(list(cmd))
        return self.deploy_code if "deploy" in cmd else 0

    def checks(self, outputs: object) -> list[verify_live.Check]:
        if self.raise_in_checks:
            raise RuntimeError("S3 event never arrived")
        return self._checks

    def run(self, *, confirm: bool = True) -> verify_live.Run:
        return verify_live.Run(command=self.command, checks=self.checks, outputs=dict, confirm=lambda _p: confirm,
                               echo=self.lines.append, now=lambda: dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC))  # fmt: skip


def _verbs(rec: Recorder) -> list[str]:
    return [c[1] for c in rec.commands]


def test_plan_names_workshop_mode_one_hsm_and_the_hourly_cost() -> None:
    assert "WORKSHOP MODE" in PLAN and "ONE HSM" in PLAN and "1 x 1.85 = 1.85 USD per hour" in PLAN


def test_ci_skips_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_live.main([], env={"CI": "true"}) == verify_live.EXIT_OK
    assert "skipped" in capsys.readouterr().out


def test_without_confirmation_nothing_is_deployed(tmp_path: Path) -> None:
    rec = Recorder()
    code = verify_live.execute(rec.run(confirm=False), context=[], plan=PLAN, yes=False, report_dir=tmp_path)
    assert code == verify_live.EXIT_REFUSED and rec.commands == []


def test_all_checks_ok_writes_a_dated_report_and_destroys(tmp_path: Path) -> None:
    rec = Recorder(checks=[verify_live.Check("tier-a-quarantine", True, "GetObject by the client: AccessDenied")])
    code = verify_live.execute(rec.run(), context=["workshop_mode=true"], plan=PLAN, yes=True, report_dir=tmp_path)
    assert code == verify_live.EXIT_OK
    assert _verbs(rec) == ["deploy", "destroy"] and "workshop_mode=true" in rec.commands[0]
    report = (tmp_path / "2026-12-02T120000Z.md").read_text()
    assert "| tier-a-quarantine | ok |" in report and "Stacks destroyed: yes" in report


@pytest.mark.parametrize("failure", ["deploy", "checks"])
def test_a_failure_still_destroys_and_is_reported(tmp_path: Path, failure: str) -> None:
    rec = Recorder(deploy_code=1) if failure == "deploy" else Recorder(raise_in_checks=True)
    code = verify_live.execute(rec.run(), context=[], plan=PLAN, yes=True, report_dir=tmp_path)
    assert code == verify_live.EXIT_FAILED
    assert _verbs(rec)[-1] == "destroy"
    report = next(tmp_path.glob("*.md")).read_text()
    assert "The run failed before all checks" in report


def test_a_failed_check_fails_the_run(tmp_path: Path) -> None:
    rec = Recorder(checks=[verify_live.Check("tier-a-forged-tag", False, "PutObjectTagging: allowed")])
    assert (
        verify_live.execute(rec.run(), context=[], plan=PLAN, yes=True, report_dir=tmp_path) == verify_live.EXIT_FAILED
    )
    assert any(line.startswith("FAIL tier-a-forged-tag") for line in rec.lines)


def test_live_checks_run_against_moto_but_cannot_show_the_denials(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a bucket and a topic on moto (no bucket policy enforcement, no validator behind the S3 event)
    session = _moto_session(moto_endpoint, monkeypatch)
    s3 = session.client("s3")
    bucket = "kommunmoln-verify-live-moto"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    topic = session.client("sns").create_topic(Name="verify-live")["TopicArn"]
    monkeypatch.setattr(verify_live, "_client_roundtrip", lambda outputs: [])
    monkeypatch.setattr(verify_live, "_tier_b_phase_1", lambda session, outputs: [])
    # WHEN the live checks run
    results = {c.name: c for c in verify_live.live_checks(
        session, {names.OUTPUT_DATA_BUCKET: bucket, names.OUTPUT_ALARM_TOPIC: topic}, wait_seconds=0)}  # fmt: skip
    # THEN every check ran and reported; the ones that need AWS's policy engine or the validator fail here
    assert set(results) == {"tier-a-config-change-denied", "tier-a-unvalidated-unreadable", "tier-a-validator-runs",
                            "tier-a-quarantine", "tier-a-forged-tag", "tier-a-other-encryption", "tier-a-alarm",
                            "tier-a-config-alarm", "tier-a-perimeter-unlisted", "tier-a-copy-denied"}  # fmt: skip
    for name in ("tier-a-forged-tag", "tier-a-config-change-denied", "tier-a-unvalidated-unreadable"):
        assert not results[name].ok and "allowed" in results[name].detail, name
    # AND the unlisted principal was a real temporary role (IAM allowed it s3:*), refused only by AWS's policy
    # engine, which moto lacks; the role is deleted afterwards
    assert (
        not results["tier-a-perimeter-unlisted"].ok
        and "role allowed s3:* by IAM" in results["tier-a-perimeter-unlisted"].detail
    )
    assert not [r for r in session.client("iam").list_roles()["Roles"] if "verify-live-unlisted" in r["RoleName"]]
    # AND without a client object there is nothing to copy, which fails the copy check rather than passing it
    assert not results["tier-a-copy-denied"].ok and "no client object" in results["tier-a-copy-denied"].detail
    # AND the temporary subscriber queue is gone
    assert not [q for q in session.client("sqs").list_queues().get("QueueUrls", []) if "verify-live" in q]


def _moto_session(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    session = boto3.Session(region_name="eu-north-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    real_client = session.client
    monkeypatch.setattr(session, "client", lambda service, **kw: real_client(service, endpoint_url=moto_endpoint, **kw))
    return session


def test_copy_check_copies_the_client_object_and_reports_what_s3_answered(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a versioned bucket holding the client's (validated) object and the plaintext probe
    s3 = _moto_session(moto_endpoint, monkeypatch).client("s3")
    bucket = "kommunmoln-verify-live-copy"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="kommunmoln/verify-live/plaintext.txt", Body=b"p")
    s3.put_object(Bucket=bucket, Key="kommunmoln/verify-live/0f3a.kmn", Body=b"ciphertext")
    # WHEN the copy check runs THEN it copies the client object, not the probe, and (moto enforcing no bucket
    # policy) reports the copy as allowed, i.e. a failure: on AWS, DenyCopiesIntoTheBucket refuses it
    (check,) = verify_live._copy_denied(s3, bucket, "kommunmoln/verify-live/")
    assert not check.ok and "0f3a.kmn: allowed" in check.detail


def test_tier_b_full_plan_shows_two_hsms_per_hour() -> None:
    plan = verify_live.plan_text(
        region="eu-north-1", hsm_price=1.85, caller_arn="arn:aws:iam::1:role/p", tier_b_full=True
    )
    assert "1 x 1.85 = 1.85 USD per hour" in plan and "2 x 1.85 = 3.70 USD per hour" in plan
    assert "SECOND HSM" in plan and "activate" in plan


class FakeTool:
    """Stands for `python -m usecases.cloudhsm_kms`: records the arguments, writes the download."""

    def __init__(self, failing: str = "") -> None:
        self.calls: list[list[str]] = []
        self.failing = failing

    def __call__(self, args, interactive: bool = False):
        import subprocess

        self.calls.append(list(args))
        if args[0] == "download":
            out = Path(args[args.index("--out") + 1])
            out.write_text("verify-live tier B\n", encoding="utf-8")
        code = 1 if args[0] == self.failing else 0
        return subprocess.CompletedProcess(args, code, stdout=f"{args[0]} done", stderr="boom" if code else "")


def _tier_b_session(state: str):
    from botocore.stub import Stubber

    from kommunmoln.tier_b import recorded

    session = boto3.Session(region_name="eu-north-1", aws_access_key_id="x", aws_secret_access_key="y")
    clients = {s: session.client(s) for s in ("cloudformation", "kms")}
    stubs = {s: Stubber(c) for s, c in clients.items()}
    # DescribeStacks returns the phase-2 outputs (CloudFormation API reference); DescribeCustomKeyStores the state.
    stubs["cloudformation"].add_response("describe_stacks", {"Stacks": [{
        "StackName": names.tier_b_stack_name("exempel"), "CreationTime": dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
        "StackStatus": "UPDATE_COMPLETE",
        "Outputs": [{"OutputKey": names.OUTPUT_CUSTOM_KEY_STORE_ID, "OutputValue": recorded.KEY_STORE_ID}]}]})  # fmt: skip
    stubs["kms"].add_response("describe_custom_key_stores", recorded.key_store(state),
                              {"CustomKeyStoreId": recorded.KEY_STORE_ID})  # fmt: skip
    for stub in stubs.values():
        stub.activate()

    class Session:
        def client(self, service: str, **_: object):
            return clients[service]

    return Session(), stubs


def test_tier_b_full_flow_initializes_waits_for_the_operator_then_deploys_phase_2_and_checks(tmp_path: Path) -> None:
    # GIVEN phase 1 deployed, the operator tool, cdk, and an operator who confirms the activation ceremony
    session, stubs = _tier_b_session("CONNECTED")
    tool, cdk_calls, prompts = FakeTool(), [], []
    checks = verify_live.tier_b_full_flow(
        session, {}, tool=tool, command=lambda cmd: cdk_calls.append(list(cmd)) or 0,
        confirm=lambda prompt: prompts.append(prompt) or True, echo=lambda _line: None,
        context=["workshop_mode=true"], workdir=tmp_path,
    )  # fmt: skip
    # THEN the workshop CA and InitializeCluster come first, the run waits for the ceremony, phase 2 is deployed with
    # the key store enabled and the CA as trust anchor, and the key store and an SSE-KMS round trip are checked
    assert [c[0] for c in tool.calls] == ["ca", "init", "upload", "download"]
    assert prompts and "kmsuser" in prompts[0]
    (deploy,) = cdk_calls
    assert (
        "tier_b_keystore_enabled=true" in deploy
        and f"tier_b_trust_anchor_path={tmp_path}/workshop-ca/customerCA.crt" in deploy
    )
    assert [(c.name, c.ok) for c in checks] == [("tier-b-key-store", True), ("tier-b-roundtrip", True)]
    for stub in stubs.values():
        stub.assert_no_pending_responses()


def test_tier_b_full_flow_without_the_ceremony_deploys_nothing_more(tmp_path: Path) -> None:
    # GIVEN an operator who does not confirm the activation WHEN the flow runs THEN phase 2 is not deployed
    tool, cdk_calls = FakeTool(), []
    checks = verify_live.tier_b_full_flow(
        None, {}, tool=tool, command=lambda cmd: cdk_calls.append(cmd) or 0, confirm=lambda _p: False,
        echo=lambda _line: None, context=[], workdir=tmp_path,
    )  # fmt: skip
    assert cdk_calls == [] and [c.ok for c in checks] == [False] and "not confirmed" in checks[0].detail


def test_a_failed_key_store_connection_fails_the_tier_b_check_with_its_code(tmp_path: Path) -> None:
    session, _ = _tier_b_session("FAILED")
    checks = verify_live.tier_b_full_flow(
        session, {}, tool=FakeTool(), command=lambda cmd: 0, confirm=lambda _p: True, echo=lambda _line: None,
        context=[], workdir=tmp_path,
    )  # fmt: skip
    assert not checks[0].ok and "FAILED" in checks[0].detail


def test_execute_runs_the_tier_b_flow_and_still_destroys(tmp_path: Path) -> None:
    # GIVEN --tier-b-full whose flow fails half-way WHEN the run executes THEN it is reported and destroyed
    rec = Recorder(checks=[verify_live.Check("tier-a-quarantine", True, "AccessDenied")])
    run = rec.run()
    run.tier_b_full = lambda outputs: [
        verify_live.Check("tier-b-full", False, "the activation ceremony was not confirmed")
    ]
    assert verify_live.execute(run, context=[], plan=PLAN, yes=True, report_dir=tmp_path) == verify_live.EXIT_FAILED
    assert _verbs(rec)[-1] == "destroy"
    assert "| tier-b-full | FAIL |" in next(tmp_path.glob("*.md")).read_text()
