"""Every part goes to S3 with its own CRC32 in a signed header, so S3 verifies each part it stores;
the plaintext's SHA-256 for the manifest is computed while encrypting, or left out on request.

The requests are caught on the wire (botocore's `before-send` event, after signing) and
answered there, so nothing leaves the process. The answers follow the Amazon S3 API
Reference: CreateMultipartUpload returns an `InitiateMultipartUploadResult` with the
`UploadId`; UploadPart returns the part's `ETag` header
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html); CompleteMultipartUpload
returns a `CompleteMultipartUploadResult`; a part whose checksum does not match what S3
received is refused with 400 `BadDigest` ("The Content-MD5 or checksum value that you
specified did not match what the server received", Error responses,
https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html); S3 "independently
calculates a checksum of your data and validates it against the provided checksum value ...
If the values don't match, the request is rejected" (User Guide, Checking object integrity
for data uploads, https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity-upload.html).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import zlib
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from kommunmoln.tier_a.errors import TransferError, UsageError
from kommunmoln.tier_a.keys import Keyring, RawAesKey
from kommunmoln.tier_a.manifest import entry_for_upload
from kommunmoln.tier_a.transfer import MIB, TransferSettings, upload_stream

pytestmark = pytest.mark.usefixtures("codec_engine")  # both engines: frames and the ESDK's stream

KEY = RawAesKey("kommunmoln", "checksum-key", bytes(range(32)))
PARTS = TransferSettings(part_size=5 * MIB, concurrency=2)


class _Raw:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_):
        yield self._data


@dataclass
class Wire:
    """Requests as signed and sent, answered like S3; `bad_digest` parts are refused with BadDigest."""

    bad_digest: set[int] = field(default_factory=set)
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    def answer(self, request, **_) -> AWSResponse:
        body = request.body
        data = body.read() if hasattr(body, "read") else bytes(body or b"")
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        self.requests.append((request.method, request.url, headers, data))
        query = request.url.partition("?")[2]
        if request.method == "POST" and query.startswith("uploads"):
            xml = b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>up-1</UploadId></InitiateMultipartUploadResult>"
            return AWSResponse(request.url, 200, {}, _Raw(xml))
        if request.method == "PUT" and "partNumber=" in query:
            number = int(re.search(r"partNumber=(\d+)", query).group(1))
            if number in self.bad_digest:
                xml = b"<Error><Code>BadDigest</Code><Message>The Content-MD5 or checksum value that you specified did not match what the server received.</Message></Error>"
                return AWSResponse(request.url, 400, {}, _Raw(xml))
            return AWSResponse(request.url, 200, {"ETag": f'"etag-{number}"'}, _Raw(b""))
        if request.method == "POST" and "uploadId=" in query:
            xml = b'<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>"e-3"</ETag></CompleteMultipartUploadResult>'
            return AWSResponse(request.url, 200, {}, _Raw(xml))
        if request.method == "DELETE":  # AbortMultipartUpload: 204 No Content
            return AWSResponse(request.url, 204, {}, _Raw(b""))
        if request.method == "GET" and "uploadId=" in query:  # ListParts after the abort: the upload is gone
            xml = b"<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>"
            return AWSResponse(request.url, 404, {}, _Raw(xml))
        if request.method == "PUT":  # PutObject
            return AWSResponse(request.url, 200, {"ETag": '"single"'}, _Raw(b""))
        raise AssertionError(f"unexpected request {request.method} {request.url}")

    def parts(self) -> list[tuple[dict[str, str], bytes]]:
        """(headers, body) of every UploadPart, in part-number order."""
        numbered = [(int(re.search(r"partNumber=(\d+)", u).group(1)), h, d) for m, u, h, d in self.requests
                    if m == "PUT" and "partNumber=" in u]  # fmt: skip
        return [(h, d) for _, h, d in sorted(numbered, key=lambda item: item[0])]


def _client(scheme: str, wire: Wire):
    s3 = boto3.client(
        "s3", endpoint_url=f"{scheme}://s3.eu-north-1.amazonaws.com", region_name="eu-north-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 1}),
    )  # fmt: skip
    s3.meta.events.register("before-send.s3", wire.answer)
    return s3


def _upload(s3, data: bytes):
    return upload_stream(
        s3, source=io.BytesIO(data), size=len(data), bucket="b", key="k", key_provider=Keyring(KEY.master_key()),
        context={"kommunmoln:bucket": "b", "kommunmoln:key": "k"}, settings=PARTS, on_bytes=None, what="test",
    )  # fmt: skip


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _signed_headers(headers: dict[str, str]) -> list[str]:
    return re.search(r"SignedHeaders=([^,]+)", headers["Authorization"]).group(1).split(";")


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_every_part_carries_its_crc32_in_a_signed_header(scheme: str) -> None:
    # GIVEN a 12 MiB file (three parts of at most 5 MiB) and an S3 endpoint over `scheme`
    wire = Wire()
    data = os.urandom(12 * MIB + 5)
    # WHEN it is encrypted and uploaded
    result = _upload(_client(scheme, wire), data)
    # THEN each part's header holds the CRC32 of exactly the bytes sent, and the header is signed
    parts = wire.parts()
    assert result.parts == len(parts) == 3
    assert sum(len(body) for _, body in parts) == result.stored_bytes
    for headers, body in parts:
        assert headers["x-amz-checksum-crc32"] == _crc32(body)
        assert "x-amz-checksum-crc32" in _signed_headers(headers)
        # AND the body is the plain part, not aws-chunked with an unsigned trailer
        assert int(headers["Content-Length"]) == len(body)
        assert "aws-chunked" not in headers.get("Content-Encoding", "") and "X-Amz-Trailer" not in headers
        # AND over TLS the payload is not hashed again; over plain HTTP SigV4 still signs its SHA-256
        expected = "UNSIGNED-PAYLOAD" if scheme == "https" else hashlib.sha256(body).hexdigest()
        assert headers["X-Amz-Content-SHA256"] == expected
    # AND the upload was created for CRC32 and is completed with every part's CRC32 (S3's composite checksum)
    create = next(h for m, u, h, _ in wire.requests if m == "POST" and u.endswith("?uploads"))
    assert create["x-amz-checksum-algorithm"] == "CRC32"
    complete = next(d for m, u, _, d in wire.requests if m == "POST" and "uploadId=" in u).decode()
    listed = re.findall(r"<ChecksumCRC32>([^<]+)</ChecksumCRC32>", complete)
    assert listed == [_crc32(body) for _, body in parts]


def test_single_put_carries_its_crc32_in_a_signed_header() -> None:
    # GIVEN a file smaller than one part, over HTTPS
    wire = Wire()
    data = os.urandom(100_000)
    # WHEN it is uploaded
    result = _upload(_client("https", wire), data)
    # THEN the one PutObject carries the CRC32 of its body in a signed header, with an unsigned payload
    (method, _, headers, body), = wire.requests  # fmt: skip
    assert method == "PUT" and result.parts == 0 and len(body) == result.stored_bytes
    assert headers["x-amz-checksum-crc32"] == _crc32(body) and "x-amz-checksum-crc32" in _signed_headers(headers)
    assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD" and "X-Amz-Trailer" not in headers


def test_a_part_s3_refuses_with_bad_digest_aborts_the_upload() -> None:
    # GIVEN S3 refusing part 2 because its checksum does not match the bytes it received
    wire = Wire(bad_digest={2})
    # WHEN a three-part upload runs
    with pytest.raises(TransferError, match="BadDigest") as raised:
        _upload(_client("https", wire), os.urandom(12 * MIB))
    # THEN it fails, the multipart upload is aborted, and it is never completed
    assert "aborted" in str(raised.value)
    assert any(m == "DELETE" and "uploadId=up-1" in u for m, u, _, _ in wire.requests)
    assert not any(m == "POST" and "uploadId=" in u for m, u, _, _ in wire.requests)


@pytest.mark.parametrize("digest", [True, False])
def test_the_manifest_digest_is_of_the_plaintext_or_left_out(digest: bool) -> None:
    # GIVEN a two-part file
    data = os.urandom(6 * MIB)
    # WHEN it is uploaded with or without the manifest digest (rotation keeps the recorded one)
    result = upload_stream(
        _client("https", Wire()), source=io.BytesIO(data), size=len(data), bucket="b", key="k",
        key_provider=Keyring(KEY.master_key()), context={"kommunmoln:bucket": "b", "kommunmoln:key": "k"},
        settings=PARTS, on_bytes=None, what="test", digest=digest,
    )  # fmt: skip
    # THEN with it the result carries the SHA-256 of exactly the plaintext and makes a manifest entry
    if digest:
        assert result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
        assert entry_for_upload(result).sha256 == result.plaintext_sha256
    # AND without it there is none, and no manifest entry can be made from the result (fail closed)
    else:
        assert result.plaintext_sha256 == ""
        with pytest.raises(UsageError):
            entry_for_upload(result)
