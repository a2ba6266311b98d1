"""The AWS S3 Encryption Client for Python as a benchmark peer (KMS keyring).

Runs in its own venv (build/bench/s3ec-venv, from bench/requirements-s3ec.txt) because the
client pins cryptography<49 while the project pins 50; so it imports nothing from the project.

    python bench/s3ec_peer.py upload ENDPOINT KMS_KEY_ID PATH BUCKET KEY
    python bench/s3ec_peer.py download ENDPOINT KMS_KEY_ID BUCKET KEY DEST

Prints one JSON line {"seconds": ..., "cpu_seconds": ...}: the operation only, not imports or
client setup. KMS_ENDPOINT_URL, when set, is where the KMS keyring's calls go.
Uses the client's own defaults: `upload_file` (8 MiB parts, one at a time) and
`get_object` whose decrypting body is copied to the file in 1 MiB reads.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import boto3
from botocore.config import Config
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.materials.kms_keyring import KmsKeyring

REGION = "eu-north-1"
CHUNK = 1024 * 1024


def _client(endpoint: str, kms_key_id: str) -> S3EncryptionClient:
    # KMS stays on moto when S3 is the fast endpoint, which has no KMS.
    kms = boto3.client("kms", endpoint_url=os.environ.get("KMS_ENDPOINT_URL", endpoint), region_name=REGION)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, config=Config(s3={"addressing_style": "path"}))
    return S3EncryptionClient(s3, S3EncryptionClientConfig(keyring=KmsKeyring(kms, kms_key_id)))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    op, endpoint, kms_key_id, *rest = argv
    client = _client(endpoint, kms_key_id)
    cpu, started = _cpu(), time.perf_counter()
    if op == "upload":
        path, bucket, key = rest
        client.upload_file(path, bucket, key)
    elif op == "download":
        bucket, key, dest = rest
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with open(dest, "wb") as out:
            while chunk := body.read(CHUNK):
                out.write(chunk)
    else:
        print(f"unknown operation {op!r}", file=sys.stderr)
        return 2
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    status = open("/proc/self/status").read()  # noqa: SIM115 - tiny read
    hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_rss_kib": hwm}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
