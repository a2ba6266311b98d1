"""Transfer faults: throttling, 5xx, dropped connections and killed processes, with nothing lost.

The client talks to the local moto server through `faultproxy.FaultProxy` on loopback,
which answers 503 SlowDown / 500 InternalError for the k-th request of an operation,
drops connections mid-request, cuts responses after N bytes, or slows them down so that a
client process can be killed mid-transfer. Checks are made directly against moto (not
through the proxy): `list_multipart_uploads` is empty (no orphan parts), the object is
either complete and decrypts to the original bytes or absent, and no plaintext file or
temporary file is left on disk after a failed download.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from kommunmoln.tier_a.errors import TransferError
from kommunmoln.tier_a.keys import RawAesKey, write_key_file
from kommunmoln.tier_a.transfer import (
    MIB,
    AwsSettings,
    TransferSettings,
    download_decrypted,
    make_session,
    s3_client,
    upload_encrypted,
)
from tests.conftest import REPO_ROOT
from tests.reliability.faultproxy import Fault, FaultProxy, operation

pytestmark = pytest.mark.usefixtures("codec_engine")  # both engines: frames and the ESDK's stream

CATEGORY = "transfer_faults"
KEY = RawAesKey("kommunmoln", "transfer-key", bytes(range(1, 33)))
PARTS = TransferSettings(part_size=5 * MIB, concurrency=2)


@pytest.fixture
def direct(moto_endpoint):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-north-1")


@pytest.fixture
def bucket(direct, request) -> str:
    name = f"rel-xfer-{abs(hash(request.node.name)) % 10**9}"
    direct.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    direct.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as running:
        yield running


def _client(proxy: FaultProxy, *, attempts: int | None = None):
    """The client's own S3 client (adaptive retries), or one with few attempts for hard failures."""
    settings = AwsSettings(endpoint_url=proxy.url)
    if attempts is None:
        return s3_client(make_session(settings), settings, concurrency=PARTS.concurrency)
    return boto3.client(
        "s3", endpoint_url=proxy.url, region_name="eu-north-1",
        config=Config(retries={"mode": "standard", "max_attempts": attempts}, s3={"addressing_style": "path"}),
    )  # fmt: skip


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "big.bin"
    path.write_bytes(random.Random(9).randbytes(12 * MIB + 4321))  # 3 parts of 5 MiB
    return path


def _record(
    ledger, direct, bucket: str, *, expected_objects: dict[str, bytes] | None = None, tmp: Path | None = None
) -> None:
    """Count orphan parts and lost objects (checked directly against moto) and assert none."""
    uploads = direct.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    lost = 0
    for key, plaintext in (expected_objects or {}).items():
        dest = (tmp or Path("/tmp")) / f"check-{abs(hash(key))}"
        try:
            download_decrypted(direct, bucket=bucket, key=key, dest=dest, key_provider=KEY.master_key())
            lost += int(dest.read_bytes() != plaintext)
        except Exception:
            lost += 1
        finally:
            dest.unlink(missing_ok=True)
    ledger.add(CATEGORY, inputs=1, orphan_parts=len(uploads), objects_lost=lost)
    assert uploads == [], f"orphan multipart uploads: {uploads}"
    assert lost == 0


# --- Uploads ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(
            Fault(operation("UploadPart"), "status", nth=2, status=503, code="SlowDown"), id="part2-503-slowdown"
        ),
        pytest.param(Fault(operation("UploadPart"), "drop-request", nth=3), id="part3-connection-dropped"),
        pytest.param(
            Fault(operation("CompleteMultipartUpload"), "status", status=500, code="InternalError"), id="complete-500"
        ),
        # more of the same kind, in the long run only (each costs seconds of backoff)
        pytest.param(
            Fault(operation("UploadPart"), "status", nth=1, times=2, status=500, code="InternalError"),
            id="part1-500-twice",
            marks=pytest.mark.slow_fuzz,
        ),
        pytest.param(
            Fault(operation("CreateMultipartUpload"), "status", status=503, code="SlowDown"),
            id="create-503",
            marks=pytest.mark.slow_fuzz,
        ),
        pytest.param(
            Fault(operation("CompleteMultipartUpload"), "drop-request"),
            id="complete-dropped",
            marks=pytest.mark.slow_fuzz,
        ),
    ],
)
def test_transient_fault_during_multipart_upload_is_retried(
    ledger, proxy, direct, bucket, big_file, tmp_path, fault
) -> None:
    # GIVEN a transient fault on one request of a three-part upload (a fresh copy: the
    # parameter object counts what it saw, and each codec engine runs the test once)
    fault = dataclasses.replace(fault)
    proxy.add(fault)
    # WHEN the client uploads through the faulty path
    result = upload_encrypted(_client(proxy), source_path=big_file, bucket=bucket, key="big.bin",
                              key_provider=KEY.master_key(), settings=PARTS)  # fmt: skip
    # THEN the fault fired, the request was retried, the upload completed and decrypts to the original
    assert fault.fired >= 1
    assert result.parts == 3
    assert proxy.operations().count(_op_name(fault)) >= fault.fired + 1
    _record(ledger, direct, bucket, expected_objects={"big.bin": big_file.read_bytes()}, tmp=tmp_path)


def _op_name(fault: Fault) -> str:
    for name in ("UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload"):
        if fault.match(type("R", (), {"operation": name})()):
            return name
    raise AssertionError("unknown fault target")


@pytest.mark.parametrize(
    "faults",
    [
        [Fault(operation("UploadPart"), "status", nth=2, times=None, status=500, code="InternalError")],
        [Fault(operation("UploadPart"), "drop-request", nth=2, times=None)],
        [Fault(operation("CompleteMultipartUpload"), "status", times=None, status=500, code="InternalError")],
        [
            Fault(operation("UploadPart"), "status", nth=3, times=None, status=500, code="InternalError"),
            Fault(operation("AbortMultipartUpload"), "status", nth=1, times=1, status=503, code="SlowDown"),
        ],
    ],
    ids=[
        "part-fails-forever",
        "part-connection-always-dropped",
        "complete-fails-forever",
        "part-fails-and-first-abort-throttled",
    ],
)
def test_failed_multipart_upload_is_aborted_without_orphans(ledger, proxy, direct, bucket, big_file, faults) -> None:
    # GIVEN a fault that does not go away (and, in one case, a throttled first abort)
    for fault in faults:
        proxy.add(dataclasses.replace(fault))  # fresh counters: each codec engine runs the test once
    # WHEN the client uploads (few retries, to keep the test short)
    with pytest.raises(TransferError) as raised:
        upload_encrypted(_client(proxy, attempts=2), source_path=big_file, bucket=bucket, key="big.bin",
                         key_provider=KEY.master_key(), settings=PARTS)  # fmt: skip
    # THEN a one-line error says the upload was aborted, no parts remain and no object was created
    assert "aborted" in str(raised.value) and "\n" not in str(raised.value)
    assert "AbortMultipartUpload" in proxy.operations()
    assert direct.list_object_versions(Bucket=bucket).get("Versions", []) == []
    _record(ledger, direct, bucket)


def test_single_put_retries_throttling(ledger, proxy, direct, bucket, tmp_path) -> None:
    # GIVEN a small file and two 503 SlowDown answers to its PutObject
    small = tmp_path / "small.txt"
    small.write_bytes(b"protokoll " * 100)
    fault = proxy.add(Fault(operation("PutObject"), "status", times=2, status=503, code="SlowDown"))
    # WHEN uploaded
    result = upload_encrypted(
        _client(proxy), source_path=small, bucket=bucket, key="small.txt", key_provider=KEY.master_key()
    )
    # THEN retried with backoff until stored
    assert fault.fired == 2 and result.parts == 0
    assert proxy.operations().count("PutObject") == 3
    _record(ledger, direct, bucket, expected_objects={"small.txt": small.read_bytes()}, tmp=tmp_path)


# --- Downloads -------------------------------------------------------------------------------
@pytest.fixture
def stored(direct, bucket, big_file) -> str:
    upload_encrypted(
        direct, source_path=big_file, bucket=bucket, key="big.bin", key_provider=KEY.master_key(), settings=PARTS
    )
    return "big.bin"


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault(operation("GetObject"), "cut-response", after=3 * MIB // 2), id="cut-after-1.5MiB"),
        pytest.param(Fault(operation("GetObject"), "cut-response", times=3, after=MIB), id="cut-three-times"),
        pytest.param(Fault(operation("GetObject"), "status", status=503, code="SlowDown"), id="503-slowdown"),
        pytest.param(
            Fault(operation("GetObject"), "cut-response", after=10),
            id="cut-after-10-bytes",
            marks=pytest.mark.slow_fuzz,
        ),
        pytest.param(
            Fault(operation("GetObject"), "status", times=2, status=500, code="InternalError"),
            id="500-twice",
            marks=pytest.mark.slow_fuzz,
        ),
    ],
)
def test_download_survives_dropped_connections_and_throttling(
    ledger, proxy, direct, bucket, stored, big_file, tmp_path, fault
) -> None:
    # GIVEN a stored 12 MiB object and a fault on its GET (a fresh copy per codec engine)
    fault = dataclasses.replace(fault)
    proxy.add(fault)
    dest = tmp_path / "out" / "big.bin"
    dest.parent.mkdir()
    # WHEN the client downloads it through the faulty path
    result = download_decrypted(_client(proxy), bucket=bucket, key=stored, dest=dest, key_provider=KEY.master_key())
    # THEN the fault fired, the download resumed or retried, and the file is complete
    assert fault.fired >= 1
    assert dest.read_bytes() == big_file.read_bytes() and result.plaintext_bytes == big_file.stat().st_size
    assert sorted(p.name for p in dest.parent.iterdir()) == ["big.bin"]
    if fault.action == "cut-response":
        resumed = [r for r, _ in proxy.log if r.operation == "GetObject" and _after_opening(r.headers)]
        assert resumed and all(r.headers.get("If-Match") for r in resumed), "a resume must be pinned to the ETag"
    ledger.add(CATEGORY, inputs=1)


def _after_opening(request: dict) -> bool:
    """A ranged GET after the opening one (which asks for the first bytes=0-... range, unpinned):
    a resume or one of the parallel ranges (kommunmoln.tier_a.ranged), each pinned to the ETag."""
    return "Range" in request and not request["Range"].startswith("bytes=0-")


def test_download_that_keeps_failing_leaves_no_plaintext(ledger, proxy, direct, bucket, stored, tmp_path) -> None:
    # GIVEN the GET cut after 1.5 MiB (one frame of plaintext already authenticated), and every
    # resume answered 500 InternalError (S3 stays unavailable)
    proxy.add(Fault(operation("GetObject"), "cut-response", after=3 * MIB // 2))
    proxy.add(
        Fault(
            lambda r: r.operation == "GetObject" and _after_opening(r.headers),
            "status",
            times=None,
            status=500,
            code="InternalError",
        )
    )
    out = tmp_path / "out"
    out.mkdir()
    # WHEN the client downloads
    with pytest.raises(TransferError) as raised:
        download_decrypted(
            _client(proxy, attempts=2), bucket=bucket, key=stored, dest=out / "big.bin", key_provider=KEY.master_key()
        )
    # THEN a one-line error, no destination file and no temporary file
    assert "\n" not in str(raised.value)
    leftovers = list(out.iterdir())
    ledger.add(CATEGORY, inputs=1, plaintext_bytes_released=sum(p.stat().st_size for p in leftovers))
    assert leftovers == []


def test_resumed_download_stays_on_its_version(ledger, proxy, direct, bucket, stored, big_file, tmp_path) -> None:
    # GIVEN a GET cut after 1.5 MiB, and the object overwritten before the client resumes
    proxy.add(Fault(operation("GetObject"), "cut-response", after=3 * MIB // 2))
    client = _client(proxy)
    original_get = client.get_object

    def get_object(**kwargs):
        if _after_opening(kwargs):
            direct.put_object(Bucket=bucket, Key=stored, Body=b"replaced meanwhile")
        return original_get(**kwargs)

    client.get_object = get_object
    out = tmp_path / "out"
    out.mkdir()
    # WHEN the client downloads
    download_decrypted(client, bucket=bucket, key=stored, dest=out / "big.bin", key_provider=KEY.master_key())
    # THEN the resume read the same version: the file is the original, never a mix of two objects
    assert (out / "big.bin").read_bytes() == big_file.read_bytes()
    ledger.add(CATEGORY, inputs=1)


def test_resume_after_overwrite_in_unversioned_bucket_is_refused(
    ledger, proxy, direct, big_file, tmp_path, codec_engine
) -> None:
    # GIVEN an unversioned bucket, a GET cut after 1.5 MiB, and the object overwritten before the resume
    bucket = f"rel-xfer-unversioned-{codec_engine}"
    direct.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    upload_encrypted(
        direct, source_path=big_file, bucket=bucket, key="big.bin", key_provider=KEY.master_key(), settings=PARTS
    )
    proxy.add(Fault(operation("GetObject"), "cut-response", after=3 * MIB // 2))
    client = _client(proxy)
    original_get = client.get_object

    def get_object(**kwargs):
        if _after_opening(kwargs):
            direct.put_object(Bucket=bucket, Key="big.bin", Body=b"replaced meanwhile")
        return original_get(**kwargs)

    client.get_object = get_object
    out = tmp_path / "out"
    out.mkdir()
    # WHEN the client downloads  THEN the resume fails its ETag precondition; no plaintext is kept
    with pytest.raises(TransferError):
        download_decrypted(client, bucket=bucket, key="big.bin", dest=out / "big.bin", key_provider=KEY.master_key())
    leftovers = list(out.iterdir())
    ledger.add(CATEGORY, inputs=1, plaintext_bytes_released=sum(p.stat().st_size for p in leftovers))
    assert leftovers == []


# --- Killed processes --------------------------------------------------------------------------
def _data_versions(direct, bucket: str) -> list[dict]:
    """Object versions other than the client's own records (_kommunmoln/: bucket record, manifest)."""
    versions = direct.list_object_versions(Bucket=bucket).get("Versions", [])
    return [v for v in versions if not v["Key"].startswith("_kommunmoln/")]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "usecases.client_side_encryption", *args]


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "k.key.json"
    write_key_file(path, KEY)
    return path


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _start_upload(proxy, keyfile, big_file, bucket) -> subprocess.Popen:
    # parts after the first are delayed, so the process is mid-upload for seconds
    return subprocess.Popen(
        _cli("--endpoint-url", proxy.url, "upload", str(big_file), f"s3://{bucket}/big.bin", "--key", str(keyfile),
             "--quiet", "--part-size-mib", "5", "--concurrency", "1"),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _slow_parts(proxy) -> None:
    def after_first_part(request) -> bool:
        return request.operation == "UploadPart" and request.query.get("partNumber") != ["1"]

    proxy.add(Fault(after_first_part, "delay", times=None, delay=2.0))


def test_upload_interrupted_leaves_no_orphan_parts(ledger, proxy, direct, bucket, big_file, keyfile) -> None:
    # GIVEN a CLI upload that has sent part 1 and is waiting on part 2
    _slow_parts(proxy)
    process = _start_upload(proxy, keyfile, big_file, bucket)
    _wait_for(lambda: proxy.operations().count("UploadPart") >= 2)
    # WHEN the process is interrupted (Ctrl-C)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    # THEN it exits non-zero with one line, the upload is aborted and no object exists
    assert process.returncode != 0
    assert _data_versions(direct, bucket) == []  # (the bucket record is the client's, not data)
    _record(ledger, direct, bucket)
    assert len(stderr.strip().splitlines()) <= 1, stderr


def test_upload_terminated_leaves_no_orphan_parts(ledger, proxy, direct, bucket, big_file, keyfile) -> None:
    # GIVEN a CLI upload in the middle of its parts
    _slow_parts(proxy)
    process = _start_upload(proxy, keyfile, big_file, bucket)
    _wait_for(lambda: proxy.operations().count("UploadPart") >= 2)
    # WHEN terminated (SIGTERM)
    process.terminate()
    process.communicate(timeout=120)
    # THEN no orphan parts remain
    uploads = direct.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ledger.add(CATEGORY, inputs=1, orphan_parts=len(uploads))
    assert uploads == []


def test_upload_killed_leaves_no_object(ledger, proxy, direct, bucket, big_file, keyfile) -> None:
    # GIVEN a CLI upload in the middle of its parts
    _slow_parts(proxy)
    process = _start_upload(proxy, keyfile, big_file, bucket)
    _wait_for(lambda: proxy.operations().count("UploadPart") >= 2)
    # WHEN killed outright (SIGKILL: no handler can run)
    process.kill()
    process.communicate(timeout=60)
    # THEN no (partial) object is visible; the incomplete upload is left for the bucket's
    # lifecycle rule (AbortIncompleteMultipartUpload after 1 day), which is the only remedy
    assert _data_versions(direct, bucket) == []  # (the bucket record is the client's, not data)
    uploads = direct.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert len(uploads) == 1
    ledger.add(CATEGORY, inputs=1)
    for upload in uploads:  # clean up like the lifecycle rule would
        direct.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def _start_download(proxy, keyfile, bucket, key, dest) -> subprocess.Popen:
    # the object was stored by the library (plaintext key, no manifest entry): say so explicitly
    return subprocess.Popen(
        _cli("--endpoint-url", proxy.url, "download", f"s3://{bucket}/{key}", str(dest), "--key", str(keyfile), "--quiet",
             "--plain-names", "--allow-unrecorded"),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _partial_with_plaintext(directory: Path) -> bool:
    return any(p.stat().st_size > 0 for p in directory.iterdir())


@pytest.mark.parametrize(
    "sig",
    [
        signal.SIGINT,
        signal.SIGTERM,
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_download_interrupted_leaves_no_plaintext(
    ledger, proxy, direct, bucket, stored, keyfile, tmp_path, sig
) -> None:
    # GIVEN a CLI download slowed to 1 MiB/s, interrupted once plaintext reached its temporary file
    proxy.add(Fault(operation("GetObject"), "slow-response", times=None, rate=MIB))
    out = tmp_path / "out"
    out.mkdir()
    process = _start_download(proxy, keyfile, bucket, stored, out / "big.bin")
    _wait_for(lambda: _partial_with_plaintext(out))
    # WHEN the process is interrupted
    process.send_signal(sig)
    process.communicate(timeout=60)
    # THEN no file is left: neither the destination nor a temporary file with plaintext
    leftovers = list(out.iterdir())
    ledger.add(CATEGORY, inputs=1, plaintext_bytes_released=sum(p.stat().st_size for p in leftovers))
    assert process.returncode != 0
    assert leftovers == [], [(p.name, p.stat().st_size) for p in leftovers]


def test_download_killed_leaves_only_a_private_temp_file_that_the_next_run_removes(
    ledger, proxy, direct, bucket, stored, keyfile, tmp_path
) -> None:
    # GIVEN a CLI download slowed to 1 MiB/s, killed outright (SIGKILL: no handler can run)
    proxy.add(Fault(operation("GetObject"), "slow-response", times=None, rate=MIB))
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "big.bin"
    process = _start_download(proxy, keyfile, bucket, stored, dest)
    _wait_for(lambda: _partial_with_plaintext(out))
    process.kill()
    process.communicate(timeout=60)
    # THEN the destination does not exist, and what is left is readable by the owner alone
    leftovers = list(out.iterdir())
    assert not dest.exists()
    assert all(p.name.endswith(".partial") and (p.stat().st_mode & 0o077) == 0 for p in leftovers), leftovers
    # WHEN the same download runs again (without faults) THEN it succeeds and the stale file is gone
    proxy.clear()
    again = _start_download(proxy, keyfile, bucket, stored, dest)
    again.communicate(timeout=120)
    assert again.returncode == 0
    assert [p.name for p in out.iterdir()] == ["big.bin"]
    ledger.add(CATEGORY, inputs=1, plaintext_bytes_released=0)
