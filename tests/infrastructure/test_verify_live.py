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
    session = boto3.Session(region_name="eu-north-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    real_client = session.client
    monkeypatch.setattr(session, "client", lambda service, **kw: real_client(service, endpoint_url=moto_endpoint, **kw))
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
    assert set(results) == {"tier-a-validator-runs", "tier-a-quarantine", "tier-a-forged-tag", "tier-a-other-encryption",
                            "tier-a-alarm"}  # fmt: skip
    assert not results["tier-a-forged-tag"].ok and "allowed" in results["tier-a-forged-tag"].detail
    # AND the temporary subscriber queue is gone
    assert not [q for q in session.client("sqs").list_queues().get("QueueUrls", []) if "verify-live" in q]
