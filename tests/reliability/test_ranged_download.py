"""Parallel ranged downloads (kommunmoln.tier_a.ranged): all or nothing, whichever range fails.

The frame engine fetches the frames after the first segment as parallel ranged GETs and
decrypts each into the temporary file at its offset; the ESDK engine reads one stream.
Both run every test (`codec_engine`). A range that keeps failing, or a stored object
modified by someone with S3 access (a flipped byte in a late frame, frames swapped, the
object cut at a frame boundary or extended), must leave neither the destination nor a
temporary file, and raise one documented error.

Rules the fault proxy scripts (tests/reliability/faultproxy.py), from the Amazon S3 API
Reference: GetObject with `Range: bytes=first-last` answers 206 with `Content-Range:
bytes first-last/length` (GetObject, "Range"; RFC 9110 section 14.4); `If-Match` with
another ETag answers 412 PreconditionFailed (GetObject, "IfMatch"); 500 InternalError is a
server error the client may retry ("Error responses", List of error codes).
https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from kommunmoln.tier_a import codec, ranged
from kommunmoln.tier_a.errors import DecryptionError, TransferError
from kommunmoln.tier_a.frames import REGULAR_FRAME_OVERHEAD
from kommunmoln.tier_a.keys import RawAesKey
from kommunmoln.tier_a.transfer import MIB, TransferSettings, download_decrypted, upload_encrypted
from tests.reliability.faultproxy import Fault, FaultProxy

pytestmark = pytest.mark.usefixtures("codec_engine")  # both engines: frames and the ESDK's stream

CATEGORY = "ranged_download"
KEY = RawAesKey("kommunmoln", "ranged-key", bytes(range(2, 34)))
SETTINGS = TransferSettings(part_size=5 * MIB, concurrency=3)  # ranges of 5 frames, 2 beside the first
ONE_STREAM = TransferSettings(part_size=5 * MIB, concurrency=3, download_streams=1)  # the ranges in turn
FRAME = codec.FRAME_LENGTH + REGULAR_FRAME_OVERHEAD  # stored bytes of one regular frame


@pytest.fixture(scope="module")
def plaintext() -> bytes:
    return random.Random(15).randbytes(23 * MIB + 777)  # 24 frames: the first range, then 4 more ranges


@pytest.fixture
def direct(moto_endpoint):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-north-1")


@pytest.fixture
def stored(direct, request, tmp_path, plaintext) -> tuple[str, str]:
    bucket = f"rel-ranged-{abs(hash(request.node.name)) % 10**9}"
    direct.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    direct.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    source = tmp_path / "plain.bin"
    source.write_bytes(plaintext)
    upload_encrypted(direct, source_path=source, bucket=bucket, key="big.bin", key_provider=KEY.master_key(),
                     settings=SETTINGS)  # fmt: skip
    source.unlink()
    return bucket, "big.bin"


@pytest.fixture
def proxy(moto_endpoint):
    with FaultProxy(moto_endpoint) as running:
        yield running


def _client(url: str, attempts: int = 2):
    return boto3.client(
        "s3", endpoint_url=url, region_name="eu-north-1",
        config=Config(retries={"mode": "standard", "max_attempts": attempts}, s3={"addressing_style": "path"}),
    )  # fmt: skip


def _range_start(request) -> int | None:
    value = request.headers.get("Range", "")
    return int(value[len("bytes=") :].split("-")[0]) if value.startswith("bytes=") else None


def _nothing_left(ledger, out: Path) -> None:
    leftovers = list(out.iterdir())
    ledger.add(CATEGORY, inputs=1, plaintext_bytes_released=sum(p.stat().st_size for p in leftovers))
    assert leftovers == [], f"left on disk: {leftovers}"


@pytest.mark.parametrize("settings", [SETTINGS, ONE_STREAM], ids=["3-streams", "1-stream"])
def test_ranges_reassemble_the_file_and_are_pinned(ledger, proxy, stored, plaintext, tmp_path, codec_engine, settings,
                                                   monkeypatch) -> None:  # fmt: skip
    # GIVEN a stored object of 24 frames (and, for one download stream, no thread pool to be had for ranges)
    bucket, key = stored
    dest = tmp_path / "out" / "big.bin"
    dest.parent.mkdir()
    one_stream = settings.download_streams == 1
    if one_stream:

        def no_pool(*_args, **_kwargs):
            raise AssertionError("one download stream must not start range threads")

        monkeypatch.setattr(ranged, "ThreadPoolExecutor", no_pool)
    # WHEN it is downloaded through the proxy, three ranges at a time or one after another
    result = download_decrypted(_client(proxy.url), bucket=bucket, key=key, dest=dest, key_provider=KEY.master_key(),
                                settings=settings)  # fmt: skip
    # THEN the file is the original, alone in its directory
    assert dest.read_bytes() == plaintext and result.plaintext_bytes == len(plaintext)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["big.bin"]
    gets = [r for r, _ in proxy.log if r.operation == "GetObject"]
    # AND every GET after the opening one is pinned to the object's ETag (one version, never a mix)
    assert _range_start(gets[0]) == 0 and all(r.headers.get("If-Match") for r in gets[1:])
    if codec_engine == codec.ENGINE_FRAMES:
        # AND with the frame engine the rest came as ranges of whole frames (5 frames each),
        # in order when one stream fetches them in turn
        starts = [_range_start(r) for r in gets[1:]]
        starts = starts if one_stream else sorted(starts)
        assert len(starts) == 4 and all(b - a == 5 * FRAME for a, b in itertools.pairwise(starts))
    else:
        # AND the ESDK engine read one stream: the opening range, then the rest of the object
        assert len(gets) == 2
    ledger.add(CATEGORY, inputs=1)


@pytest.mark.parametrize("settings", [SETTINGS, ONE_STREAM], ids=["3-streams", "1-stream"])
@pytest.mark.parametrize("failure", ["500-forever", "cut-every-time"])
def test_a_range_that_keeps_failing_leaves_no_plaintext(ledger, proxy, stored, tmp_path, failure, settings) -> None:
    # GIVEN every GET after the opening one that reaches past 20 MiB failing: answered 500
    # InternalError each time, or cut after 1000 bytes each time (more often than the client resumes)
    bucket, key = stored

    def late(request) -> bool:
        value = request.headers.get("Range", "")
        return request.operation == "GetObject" and bool(_range_start(request)) and int(value.split("-")[1]) >= 20 * MIB

    if failure == "500-forever":
        proxy.add(Fault(late, "status", times=None, status=500, code="InternalError"))
    else:
        proxy.add(Fault(late, "cut-response", times=None, after=1000))
    out = tmp_path / "out"
    out.mkdir()
    # WHEN the client downloads (the earlier ranges succeed, and were decrypted into the temporary file)
    with pytest.raises(TransferError) as raised:
        download_decrypted(_client(proxy.url), bucket=bucket, key=key, dest=out / "big.bin",
                           key_provider=KEY.master_key(), settings=settings)  # fmt: skip
    # THEN one line names the object, and neither the destination nor a temporary file remains
    assert "\n" not in str(raised.value) and "s3://" in str(raised.value)
    _nothing_left(ledger, out)


def _frames(message: bytes, header_length: int) -> tuple[bytes, list[bytes], bytes]:
    body = message[header_length:]
    count = (len(body) - 40) // FRAME
    return message[:header_length], [body[i * FRAME : (i + 1) * FRAME] for i in range(count)], body[count * FRAME :]


def _tampered(message: bytes, how: str) -> bytes:
    header_length = codec.summarize_header(message[: codec.HEADER_PEEK_BYTES]).header_bytes
    header, regular, final = _frames(message, header_length)
    if how == "flip-late-frame":
        data = bytearray(message)
        data[header_length + 21 * FRAME + 100] ^= 0x04  # inside frame 22: a range the opening GET never reads
        return bytes(data)
    if how == "swap-late-frames":
        regular[19], regular[20] = regular[20], regular[19]
        return header + b"".join(regular) + final
    if how == "cut-at-frame-boundary":
        return header + b"".join(regular[:18])  # regular frames only: no final frame
    if how == "drop-middle-frame":
        return header + b"".join(regular[:10] + regular[11:]) + final
    if how == "extend-by-a-frame":
        return message + regular[5]
    if how == "append-bytes":
        return message + b"\0" * 7
    raise ValueError(how)


@pytest.mark.parametrize("settings", [SETTINGS, ONE_STREAM], ids=["3-streams", "1-stream"])
@pytest.mark.parametrize(
    "how",
    ["flip-late-frame", "swap-late-frames", "cut-at-frame-boundary", "drop-middle-frame", "extend-by-a-frame",
     "append-bytes"],
)  # fmt: skip
def test_a_modified_stored_object_is_refused_without_plaintext(ledger, direct, stored, tmp_path, how,
                                                               settings) -> None:  # fmt: skip
    # GIVEN the stored object rewritten by someone with S3 access (same key, new version)
    bucket, key = stored
    message = direct.get_object(Bucket=bucket, Key=key)["Body"].read()
    direct.put_object(Bucket=bucket, Key=key, Body=_tampered(message, how))
    out = tmp_path / "out"
    out.mkdir()
    # WHEN the client downloads the current version
    with pytest.raises(DecryptionError) as raised:
        download_decrypted(direct, bucket=bucket, key=key, dest=out / "big.bin", key_provider=KEY.master_key(),
                           settings=settings)  # fmt: skip
    # THEN refused with one line saying nothing was written, and nothing was
    assert "\n" not in str(raised.value) and "no output written" in str(raised.value)
    _nothing_left(ledger, out)


def test_an_empty_object_is_refused(ledger, direct, stored, tmp_path) -> None:
    # GIVEN an empty object where a message should be (a GET of bytes=0-... cannot be satisfied)
    bucket, _ = stored
    direct.put_object(Bucket=bucket, Key="empty.bin", Body=b"")
    out = tmp_path / "out"
    out.mkdir()
    # WHEN downloaded  THEN refused as no message, without output
    with pytest.raises(DecryptionError, match="not an AWS Encryption SDK message"):
        download_decrypted(direct, bucket=bucket, key="empty.bin", dest=out / "x", key_provider=KEY.master_key())
    _nothing_left(ledger, out)


def test_small_objects_take_one_get(ledger, proxy, direct, stored, tmp_path) -> None:
    # GIVEN an object smaller than the first range
    bucket, _ = stored
    small = tmp_path / "small.txt"
    small.write_bytes(b"protokoll " * 1000)
    upload_encrypted(direct, source_path=small, bucket=bucket, key="small.txt", key_provider=KEY.master_key())
    dest = tmp_path / "small.out"
    # WHEN downloaded  THEN one GET and the same bytes
    download_decrypted(_client(proxy.url), bucket=bucket, key="small.txt", dest=dest, key_provider=KEY.master_key())
    assert dest.read_bytes() == small.read_bytes()
    assert [r.operation for r, _ in proxy.log].count("GetObject") == 1
    ledger.add(CATEGORY, inputs=1)
