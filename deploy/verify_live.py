"""`make verify-live`: an opt-in acceptance run in a sandbox AWS account (creates billed resources).

Plan and estimated cost first, then confirmation (or --yes); deploy in workshop mode (with the caller
as the one tier A client principal); the checks only real AWS can answer; a dated report in
docs/live-verification/; and `cdk destroy` in every case, also after a failed deploy or check.

The checks (each one line in the report, ok or FAIL with what was seen):
  tier-a-validator-runs     a plaintext object gets the validator's status tag (the S3 event fired)
  tier-a-quarantine         that object is then unreadable to the client (GetObject AccessDenied)
  tier-a-forged-tag         the client cannot set the status tag itself (PutObjectTagging denied)
  tier-a-other-encryption   SSE-KMS uploads are denied by the bucket policy
  tier-a-client-roundtrip   the listed on-premises principal uploads and downloads an ESDK object
  tier-a-alarm              the quarantine alarm reaches the SNS topic (through a temporary SQS subscriber)
  tier-b-phase-1            tier B phase 1 created exactly one HSM; the cluster state is reported
CI has no sandbox account: with CI set, it prints why it skips and exits 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kommunmoln import names
from kommunmoln.config import DEFAULTS

REPO_ROOT = Path(__file__).resolve().parent.parent
REPORT_DIR = REPO_ROOT / "docs" / "live-verification"
CDK = str(REPO_ROOT / "node_modules" / ".bin" / "cdk")
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
CI_SKIP_REASON = (
    "verify-live skipped: it deploys billed resources into a sandbox AWS account and CI has no such account "
    "or credentials; run `make verify-live` by hand (see README, Deploy)"
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Run:
    """Everything one run needs from outside, so the orchestration runs offline in tests."""

    command: Callable[[Sequence[str]], int]  # runs cdk (deploy/destroy); returns the exit code
    checks: Callable[[Mapping[str, str]], list[Check]]  # stack outputs -> live checks
    outputs: Callable[[], dict[str, str]]  # reads the deployed stacks' outputs
    confirm: Callable[[str], bool]
    echo: Callable[[str], None] = print
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    log: list[str] = field(default_factory=list)


def plan_text(*, region: str, hsm_price: float | None, caller_arn: str) -> str:
    hsms = 1
    cost = (f"{hsms} x {hsm_price:.2f} = {hsms * hsm_price:.2f} USD per hour while it runs" if hsm_price is not None
            else "see https://aws.amazon.com/cloudhsm/pricing/ (per HSM-hour)")  # fmt: skip
    return "\n".join([
        f"verify-live will, in {region}, in WORKSHOP MODE (everything is deleted at the end):",
        "  deploy the network, tier A (bucket, validator, alarms) and tier B phase 1 (cluster, ONE HSM, admin host)",
        f"  with {caller_arn} as the one tier A client principal;",
        "  run the live checks (module docstring of deploy/verify_live.py), write docs/live-verification/<date>.md,",
        "  and destroy every stack, also when a step fails.",
        f"Estimated cost: CloudHSM {cost}; a run takes about 40-60 minutes (the HSM alone 10-20);",
        "  Lambda, S3, KMS, CloudTrail and VPC endpoints add cents to a few dollars.",
    ])  # fmt: skip


def execute(run: Run, *, context: Sequence[str], plan: str, yes: bool, report_dir: Path) -> int:
    """Confirm, deploy, check, report, destroy (always). Returns the exit code."""
    run.echo(plan)
    if not yes and not run.confirm("Deploy into this account? Type 'yes': "):
        run.echo("verify-live: not confirmed; nothing was created")
        return EXIT_REFUSED
    started = run.now()
    checks: list[Check] = []
    failure = ""
    cdk_context = [arg for item in context for arg in ("-c", item)]
    try:
        code = run.command([CDK, "deploy", "--all", "--require-approval", "never", *cdk_context])
        if code != 0:
            failure = f"cdk deploy failed (exit {code})"
        else:
            checks = run.checks(run.outputs())
    except Exception as err:  # report and destroy whatever went wrong; never leave the stacks behind
        failure = f"{type(err).__name__}: {err}"
    finally:
        destroy_code = run.command([CDK, "destroy", "--all", "--force", *cdk_context])
    report = write_report(report_dir, started=started, finished=run.now(), plan=plan, checks=checks,
                          failure=failure, destroyed=destroy_code == 0)  # fmt: skip
    for check in checks:
        run.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    if destroy_code != 0:
        run.echo("verify-live: cdk destroy FAILED: delete the stacks by hand (billed resources may remain)")
    run.echo(f"verify-live: report {report}")
    ok = not failure and checks and all(c.ok for c in checks) and destroy_code == 0
    return EXIT_OK if ok else EXIT_FAILED


def write_report(report_dir: Path, *, started: dt.datetime, finished: dt.datetime, plan: str, checks: Sequence[Check],
                 failure: str, destroyed: bool) -> Path:  # fmt: skip
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"{started:%Y-%m-%dT%H%M%SZ}.md"
    lines = [
        f"# Live verification {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Finished {finished:%Y-%m-%d %H:%M} UTC. Stacks destroyed: {'yes' if destroyed else 'NO - delete them by hand'}.",
        "",
        "```", plan, "```", "",
        "| Check | Result | Detail |", "|---|---|---|",
        *[f"| {c.name} | {'ok' if c.ok else 'FAIL'} | {c.detail.replace('|', '/')} |" for c in checks],
    ]  # fmt: skip
    if failure:
        lines += ["", f"**The run failed before all checks:** {failure}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- the live checks (real AWS only; each returns one Check) --------------------------------------
def live_checks(session: Any, outputs: Mapping[str, str], *, wait_seconds: float = 300) -> list[Check]:
    """The checks only real AWS can answer, against the deployed workshop stacks."""
    from botocore.exceptions import ClientError

    s3, sns, sqs = session.client("s3"), session.client("sns"), session.client("sqs")
    bucket, topic = outputs[names.OUTPUT_DATA_BUCKET], outputs[names.OUTPUT_ALARM_TOPIC]
    results: list[Check] = []

    def denied(call: Callable[[], Any]) -> tuple[bool, str]:
        try:
            call()
        except ClientError as err:
            code = err.response["Error"]["Code"]
            return code in ("AccessDenied", "403", "Forbidden"), code
        return False, "allowed"

    queue_url = sqs.create_queue(QueueName=f"kommunmoln-verify-live-{int(time.time())}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
         "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]})})  # fmt: skip
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, ReturnSubscriptionArn=True)
    try:
        key = f"{DEFAULTS['tier_a_key_namespaces'][0]}/verify-live/plaintext.txt"
        # A client that lies: the encryption tag the bucket policy requires, on a plaintext body.
        claimed = f"{names.OBJECT_TAG_ENCRYPTION}={names.OBJECT_TAG_ENCRYPTION_VALUE}"
        s3.put_object(Bucket=bucket, Key=key, Body=b"not encrypted", Tagging=claimed)
        status, deadline = "", time.monotonic() + wait_seconds
        while time.monotonic() < deadline and not status:
            time.sleep(10)
            try:
                tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
                status = tags.get(names.OBJECT_TAG_STATUS, "")
            except ClientError as err:
                # Once quarantined, only the security role may read the object (tags included).
                status = f"unreadable to the client ({err.response['Error']['Code']})"
        quarantined = status == names.STATUS_QUARANTINED or status.startswith("unreadable")
        results.append(Check("tier-a-validator-runs", quarantined, f"status: {status or 'no tag within the wait'}"))
        ok, seen = denied(lambda: s3.get_object(Bucket=bucket, Key=key))
        results.append(Check("tier-a-quarantine", ok, f"GetObject by the client: {seen}"))
        ok, seen = denied(lambda: s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [
            {"Key": names.OBJECT_TAG_STATUS, "Value": names.STATUS_VALIDATED}]}))  # fmt: skip
        results.append(Check("tier-a-forged-tag", ok, f"PutObjectTagging status={names.STATUS_VALIDATED}: {seen}"))
        ok, seen = denied(
            lambda: s3.put_object(Bucket=bucket, Key=f"{key}.kms", Body=b"x", ServerSideEncryption="aws:kms")
        )
        results.append(Check("tier-a-other-encryption", ok, f"PutObject with SSE-KMS: {seen}"))
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=20).get("Messages", [])
        results.append(Check("tier-a-alarm", bool(messages), f"{len(messages)} SNS message(s) at the subscriber"))
    finally:
        sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
        sqs.delete_queue(QueueUrl=queue_url)
    results += _client_roundtrip(outputs)
    results += _tier_b_phase_1(session, outputs)
    return results


def _client_roundtrip(outputs: Mapping[str, str]) -> list[Check]:
    """The listed on-premises principal (the caller) uploads and downloads through the tier A client."""
    import tempfile

    bucket = outputs[names.OUTPUT_DATA_BUCKET]
    with tempfile.TemporaryDirectory() as tmp:
        key_file, source, back = Path(tmp, "key"), Path(tmp, "in.txt"), Path(tmp, "out.txt")
        source.write_text("verify-live\n", encoding="utf-8")
        prefix = f"s3://{bucket}/{DEFAULTS['tier_a_key_namespaces'][0]}/verify-live/"
        cli = [sys.executable, "-m", "usecases.client_side_encryption", "--key", str(key_file)]
        steps = [
            [*cli, "keygen"],
            [*cli, "upload", str(source), prefix],
            [*cli, "download", prefix + "in.txt", str(back)],
        ]
        for step in steps:
            done = subprocess.run(step, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
            if done.returncode != 0:
                return [Check("tier-a-client-roundtrip", False, f"{' '.join(step[2:4])}: {done.stderr.strip()[:200]}")]
        same = back.read_bytes() == source.read_bytes()
    return [
        Check(
            "tier-a-client-roundtrip",
            same,
            "upload + download as the listed principal" + ("" if same else ": content differs"),
        )
    ]


def _tier_b_phase_1(session: Any, outputs: Mapping[str, str]) -> list[Check]:
    cluster_id = outputs.get(names.OUTPUT_CLUSTER_ID, "")
    if not cluster_id:
        return [Check("tier-b-phase-1", False, "no CloudHsmClusterId output")]
    cluster = session.client("cloudhsmv2").describe_clusters(Filters={"clusterIds": [cluster_id]})["Clusters"][0]
    live = [h for h in cluster.get("Hsms", []) if h.get("State") != "DELETED"]
    return [
        Check(
            "tier-b-phase-1", len(live) == 1, f"cluster {cluster_id} is {cluster.get('State')} with {len(live)} HSM(s)"
        )
    ]


# --- entry point ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="make verify-live", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (the plan is still printed)")
    parser.add_argument("--profile", help="AWS profile of the sandbox account")
    parser.add_argument("--region", default=DEFAULTS["region"], help=f"Region (default {DEFAULTS['region']})")
    parser.add_argument("--report-dir", default=str(REPORT_DIR), help="where the dated report goes")
    args = parser.parse_args(argv)
    if env.get("CI"):
        print(CI_SKIP_REASON)
        return EXIT_OK
    import boto3

    from deploy.preflight import hsm_hourly_price

    session = boto3.Session(profile_name=args.profile, region_name=args.region)
    caller = session.client("sts").get_caller_identity()["Arn"]
    try:
        price = hsm_hourly_price(session.client("pricing", region_name="us-east-1"), args.region)
    except Exception:  # the price is information, not a precondition
        price = None
    context = ["workshop_mode=true", f"region={args.region}", f"allowed_regions=[\"{args.region}\"]",
               f"tier_a_data_access_principals=[\"{_principal_arn(caller)}\"]"]  # fmt: skip
    if not sys.stdin.isatty() and not args.yes:
        print("verify-live: no terminal to confirm on; pass --yes after reading the plan", file=sys.stderr)
        print(plan_text(region=args.region, hsm_price=price, caller_arn=caller))
        return EXIT_REFUSED
    profile = ["--profile", args.profile] if args.profile else []
    run = Run(
        command=lambda cmd: subprocess.run([*cmd, *profile], cwd=REPO_ROOT, check=False).returncode,
        checks=lambda outputs: live_checks(session, outputs),
        outputs=lambda: _stack_outputs(session),
        confirm=lambda prompt: input(prompt).strip().lower() == "yes",
    )
    plan = plan_text(region=args.region, hsm_price=price, caller_arn=caller)
    return execute(run, context=context, plan=plan, yes=args.yes, report_dir=Path(args.report_dir))


def _principal_arn(caller_arn: str) -> str:
    """The IAM role ARN behind an assumed-role session ARN (what aws:PrincipalArn compares), else the ARN."""
    parts = caller_arn.split(":")
    if len(parts) == 6 and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    return caller_arn


def _stack_outputs(session: Any) -> dict[str, str]:
    cloudformation = session.client("cloudformation")
    outputs: dict[str, str] = {}
    prefix = names.stack_prefix(DEFAULTS["municipality_id"])
    for stack in cloudformation.describe_stacks()["Stacks"]:
        if stack["StackName"].startswith(prefix):
            outputs.update({o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])})
    return outputs


if __name__ == "__main__":
    sys.exit(main())
