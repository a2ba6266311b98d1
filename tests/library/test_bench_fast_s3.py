"""The benchmark-only fast S3 endpoint (bench/fast_s3.py) stores and returns the bytes boto3 sends.

It is never used for correctness of the client; this only checks that benchmark figures
measured against it move the right bytes (HTTP and HTTPS, single PUT and multipart,
the aws-chunked trailer encoding botocore uses over HTTPS, ranged GETs, metadata).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


@pytest.fixture(params=["http", "https"])
def endpoint(request, tmp_path):
    tls = ["--tls-dir", str(tmp_path / "tls")] if request.param == "https" else []
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.fast_s3", "--store", str(tmp_path / "store"), *tls],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        url = server.stdout.readline().strip()
        assert url.startswith(request.param + "://")
        verify = str(tmp_path / "tls" / "cert.pem") if tls else None
        yield boto3.client(
            "s3",
            endpoint_url=url,
            region_name="eu-north-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}),
            verify=verify,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_single_and_multipart_objects_round_trip(endpoint, tmp_path):
    # GIVEN a bucket and a 12 MiB file (multipart with 5 MiB parts) and a small object with metadata
    endpoint.create_bucket(Bucket="bench")
    data = os.urandom(12 * MIB)
    (tmp_path / "src").write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    # WHEN both are uploaded and read back (whole, ranged, and by download_file's ranged GETs)
    endpoint.upload_file(str(tmp_path / "src"), "bench", "big", Config=config)
    endpoint.put_object(Bucket="bench", Key="small", Body=b"hello", Metadata={"x": "1"})
    endpoint.download_file("bench", "big", str(tmp_path / "dst"), Config=config)
    small = endpoint.get_object(Bucket="bench", Key="small")
    # THEN the bytes and the metadata are what was sent, and a PutObject's ETag is its MD5
    assert (tmp_path / "dst").read_bytes() == data
    assert endpoint.get_object(Bucket="bench", Key="big", Range="bytes=7-10")["Body"].read() == data[7:11]
    assert small["Body"].read() == b"hello" and small["Metadata"] == {"x": "1"}
    assert small["ETag"] == '"5d41402abc4b2a76b9719d911017c592"'
    # AND deleting leaves the bucket empty; a missing key is a 404
    endpoint.delete_objects(Bucket="bench", Delete={"Objects": [{"Key": "big"}, {"Key": "small"}]})
    assert "Contents" not in endpoint.list_objects_v2(Bucket="bench")
    with pytest.raises(endpoint.exceptions.NoSuchKey):
        endpoint.get_object(Bucket="bench", Key="big")
