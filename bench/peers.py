"""One function per peer and operation, plus a child-process entry point.

Every measured operation runs in a fresh child process (`python -m bench.peers OP ...`):
the child times the operation itself (imports and interpreter start are not counted)
and prints one JSON line with its time and its peak resident set (VmHWM; `ru_maxrss`
would include the parent's resident set at the fork). rclone and the AWS S3 Encryption Client run as their own processes (the
latter in its own venv, see bench/s3ec_peer.py); rclone is timed from outside, so its
(small) process start is included.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
S3EC_VENV = REPO_ROOT / "build" / "bench" / "s3ec-venv"
S3EC_SCRIPT = Path(__file__).resolve().parent / "s3ec_peer.py"
REGION = "eu-north-1"
CHUNK = 1024 * 1024
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
RCLONE_CRYPT_REMOTE = "benchcrypt"
RCLONE_S3_REMOTE = "benchmoto"


# --- boto3 plain (the baseline) -------------------------------------------------------------
def _plain_s3(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    # Path-style addressing for the loopback endpoint; everything else is boto3's default.
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, config=Config(s3={"addressing_style": "path"}))


def boto3_upload(endpoint: str, path: Path, bucket: str, key: str) -> None:
    """`upload_file` with the default TransferConfig (8 MiB parts, 10 threads)."""
    _plain_s3(endpoint).upload_file(str(path), bucket, key)


def boto3_download(endpoint: str, bucket: str, key: str, dest: Path) -> None:
    """`download_file` with the default TransferConfig."""
    _plain_s3(endpoint).download_file(bucket, key, str(dest))


def boto3_get(endpoint: str, bucket: str, key: str, dest: Path) -> None:
    """One `get_object` streamed to the file in 1 MiB reads: the single-stream plain reference.

    moto answers every GET, ranged or not, by copying the whole object, so the ranged GETs
    of `download_file` cost O(size) each there; a single stream is what S3-like servers
    and our client do, so this is the like-for-like plain download.
    """
    body = _plain_s3(endpoint).get_object(Bucket=bucket, Key=key)["Body"]
    with open(dest, "wb") as out:
        while chunk := body.read(CHUNK):
            out.write(chunk)


# --- this project (tier A client) -----------------------------------------------------------
@dataclass(frozen=True)
class Tuning:
    """Transfer settings of our client; None = the client's own default."""

    part_size_mib: int | None = None
    concurrency: int | None = None
    digest: bool = True  # the manifest's SHA-256 of the plaintext (False: as `kommunmoln rotate` uploads)
    download_streams: int | None = None  # GETs in flight per download (TransferSettings.download_streams)


def _our_client(endpoint: str, tuning: Tuning) -> tuple[Any, Any]:
    from kommunmoln.tier_a import transfer

    settings = transfer.TransferSettings(
        **({"part_size": tuning.part_size_mib * transfer.MIB} if tuning.part_size_mib else {}),
        **({"concurrency": tuning.concurrency} if tuning.concurrency else {}),
        download_streams=tuning.download_streams,
    )
    aws = transfer.AwsSettings(region=REGION, endpoint_url=endpoint)
    s3 = transfer.s3_client(transfer.make_session(aws), aws, concurrency=settings.concurrency)
    return s3, settings


def _keyring(key_file: Path) -> Any:
    from kommunmoln.tier_a.keys import Keyring, load_key_file

    return Keyring(load_key_file(key_file).master_key())


def write_key(key_file: Path) -> None:
    """A fresh workshop key file (mode 0600) for the benchmark."""
    from kommunmoln.tier_a.keys import RawAesKey, write_key_file

    write_key_file(key_file, RawAesKey.generate(name="bench"))


def kommunmoln_upload(endpoint: str, key_file: Path, path: Path, bucket: str, key: str, tuning: Tuning) -> None:
    """Encrypt while uploading (kommunmoln.tier_a.transfer.upload_encrypted)."""
    from kommunmoln.tier_a.transfer import upload_encrypted

    s3, settings = _our_client(endpoint, tuning)
    upload_encrypted(s3, source_path=path, bucket=bucket, key=key, key_provider=_keyring(key_file), settings=settings,
                     digest=tuning.digest)  # fmt: skip


def kommunmoln_download(endpoint: str, key_file: Path, bucket: str, key: str, dest: Path, tuning: Tuning) -> None:
    """Download and decrypt, all or nothing (kommunmoln.tier_a.transfer.download_decrypted)."""
    from kommunmoln.tier_a.transfer import download_decrypted

    s3, settings = _our_client(endpoint, tuning)
    download_decrypted(s3, bucket=bucket, key=key, dest=dest, key_provider=_keyring(key_file), settings=settings)


class _Discard(io.RawIOBase):
    """A sink that keeps nothing: encrypt-only figures without disk writes."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


def kommunmoln_encrypt_memory(key_file: Path, source: Path) -> None:
    """The project's encryptor (kommunmoln.tier_a.codec.encrypt_stream) into a discarding sink."""
    from kommunmoln.tier_a.codec import encrypt_stream

    with open(source, "rb") as plain:
        encrypt_stream(plain, _Discard(), _keyring(key_file), {"bench": "encrypt-only"})


def esdk_default_encrypt_memory(key_file: Path, source: Path) -> None:
    """The ESDK at its defaults into a discarding sink."""
    esdk_default_encrypt(key_file, source, None)


def aes_gcm_reference(source: Path) -> None:
    """`cryptography`'s AES-256-GCM on one thread over the same bytes, 1 MiB at a time (the ceiling)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    counter = 0
    with open(source, "rb", buffering=0) as plain:
        while got := plain.readinto(buffer):
            counter += 1
            aead.encrypt(counter.to_bytes(12, "big"), view[:got], None)  # unique nonce per call


def kommunmoln_encrypt(key_file: Path, source: Path, dest: Path) -> None:
    """File to file with the project's format (kommunmoln.tier_a.codec.encrypt_file)."""
    from kommunmoln.tier_a.codec import encrypt_file

    encrypt_file(source, dest, _keyring(key_file), {"bench": "encrypt-only"})


# --- the AWS Encryption SDK at its defaults ---------------------------------------------------
def esdk_default_encrypt(key_file: Path, source: Path, dest: Path | None) -> None:
    """`aws_encryption_sdk` stream with its defaults: ECDSA-signing committing suite, 4 KiB frames.

    Same raw AES wrapping key and the same 1 MiB reads as our client, so the difference
    is the suite and the frame length only.
    """
    import aws_encryption_sdk

    from kommunmoln.tier_a.keys import load_key_file

    client = aws_encryption_sdk.EncryptionSDKClient()
    master_key = load_key_file(key_file).master_key()
    with (
        open(source, "rb") as plain,
        open(dest, "wb") if dest else _Discard() as out,
        client.stream(mode="e", source=plain, key_provider=master_key) as encryptor,
    ):
        while chunk := encryptor.read(CHUNK):
            out.write(chunk)


# --- rclone crypt ---------------------------------------------------------------------------------
def rclone_binary() -> str:
    return shutil.which("rclone") or "rclone"


def rclone_env(endpoint: str, bucket: str, password: str) -> dict[str, str]:
    """An environment defining an S3 remote at `endpoint` and a crypt remote over it.

    AWS_CA_BUNDLE is removed: rclone refuses to start when it is set.
    """
    obscured = subprocess.run(
        [rclone_binary(), "obscure", password], check=True, capture_output=True, text=True
    ).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE" and not k.startswith("RCLONE_")}
    s3, crypt = RCLONE_S3_REMOTE.upper(), RCLONE_CRYPT_REMOTE.upper()
    env.update(
        {
            f"RCLONE_CONFIG_{s3}_TYPE": "s3",
            f"RCLONE_CONFIG_{s3}_PROVIDER": "Other",
            f"RCLONE_CONFIG_{s3}_ENDPOINT": endpoint,
            f"RCLONE_CONFIG_{s3}_ACCESS_KEY_ID": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            f"RCLONE_CONFIG_{s3}_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            f"RCLONE_CONFIG_{s3}_REGION": REGION,
            f"RCLONE_CONFIG_{s3}_FORCE_PATH_STYLE": "true",
            f"RCLONE_CONFIG_{crypt}_TYPE": "crypt",
            f"RCLONE_CONFIG_{crypt}_REMOTE": f"{RCLONE_S3_REMOTE}:{bucket}/rclone",
            f"RCLONE_CONFIG_{crypt}_PASSWORD": obscured,
            "RCLONE_CONFIG": os.devnull,
        }
    )
    return env


def rclone_upload_argv(path: Path, name: str, concurrency: int) -> list[str]:
    return [
        rclone_binary(),
        "copyto",
        str(path),
        f"{RCLONE_CRYPT_REMOTE}:{name}",
        f"--s3-upload-concurrency={concurrency}",
    ]


def rclone_download_argv(name: str, dest: Path) -> list[str]:
    return [rclone_binary(), "copyto", f"{RCLONE_CRYPT_REMOTE}:{name}", str(dest)]


# --- AWS S3 Encryption Client for Python (own venv) -------------------------------------------
def s3ec_python() -> Path:
    return S3EC_VENV / "bin" / "python"


def s3ec_upload_argv(endpoint: str, kms_key_id: str, path: Path, bucket: str, key: str) -> list[str]:
    """The S3 Encryption Client's upload; its KMS calls go to KMS_ENDPOINT_URL in the environment."""
    return [str(s3ec_python()), str(S3EC_SCRIPT), "upload", endpoint, kms_key_id, str(path), bucket, key]


def s3ec_download_argv(endpoint: str, kms_key_id: str, bucket: str, key: str, dest: Path) -> list[str]:
    return [str(s3ec_python()), str(S3EC_SCRIPT), "download", endpoint, kms_key_id, bucket, key, str(dest)]


# --- OpenSSL ------------------------------------------------------------------------------------
OPENSSL_SPEED_ARGV = [shutil.which("openssl") or "openssl", "speed", "-evp", "aes-256-gcm", "-seconds", "2"]
OPENSSL_BLOCK = "16384 bytes"


def parse_openssl_speed(output: str) -> float:
    """Bytes per second in the 16384-byte column of `openssl speed -evp aes-256-gcm`."""
    lines = output.splitlines()
    header = next((line for line in lines if line.startswith("type") and OPENSSL_BLOCK in line), None)
    row = next((line for line in lines if line.lower().startswith("aes-256-gcm")), None)
    if header is None or row is None:
        raise ValueError("no aes-256-gcm row or 16384-byte column in the openssl speed output")
    columns = re.findall(r"\d+ bytes", header)
    values = row.split()[-len(columns) :]
    return float(values[columns.index(OPENSSL_BLOCK)].rstrip("k")) * 1000  # table is in 1000s of bytes/s


def openssl_aes_gcm() -> float:
    """The machine's single-core AES-256-GCM limit (bytes/s, 16 KiB blocks)."""
    output = subprocess.run(OPENSSL_SPEED_ARGV, check=True, capture_output=True, text=True).stdout
    return parse_openssl_speed(output)


# --- child-process entry point ---------------------------------------------------------------
def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(operation: Callable[[], None]) -> dict[str, float]:
    cpu, started = cpu_seconds(), time.perf_counter()
    operation()
    return {"seconds": time.perf_counter() - started, "cpu_seconds": cpu_seconds() - cpu}


def run_operation(op: str, args: Mapping[str, Any]) -> dict[str, float]:
    """Run one named operation in this process and time it."""
    a = dict(args)
    p = {k: Path(v) for k, v in a.items() if k in ("path", "dest", "source", "key_file")}
    tuning = Tuning(a.get("part_size_mib"), a.get("concurrency"), a.get("digest", True), a.get("download_streams"))
    operations: dict[str, Callable[[], None]] = {
        "boto3-upload": lambda: boto3_upload(a["endpoint"], p["path"], a["bucket"], a["key"]),
        "boto3-download": lambda: boto3_download(a["endpoint"], a["bucket"], a["key"], p["dest"]),
        "boto3-get": lambda: boto3_get(a["endpoint"], a["bucket"], a["key"], p["dest"]),
        "kommunmoln-upload": lambda: kommunmoln_upload(
            a["endpoint"], p["key_file"], p["path"], a["bucket"], a["key"], tuning
        ),
        "kommunmoln-download": lambda: kommunmoln_download(
            a["endpoint"], p["key_file"], a["bucket"], a["key"], p["dest"], tuning
        ),
        "kommunmoln-encrypt": lambda: kommunmoln_encrypt(p["key_file"], p["source"], p["dest"]),
        "kommunmoln-encrypt-memory": lambda: kommunmoln_encrypt_memory(p["key_file"], p["source"]),
        "esdk-default-encrypt-memory": lambda: esdk_default_encrypt_memory(p["key_file"], p["source"]),
        "aes-gcm-reference": lambda: aes_gcm_reference(p["source"]),
        "esdk-default-encrypt": lambda: esdk_default_encrypt(p["key_file"], p["source"], p["dest"]),
    }
    if op not in operations:
        raise SystemExit(f"unknown operation {op!r}; known: {', '.join(sorted(operations))}")
    return _timed(operations[op])


def child_argv(op: str, args: Mapping[str, Any]) -> list[str]:
    return [sys.executable, "-m", "bench.peers", op, json.dumps(dict(args), default=str)]


def peak_rss_kib(pid: int | str = "self") -> int:
    """VmHWM of a process: its own peak resident set (reset by exec, unlike ru_maxrss)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _preload() -> None:
    """Import everything the operations use, so the timed part excludes imports."""
    import aws_encryption_sdk  # noqa: F401
    import boto3  # noqa: F401

    from kommunmoln.tier_a import codec, keys, transfer  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one benchmark operation and print its time as JSON.")
    parser.add_argument("op")
    parser.add_argument("args", help="JSON object of arguments")
    ns = parser.parse_args(argv)
    os.environ.update({k: v for k, v in FAKE_CREDENTIALS.items() if k not in os.environ})
    _preload()
    result = run_operation(ns.op, json.loads(ns.args))
    print(json.dumps({**result, "peak_rss_kib": peak_rss_kib()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
