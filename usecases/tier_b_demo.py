"""The tier B offline demo (`make demo`, `python -m usecases.cloudhsm_kms demo`).

Runs the operator tool's data-plane commands, the object validator and the key store monitor against a
local moto server, and the control plane (cluster initialization, HSMs, key store, key) on recorded
responses through botocore's Stubber (real service models). What it cannot show is in
docs/use-case-2.md, "Verify on AWS"; `make verify-live` runs that in a sandbox account.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import secrets
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from kommunmoln import names
from kommunmoln.local_aws import temporary_environ
from kommunmoln.tier_b import ca as ca_lib
from lambdas.keystore_monitor import logic as monitor_logic
from usecases.cloudhsm_kms import (
    DEFAULT_REGION,
    Aws,
    Echo,
    describe_protection,
    run_init,
    sign_and_check,
    sse_kms_args,
    upload_object,
    verify_object,
)

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
