"""`make verify-live`: an opt-in acceptance run in a sandbox AWS account (creates billed resources).

Plan and estimated cost first, then confirmation (or --yes); deploy in workshop mode (with the caller
as the one tier A client principal); the checks only real AWS can answer; a dated report in
docs/live-verification/; and `cdk destroy` in every case, also after a failed deploy or check.

The checks (each one line in the report, ok or FAIL with what was seen):
  tier-a-unvalidated-unreadable  a new object is unreadable at once, before the validator has checked it
  tier-a-validator-runs     a plaintext object gets the validator's status tag (the S3 event fired)
  tier-a-quarantine         that object is then unreadable to the client (GetObject AccessDenied)
  tier-a-forged-tag         the client cannot set the status tag itself (PutObjectTagging denied)
  tier-a-other-encryption   SSE-KMS uploads are denied by the bucket policy
  tier-a-config-change-denied  the caller (an administrator, not break-glass) cannot rewrite the bucket's
                            notification configuration, not even with its current value
  tier-a-config-alarm       that attempt reaches the alarm topic (CloudTrail -> EventBridge -> SNS)
  tier-a-alarm              the quarantine alarm reaches the SNS topic (through a temporary SQS subscriber)
  tier-a-perimeter-unlisted a principal that IAM allows s3:* but that is not in tier_a_data_access_principals
                            is denied from outside the VPC (a temporary role, deleted afterwards)
  tier-a-client-roundtrip   the listed on-premises principal uploads and downloads an ESDK object
  tier-a-copy-denied        a copy of that validated object into the bucket is refused (its tag cannot carry over)
  tier-b-phase-1            tier B phase 1 created exactly one HSM; the cluster state is reported
With --tier-b-full (2 HSMs billed per hour, shown in the plan) it goes on: a workshop CA and InitializeCluster
(the operator tool), the activation ceremony on the admin host (the CLI has no API; the run waits for the
operator), phase 2, and:
  tier-b-key-store          the key store is CONNECTED
  tier-b-roundtrip          an object goes up with SSE-KMS under the HSM key and comes back identical
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
    tier_b_full: Callable[[Mapping[str, str]], list[Check]] | None = None  # --tier-b-full: the rest of tier B
    echo: Callable[[str], None] = print
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    log: list[str] = field(default_factory=list)


def plan_text(*, region: str, hsm_price: float | None, caller_arn: str, tier_b_full: bool = False) -> str:
    hsms = 2 if tier_b_full else 1

    def cost(count: int) -> str:
        if hsm_price is None:
            return "see https://aws.amazon.com/cloudhsm/pricing/ (per HSM-hour)"
        return f"{count} x {hsm_price:.2f} = {count * hsm_price:.2f} USD per hour while it runs"

    lines = [
        f"verify-live will, in {region}, in WORKSHOP MODE (everything is deleted at the end):",
        "  deploy the network, tier A (bucket, validator, alarms) and tier B phase 1 (cluster, ONE HSM, admin host)",
        f"  with {caller_arn} as the one tier A client principal;",
        "  create and delete a temporary IAM role (the unlisted-principal check);",
        "  run the live checks (module docstring of deploy/verify_live.py), write docs/live-verification/<date>.md,",
        "  and destroy every stack, also when a step fails.",
    ]
    if tier_b_full:
        lines += [
            "  --tier-b-full: then initialize the cluster with a throw-away workshop CA, wait for YOU to activate it",
            "  and create kmsuser on the admin host (printed commands), deploy phase 2 (a SECOND HSM, key store,",
            "  key, bucket) and check the key store and an SSE-KMS round trip.",
        ]
    lines += [
        f"Estimated cost: CloudHSM {cost(1)} in phase 1"
        + (f", {cost(hsms)} in phase 2" if tier_b_full else "")
        + f"; a run takes about {'90-150' if tier_b_full else '40-60'} minutes (each HSM alone 10-20);",
        "  Lambda, S3, KMS, CloudTrail and VPC endpoints add cents to a few dollars.",
    ]
    return "\n".join(lines)


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
            if run.tier_b_full is not None:
                checks += run.tier_b_full(run.outputs())
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
def _denied(call: Callable[[], Any]) -> tuple[bool, str]:
    """(True, code) when AWS refused the call with an access error, else (False, what happened)."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as err:
        code = err.response["Error"]["Code"]
        return code in ("AccessDenied", "403", "Forbidden"), code
    return False, "allowed"


def _subscriber(session: Any, topic: str) -> tuple[str, str]:
    """A temporary SQS queue subscribed to the alarm topic: (queue URL, subscription ARN)."""
    sns, sqs = session.client("sns"), session.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"kommunmoln-verify-live-{int(time.time())}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
         "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]})})  # fmt: skip
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, ReturnSubscriptionArn=True)
    return queue_url, subscription["SubscriptionArn"]


def _messages(sqs: Any, queue_url: str, *, until: Callable[[list[str]], bool], wait_seconds: float) -> list[str]:
    """The SNS message bodies at the subscriber, polled until `until(bodies)` or the wait is over."""
    bodies: list[str] = []
    deadline = time.monotonic() + wait_seconds
    while True:
        for message in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1 if wait_seconds <= 0 else 20,
                                           MaxNumberOfMessages=10).get("Messages", []):  # fmt: skip
            bodies.append(message["Body"])
        if until(bodies) or time.monotonic() >= deadline:
            return bodies


def live_checks(session: Any, outputs: Mapping[str, str], *, wait_seconds: float = 300) -> list[Check]:
    """The checks only real AWS can answer, against the deployed workshop stacks."""
    from botocore.exceptions import ClientError

    s3, sqs = session.client("s3"), session.client("sqs")
    bucket, topic = outputs[names.OUTPUT_DATA_BUCKET], outputs[names.OUTPUT_ALARM_TOPIC]
    results: list[Check] = []
    queue_url, subscription = _subscriber(session, topic)
    try:
        # Bucket configuration is break-glass only: rewriting the notification with its current value
        # changes nothing if (wrongly) allowed, and the attempt itself must raise the alarm.
        current = {k: v for k, v in s3.get_bucket_notification_configuration(Bucket=bucket).items()
                   if k != "ResponseMetadata"}  # fmt: skip
        ok, seen = _denied(lambda: s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration=current))  # fmt: skip
        results.append(Check("tier-a-config-change-denied", ok, f"PutBucketNotification by the caller: {seen}"))

        key = f"{DEFAULTS['tier_a_key_namespaces'][0]}/verify-live/plaintext.txt"
        # A client that lies: the encryption tag the bucket policy requires, on a plaintext body.
        claimed = f"{names.OBJECT_TAG_ENCRYPTION}={names.OBJECT_TAG_ENCRYPTION_VALUE}"
        version = s3.put_object(Bucket=bucket, Key=key, Body=b"not encrypted", Tagging=claimed).get("VersionId")
        # Read at once: the validator (an S3 event, then a Lambda in the VPC) cannot have decided yet.
        ok, seen = _denied(lambda: s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {})))
        results.append(Check("tier-a-unvalidated-unreadable", ok, f"GetObject right after the upload: {seen}"))
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
        ok, seen = _denied(lambda: s3.get_object(Bucket=bucket, Key=key))
        results.append(Check("tier-a-quarantine", ok, f"GetObject by the client: {seen}"))
        ok, seen = _denied(lambda: s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [
            {"Key": names.OBJECT_TAG_STATUS, "Value": names.STATUS_VALIDATED}]}))  # fmt: skip
        results.append(Check("tier-a-forged-tag", ok, f"PutObjectTagging status={names.STATUS_VALIDATED}: {seen}"))
        ok, seen = _denied(
            lambda: s3.put_object(Bucket=bucket, Key=f"{key}.kms", Body=b"x", ServerSideEncryption="aws:kms")
        )
        results.append(Check("tier-a-other-encryption", ok, f"PutObject with SSE-KMS: {seen}"))

        def alarmed(bodies: list[str]) -> tuple[bool, bool]:
            return any("quarantined" in b for b in bodies), any("PutBucketNotification" in b for b in bodies)

        bodies = _messages(sqs, queue_url, until=lambda b: all(alarmed(b)), wait_seconds=wait_seconds)
        quarantine_alarm, config_alarm = alarmed(bodies)
        results.append(Check("tier-a-alarm", quarantine_alarm, f"{len(bodies)} SNS message(s) at the subscriber"))
        results.append(Check("tier-a-config-alarm", config_alarm,
                             "the PutBucketNotification attempt reached the alarm topic" if config_alarm
                             else "no PutBucketNotification alarm within the wait"))  # fmt: skip
    finally:
        session.client("sns").unsubscribe(SubscriptionArn=subscription)
        sqs.delete_queue(QueueUrl=queue_url)
    results += _unlisted_principal(session, bucket, wait_seconds=wait_seconds)
    results += _client_roundtrip(outputs)
    results += _copy_denied(s3, bucket, f"{DEFAULTS['tier_a_key_namespaces'][0]}/verify-live/")
    results += _tier_b_phase_1(session, outputs)
    return results


def _unlisted_principal(session: Any, bucket: str, *, wait_seconds: float) -> list[Check]:
    """A role that IAM allows s3:* on the bucket, not listed in tier_a_data_access_principals, from outside the VPC."""
    iam, identity = session.client("iam"), session.client("sts").get_caller_identity()
    account, partition = identity["Account"], identity["Arn"].split(":")[1]  # aws, aws-eusc, ...
    role = f"kommunmoln-verify-live-unlisted-{int(time.time())}"
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"}}]}  # fmt: skip
    grant = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",
             "Resource": [f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*"]}]}  # fmt: skip
    try:
        arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    except Exception as err:  # the check fails closed: no role, no evidence
        return [Check("tier-a-perimeter-unlisted", False, f"could not create the test role: {err}")]
    try:
        iam.put_role_policy(RoleName=role, PolicyName="s3-on-the-tier-a-bucket", PolicyDocument=json.dumps(grant))
        credentials, deadline = None, time.monotonic() + max(wait_seconds, 1)
        while credentials is None:
            try:  # a new role takes a few seconds to be assumable (IAM is eventually consistent)
                credentials = session.client("sts").assume_role(RoleArn=arn, RoleSessionName="verify-live")[
                    "Credentials"
                ]
            except Exception:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(5)
        s3 = session.client("s3", aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"])  # fmt: skip
        listed, seen_list = _denied(lambda: s3.list_objects_v2(Bucket=bucket))
        put, seen_put = _denied(lambda: s3.put_object(Bucket=bucket, Key="kommunmoln/verify-live/unlisted", Body=b"x",
                                                      Tagging=f"{names.OBJECT_TAG_ENCRYPTION}="
                                                              f"{names.OBJECT_TAG_ENCRYPTION_VALUE}"))  # fmt: skip
        return [Check("tier-a-perimeter-unlisted", listed and put,
                      f"ListObjectsV2: {seen_list}; PutObject: {seen_put} (role allowed s3:* by IAM)")]  # fmt: skip
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="s3-on-the-tier-a-bucket")
        iam.delete_role(RoleName=role)


def _copy_denied(s3: Any, bucket: str, prefix: str) -> list[Check]:
    """A copy of an object already in the bucket (the client's validated one) is refused at the door."""
    from botocore.exceptions import ClientError

    try:
        versions = s3.list_object_versions(Bucket=bucket, Prefix=prefix).get("Versions", [])
    except ClientError as err:
        return [Check("tier-a-copy-denied", False, f"cannot list {prefix}: {err.response['Error']['Code']}")]
    sources = [v for v in versions if not v["Key"].endswith(("plaintext.txt", ".kms", "unlisted"))]
    if not sources:
        return [Check("tier-a-copy-denied", False, "no client object to copy (did the round trip run?)")]
    source = {"Bucket": bucket, "Key": sources[0]["Key"], "VersionId": sources[0]["VersionId"]}
    ok, seen = _denied(lambda: s3.copy_object(Bucket=bucket, Key=f"{prefix}copy-of-a-validated-object",
                                              CopySource=source))  # fmt: skip
    return [Check("tier-a-copy-denied", ok, f"CopyObject of {source['Key']}: {seen}")]


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


def tier_b_full_flow(
    session: Any,
    outputs: Mapping[str, str],
    *,
    tool: Callable[..., subprocess.CompletedProcess[str]],
    command: Callable[[Sequence[str]], int],
    confirm: Callable[[str], bool],
    echo: Callable[[str], None],
    context: Sequence[str],
    workdir: Path,
) -> list[Check]:
    """Phase 1 -> initialization -> the operator's activation -> phase 2 -> key store and SSE-KMS checks.

    `tool` runs `python -m usecases.cloudhsm_kms <args>` (the operator tool); `command` runs cdk. Activation
    and kmsuser need the CloudHSM CLI on the admin host, which has no API: the run prints the commands (the
    operator tool's `init` does) and waits for the operator's confirmation.
    """
    ca_dir = workdir / "workshop-ca"
    steps = [
        ("ca", ["ca", "--out", str(ca_dir)]),
        ("init", ["init", "--ca-cert", str(ca_dir / "customerCA.crt"), "--ca-key", str(ca_dir / "customerCA.key")]),
    ]
    for name, args in steps:
        done = tool(args)
        if done.returncode != 0:
            return [Check("tier-b-full", False, f"usecases.cloudhsm_kms {name}: {done.stderr.strip()[:200]}")]
        echo(done.stdout)
    if not confirm("Activate the cluster and create kmsuser on the admin host as printed above; type 'yes' when "
                   "`user list` shows kmsuser: "):  # fmt: skip
        return [Check("tier-b-full", False, "the activation ceremony was not confirmed; phase 2 not deployed")]
    phase_2 = [*context, "tier_b_keystore_enabled=true", f"tier_b_trust_anchor_path={ca_dir / 'customerCA.crt'}"]
    code = command([CDK, "deploy", "--all", "--require-approval", "never", *[a for c in phase_2 for a in ("-c", c)]])
    if code != 0:
        return [Check("tier-b-full", False, f"cdk deploy of phase 2 failed (exit {code})")]
    results = [_key_store_connected(session, outputs)]
    source, back = workdir / "tier-b.txt", workdir / "tier-b-back.txt"
    source.write_text("verify-live tier B\n", encoding="utf-8")
    for args in (["upload", str(source), "--object-key", "verify-live/tier-b.txt"],
                 ["download", "verify-live/tier-b.txt", "--out", str(back), "--force"]):  # fmt: skip
        done = tool(args, interactive=True)
        if done.returncode != 0:
            return [*results, Check("tier-b-roundtrip", False, f"{args[0]}: exit {done.returncode}")]
    same = back.read_bytes() == source.read_bytes()
    return [*results, Check("tier-b-roundtrip", same, "SSE-KMS under the HSM key, through the usage role"
                            + ("" if same else ": content differs"))]  # fmt: skip


def _key_store_connected(session: Any, outputs: Mapping[str, str]) -> Check:
    stack = session.client("cloudformation").describe_stacks(
        StackName=names.tier_b_stack_name(DEFAULTS["municipality_id"])
    )["Stacks"][0]
    current = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])} | dict(outputs)
    store_id = current.get(names.OUTPUT_CUSTOM_KEY_STORE_ID, "")
    if not store_id:
        return Check("tier-b-key-store", False, "no CustomKeyStoreId output after phase 2")
    store = session.client("kms").describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]
    state = store["ConnectionState"]
    detail = f"{store_id} is {state}" + (f" ({store.get('ConnectionErrorCode')})" if state == "FAILED" else "")
    return Check("tier-b-key-store", state == "CONNECTED", detail)


# --- entry point ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="make verify-live", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (the plan is still printed)")
    parser.add_argument("--profile", help="AWS profile of the sandbox account")
    parser.add_argument("--region", default=DEFAULTS["region"], help=f"Region (default {DEFAULTS['region']})")
    parser.add_argument("--report-dir", default=str(REPORT_DIR), help="where the dated report goes")
    parser.add_argument("--tier-b-full", action="store_true",
                        help="also initialize, activate (you, on the admin host) and deploy tier B phase 2: 2 HSMs")  # fmt: skip
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
    plan = plan_text(region=args.region, hsm_price=price, caller_arn=caller, tier_b_full=args.tier_b_full)
    if not sys.stdin.isatty() and (not args.yes or args.tier_b_full):
        # --tier-b-full waits for the operator's activation ceremony, which needs a terminal even with --yes.
        print("verify-live: no terminal to confirm on; pass --yes after reading the plan (and run --tier-b-full "
              "from a terminal)", file=sys.stderr)  # fmt: skip
        print(plan)
        return EXIT_REFUSED
    profile = ["--profile", args.profile] if args.profile else []
    import tempfile

    def command(cmd: Sequence[str]) -> int:
        return subprocess.run([*cmd, *profile], cwd=REPO_ROOT, check=False).returncode

    def tool(tool_args: Sequence[str], interactive: bool = False) -> subprocess.CompletedProcess[str]:
        # interactive: the terminal stays attached (assuming the usage role asks for the MFA code)
        return subprocess.run([sys.executable, "-m", "usecases.cloudhsm_kms", *profile, "--region", args.region,
                               *tool_args], cwd=REPO_ROOT, capture_output=not interactive, text=True, timeout=3600,
                              check=False)  # fmt: skip

    def rest_of_tier_b(outputs: Mapping[str, str], workdir: Path) -> list[Check]:
        return tier_b_full_flow(session, outputs, tool=tool, command=command, confirm=confirm, echo=print,
                                context=context, workdir=workdir)  # fmt: skip

    def confirm(prompt: str) -> bool:
        return input(prompt).strip().lower() == "yes"

    with tempfile.TemporaryDirectory(prefix="kommunmoln-verify-live-") as workdir:
        run = Run(
            command=command,
            checks=lambda outputs: live_checks(session, outputs),
            outputs=lambda: _stack_outputs(session),
            confirm=confirm,
            tier_b_full=(lambda outputs: rest_of_tier_b(outputs, Path(workdir))) if args.tier_b_full else None,
        )
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
