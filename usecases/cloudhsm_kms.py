"""Use case 2 (tier B): SSE-KMS with a key in the municipality's own CloudHSM cluster.

    python -m usecases.cloudhsm_kms [--stack-name S] [--profile P] [--region R] [--endpoint-url U] COMMAND

Commands:
  ca --out DIR          create a workshop issuing CA (production uses its existing CA)
  init                  sign the cluster CSR locally, check the chain, InitializeCluster, wait,
                        then print the activation and kmsuser commands for the admin host
  status                cluster, HSMs (and their hourly cost driver), key store, key, next step
  upload FILE           PutObject with SSE-KMS, the stack's key and an S3 Bucket Key
  download KEY          GetObject, and the key that protected it
  verify KEY            the tier B validator's rule, from the client
  demo                  everything above offline (moto + recorded responses), for `make demo`

Ids come from the stack's outputs (--stack-name); --cluster-id, --bucket, --key-id and
--key-store-id override them. The CA private key never leaves this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import secrets
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kommunmoln import names
from kommunmoln.config import DEFAULTS
from kommunmoln.local_aws import moto_server, temporary_environ
from kommunmoln.tier_b import ca as ca_lib
from lambdas.keystore_monitor import logic as monitor_logic
from lambdas.tier_b_validator import logic as validator_logic

DEFAULT_REGION = "eu-north-1"
DEFAULT_STACK = names.tier_b_stack_name(DEFAULTS["municipality_id"])
INIT_TIMEOUT_SECONDS = 30 * 60
INIT_POLL_SECONDS = 15
HOURS_PER_DAY = 24
Echo = Callable[[str], None]


class OperatorError(RuntimeError):
    """A problem the operator can fix; printed as one line on stderr, exit code 3 (EXIT_OPERATOR)."""


# --- AWS access --------------------------------------------------------------------------------
@dataclass
class Aws:
    """Clients for one profile/region/endpoint, and the stack's outputs (read once)."""

    region: str = DEFAULT_REGION
    profile: str | None = None
    endpoint_url: str | None = None
    stack_name: str = DEFAULT_STACK
    overrides: dict[str, str] = field(default_factory=dict)
    _session: Any = None
    _outputs: dict[str, str] | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    role_arn: str = ""  # assume this role for data-plane commands ("" = the caller's own credentials)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self._session is None:
                self._session = boto3.Session(profile_name=self.profile, region_name=self.region)
            self._clients[service] = self._session.client(
                service, endpoint_url=self.endpoint_url, config=Config(retries={"mode": "standard"})
            )
        return self._clients[service]

    def data_client(self, service: str) -> Any:
        """A client for the data plane: as the key's usage role, the only principal its key policy lets use it.

        The role is the stack output KmsKeyUsageRoleArn (or --role-arn); --no-assume-role uses the caller's
        own credentials (which the key policy denies unless they are that role already).
        """
        if not self.role_arn:
            return self.client(service)
        cache_key = f"{service}@{self.role_arn}"
        if cache_key not in self._clients:
            creds = self.client("sts").assume_role(RoleArn=self.role_arn, RoleSessionName="kommunmoln-operator")
            c = creds["Credentials"]
            session = boto3.Session(
                aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                aws_session_token=c["SessionToken"], region_name=self.region,
            )  # fmt: skip
            self._clients[cache_key] = session.client(
                service, endpoint_url=self.endpoint_url, config=Config(retries={"mode": "standard"})
            )
        return self._clients[cache_key]

    def output(self, key: str, *, required: bool = True) -> str:
        if self.overrides.get(key):
            return self.overrides[key]
        if self._outputs is None:
            try:
                stacks = self.client("cloudformation").describe_stacks(StackName=self.stack_name)["Stacks"]
            except ClientError as err:
                if not required:
                    return ""
                raise OperatorError(
                    f"cannot read stack {self.stack_name}: {err.response['Error'].get('Message', err)} "
                    "(deploy it, pass --stack-name, or give the ids with --cluster-id/--bucket/--key-id)"
                ) from None
            self._outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        value = self._outputs.get(key, "")
        if required and not value:
            raise OperatorError(f"stack {self.stack_name} has no output {key} (is phase 2 deployed?)")
        return value


# --- ca ------------------------------------------------------------------------------------------
def cmd_ca(args: argparse.Namespace, echo: Echo) -> int:
    out = Path(args.out)
    passphrase = _passphrase(args.passphrase_env)
    issuing = ca_lib.create_issuing_ca(
        args.name, organization=args.organization, key_type=args.key_type, days=args.days
    )
    cert_path, key_path = ca_lib.write_ca(issuing, out, passphrase=passphrase)
    echo(f"Workshop issuing CA '{args.name}' ({args.key_type}, CA:TRUE, pathlen 0, keyCertSign+cRLSign)")
    echo(f"  certificate (trust anchor): {cert_path}")
    echo(f"  private key (mode 0600{', encrypted' if passphrase else ''}): {key_path}")
    echo(f"  SHA-256 fingerprint: {ca_lib.fingerprint(issuing.certificate)}")
    echo("Keep the private key off shared drives; production signs with the municipality's existing CA.")
    return 0


def _passphrase(variable: str | None) -> bytes | None:
    if not variable:
        return None
    value = os.environ.get(variable, "")
    if not value:
        raise OperatorError(f"environment variable {variable} (the CA key passphrase) is empty")
    return value.encode()


# --- init ----------------------------------------------------------------------------------------
def describe_cluster(cloudhsm: Any, cluster_id: str) -> dict[str, Any]:
    clusters = cloudhsm.describe_clusters(Filters={"clusterIds": [cluster_id]}).get("Clusters", [])
    if not clusters:
        raise OperatorError(f"CloudHSM cluster {cluster_id} not found in this account and Region")
    return clusters[0]


def sign_and_check(csr_pem: str, issuing: ca_lib.IssuingCa, echo: Echo) -> str:
    """Sign the cluster CSR locally and check the chain before anything is sent to AWS."""
    cert = ca_lib.sign_cluster_csr(csr_pem, issuing)
    pem = cert.public_bytes(ca_lib.serialization.Encoding.PEM).decode()
    ca_lib.verify_cluster_certificate(pem, issuing.certificate_pem(), csr_pem=csr_pem)
    echo(f"  signed the cluster CSR locally: subject '{cert.subject.rfc4514_string()}'")
    echo(
        "  verified: signature by the trust anchor, issuer = trust anchor subject, valid now "
        f"(until {cert.not_valid_after_utc:%Y-%m-%d}), public key = the CSR's"
    )
    return pem


def activation_commands(
    cluster: Mapping[str, Any], trust_anchor_pem: str, *, admin_host_id: str, secret_arn: str, region: str
) -> str:
    """The exact commands for the SSM admin host: cluster activate and the kmsuser crypto user."""
    ips = [h["EniIp"] for h in cluster.get("Hsms", []) if h.get("State") == "ACTIVE" and h.get("EniIp")]
    host = admin_host_id or "<AdminHostInstanceId>"
    secret = secret_arn or f"<{names.OUTPUT_KMSUSER_SECRET}>"
    cli = "/opt/cloudhsm/bin/cloudhsm-cli"
    return "\n".join(
        [
            "Activation and kmsuser (boto3 cannot do this; run it on the admin host, nothing leaves the VPC):",
            "  1. Open a shell on the admin host (Session Manager: no SSH, no inbound rule, the session is logged):",
            f"       aws ssm start-session --target {host} --region {region}",
            "  2. Install the trust anchor where the CloudHSM client expects it, and point the CLI at an HSM:",
            f"       sudo tee /opt/cloudhsm/etc/{ca_lib.CA_CERT_FILE} >/dev/null <<'PEM'",
            *[f"       {line}" for line in trust_anchor_pem.strip().splitlines()],
            "       PEM",
            f"       sudo /opt/cloudhsm/bin/configure-cli -a {ips[0] if ips else '<HSM EniIp>'}",
            "  3. Activate the cluster; you choose the admin password at the prompt (not echoed, not logged):",
            f"       {cli} interactive",
            "       aws-cloudhsm > cluster activate",
            "       aws-cloudhsm > quit",
            "  4. Create the crypto user kmsuser with the password KMS will use. The password is read from",
            "     Secrets Manager into a variable and never printed, so it stays out of the session log:",
            f'       KMSUSER_PASSWORD="$(aws secretsmanager get-secret-value --secret-id {secret} '
            f'--region {region} --query SecretString --output text)"',
            "       read -rs -p 'CloudHSM admin password: ' ADMIN_PASSWORD; echo",
            f'       CLOUDHSM_ROLE=admin CLOUDHSM_PIN="admin:$ADMIN_PASSWORD" {cli} user create '
            '--username kmsuser --role crypto-user --password "$KMSUSER_PASSWORD"',
            f'       CLOUDHSM_ROLE=admin CLOUDHSM_PIN="admin:$ADMIN_PASSWORD" {cli} user list',
            "       unset KMSUSER_PASSWORD ADMIN_PASSWORD",
            "     `user list` must show kmsuser with role crypto-user. Do not stay logged in as kmsuser",
            "     (KMS reports USER_LOGGED_IN).",
            "  5. Phase 2: deploy with -c tier_b_keystore_enabled=true -c tier_b_trust_anchor_path=<customerCA.crt>,",
            "     then: python -m usecases.cloudhsm_kms status",
        ]
    )


def run_init(
    cloudhsm: Any,
    cluster_id: str,
    *,
    trust_anchor_pem: str,
    load_ca: Callable[[], ca_lib.IssuingCa],
    echo: Echo,
    admin_host_id: str = "",
    secret_arn: str = "",
    region: str = DEFAULT_REGION,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    timeout: float = INIT_TIMEOUT_SECONDS,
    poll: float = INIT_POLL_SECONDS,
) -> str:
    """Initialize the cluster, continuing where an earlier run stopped. Returns the final state."""
    cluster = describe_cluster(cloudhsm, cluster_id)
    state = cluster["State"]
    echo(f"Cluster {cluster_id}: {state}")
    if state == "CREATE_IN_PROGRESS":
        raise OperatorError("the cluster is still being created; run init again when it is UNINITIALIZED")
    if state == "UNINITIALIZED":
        csr = cluster.get("Certificates", {}).get("ClusterCsr")
        if not csr:
            raise OperatorError(
                "the cluster has no CSR yet: it appears when the first HSM is ACTIVE (deploy the stack, wait, retry)"
            )
        issuing = load_ca()
        if ca_lib.load_certificate(trust_anchor_pem).subject != issuing.certificate.subject:
            raise OperatorError("the --ca-cert given is not the certificate of the CA key")
        signed = sign_and_check(csr, issuing, echo)
        cloudhsm.initialize_cluster(ClusterId=cluster_id, SignedCert=signed, TrustAnchor=trust_anchor_pem)
        echo("  InitializeCluster accepted")
        state = "INITIALIZE_IN_PROGRESS"
    if state == "INITIALIZE_IN_PROGRESS":
        deadline = clock() + timeout
        while state == "INITIALIZE_IN_PROGRESS":
            if clock() >= deadline:
                raise OperatorError(
                    f"the cluster is still INITIALIZE_IN_PROGRESS after {int(timeout)} s; run init again to keep waiting"
                )
            sleep(poll)
            cluster = describe_cluster(cloudhsm, cluster_id)
            state = cluster["State"]
            echo(f"  waiting for INITIALIZED ... {state}")
    if state == "INITIALIZED":
        echo("Cluster is INITIALIZED: the cluster certificate chains to the municipality's CA.")
        echo(
            activation_commands(
                cluster, trust_anchor_pem, admin_host_id=admin_host_id, secret_arn=secret_arn, region=region
            )
        )
        return state
    if state == "ACTIVE":
        echo("Cluster is ACTIVE (activated). If kmsuser does not exist yet, run step 4 below; then deploy phase 2.")
        echo(
            activation_commands(
                cluster, trust_anchor_pem, admin_host_id=admin_host_id, secret_arn=secret_arn, region=region
            )
        )
        return state
    raise OperatorError(f"the cluster is {state} ({cluster.get('StateMessage', 'no message')}); see docs/use-case-2.md")


def cmd_init(args: argparse.Namespace, aws: Aws, echo: Echo) -> int:
    cluster_id = aws.output(names.OUTPUT_CLUSTER_ID)
    cert_path = Path(args.ca_cert)
    trust_anchor = cert_path.read_text()

    def load() -> ca_lib.IssuingCa:
        if not args.ca_key:
            raise OperatorError("the cluster is UNINITIALIZED: give --ca-key to sign its CSR")
        return ca_lib.load_ca(cert_path, Path(args.ca_key), passphrase=_passphrase(args.passphrase_env))

    run_init(
        aws.client("cloudhsmv2"),
        cluster_id,
        trust_anchor_pem=trust_anchor,
        load_ca=load,
        echo=echo,
        admin_host_id=aws.output(names.OUTPUT_ADMIN_HOST_ID, required=False),
        secret_arn=aws.output(names.OUTPUT_KMSUSER_SECRET, required=False),
        region=aws.region,
        timeout=args.timeout,
    )
    return 0


# --- status --------------------------------------------------------------------------------------
def hsm_cost_lines(cluster: Mapping[str, Any]) -> list[str]:
    running = [h for h in cluster.get("Hsms", []) if h.get("State") not in ("DELETED",)]
    zones = Counter(h["AvailabilityZone"] for h in running)
    per_zone = ", ".join(f"{z}: {n}" for z, n in sorted(zones.items())) or "none"
    states = ", ".join(f"{h['HsmId']} {h.get('State')}" for h in running) or "no HSMs"
    hours = len(running) * HOURS_PER_DAY
    return [
        f"HSMs: {len(running)} ({per_zone}) - {states}",
        f"Cost driver: {len(running)} HSM x {HOURS_PER_DAY} h = {hours} HSM-hours per day, about {hours * 30} per "
        "month; every HSM is billed per HSM-hour from creation to deletion, with no free tier (high availability "
        "needs 2). Workshop teardown: make destroy with workshop_mode=true.",
    ]


def next_step(cluster: Mapping[str, Any] | None, report: monitor_logic.HealthReport) -> str:
    if cluster is None:
        return "deploy the tier B stack (make deploy)"
    state = cluster.get("State")
    active = [h for h in cluster.get("Hsms", []) if h.get("State") == "ACTIVE"]
    if state == "UNINITIALIZED":
        if not active:
            return "wait for the first HSM to become ACTIVE, then run: python -m usecases.cloudhsm_kms init"
        return "sign the CSR and initialize: python -m usecases.cloudhsm_kms init --ca-cert ... --ca-key ..."
    if state == "INITIALIZE_IN_PROGRESS":
        return "wait: python -m usecases.cloudhsm_kms init --ca-cert ... (it continues waiting)"
    if state == "INITIALIZED":
        return "activate the cluster and create kmsuser: run init again to print the commands"
    checks = {c.name: c for c in report.checks}
    if checks["key-store"].status == monitor_logic.SKIPPED:
        return "deploy phase 2: -c tier_b_keystore_enabled=true -c tier_b_trust_anchor_path=<customerCA.crt>"
    for check in report.problems:
        return f"{check.name}: {check.remedy}"
    return "all healthy: python -m usecases.cloudhsm_kms upload FILE"


def cmd_status(args: argparse.Namespace, aws: Aws, echo: Echo) -> int:
    cluster_id = aws.output(names.OUTPUT_CLUSTER_ID)
    settings = monitor_logic.MonitorSettings(
        key_store_id=aws.output(names.OUTPUT_CUSTOM_KEY_STORE_ID, required=False),
        cluster_id=cluster_id,
        key_arn=aws.output(names.OUTPUT_KMS_KEY_ARN, required=False),
        min_hsms=2,
    )
    try:
        cluster: dict[str, Any] | None = describe_cluster(aws.client("cloudhsmv2"), cluster_id)
    except OperatorError:
        cluster = None
    report = monitor_logic.check_health(kms=aws.client("kms"), cloudhsm=aws.client("cloudhsmv2"), settings=settings)
    print_status(cluster, report, echo)
    return 0 if report.healthy else 1


def print_status(cluster: Mapping[str, Any] | None, report: monitor_logic.HealthReport, echo: Echo) -> None:
    if cluster is not None:
        echo(
            f"Cluster {cluster['ClusterId']}: {cluster['State']} ({cluster.get('HsmType', '?')}, {cluster.get('Mode', '?')})"
        )
        for line in hsm_cost_lines(cluster):
            echo(line)
    for check in report.checks:
        echo(f"[{check.status:>7}] {check.name}: {check.detail}")
        if check.remedy:
            echo(f"          remedy: {check.remedy}")
    echo(f"Next: {next_step(cluster, report)}")


# --- upload / download / verify -------------------------------------------------------------------
def sse_kms_args(key_id: str) -> dict[str, Any]:
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id, "BucketKeyEnabled": True}


def describe_protection(head: Mapping[str, Any]) -> str:
    mode = head.get("ServerSideEncryption") or "none"
    key = head.get("SSEKMSKeyId") or "-"
    bucket_key = "on" if head.get("BucketKeyEnabled") else "off"
    return f"encryption {mode}, KMS key {key}, bucket key {bucket_key}"


MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024


def upload_object(s3: Any, bucket: str, key: str, path: Path, *, kms_key: str) -> dict[str, Any]:
    """Stream a file to S3 with SSE-KMS under the tier B key; large files in parts, one part in memory at a time.

    (boto3's managed transfer does not pass BucketKeyEnabled, so the multipart upload is spelled out.)
    """
    encryption = sse_kms_args(kms_key)
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= MULTIPART_THRESHOLD:
            s3.put_object(Bucket=bucket, Key=key, Body=handle, ContentLength=size, **encryption)
            return s3.head_object(Bucket=bucket, Key=key)
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **encryption)["UploadId"]
        try:
            parts = []
            for number in range(1, size // PART_SIZE + 2):
                chunk = handle.read(PART_SIZE)
                if not chunk:
                    break
                etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk)["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
    return s3.head_object(Bucket=bucket, Key=key)


def cmd_upload(args: argparse.Namespace, aws: Aws, echo: Echo) -> int:
    bucket, kms_key = aws.output(names.OUTPUT_SSE_BUCKET), aws.output(names.OUTPUT_KMS_KEY_ARN)
    path = Path(args.file)
    key = args.key or path.name
    head = upload_object(aws.data_client("s3"), bucket, key, path, kms_key=kms_key)
    echo(f"s3://{bucket}/{key} version {head.get('VersionId', '-')}: {describe_protection(head)}")
    return 0


def cmd_download(args: argparse.Namespace, aws: Aws, echo: Echo) -> int:
    bucket = aws.output(names.OUTPUT_SSE_BUCKET)
    out = Path(args.out or Path(args.key).name)
    if out.exists() and not args.force:
        raise OperatorError(f"{out} exists; pass --force to overwrite")
    s3 = aws.data_client("s3")
    extra = {"VersionId": args.version_id} if args.version_id else {}
    head = s3.head_object(Bucket=bucket, Key=args.key, **extra)
    s3.download_file(bucket, args.key, str(out), ExtraArgs=extra or None)
    echo(f"s3://{bucket}/{args.key} -> {out}: {describe_protection(head)}")
    return 0


def verify_object(
    s3: Any, kms: Any, bucket: str, key: str, *, expected_key: str, version_id: str | None = None
) -> validator_logic.Verdict:
    matcher = validator_logic.KeyMatcher.build(expected_key, describe_key=kms.describe_key)
    head = s3.head_object(Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {}))
    return validator_logic.evaluate(head, matcher)


def cmd_verify(args: argparse.Namespace, aws: Aws, echo: Echo) -> int:
    bucket = aws.output(names.OUTPUT_SSE_BUCKET)
    verdict = verify_object(
        aws.data_client("s3"), aws.client("kms"), bucket, args.key,
        expected_key=aws.output(names.OUTPUT_KMS_KEY_ARN), version_id=args.version_id,
    )  # fmt: skip
    echo(f"s3://{bucket}/{args.key}: {'OK' if verdict.ok else 'FAIL ' + verdict.reason} - {verdict.detail}")
    return 0 if verdict.ok else 1


# --- demo ----------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace, echo: Echo) -> int:
    with moto_server(args.endpoint_url) as endpoint:
        return run_demo(endpoint, echo=echo, region=args.region)


_FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


@dataclass
class _Tally:
    echo: Echo
    steps: list[tuple[str, bool, str]] = field(default_factory=list)

    def record(self, step: str, ok: bool, note: str) -> None:
        self.steps.append((step, ok, note))
        self.echo(f"  {'ok  ' if ok else 'FAIL'} {step}: {note}")


def _section(echo: Echo, title: str) -> None:
    echo("")
    echo(f"== {title} " + "=" * max(0, 86 - len(title)))


def run_demo(endpoint: str, *, echo: Echo = print, region: str = DEFAULT_REGION) -> int:
    """Use case 2 offline: data flow and validators on moto, CA work for real, control plane on recorded responses."""
    tally = _Tally(echo)
    echo("kommunmoln use case 2 (tier B): SSE-KMS with a key in the municipality's CloudHSM cluster - offline demo")
    echo("NOTE: moto has no CloudHSM HSMs and no KMS custom key stores. A regular moto KMS key stands in for the")
    echo("      HSM-backed key in the data flow; the control plane (HSMs, InitializeCluster, key store connect) runs")
    echo("      against recorded responses that botocore's Stubber checks against the real AWS service models.")
    echo(f"AWS emulation: {endpoint} (region {region})")
    env = {**_FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": region, "AWS_REGION": region, "AWS_ENDPOINT_URL": endpoint}
    with (
        temporary_environ(env),
        _without_env("AWS_PROFILE"),
        tempfile.TemporaryDirectory(prefix="kommunmoln-tier-b-") as tmp,
    ):
        session = boto3.Session(region_name=region, **_session_credentials())
        aws = Aws(region=region, endpoint_url=endpoint)
        aws._session = session
        data = _demo_data_flow(aws, Path(tmp), tally)
        _demo_object_validator(aws, data, tally)
        _demo_monitor(session, aws, data, tally)
        material = _demo_ca(Path(tmp), tally)
        _demo_control_plane(session, material, tally)
    _section(echo, "Summary")
    for step, ok, note in tally.steps:
        echo(f"  {'ok  ' if ok else 'FAIL'} {step}: {note}")
    failed = [s for s in tally.steps if not s[1]]
    echo("")
    echo("Runs only against real AWS: HSM creation, InitializeCluster, activation and kmsuser on the admin host,")
    echo("the key store connection and keys with Origin AWS_CLOUDHSM (see docs/use-case-2.md, 'Verify on AWS').")
    echo(f"{len(tally.steps) - len(failed)} of {len(tally.steps)} steps as expected.")
    return 1 if failed else 0


def _session_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": _FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": _FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": _FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    }


@contextlib.contextmanager
def _without_env(*variables: str) -> Iterator[None]:
    saved = {v: os.environ.pop(v) for v in variables if v in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.contextmanager
def _captured(logger: Any, stream: io.StringIO) -> Iterator[None]:
    """Send a Powertools logger (and EMF output, warnings) to `stream` while the handler runs in the demo."""
    handler = logger.registered_handler
    previous = handler.setStream(stream)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        handler.setStream(previous)


@dataclass
class _DemoData:
    bucket: str
    key_id: str
    key_arn: str
    alias: str
    wrong_key_arn: str
    topic_arn: str
    queue_url: str


def _alarms(aws: Aws, queue_url: str) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    found = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            found.append(json.loads(json.loads(message["Body"])["Message"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _demo_data_flow(aws: Aws, tmp: Path, tally: _Tally) -> _DemoData:
    echo = tally.echo
    _section(echo, "1. SSE-KMS data flow (moto S3 + a stand-in KMS key)")
    suffix = secrets.token_hex(3)
    s3, kms, sns, sqs = (aws.client(s) for s in ("s3", "kms", "sns", "sqs"))
    bucket = f"kommunmoln-exempel-tier-b-{suffix}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": aws.region})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    meta = kms.create_key(Description="STAND-IN for the CloudHSM-backed key (moto has no custom key stores)")[
        "KeyMetadata"
    ]
    alias = f"alias/kommunmoln-exempel-tier-b-{suffix}"
    kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    wrong = kms.create_key(Description="some other key")["KeyMetadata"]
    topic_arn = sns.create_topic(Name=f"kommunmoln-tier-b-alarms-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"kommunmoln-tier-b-alarm-inbox-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    echo(f"bucket s3://{bucket} (versioned); key {meta['Arn']} alias {alias}")

    source = tmp / "protokoll-socialnamnden.txt"
    source.write_text("Protokoll, socialnämnden (sekretess enligt OSL 26 kap.)\n" * 200, encoding="utf-8")
    head = upload_object(s3, bucket, source.name, source, kms_key=meta["Arn"])
    echo(f"upload  s3://{bucket}/{source.name}: {describe_protection(head)}")
    back = tmp / "downloaded.txt"
    s3.download_file(bucket, source.name, str(back))
    tally.record("upload/download", back.read_bytes() == source.read_bytes(), "bytes round-trip with SSE-KMS")
    verdict = verify_object(s3, kms, bucket, source.name, expected_key=alias)
    tally.record("verify (client)", verdict.ok, verdict.detail)
    return _DemoData(bucket, meta["KeyId"], meta["Arn"], alias, wrong["Arn"], topic_arn, queue_url)


def _demo_object_validator(aws: Aws, data: _DemoData, tally: _Tally) -> None:
    from lambdas.tier_b_validator import handler as validator_handler

    echo = tally.echo
    _section(echo, "2. Object validator (the Lambda handler on S3 events)")
    s3 = aws.client("s3")
    alias_arn = data.key_arn.split(":key/")[0] + ":" + data.alias
    uploads = [
        ("by-key-arn.pdf", sse_kms_args(data.key_arn), names.STATUS_VALIDATED),
        ("by-key-id.pdf", sse_kms_args(data.key_id), names.STATUS_VALIDATED),
        ("by-alias.pdf", sse_kms_args(data.alias), names.STATUS_VALIDATED),
        ("by-alias-arn.pdf", sse_kms_args(alias_arn), names.STATUS_VALIDATED),
        ("wrong-key.pdf", sse_kms_args(data.wrong_key_arn), names.STATUS_QUARANTINED),
        ("sse-s3.pdf", {"ServerSideEncryption": "AES256"}, names.STATUS_QUARANTINED),
        ("no-bucket-key.pdf", {**sse_kms_args(data.key_arn), "BucketKeyEnabled": False}, names.STATUS_QUARANTINED),
    ]
    records = []
    for key, extra, _ in uploads:
        version = s3.put_object(Bucket=data.bucket, Key=key, Body=b"%PDF-1.7 demo", **extra)["VersionId"]
        records.append(
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": data.bucket}, "object": {"key": key, "versionId": version}},
            }
        )
    env = {names.ENV_EXPECTED_KMS_KEY_ARN: data.alias, names.ENV_ALARM_TOPIC_ARN: data.topic_arn}
    with temporary_environ(env):
        validator_handler.reset_cold_start_state()
        logs = io.StringIO()
        with _captured(validator_handler.logger, logs), contextlib.redirect_stdout(logs):
            first = validator_handler.lambda_handler({"Records": records}, None)
            second = validator_handler.lambda_handler({"Records": records}, None)  # duplicate delivery
        validator_handler.reset_cold_start_state()
    echo(f"expected key configured as the alias {data.alias} (resolved once with kms:DescribeKey)")
    all_as_expected = True
    for (key, _, expected), result in zip(uploads, first["results"], strict=True):
        echo(f"  {key:<20} -> {result['status']:<11} {result['reason']}")
        all_as_expected &= result["status"] == expected
    tally.record(
        "validator verdicts",
        all_as_expected,
        "id/ARN/alias forms validated; wrong key, SSE-S3, no bucket key quarantined",
    )
    duplicates = all(r["duplicate"] for r in second["results"])
    tally.record("duplicate delivery", duplicates, "second delivery changed no tag and sent no alarm")
    tags = s3.get_object_tagging(Bucket=data.bucket, Key="wrong-key.pdf")["TagSet"]
    echo(f"  tags on wrong-key.pdf: {', '.join(t['Key'] + '=' + t['Value'] for t in tags)}")
    alarms = _alarms(aws, data.queue_url)
    tally.record(
        "quarantine alarms", len(alarms) == 3, f"{len(alarms)} SNS alarms ({', '.join(a['reason'] for a in alarms)})"
    )
    emf = logs.getvalue().count('"CloudWatchMetrics"')
    echo(f"  EMF metric blobs written: {emf} ({names.METRIC_OBJECTS_VALIDATED}, {names.METRIC_OBJECTS_QUARANTINED})")
    remaining = s3.list_object_versions(Bucket=data.bucket).get("Versions", [])
    tally.record("never deletes", len(remaining) == len(uploads) + 1, f"{len(remaining)} object versions still present")


def _demo_monitor(session: Any, aws: Aws, data: _DemoData, tally: _Tally) -> None:
    from botocore.stub import Stubber

    from kommunmoln.tier_b import recorded
    from lambdas.keystore_monitor import handler as monitor_handler

    echo = tally.echo
    _section(echo, "3. Key store monitor (recorded: key store DISCONNECTED)")
    kms = session.client("kms", region_name=recorded.REGION, endpoint_url="https://kms.eu-north-1.amazonaws.com")
    hsm = session.client(
        "cloudhsmv2", region_name=recorded.REGION, endpoint_url="https://cloudhsmv2.eu-north-1.amazonaws.com"
    )
    settings = monitor_handler.Settings(
        checks=monitor_logic.MonitorSettings(recorded.KEY_STORE_ID, recorded.CLUSTER_ID, recorded.KEY_ARN, 2),
        topic_arn=data.topic_arn,
    )
    with Stubber(kms) as kms_stub, Stubber(hsm) as hsm_stub:
        kms_stub.add_response(
            "describe_custom_key_stores",
            recorded.key_store("DISCONNECTED"),
            {"CustomKeyStoreId": recorded.KEY_STORE_ID},
        )
        hsm_stub.add_response(
            "describe_clusters",
            recorded.cluster(
                "ACTIVE",
                [
                    recorded.hsm("hsm-aaaaaaaaaaa", recorded.ZONES[0]),
                    recorded.hsm("hsm-bbbbbbbbbbb", recorded.ZONES[1]),
                ],
            ),
            {"Filters": {"clusterIds": [recorded.CLUSTER_ID]}},
        )
        kms_stub.add_response("describe_key", recorded.key_metadata("Unavailable"), {"KeyId": recorded.KEY_ARN})
        with _captured(monitor_handler.logger, io.StringIO()):
            report, result = monitor_handler.run(settings, kms=kms, cloudhsm=hsm, sns=aws.client("sns"))
        kms_stub.assert_no_pending_responses()
        hsm_stub.assert_no_pending_responses()
    for check in report.checks:
        echo(f"  [{check.status:>7}] {check.name}: {check.detail}")
        if check.remedy:
            echo(f"            remedy: {check.remedy}")
    echo(f"  metrics: {json.dumps(report.metrics())}")
    alarms = _alarms(aws, data.queue_url)
    tally.record(
        "monitor alarm",
        result["alarmed"]
        and len(alarms) == 1
        and alarms[0]["problems"][0]["remedy"].startswith("the key store is DISCONNECTED"),
        "DISCONNECTED key store -> KeyStoreConnected=0, KmsKeyUsable=0, SNS alarm with the remedy",
    )


@dataclass
class _CaMaterial:
    issuing: ca_lib.IssuingCa = field(repr=False)
    csr_pem: str
    signed_pem: str


def _demo_ca(tmp: Path, tally: _Tally) -> _CaMaterial:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from kommunmoln.tier_b import softhsm

    echo = tally.echo
    _section(echo, "4. Municipality CA and the cluster CSR (real X.509)")
    issuing = ca_lib.create_issuing_ca("Exempelkommun CloudHSM issuing CA", organization="Exempelkommun")
    cert_path, key_path = ca_lib.write_ca(issuing, tmp / "ca")
    mode = key_path.stat().st_mode & 0o777
    tally.record(
        "workshop CA", mode == 0o600, f"{cert_path.name} + {key_path.name} (mode {mode:o}); RSA 3072, CA:TRUE pathlen 0"
    )
    try:
        ca_lib.write_ca(issuing, tmp / "ca")
        refused = False
    except ca_lib.CertificateError:
        refused = True
    tally.record("no overwrite", refused, "a second `ca` into the same directory is refused")
    common_name = f"HSM:{secrets.token_hex(4).upper()}:PARTN:0, for FIPS mode"
    if softhsm.available():
        csr_pem = softhsm.csr_from_softhsm(common_name)
        echo("  cluster CSR made inside a SoftHSM2 token (PKCS#11, non-extractable RSA key), like the cluster's")
    else:
        echo(
            "  SoftHSM2 is not installed: the CSR comes from a `cryptography` key instead (the signing side is the same)"
        )
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        csr_pem = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
    signed_pem = sign_and_check(csr_pem, issuing, echo)
    tally.record("CSR signed and chain verified", True, "signature, issuer, validity and public key match")
    # Same name, different key: only the signature check can tell them apart.
    other = ca_lib.create_issuing_ca("Exempelkommun CloudHSM issuing CA", organization="Exempelkommun", key_type="p384")
    expired = ca_lib.sign_cluster_csr(csr_pem, issuing, days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    mismatch = ca_lib.sign_cluster_csr(_other_csr(), issuing)
    negatives = [
        ("wrong CA", lambda: ca_lib.verify_cluster_certificate(signed_pem, other.certificate_pem(), csr_pem=csr_pem)),
        (
            "expired",
            lambda: ca_lib.verify_cluster_certificate(_pem(expired), issuing.certificate_pem(), csr_pem=csr_pem),
        ),
        (
            "other CSR",
            lambda: ca_lib.verify_cluster_certificate(_pem(mismatch), issuing.certificate_pem(), csr_pem=csr_pem),
        ),
    ]
    rejected = 0
    for label, check in negatives:
        try:
            check()
            echo(f"  {label}: NOT rejected")
        except ca_lib.CertificateError as err:
            rejected += 1
            echo(f"  {label}: rejected - {err}")
    tally.record("bad chains rejected", rejected == len(negatives), "wrong CA, expired certificate, mismatched key")
    return _CaMaterial(issuing=issuing, csr_pem=csr_pem, signed_pem=signed_pem)


def _pem(cert: Any) -> str:
    return cert.public_bytes(ca_lib.serialization.Encoding.PEM).decode()


def _other_csr() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the cluster")])
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _demo_control_plane(session: Any, material: _CaMaterial, tally: _Tally) -> None:
    from botocore.stub import ANY, Stubber

    from kommunmoln.tier_b import recorded
    from lambdas.cloudhsm_provisioner import logic as provisioner

    echo = tally.echo
    _section(echo, "5. Control plane on recorded responses (botocore Stubber, real service models)")
    region = recorded.REGION

    def client(service: str) -> Any:
        return session.client(service, region_name=region, endpoint_url=f"https://{service}.{region}.amazonaws.com")

    clients = provisioner.Clients(cloudhsm=client("cloudhsmv2"), kms=client("kms"), secrets=client("secretsmanager"))
    no_wait: Callable[[float], None] = lambda _seconds: None  # noqa: E731 - recorded responses need no waiting
    cluster_filter = {"Filters": {"clusterIds": [recorded.CLUSTER_ID]}}
    hsm_ids = ("hsm-aaaaaaaaaaa", "hsm-bbbbbbbbbbb")
    with Stubber(clients.cloudhsm) as hsm, Stubber(clients.kms) as kms, Stubber(clients.secrets) as sm:
        # a) Custom::CloudHsmHsms, phase 1: exactly one HSM (CloudHSM accepts no second HSM until the cluster is
        #    activated); phase 2 adds the one in the other zone once the cluster is ACTIVE.
        hsm_event = {
            "RequestType": "Create",
            "ResourceType": names.RESOURCE_CLOUDHSM_HSMS,
            "ResourceProperties": {
                "ClusterId": recorded.CLUSTER_ID,
                "AvailabilityZones": list(recorded.ZONES),
                "HsmCount": "1",
            },
        }
        first = recorded.hsm(hsm_ids[0], recorded.ZONES[0], "CREATE_IN_PROGRESS")
        hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED"), cluster_filter)
        hsm.add_response(
            "create_hsm", {"Hsm": first}, {"ClusterId": recorded.CLUSTER_ID, "AvailabilityZone": recorded.ZONES[0]}
        )
        created = provisioner.on_event(hsm_event, clients, sleep=no_wait)
        event = {**hsm_event, "PhysicalResourceId": created["PhysicalResourceId"]}
        hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", [first]), cluster_filter)
        waiting = provisioner.is_complete(event, clients, sleep=no_wait)
        hsm.add_response(
            "describe_clusters", recorded.cluster("UNINITIALIZED", [recorded.hsm(hsm_ids[0], recorded.ZONES[0])]),
            cluster_filter,
        )  # fmt: skip
        done = provisioner.is_complete(event, clients, sleep=no_wait)
        tally.record(
            "HSM creation (phase 1)",
            not waiting["IsComplete"] and done["IsComplete"] and done["Data"]["HsmCount"] == "1",
            f"CreateHsm in {recorded.ZONES[0]} only (no second HSM before activation); CREATE_IN_PROGRESS -> "
            f"not complete; ACTIVE -> {done['Data']['HsmIds']}",
        )
        # After activation, phase 2 adds the HSM in the other zone (the model-based tests run that step).
        active_hsms = [recorded.hsm(i, z) for i, z in zip(hsm_ids, recorded.ZONES, strict=True)]

        # b) init: sign the CSR the cluster returns, InitializeCluster, wait, print the admin-host commands.
        hsm.add_response(
            "describe_clusters", recorded.cluster("UNINITIALIZED", active_hsms, csr=material.csr_pem), cluster_filter
        )
        hsm.add_response(
            "initialize_cluster",
            {"State": "INITIALIZE_IN_PROGRESS", "StateMessage": "Cluster is initializing"},
            {"ClusterId": recorded.CLUSTER_ID, "SignedCert": ANY, "TrustAnchor": material.issuing.certificate_pem()},
        )
        hsm.add_response("describe_clusters", recorded.cluster("INITIALIZE_IN_PROGRESS", active_hsms), cluster_filter)
        hsm.add_response("describe_clusters", recorded.cluster("INITIALIZED", active_hsms), cluster_filter)
        ticks = iter(range(1000))
        state = run_init(
            clients.cloudhsm,
            recorded.CLUSTER_ID,
            trust_anchor_pem=material.issuing.certificate_pem(),
            load_ca=lambda: material.issuing,
            echo=echo,
            admin_host_id="i-0123456789abcdef0",
            secret_arn=recorded.SECRET_ARN,
            region=region,
            sleep=no_wait,
            clock=lambda: float(next(ticks)),
        )
        tally.record(
            "initialize", state == "INITIALIZED", "UNINITIALIZED -> InitializeCluster -> INITIALIZED; commands printed"
        )

        # c) Custom::KmsCustomKeyStore: create, connect, CONNECTING, then FAILED with INVALID_CREDENTIALS.
        demo_password = secrets.token_urlsafe(18)  # stands in for the secret's value; never printed
        store_event = {
            "RequestType": "Create",
            "ResourceType": names.RESOURCE_KMS_CUSTOM_KEY_STORE,
            "ResourceProperties": {
                "ClusterId": recorded.CLUSTER_ID,
                "KeyStoreName": "kommunmoln-exempel",
                "TrustAnchorCertificate": material.issuing.certificate_pem(),
                "KeyStorePasswordSecretArn": recorded.SECRET_ARN,
                "ExistingKeyStoreId": "",
                "WorkshopMode": "true",
            },
        }
        kms.add_client_error(
            "describe_custom_key_stores",
            "CustomKeyStoreNotFoundException",
            expected_params={"CustomKeyStoreName": "kommunmoln-exempel"},
        )
        sm.add_response(
            "get_secret_value",
            {"ARN": recorded.SECRET_ARN, "Name": "kommunmoln-exempel-kmsuser", "SecretString": demo_password},
            {"SecretId": recorded.SECRET_ARN},
        )
        kms.add_response(
            "create_custom_key_store",
            {"CustomKeyStoreId": recorded.KEY_STORE_ID},
            {
                "CustomKeyStoreName": "kommunmoln-exempel",
                "CloudHsmClusterId": recorded.CLUSTER_ID,
                "TrustAnchorCertificate": material.issuing.certificate_pem(),
                "KeyStorePassword": demo_password,
                "CustomKeyStoreType": "AWS_CLOUDHSM",
            },
        )
        kms.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": recorded.KEY_STORE_ID})
        store = provisioner.on_event(store_event, clients, sleep=no_wait)
        event = {**store_event, "PhysicalResourceId": store["PhysicalResourceId"]}
        kms.add_response(
            "describe_custom_key_stores", recorded.key_store("CONNECTING"), {"CustomKeyStoreId": recorded.KEY_STORE_ID}
        )
        connecting = provisioner.is_complete(event, clients, sleep=no_wait)
        kms.add_response(
            "describe_custom_key_stores",
            recorded.key_store("FAILED", code="INVALID_CREDENTIALS"),
            {"CustomKeyStoreId": recorded.KEY_STORE_ID},
        )
        try:
            provisioner.is_complete(event, clients, sleep=no_wait)
            failure = None
        except provisioner.KeyStoreConnectionFailed as err:
            failure = err
        echo(
            f"  key store {store['PhysicalResourceId']}: CreateCustomKeyStore + ConnectCustomKeyStore; CONNECTING -> not complete"
        )
        if failure is not None:
            echo(f"  deployment fails at once: {failure}")
        tally.record(
            "key store connect FAILED",
            not connecting["IsComplete"] and failure is not None and failure.code == "INVALID_CREDENTIALS",
            "fails fast with INVALID_CREDENTIALS and its remedy (no waiting out the timeout)",
        )
        for stub in (hsm, kms, sm):
            stub.assert_no_pending_responses()
        leaked = demo_password in str(failure)
        tally.record("no secret in errors", not leaked, "the kmsuser password appears in no message")


# --- CLI -----------------------------------------------------------------------------------------
# Exit codes (also in --help): distinct per kind of failure, so scripts can tell them apart.
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # verify: the object breaks the tier B rule
EXIT_USAGE = 2  # argparse: a bad command line
EXIT_OPERATOR = 3  # something the operator fixes: missing output, file exists, bad certificate
EXIT_AWS = 4  # an AWS API error (code and message printed)
EXIT_FILE = 5  # a local file or directory problem
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_CODES_HELP = (
    "exit codes: 0 ok, 1 verify found a violation, 2 bad command line, 3 operator action needed, "
    "4 AWS API error, 5 local file error, 130 interrupted"
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, accepted before or after the command name.

    The subcommand copies default to SUPPRESS, so a value given after the command overrides the one
    before it and an absent one leaves the main parser's default in place.
    """

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--stack-name", default=default(DEFAULT_STACK), help=f"tier B stack (default {DEFAULT_STACK})")
    parser.add_argument("--profile", default=default(None), help="AWS profile (default: the environment's credentials)")
    parser.add_argument("--region", default=default(DEFAULT_REGION), help=f"AWS Region (default {DEFAULT_REGION})")
    parser.add_argument("--endpoint-url", default=default(None), help="AWS endpoint URL (a local emulator)")
    for option, output in (("--cluster-id", names.OUTPUT_CLUSTER_ID), ("--bucket", names.OUTPUT_SSE_BUCKET),
                           ("--key-id", names.OUTPUT_KMS_KEY_ARN), ("--key-store-id", names.OUTPUT_CUSTOM_KEY_STORE_ID),
                           ("--role-arn", names.OUTPUT_KMS_USAGE_ROLE)):  # fmt: skip
        parser.add_argument(option, default=default(None), help=f"use this instead of the stack output {output}")
    parser.add_argument(
        "--no-assume-role", action="store_true", default=default(False),
        help="upload/download/verify with your own credentials instead of the usage role (the key policy lets only "
        "that role use the key)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The operator tool's command line (no abbreviations; every option documented)."""
    parser = argparse.ArgumentParser(
        prog="python -m usecases.cloudhsm_kms", description=__doc__.split("\n\n")[0], epilog=EXIT_CODES_HELP,
        allow_abbrev=False,
    )  # fmt: skip
    _global_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES_HELP, allow_abbrev=False)
        _global_options(child, defaults=False)
        return child

    ca = command("ca", "create a workshop issuing CA (production uses its existing CA)")
    ca.add_argument("--out", required=True, help="directory for customerCA.crt and customerCA.key (created, 0700)")
    ca.add_argument("--name", default=f"{DEFAULTS['municipality_name']} CloudHSM issuing CA",
                    help="the CA certificate's common name")  # fmt: skip
    ca.add_argument("--organization", default=DEFAULTS["municipality_name"], help="the CA certificate's organization")
    ca.add_argument("--key-type", choices=ca_lib.KEY_TYPES, default="rsa3072", help="CA key type (default rsa3072)")
    ca.add_argument("--days", type=_positive_int, default=3650, help="validity in days, at least 1 (default 3650)")
    ca.add_argument("--passphrase-env", help="encrypt the key with the passphrase in this environment variable")

    init = command("init", "initialize the cluster with the municipality's CA, then print the activation commands")
    init.add_argument("--ca-cert", required=True, help="the issuing CA certificate (trust anchor), PEM")
    init.add_argument("--ca-key", help="the CA private key, PEM (needed while the cluster is UNINITIALIZED)")
    init.add_argument("--passphrase-env", help="environment variable holding the CA key passphrase")
    init.add_argument("--timeout", type=_positive_float, default=INIT_TIMEOUT_SECONDS,
                      help=f"seconds to wait for INITIALIZED (default {INIT_TIMEOUT_SECONDS})")  # fmt: skip

    command("status", "cluster, HSMs, key store, key and the next step")

    upload = command("upload", "upload a file with SSE-KMS under the tier B key")
    upload.add_argument("file", help="the local file to upload")
    upload.add_argument("--object-key", "--key", dest="key", help="object key in the bucket (default: the file name)")

    download = command("download", "download an object and report the key that protected it")
    download.add_argument("key", help="the object key")
    download.add_argument("--out", help="local file to write (default: the object key's last part)")
    download.add_argument("--version-id", help="a specific object version")
    download.add_argument("--force", action="store_true", help="overwrite the local file if it exists")

    verify = command("verify", "check an object against the tier B rule (read-only)")
    verify.add_argument("key", help="the object key (or s3://bucket/key)")
    verify.add_argument("--version-id", help="a specific object version")

    command("demo", "the whole flow offline (moto + recorded control-plane responses)")
    return parser


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None, *, echo: Echo = print, err: Echo = _stderr) -> int:
    """Run one command; errors go to `err` as one line with a distinct exit code, never a traceback."""
    args = build_parser().parse_args(argv)
    if args.command == "verify" and args.key.startswith("s3://"):
        bucket, _, args.key = args.key.removeprefix("s3://").partition("/")
        args.bucket = args.bucket or bucket
    overrides = {
        names.OUTPUT_CLUSTER_ID: args.cluster_id or "",
        names.OUTPUT_SSE_BUCKET: args.bucket or "",
        names.OUTPUT_KMS_KEY_ARN: args.key_id or "",
        names.OUTPUT_CUSTOM_KEY_STORE_ID: args.key_store_id or "",
    }
    aws = Aws(
        region=args.region,
        profile=args.profile,
        endpoint_url=args.endpoint_url,
        stack_name=args.stack_name,
        overrides=overrides,
    )
    commands: dict[str, Callable[[], int]] = {
        "ca": lambda: cmd_ca(args, echo),
        "init": lambda: cmd_init(args, aws, echo),
        "status": lambda: cmd_status(args, aws, echo),
        "upload": lambda: cmd_upload(args, aws, echo),
        "download": lambda: cmd_download(args, aws, echo),
        "verify": lambda: cmd_verify(args, aws, echo),
        "demo": lambda: cmd_demo(args, echo),
    }
    try:
        if args.command in ("upload", "download", "verify") and not args.no_assume_role:
            aws.role_arn = args.role_arn or aws.output(names.OUTPUT_KMS_USAGE_ROLE, required=False)
        return commands[args.command]()
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except (OperatorError, ca_lib.CertificateError) as error:
        err(f"error: {error}")
        return EXIT_OPERATOR
    except ClientError as error:
        detail = error.response.get("Error", {})
        err(f"error: {error.operation_name} failed with {detail.get('Code')}: {detail.get('Message', '')}")
        return EXIT_AWS
    except BotoCoreError as error:
        err(f"error: {error}")
        return EXIT_AWS
    except OSError as error:  # missing file, a directory where a file was expected, no permission
        err(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "))
        return EXIT_FILE


if __name__ == "__main__":
    sys.exit(main())
