"""Use case 2 (tier B): SSE-KMS with a key in the municipality's own CloudHSM cluster.

    python -m usecases.cloudhsm_kms [OPTIONS] COMMAND [OPTIONS]   (options before or after the command)

Commands:
  ca --out DIR          create a workshop issuing CA (production uses its existing CA)
  init                  sign the cluster CSR locally, check the chain, InitializeCluster, wait,
                        then print the activation and kmsuser commands for the admin host
  status                cluster, HSMs (and their hourly cost driver), key store, key, next step
  upload FILE           PutObject with SSE-KMS, the stack's key and an S3 Bucket Key
  download KEY          GetObject, and the key that protected it
  verify KEY            the tier B validator's rule, from the client
  demo                  everything above offline (usecases/tier_b_demo.py), for `make demo`

Ids come from the stack's outputs (--stack-name); --cluster-id, --bucket, --key-id and
--key-store-id override them. upload/download/verify assume the key's usage role (stack output
KmsKeyUsageRoleArn; --role-arn, --no-assume-role). The CA private key never leaves this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kommunmoln import names
from kommunmoln.config import DEFAULTS
from kommunmoln.local_aws import moto_server
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
            "  2. Install the CloudHSM CLI you staged as cloudhsm-cli.rpm in the admin host's staging bucket (the",
            "     script refuses it unless its SHA-256 is tier_b_cloudhsm_cli_sha256; dependencies come GPG-checked",
            "     from the Amazon Linux repository), the trust anchor, and point the CLI at an HSM:",
            "       sudo /usr/local/sbin/kommunmoln-install-cloudhsm-cli",
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
    """The offline demo (usecases/tier_b_demo.py), on a moto server this command starts."""
    from usecases.tier_b_demo import run_demo  # the demo's imports are not needed by the operator's commands

    with moto_server(args.endpoint_url) as endpoint:
        return run_demo(endpoint, echo=echo, region=args.region)


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
