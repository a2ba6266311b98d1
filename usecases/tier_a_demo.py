"""`python -m usecases.client_side_encryption demo`: tier A end to end (needs the repository: moto, the validator).

Offline (default): a local moto server on 127.0.0.1 stands in for S3 and SNS. The bucket is
provisioned the way the tier A stack does it as far as moto goes; the demo then plays the
Lambda trigger itself by calling the validator handler with the S3 event records AWS would
send. With --stack-name the same flow runs against a deployed stack (real S3, real Lambda).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions

from kommunmoln import names
from kommunmoln.local_aws import moto_server, temporary_environ
from kommunmoln.tier_a.bucket_names import RESERVED_PREFIX
from kommunmoln.tier_a.codec import HEADER_PEEK_BYTES, DecryptionError, format_context, summarize_header
from kommunmoln.tier_a.custody import CustodyOptions, open_custody
from kommunmoln.tier_a.errors import TierAError
from kommunmoln.tier_a.keys import (
    DEFAULT_NAMESPACE,
    EscrowPrivateKey,
    EscrowPublicKey,
    Keyring,
    RawAesKey,
    write_escrow_pair,
    write_key_file,
)
from kommunmoln.tier_a.named_bucket import NamedBucket
from kommunmoln.tier_a.progress import Progress, progress_enabled
from kommunmoln.tier_a.transfer import (
    MIB,
    AwsSettings,
    S3Location,
    TransferSettings,
    download_decrypted,
    make_session,
    plan_uploads,
    read_object_head,
    s3_client,
    stack_outputs,
    upload_encrypted,
)
from usecases import guard_demo

DEMO_PREFIX = "arende/"
FAKE_ACCOUNT = "123456789012"
SAMPLES = {
    "socialnamnden/2025-03-protokoll.txt": (
        "Socialnämndens protokoll 2025-03-12, § 14: beslut om bistånd enligt 4 kap. 1 § SoL.\n"
        "Sekretess enligt 26 kap. 1 § OSL.\n"
    ),
    "elevhalsa/elev-4711-journal.txt": "Elevhälsans journalanteckning för elev 4711. Sekretess enligt 25 kap. OSL.\n",
    "bygglov/ansokan-2025-117.csv": "diarienummer;fastighet;sokande\nBN 2025-117;Exempel 1:23;Anna Andersson\n",
}
LARGE_NAME = "arkiv/skannade-akter.bin"


@dataclass
class Row:
    key: str  # the plaintext name (what the municipality sees)
    stored: str  # the object key S3 holds (encrypted names; a plaintext upload around the client keeps its own)
    kind: str  # encrypted | plaintext | moved
    plaintext_sha256: str | None = None
    plaintext_bytes: int = 0
    stored_bytes: int = 0
    version_id: str | None = None
    parts: int = 0
    status: str = "?"
    reasons: list[str] = field(default_factory=list)
    download: str = "?"
    expected_status: str = names.STATUS_VALIDATED


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # pragma: no cover


def _bucket_policy(bucket: str) -> dict[str, Any]:
    """The core of the tier A stack's bucket policy (moto stores it but does not enforce it)."""
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                # Like the stack: tagged uploads must carry the client's tag. Untagged requests pass
                # (UploadPart never carries tags); the validator quarantines untagged plaintext.
                "Sid": "DenyTaggedPutWithoutClientSideEncryptionTag",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"{arn}/*",
                "Condition": {
                    "Null": {"s3:RequestObjectTagKeys": "false"},
                    "StringNotEquals": {
                        f"s3:RequestObjectTag/{names.OBJECT_TAG_ENCRYPTION}": names.OBJECT_TAG_ENCRYPTION_VALUE
                    },
                },
            },
            {
                "Sid": "DenyReadOfQuarantined",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"{arn}/*",
                "Condition": {
                    "StringEquals": {f"s3:ExistingObjectTag/{names.OBJECT_TAG_STATUS}": names.STATUS_QUARANTINED}
                },
            },
        ],
    }


def _provision(s3, sns, bucket: str, region: str) -> str:
    """Bucket and alarm topic as the stack makes them, as far as moto supports.

    The bucket policy is NOT applied: moto 5.2.5 evaluates bucket policies but does not supply
    condition keys such as aws:SecureTransport, s3:RequestObjectTagKeys or
    s3:ExistingObjectTag, so each of these Deny statements ends up denying every request
    (checked). The demo writes the policy to a file and says what AWS would do instead.
    """
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
        },
    )  # fmt: skip
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    s3.put_bucket_tagging(
        Bucket=bucket,
        Tagging={
            "TagSet": [
                {"Key": names.TAG_PROJECT, "Value": names.PROJECT},
                {"Key": names.TAG_TIER, "Value": names.TIER_A},
                {"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED},
            ]
        },
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "abort-incomplete-multipart", "Status": "Enabled", "Filter": {"Prefix": ""},
                 "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
            ]
        },
    )  # fmt: skip
    return sns.create_topic(Name="kommunmoln-demo-tier-a-alarms")["TopicArn"]


def _event(bucket: str, key: str, *, version_id: str | None, size: int, etag: str, name: str, region: str) -> dict:
    """An S3 ObjectCreated notification record, as S3 sends it to the validator."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "eventName": f"ObjectCreated:{name}",
                "userIdentity": {"principalId": "AWS:DEMO"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": secrets.token_hex(8)},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "tier-a-validator",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "DEMO"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": urllib.parse.quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag.strip('"'),
                        **({"versionId": version_id} if version_id else {}),
                        "sequencer": secrets.token_hex(8).upper(),
                    },
                },
            }
        ]
    }


class _LambdaContext:
    function_name = "kommunmoln-demo-tier-a-validator"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:eu-north-1:{FAKE_ACCOUNT}:function:kommunmoln-demo-tier-a-validator"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


class _Validator:
    """Calls the validator Lambda handler in-process, as the S3 trigger would."""

    def __init__(self, *, endpoint: str, region: str, topic_arn: str, namespaces: tuple[str, ...]) -> None:
        self.env = {
            names.ENV_ALLOWED_NAMESPACES: ",".join(namespaces),
            names.ENV_REQUIRED_CONTEXT_KEYS: ",".join(names.REQUIRED_CONTEXT_KEYS),
            names.ENV_HEADER_READ_BYTES: "65536",
            names.ENV_ALARM_TOPIC_ARN: topic_arn,
            names.ENV_METRIC_NAMESPACE: names.METRIC_NAMESPACE,
            names.ENV_SERVICE_NAME: getattr(names, "SERVICE_TIER_A_VALIDATOR", "tier-a-validator"),
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
        }
        self.log_lines = 0

    def __call__(self, event: dict) -> list[dict]:
        with temporary_environ(self.env):
            from lambdas.tier_a_validator import handler

            handler.reset()
            captured = io.StringIO()
            try:
                with contextlib.redirect_stdout(captured):  # the EMF metrics and JSON logs
                    result = handler.lambda_handler(event, _LambdaContext())
            finally:
                handler.reset()  # never keep clients that point at the demo's moto server
        self.log_lines += len(captured.getvalue().splitlines())
        return result["outcomes"]


def _write_samples(root: Path, large_mib: int) -> dict[str, Path]:
    files = {}
    for rel, text in SAMPLES.items():
        path = root.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files[rel] = path
    large = root.joinpath(*LARGE_NAME.split("/"))
    large.parent.mkdir(parents=True, exist_ok=True)
    with open(large, "wb") as handle:  # generated on the fly, never held in memory
        for _ in range(large_mib):
            handle.write(os.urandom(MIB))
        handle.write(b"slut\n")
    files[LARGE_NAME] = large
    return files


class _Out:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def section(self, title: str) -> None:
        print(f"\n--- {title} " + "-" * max(0, 74 - len(title)), flush=True)

    def line(self, text: str = "") -> None:
        print(text, flush=True)


def run_demo(
    *,
    aws: AwsSettings,
    custody: CustodyOptions | None = None,
    large_mib: int = 65,
    workdir: Path | None = None,
    quiet: bool = False,
) -> int:
    """The end-to-end flow; returns 0 when every expected outcome happened."""
    out = _Out()
    temp = None
    if workdir is None:
        temp = tempfile.mkdtemp(prefix="kommunmoln-demo-")
        workdir = Path(temp)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if aws.stack_name:
            return _run(out, aws, custody, large_mib, workdir, quiet, endpoint=None)
        with moto_server() as endpoint:
            local = AwsSettings(profile=None, region=aws.region, endpoint_url=endpoint)
            return _run(out, local, custody, large_mib, workdir, quiet, endpoint=endpoint)
    except TierAError as error:
        print(f"error: demo failed: {error}", flush=True)
        return error.exit_code
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


def _run(
    out: _Out, aws: AwsSettings, custody_options: CustodyOptions | None, large_mib: int, workdir: Path,
    quiet: bool, *, endpoint: str | None,
) -> int:  # fmt: skip
    local = endpoint is not None
    region = aws.region
    if local:
        session = boto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - fake, loopback moto only
            aws_session_token="testing",  # noqa: S106 - fake, loopback moto only
            region_name=region,
        )  # the local emulation never sees real credentials
    else:
        session = make_session(aws)
    s3 = s3_client(session, aws)

    out.section("1. Provisioning")
    if local:
        sns = session.client("sns", endpoint_url=endpoint, region_name=region)
        bucket = f"kommunmoln-demo-tier-a-data-{secrets.token_hex(4)}"
        topic_arn = _provision(s3, sns, bucket, region)
        out.line(f"local AWS emulation: moto server at {endpoint} (no AWS account, nothing leaves this machine)")
        policy_path = workdir / "bucket-policy.json"
        policy_path.write_text(json.dumps(_bucket_policy(bucket), indent=2) + "\n", encoding="utf-8")
        out.line(f"bucket {bucket}: versioning, Block Public Access, BucketOwnerEnforced, tags, lifecycle rule")
        out.line(f"NOTE: the bucket policy's core statements are written to {policy_path} but not applied:")
        out.line("      moto lacks their condition keys and would deny every request. On AWS they deny tagged uploads")
        out.line("      without the client's tag, non-TLS requests and reads of quarantined objects. The demo also")
        out.line("      calls the validator handler itself, where AWS would trigger the Lambda from the S3 event.")
    else:
        outputs = stack_outputs(session, aws, aws.stack_name or "")
        if names.OUTPUT_DATA_BUCKET not in outputs:
            raise TierAError(f"stack {aws.stack_name!r} has no output {names.OUTPUT_DATA_BUCKET}")
        bucket = outputs[names.OUTPUT_DATA_BUCKET]
        topic_arn = outputs.get(names.OUTPUT_ALARM_TOPIC, "")
        out.line(f"deployed stack {aws.stack_name} in {region}: data bucket {bucket} (real S3, real validator Lambda)")

    out.section("2. Keys (held by the municipality only)")
    keys_dir = workdir / "keys"
    keys_dir.mkdir(exist_ok=True, mode=0o700)
    escrow_public_path, escrow_private_path = write_escrow_pair(keys_dir / f"escrow-{secrets.token_hex(2)}")
    if custody_options is None:
        key = RawAesKey.generate(DEFAULT_NAMESPACE)
        key_path = write_key_file(keys_dir / "demo.key.json", key)
        custody_options = CustodyOptions(key_file=str(key_path))
        out.line(
            f"generated workshop key {key.namespace}/{key.name} -> {key_path} (mode {key_path.stat().st_mode & 0o777:04o})"
        )
    custody_options.escrow_public_key = str(escrow_public_path)
    custody = open_custody(custody_options, need_primary=True)
    escrow = EscrowPublicKey.load(escrow_public_path, namespace=custody.namespace)
    out.line(f"primary key: {custody.description}")
    out.line(f"escrow key:  RSA-4096 {escrow.name}; public half used for every upload, private half -> offline")
    keyring = custody.encrypting_keyring()

    samples_dir = workdir / "kommun"
    files = _write_samples(samples_dir, large_mib)
    rows: dict[str, Row] = {}
    validator = (
        _Validator(endpoint=endpoint, region=region, topic_arn=topic_arn, namespaces=(custody.namespace,))
        if local
        else None
    )
    prefix = DEMO_PREFIX if local else f"demo/{time.strftime('%Y%m%dT%H%M%S')}/{DEMO_PREFIX}"

    out.section("3. Encrypt and upload (streaming; multipart with parallel parts for the large file; names encrypted)")
    transfer = TransferSettings()  # the defaults a municipality gets
    plan = plan_uploads([str(samples_dir)], S3Location(bucket, prefix))
    named = NamedBucket.open(s3, custody, bucket, plain_names=False, create=True)
    for path, key in plan:
        stored = named.stored(key, for_upload=True)
        with Progress(f"upload {path.name}", path.stat().st_size, enabled=progress_enabled(quiet)) as bar:
            started = time.perf_counter()
            result = upload_encrypted(
                s3,
                source_path=path,
                bucket=bucket,
                key=stored,
                key_provider=keyring,
                settings=transfer,
                on_bytes=bar.update,
            )
            seconds = time.perf_counter() - started
        named.record_upload(result)
        rows[key] = Row(key, stored, "encrypted", _sha256(path), result.plaintext_bytes, result.stored_bytes,
                        result.version_id, result.parts)  # fmt: skip
        how = f"multipart, {result.parts} parts" if result.parts else "single PutObject"
        out.line(f"  {key:<48} {_human(result.plaintext_bytes):>10} -> {_human(result.stored_bytes):>10}  {how}"
                 + (f", {result.plaintext_bytes / MIB / max(seconds, 1e-6):.0f} MiB/s" if result.parts else ""))  # fmt: skip
    named.save()  # the encrypted manifest: change detection for the next run, rollback detection on download

    out.section("4. Around the client: a plaintext upload and a moved (copied) ciphertext")
    plain_key = prefix + "okrypterat/personnummer.txt"
    plain_body = b"Personnummer 19121212-1212, uppladdat utan klienten.\n"
    try:
        response = s3.put_object(Bucket=bucket, Key=plain_key, Body=plain_body)
        rows[plain_key] = Row(plain_key, plain_key, "plaintext", hashlib.sha256(plain_body).hexdigest(), len(plain_body),
                              len(plain_body), response.get("VersionId"), expected_status=names.STATUS_QUARANTINED)  # fmt: skip
        out.line(
            f"  plain boto3 put_object {plain_key}: accepted (untagged: the stack's policy lets it in too;"
            " the validator is the check)"
        )
    except botocore.exceptions.ClientError as error:
        out.line(
            f"  plain boto3 put_object {plain_key}: refused by the bucket policy ({error.response['Error']['Code']})"
        )
    first_key = next(k for k in rows if k.endswith("protokoll.txt"))
    moved_key = prefix + "flyttad/" + first_key.rsplit("/", 1)[-1]
    moved_stored = named.stored(moved_key)
    copy = s3.copy_object(Bucket=bucket, Key=moved_stored, CopySource={"Bucket": bucket, "Key": rows[first_key].stored},
                          TaggingDirective="COPY")  # fmt: skip
    rows[moved_key] = Row(moved_key, moved_stored, "moved", rows[first_key].plaintext_sha256, rows[first_key].plaintext_bytes,
                          rows[first_key].stored_bytes, copy.get("VersionId"), expected_status=names.STATUS_QUARANTINED)  # fmt: skip
    out.line(f"  copy_object {first_key} -> {moved_key} (ciphertext intact, but its context names the old key)")
    guard_demo.check_read_guard(out, s3, bucket, rows[first_key].stored)  # before validation: the policy's decisions

    out.section("5. Validator on each object-created event")
    for key, row in rows.items():
        if local:
            assert validator is not None
            head = (
                s3.head_object(Bucket=bucket, Key=row.stored, VersionId=row.version_id)
                if row.version_id
                else s3.head_object(Bucket=bucket, Key=row.stored)
            )
            kind = {
                "encrypted": "CompleteMultipartUpload" if row.parts else "Put",
                "moved": "Copy",
                "plaintext": "Put",
            }[row.kind]
            event = _event(bucket, row.stored, version_id=row.version_id, size=head["ContentLength"], etag=head["ETag"],
                           name=kind, region=region)  # fmt: skip
            (outcome,) = validator(event)
            row.status, row.reasons = outcome["status"], outcome["reasons"]
        else:
            row.status, row.reasons = _wait_for_status(s3, bucket, row.stored, row.version_id)
        mark = "ok" if row.status == row.expected_status else "UNEXPECTED"
        out.line(f"  {row.status:<11} {key}  [{mark}]")
        for reason in row.reasons:
            out.line(f"              reason: {reason}")
    if validator is not None:
        out.line(f"  (the handler wrote {validator.log_lines} structured log/metric lines, hidden here)")

    out.section("6. What AWS stores vs. what the municipality sees")
    for key, row in rows.items():
        head = read_object_head(s3, bucket, row.stored, HEADER_PEEK_BYTES)
        tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=row.stored)["TagSet"]}
        metadata = s3.head_object(Bucket=bucket, Key=row.stored).get("Metadata", {})
        out.line(f"  municipality: s3://{bucket}/{key}")
        out.line(f"    AWS stores: s3://{bucket}/{row.stored}")
        out.line(f"    stored: {row.stored_bytes} bytes, first 16 bytes {head[:16].hex(' ')}")
        out.line(
            f"    tags:   {', '.join(f'{k}={v}' for k, v in sorted(tags.items()))}; metadata: {metadata or 'none'}"
        )
        try:
            summary = summarize_header(head)
            out.line(f"    header: {summary.algorithm}, frames {summary.frame_length // 1024} KiB, data keys "
                     f"{', '.join(f'{ns}/{n}' for ns, n in summary.wrapping_keys)}")  # fmt: skip
            out.line(
                f"    context (plaintext, visible to AWS; no name in it): {format_context(summary.encryption_context)}"
            )
        except DecryptionError:
            out.line(f"    header: none - AWS can read this object and its name: {head[:40]!r}")
        source = files.get(key[len(prefix) :])
        if source is not None and source.suffix in (".txt", ".csv"):
            out.line(f"    municipality sees: {source.read_text(encoding='utf-8').splitlines()[0][:70]!r}")
    records = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=RESERVED_PREFIX).get("Contents", []))
    out.line(f"  the client's own records (ESDK messages, wrapped like the data): {', '.join(records)}")
    uploads = [row for row in rows.values() if row.kind == "encrypted"]
    segments = {seg for row in uploads for seg in row.key.split("/")}
    leaked = sorted(seg for seg in segments if any(seg.lower() in row.stored.lower() for row in uploads))
    names_hidden = not leaked
    out.line(f"  plaintext path segments in the stored keys of client uploads: {', '.join(leaked) or 'none'}")

    out.section("7. Download everything and compare SHA-256")
    download_dir = workdir / "nedladdat"
    with custody:
        decrypting = custody.decrypting_keyring()
        for key, row in rows.items():
            target = download_dir.joinpath(*key[len(prefix) :].split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with Progress(f"download {target.name}", row.stored_bytes, enabled=progress_enabled(quiet)) as bar:
                    download_decrypted(s3, bucket=bucket, key=row.stored, dest=target, key_provider=decrypting,
                                       version_id=row.version_id, on_bytes=bar.update,
                                       output_filter=named.output_filter(row.stored, key))  # fmt: skip
            except TierAError as error:
                row.download = "refused"
                reason = named.localize(error.reason, row.stored, key).split(": ", 1)[-1]
                out.line(f"  refused   {key}: {reason} (no file written: {not target.exists()})")
                continue
            same = _sha256(target) == row.plaintext_sha256
            row.download = "sha256 ok" if same else "SHA256 MISMATCH"
            out.line(f"  {row.download:<9} {key}")

    out.section("8. Escrow recovery: the offline RSA private key alone")
    recovered = workdir / "aterstallt" / "protokoll.txt"
    recovered.parent.mkdir(parents=True, exist_ok=True)
    escrow_private = EscrowPrivateKey.load(escrow_private_path)
    first_stored = rows[first_key].stored
    header = summarize_header(read_object_head(s3, bucket, first_stored, HEADER_PEEK_BYTES))
    namespaces = [ns for ns, n in header.wrapping_keys if n == escrow_private.name]
    escrow_ok = False
    try:
        download_decrypted(s3, bucket=bucket, key=first_stored, dest=recovered,
                           key_provider=Keyring(*(escrow_private.master_key(ns) for ns in namespaces)))  # fmt: skip
        escrow_ok = _sha256(recovered) == rows[first_key].plaintext_sha256
        out.line(
            f"  {first_key}: recovered with {escrow_private.name} only, sha256 {'ok' if escrow_ok else 'MISMATCH'}"
        )
    except TierAError as error:
        out.line(f"  {first_key}: escrow recovery FAILED: {error}")

    out.section("Summary")
    out.line(f"  {'object':<50} {'kind':<9} {'size':>10} {'stored':>10} {'validator':<11} download")
    ok = escrow_ok and names_hidden
    for key, row in rows.items():
        expected_download = "sha256 ok" if row.kind == "encrypted" else "refused"
        good = row.status == row.expected_status and row.download == expected_download
        ok = ok and good
        out.line(f"  {key[len(prefix):]:<50} {row.kind:<9} {_human(row.plaintext_bytes):>10} "
                 f"{_human(row.stored_bytes):>10} {row.status:<11} {row.download}{'' if good else '  <-- UNEXPECTED'}")  # fmt: skip
    if local:
        out.line("\nWhere this local run differs from AWS:")
        out.line("  - no bucket policy (moto cannot evaluate its conditions): on AWS, quarantined objects are")
        out.line("    readable only by the security role, so the plaintext and the moved copy would be denied")
        out.line("    to this client even before decryption; uploads without TLS are refused;")
        out.line("  - no S3 -> Lambda trigger: the demo called the validator handler with synthetic S3 event records;")
        out.line("  - no TLS, no CloudTrail, no access logs, no KMS-encrypted SNS topic.")
    out.line(f"\nresult: {'all expected outcomes' if ok else 'SOME OUTCOMES WERE UNEXPECTED'} "
             f"({time.perf_counter() - out.started:.1f} s)")  # fmt: skip
    return 0 if ok else 1


def _wait_for_status(s3, bucket: str, key: str, version_id: str | None, timeout: float = 120) -> tuple[str, list[str]]:
    """Against a deployed stack: wait for the validator Lambda to tag the object."""
    deadline = time.monotonic() + timeout
    args = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    while time.monotonic() < deadline:
        tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(**args)["TagSet"]}
        if names.OBJECT_TAG_STATUS in tags:
            return tags[names.OBJECT_TAG_STATUS], tags.get(names.OBJECT_TAG_REASON, "").split()
        time.sleep(3)
    return "not tagged", [f"no {names.OBJECT_TAG_STATUS} tag after {timeout:.0f} s"]
