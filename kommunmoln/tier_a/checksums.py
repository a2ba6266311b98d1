"""The CRC32 S3 verifies for every part (and single PutObject), computed by the client itself.

What S3 does with it: "S3 then independently calculates a checksum of your data and validates
it against the provided checksum value. Objects are accepted only after confirming data
integrity was maintained during transit ... If the values don't match, the request is
rejected" (Amazon S3 User Guide, Checking object integrity for data uploads,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity-upload.html).
A part's value goes in the `x-amz-checksum-crc32` request header (the `ChecksumCRC32`
parameter of UploadPart and PutObject: base64 of the big-endian CRC32); the upload is created
with `ChecksumAlgorithm=CRC32` and CompleteMultipartUpload lists every part's CRC32, so the
object gets S3's composite CRC32 (the same as boto3's `upload_file`).

Why not let botocore compute it: with its default `request_checksum_calculation="when_supported"`
botocore sends a streaming body over HTTPS as `aws-chunked` with the CRC32 in an unsigned
trailer (botocore/httpchecksum.py, `resolve_request_checksum_algorithm`: "Operations with
streaming input must support trailers"), and its `AwsChunkedWrapper` re-slices a 1 MiB
buffer on every 16 KiB read. A checksum the caller supplies turns that off ("If the header
is already set by the customer, skip calculation", the same function): measured on
2026-12-02 (bench/, 256 MiB over HTTPS, 2 cores), our upload went from 3.40 to 2.54 client
CPU-s per GiB, against 2.53-2.77 for boto3's `upload_file`.

Payload signing: botocore leaves the SHA-256 payload hash out of SigV4 over HTTPS only when
it finds the request's checksum in a header it put there itself (botocore/auth.py,
`S3SigV4Auth._should_sha256_sign_payload`: "The combination of TLS and a checksum is
sufficiently secure and durable for us to be confident in the request without body
signing"); for a caller-supplied header it would hash every part with SHA-256 again (about
0.6 CPU-s per GiB). `register` records our header as that header checksum, so botocore
applies its own rule: over HTTPS the payload is `UNSIGNED-PAYLOAD` while the CRC32 header
itself is signed; over plain HTTP botocore still signs the payload's SHA-256 ("Payloads
will always be signed over insecure connections"). Should botocore stop reading that
context, it falls back to signing the payload: slower, never weaker.
"""

from __future__ import annotations

import base64
import zlib

ALGORITHM = "CRC32"
HEADER = "x-amz-checksum-crc32"
_OPERATIONS = ("UploadPart", "PutObject")
_HANDLER_ID = "kommunmoln-own-crc32-header"


def crc32_b64(data) -> str:
    """Base64 of the big-endian CRC32 of `data`, as S3 expects it (zlib releases the GIL)."""
    return base64.b64encode((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")).decode("ascii")


def _own_header_checksum(params, **_) -> None:
    """before-call: a request carrying our CRC32 header is signed as botocore signs its own."""
    if HEADER not in params.get("headers", {}):
        return
    checksum = params.setdefault("context", {}).setdefault("checksum", {})
    checksum.setdefault("request_algorithm", {"algorithm": ALGORITHM.lower(), "in": "header", "name": HEADER})


def register(s3) -> None:
    """Teach an S3 client (once; idempotent) to treat our CRC32 header as a header checksum."""
    for operation in _OPERATIONS:
        s3.meta.events.register(
            f"before-call.s3.{operation}", _own_header_checksum, unique_id=f"{_HANDLER_ID}-{operation}"
        )
