"""Scripted archive drills with the tier A client, dated evidence for arkivlagen, TF 2 kap. and continuity.

    python -m kommunmoln.compliance.drills [--out build/drills.json] [--endpoint-url URL]

`make drills` runs them on a local AWS emulation (an in-process moto server, no account, no
network) and writes a dated result per drill; the tests in tests/usecases/test_drills.py run the
same drills under the results plugin, which dates them for the compliance report.

- **Decrypt and deliver** (TF 2 kap.: a public record is handed out promptly on request): a
  request names a record by its plaintext name; the drill finds it in the bucket (names are
  hidden from S3), decrypts it with the municipality's key and delivers it, and records the
  elapsed time from request to delivery. It fails if the record is not found, cannot be
  decrypted, or the delivered bytes differ from the register's digest.
- **Escrow recovery** (losing a tier A key destroys the records it encrypts): the primary key is
  lost; the drill recovers the record with the escrow key alone (the symmetric AES escrow key, or
  the RSA escrow private key) and checks its digest. It fails when the records carry no data key
  for the escrow key, and it first proves the primary key really is absent (a download without
  it is refused).
- **Restore** (continuity, cybersäkerhetslagen / NIS2 Art. 21(2)(c)): a record is overwritten and
  then deleted (a delete marker); the drill finds the version that held the original, decrypts that
  version and writes it back through the client (so the encrypted manifest records it: a plain
  S3 copy of the old version over the current one is refused by rollback detection, which the
  drill also shows), then downloads and checks it. It fails on a bucket without versioning.

The drills call the same `kommunmoln` command functions an operator would (`cli.main`) plus
the library's version-aware download; none of them stubs a result. Engineering drills, not the
municipality's own exercise: the routine, who answers a request, and the secrecy assessment
before anything is handed out remain the municipality's.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import io
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kommunmoln.tier_a import cli
from kommunmoln.tier_a.custody import CustodyOptions, open_custody
from kommunmoln.tier_a.errors import TierAError
from kommunmoln.tier_a.keys import RawAesKey, write_escrow_pair, write_key_file
from kommunmoln.tier_a.named_bucket import NamedBucket, unpadding
from kommunmoln.tier_a.transfer import AwsSettings, download_decrypted, make_session, s3_client

REGION = "eu-north-1"
ESCROW_AES, ESCROW_RSA = "aes", "rsa"
DRILL_DELIVER, DRILL_ESCROW, DRILL_RESTORE = "decrypt-and-deliver", "escrow-recovery", "restore"
_NAMESPACE = "kommunmoln"
# A small register of records, as a registrator's diary might name them (plaintext names: S3 sees ciphers).
SAMPLE_RECORDS: dict[str, bytes] = {
    "diarium/2026/KS-2026-0041 protokoll.txt": "Kommunstyrelsens protokoll, § 41\n".encode() * 40,
    "diarium/2026/KS-2026-0042 beslut.txt": "Beslut om bistånd (sekretess enligt OSL 26 kap.)\n".encode() * 25,
    "socialtjanst/akt-1999-0815.txt": "Personakt, socialtjänst\n".encode() * 60,
}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DrillFailed(Exception):
    """A drill step did not do what the routine requires."""


@dataclass
class DrillResult:
    """One drill run: passed or not, when, how long, and what each step found."""

    drill: str
    passed: bool
    started: str
    finished: str
    elapsed_seconds: float
    steps: list[str] = field(default_factory=list)
    failure: str = ""


@dataclass(frozen=True)
class Archive:
    """A versioned tier A bucket with records and the key files that decrypt them."""

    endpoint_url: str | None
    bucket: str
    workdir: Path
    key_file: Path
    escrow: str | None  # ESCROW_AES, ESCROW_RSA or None (uploaded without escrow)
    escrow_key_file: Path | None = None  # the AES escrow key (kept offline between uses)
    escrow_private_key: Path | None = None  # the RSA escrow private key
    register: dict[str, str] = field(default_factory=dict)  # plaintext name -> sha256 of the original


class Kommunmoln:
    """Runs `kommunmoln` commands in-process with --json and returns their events."""

    def __init__(self, endpoint_url: str | None) -> None:
        self.endpoint_url = endpoint_url

        self.stderr = ""  # of the last command

    def run(self, command: str, *argv: str) -> tuple[int, list[dict]]:
        """`kommunmoln COMMAND --json ... ARGV` (options after the command: escrow options belong to it)."""
        endpoint = ["--endpoint-url", self.endpoint_url] if self.endpoint_url else []
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main([command, "--json", "--region", REGION, *endpoint, *argv])
        self.stderr = err.getvalue()
        events = []
        for line in out.getvalue().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return code, events

    def must(self, what: str, command: str, *argv: str) -> list[dict]:
        code, events = self.run(command, *argv)
        if code != 0:
            error = " ".join(self.stderr.split())[:400] or "no error message"
            raise DrillFailed(f"{what}: kommunmoln {command} exited {code}: {error}")
        return events


def s3_for(endpoint_url: str | None):
    aws = AwsSettings(region=REGION, endpoint_url=endpoint_url)
    return s3_client(make_session(aws), aws)


def seed_archive(
    endpoint_url: str | None,
    workdir: Path,
    *,
    escrow: str | None = ESCROW_AES,
    versioned: bool = True,
    records: dict[str, bytes] | None = None,
) -> Archive:
    """Create a bucket, the municipality's key (and escrow key), and upload the records with `kommunmoln`."""
    records = SAMPLE_RECORDS if records is None else records
    workdir.mkdir(parents=True, exist_ok=True)
    bucket = f"kommunmoln-drill-{secrets.token_hex(4)}"
    s3 = s3_for(endpoint_url)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key_file = write_key_file(workdir / "municipality.key.json", RawAesKey.generate(_NAMESPACE, "drill-primary"))
    options = ["--key", str(key_file)]
    escrow_key_file = escrow_private = None
    if escrow == ESCROW_AES:
        escrow_key_file = write_key_file(workdir / "escrow.key.json", RawAesKey.generate(_NAMESPACE, "drill-escrow"))
        options += ["--escrow-key", str(escrow_key_file)]
    elif escrow == ESCROW_RSA:
        public, escrow_private = write_escrow_pair(workdir / "escrow-rsa")
        options += ["--escrow-public-key", str(public)]
    elif escrow is not None:
        raise ValueError(f"escrow must be {ESCROW_AES!r}, {ESCROW_RSA!r} or None")
    source = workdir / "originals"
    client = Kommunmoln(endpoint_url)
    for name, data in records.items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        client.must(f"upload {name}", "upload", *options, str(path), f"s3://{bucket}/{name}")
    register = {name: sha256(data) for name, data in records.items()}
    return Archive(endpoint_url, bucket, workdir, key_file, escrow, escrow_key_file, escrow_private, register)


@contextlib.contextmanager
def _timed(drill: str) -> Iterator[DrillResult]:
    """Time the block; a DrillFailed or client error inside it makes the result failed."""
    result = DrillResult(drill, False, _now(), "", 0.0)
    start = time.monotonic()
    try:
        yield result
        result.passed = True
    except (DrillFailed, TierAError) as error:
        result.failure = str(error)
    finally:
        result.elapsed_seconds = round(time.monotonic() - start, 3)
        result.finished = _now()


def _check_delivered(result: DrillResult, archive: Archive, name: str, path: Path) -> None:
    expected = archive.register.get(name)
    if expected is None:
        raise DrillFailed(f"{name!r} is not in the register")
    got = sha256(path.read_bytes()) if path.is_file() else "nothing delivered"
    if got != expected:
        raise DrillFailed(f"{name}: delivered sha256 {got}, the register says {expected}")
    result.steps.append(f"delivered {path.name}: sha256 {got} matches the register")


def deliver_drill(archive: Archive, request: str, delivery_dir: Path) -> DrillResult:
    """A request names a record: find it, decrypt it with the municipality's key, deliver it (timed)."""
    client = Kommunmoln(archive.endpoint_url)
    key = ["--key", str(archive.key_file)]
    with _timed(DRILL_DELIVER) as result:
        result.steps.append(f"request received for {request!r}")
        folder = request.rsplit("/", 1)[0] + "/" if "/" in request else ""
        listed = client.must("find the record", "ls", *key, f"s3://{archive.bucket}/{folder}")
        found = [e for e in listed if e.get("key") == request]
        if not found:
            raise DrillFailed(f"{request!r} is not in s3://{archive.bucket}/{folder}")
        result.steps.append(f"found {request!r} (stored under an encrypted name: {found[0].get('stored_key', '?')})")
        delivery_dir.mkdir(parents=True, exist_ok=True)
        target = delivery_dir / request.rsplit("/", 1)[-1]
        client.must("decrypt and deliver", "download", *key, f"s3://{archive.bucket}/{request}", str(target))
        _check_delivered(result, archive, request, target)
    return result


def escrow_drill(archive: Archive, name: str, recovery_dir: Path, *, escrow_key: Path | None = None) -> DrillResult:
    """The primary key is lost: recover `name` with the escrow key alone and check its digest.

    `escrow_key` overrides the archive's escrow key (the AES key file, or the RSA private key).
    """
    client = Kommunmoln(archive.endpoint_url)
    with _timed(DRILL_ESCROW) as result:
        given = escrow_key or archive.escrow_key_file or archive.escrow_private_key
        if given is None or not Path(given).is_file():
            raise DrillFailed("no escrow key on file: a lost primary key destroys every record it encrypts")
        flag = "--escrow-private-key" if archive.escrow == ESCROW_RSA else "--escrow-key"
        recovery_dir.mkdir(parents=True, exist_ok=True)
        url = f"s3://{archive.bucket}/{name}"
        code, _ = client.run("download", url, str(recovery_dir / "without-any-key"))
        if code == 0:
            raise DrillFailed("a download without any key succeeded: the drill cannot prove the key is needed")
        result.steps.append(
            f"primary key {archive.key_file.name} not given (lost): without a key the download is refused"
        )
        target = recovery_dir / name.rsplit("/", 1)[-1]
        client.must("recover with the escrow key", "download", flag, str(given), url, str(target))
        result.steps.append(f"recovered {name!r} with the {archive.escrow or 'given'} escrow key {Path(given).name}")
        _check_delivered(result, archive, name, target)
    return result


def restore_drill(archive: Archive, name: str, restore_dir: Path) -> DrillResult:
    """Overwrite and delete `name`, then restore its original version through the client and check it."""
    client = Kommunmoln(archive.endpoint_url)
    key = ["--key", str(archive.key_file)]
    s3 = s3_for(archive.endpoint_url)
    with _timed(DRILL_RESTORE) as result:
        restore_dir.mkdir(parents=True, exist_ok=True)
        wrong = restore_dir / "overwrite.txt"
        wrong.write_bytes(b"an erroneous overwrite\n")
        client.must("overwrite", "upload", *key, str(wrong), f"s3://{archive.bucket}/{name}")
        events = client.must("delete", "rm", *key, f"s3://{archive.bucket}/{name}")
        stored = next((e["stored_key"] for e in events if e.get("stored_key")), None)
        if stored is None:
            raise DrillFailed(f"rm named no stored key for {name!r}")
        result.steps.append(f"{name!r} overwritten, then deleted (delete marker)")
        version = _original_version(s3, archive, stored, name, restore_dir, result)
        s3.copy_object(Bucket=archive.bucket, Key=stored, CopySource={"Bucket": archive.bucket, "Key": stored,
                       "VersionId": version})  # fmt: skip
        code, _ = client.run("download", *key, f"s3://{archive.bucket}/{name}", str(restore_dir / "copied"))
        # After `rm` the manifest has no entry (an unrecorded object); before it, another message id (a rollback).
        refusals = ("not the version this client last wrote", "not recorded in the bucket's manifest")
        if code == 0 or not any(text in client.stderr for text in refusals):
            raise DrillFailed(f"an old version copied over the current one was not refused: {client.stderr}")
        result.steps.append(
            "a plain S3 copy of the old version is refused by the client's manifest (rollback detection)"
        )
        original = restore_dir / "original"
        client.must("write the restored record back", "upload", *key, str(original), f"s3://{archive.bucket}/{name}")
        target = restore_dir / name.rsplit("/", 1)[-1]
        client.must("read the restored record", "download", *key, f"s3://{archive.bucket}/{name}", str(target))
        result.steps.append("restored through the client: the manifest records it as the current version")
        _check_delivered(result, archive, name, target)
    return result


def _original_version(s3, archive: Archive, stored: str, name: str, workdir: Path, result: DrillResult) -> str:
    """The version of `stored` whose plaintext matches the register (newest first); decrypted to workdir/original."""
    listing = s3.list_object_versions(Bucket=archive.bucket, Prefix=stored)
    versions = sorted((v for v in listing.get("Versions", []) if v["Key"] == stored),
                      key=lambda v: v["LastModified"], reverse=True)  # fmt: skip
    if not versions:
        raise DrillFailed(f"no versions of {name!r} are kept (is versioning enabled?)")
    options = CustodyOptions(key_file=str(archive.key_file))
    with open_custody(options, need_primary=False) as custody:
        NamedBucket.open(s3, custody, archive.bucket, plain_names=False, create=False)  # the bucket's name mode
        for version in versions:
            candidate = workdir / "original"
            try:
                download_decrypted(s3, bucket=archive.bucket, key=stored, dest=candidate, version_id=version["VersionId"],
                                   key_provider=custody.decrypting_keyring(), output_filter=unpadding)  # fmt: skip
            except TierAError as error:
                result.steps.append(f"version {version['VersionId']}: not decryptable ({error})")
                continue
            if sha256(candidate.read_bytes()) == archive.register.get(name):
                result.steps.append(f"version {version['VersionId']} holds the original (decrypted, digest matches)")
                return version["VersionId"]
            result.steps.append(f"version {version['VersionId']}: not the original")
    raise DrillFailed(f"none of the {len(versions)} kept versions of {name!r} holds the original")


def run_all(endpoint_url: str | None, workdir: Path) -> list[DrillResult]:
    """Every drill once, on fresh archives (AES and RSA escrow)."""
    request = next(iter(SAMPLE_RECORDS))
    aes = seed_archive(endpoint_url, workdir / "aes", escrow=ESCROW_AES)
    rsa = seed_archive(endpoint_url, workdir / "rsa", escrow=ESCROW_RSA)
    return [
        deliver_drill(aes, request, workdir / "delivered"),
        escrow_drill(aes, request, workdir / "recovered-aes"),
        escrow_drill(rsa, request, workdir / "recovered-rsa"),
        restore_drill(aes, request, workdir / "restored"),
    ]


def write_results(results: list[DrillResult], out: Path, where: str) -> None:
    from kommunmoln.compliance.results import git_commit
    from kommunmoln.config import REPO_ROOT

    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": "kommunmoln-drills/1", "commit": git_commit(REPO_ROOT), "where": where,
                "drills": [asdict(r) for r in results]}  # fmt: skip
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    from kommunmoln.config import REPO_ROOT
    from kommunmoln.local_aws import moto_server, temporary_environ

    parser = argparse.ArgumentParser(description="Archive drills on a local AWS emulation (moto).")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "drills.json")
    parser.add_argument("--endpoint-url", help="an already running moto server (default: start one in-process)")
    args = parser.parse_args(argv)
    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
    # Fake credentials: the drills never reach a real account, even with a profile configured.
    with (
        moto_server(args.endpoint_url) as endpoint,
        temporary_environ(fake),
        tempfile.TemporaryDirectory(prefix="kommunmoln-drills-") as tmp,
    ):
        results = run_all(endpoint, Path(tmp))
    for r in results:
        print(f"{'pass' if r.passed else 'FAIL':5} {r.drill:20} {r.elapsed_seconds:8.3f} s  {r.started}")
        for step in r.steps:
            print(f"      {step}")
        if r.failure:
            print(f"      failure: {r.failure}")
    write_results(results, args.out, f"local emulation (moto) at {endpoint}")
    print(f"wrote {args.out}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
