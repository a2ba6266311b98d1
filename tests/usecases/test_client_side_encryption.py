"""Tier A client end to end against the local moto server: transfers, the CLI, the demo."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from pathlib import Path

import boto3
import pytest

from kommunmoln import names
from kommunmoln.tier_a.errors import ContextMismatchError, DecryptionError, TransferError, UsageError
from kommunmoln.tier_a.keys import Keyring, RawAesKey, write_key_file
from kommunmoln.tier_a.transfer import (
    MIB,
    S3Location,
    TransferSettings,
    download_decrypted,
    parse_s3_url,
    plan_uploads,
    upload_encrypted,
)
from tests.stored_names import stored_key
from usecases.client_side_encryption import main

pytestmark = pytest.mark.usefixtures("codec_engine")  # both engines: frames and the ESDK's stream


@pytest.fixture
def key() -> RawAesKey:
    return RawAesKey.generate("kommunmoln", "e2e-key")


@pytest.fixture
def key_file(tmp_path: Path, key: RawAesKey) -> Path:
    return write_key_file(tmp_path / "e2e.key.json", key)


def _random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        while size > 0:
            chunk = os.urandom(min(size, MIB))
            handle.write(chunk)
            size -= len(chunk)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- Library transfers ------------------------------------------------------------------------
def test_multipart_upload_and_download_roundtrip(tmp_path: Path, s3, bucket: str, key: RawAesKey) -> None:
    # GIVEN a 12 MiB file and 5 MiB parts
    source = _random_file(tmp_path / "big.bin", 12 * MIB + 7)
    keyring = Keyring(key.master_key())
    # WHEN it is encrypted while uploading
    result = upload_encrypted(s3, source_path=source, bucket=bucket, key="a/big.bin", key_provider=keyring,
                              settings=TransferSettings(part_size=5 * MIB, concurrency=3))  # fmt: skip
    # THEN it went up in 3 parts, tagged as the bucket policy requires, bound to its bucket and key
    assert result.parts == 3 and result.plaintext_bytes == 12 * MIB + 7
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key="a/big.bin")["TagSet"]}
    assert tags == {names.OBJECT_TAG_ENCRYPTION: names.OBJECT_TAG_ENCRYPTION_VALUE}
    assert result.encryption_context == {names.CONTEXT_BUCKET: bucket, names.CONTEXT_KEY: "a/big.bin"}
    # AND what S3 stores is not the plaintext
    stored = s3.get_object(Bucket=bucket, Key="a/big.bin", Range="bytes=0-4095")["Body"].read()
    assert stored[:1] == b"\x02" and stored not in source.read_bytes()
    # WHEN downloaded THEN the hashes match
    download_decrypted(s3, bucket=bucket, key="a/big.bin", dest=tmp_path / "back.bin", key_provider=keyring)
    assert _sha(tmp_path / "back.bin") == _sha(source)


def test_failed_part_aborts_the_multipart_upload(tmp_path: Path, s3, bucket: str, key: RawAesKey) -> None:
    # GIVEN an S3 client whose third UploadPart fails
    calls = {"n": 0}

    def fail_third(**_kwargs) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionResetError("injected failure")

    s3.meta.events.register("before-call.s3.UploadPart", fail_third)
    source = _random_file(tmp_path / "big.bin", 16 * MIB)
    # WHEN an upload runs THEN it fails with one line saying it aborted
    with pytest.raises(TransferError, match="multipart upload aborted") as error:
        upload_encrypted(s3, source_path=source, bucket=bucket, key="fail.bin", key_provider=Keyring(key.master_key()),
                         settings=TransferSettings(part_size=5 * MIB, concurrency=2))  # fmt: skip
    assert "\n" not in str(error.value)
    # AND no multipart upload (no orphan parts) and no object remain
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_encryption_failure_midway_aborts_too(tmp_path: Path, s3, bucket: str, key: RawAesKey) -> None:
    # GIVEN a source file that fails to read after the first parts (a failing disk)
    source = _random_file(tmp_path / "big.bin", 16 * MIB)
    real_open = open

    class FailingFile:
        def __init__(self, handle) -> None:
            self._handle, self._read = handle, 0

        def read(self, size: int = -1) -> bytes:
            self._read += max(size, 0)
            if self._read > 11 * MIB:
                raise OSError(5, "Input/output error")
            return self._handle.read(size)

        def fileno(self) -> int:
            return self._handle.fileno()

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self._handle.close()

    import kommunmoln.tier_a.transfer as transfer

    transfer.open = lambda *a, **k: FailingFile(real_open(*a, **k))  # type: ignore[attr-defined]
    try:
        with pytest.raises(TransferError, match="aborted"):
            upload_encrypted(s3, source_path=source, bucket=bucket, key="f.bin", key_provider=Keyring(key.master_key()),
                             settings=TransferSettings(part_size=5 * MIB))  # fmt: skip
    finally:
        del transfer.open  # type: ignore[attr-defined]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_moved_object_is_refused_on_download(tmp_path: Path, s3, bucket: str, key: RawAesKey) -> None:
    # GIVEN an encrypted object copied to another key (ciphertext intact)
    (tmp_path / "p.txt").write_text("hemligt")
    keyring = Keyring(key.master_key())
    upload_encrypted(s3, source_path=tmp_path / "p.txt", bucket=bucket, key="orig.txt", key_provider=keyring)
    s3.copy_object(Bucket=bucket, Key="moved.txt", CopySource={"Bucket": bucket, "Key": "orig.txt"})
    # WHEN the copy is downloaded THEN refused as moved, and no file is left
    with pytest.raises(ContextMismatchError, match="moved or renamed"):
        download_decrypted(s3, bucket=bucket, key="moved.txt", dest=tmp_path / "out.txt", key_provider=keyring)
    assert not (tmp_path / "out.txt").exists()


def test_plaintext_object_is_refused_on_download(tmp_path: Path, s3, bucket: str, key: RawAesKey) -> None:
    # GIVEN a plaintext object put around the client WHEN downloaded THEN refused, nothing written
    s3.put_object(Bucket=bucket, Key="plain.txt", Body=b"personnummer 19121212-1212")
    with pytest.raises(DecryptionError, match="not an AWS Encryption SDK message"):
        download_decrypted(
            s3, bucket=bucket, key="plain.txt", dest=tmp_path / "o", key_provider=Keyring(key.master_key())
        )
    assert list(tmp_path.iterdir()) == []


def test_upload_plan_for_directories_and_single_files(tmp_path: Path) -> None:
    # GIVEN a directory tree
    for rel in ("a.txt", "sub/b.txt", "sub/deeper/c.txt"):
        (tmp_path / "d" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / rel).write_text(rel)
    # WHEN planned THEN keys are prefix + path relative to the directory
    plan = plan_uploads([str(tmp_path / "d")], S3Location("b", "arende"))
    assert [k for _, k in plan] == ["arende/a.txt", "arende/sub/b.txt", "arende/sub/deeper/c.txt"]
    # AND a single file goes to exactly the given key, or under a prefix ending in '/'
    assert plan_uploads([str(tmp_path / "d/a.txt")], S3Location("b", "x/y.txt"))[0][1] == "x/y.txt"
    assert plan_uploads([str(tmp_path / "d/a.txt")], S3Location("b", "x/"))[0][1] == "x/a.txt"
    with pytest.raises(UsageError, match="does not exist"):
        plan_uploads([str(tmp_path / "nope")], S3Location("b", "x/"))


@pytest.mark.parametrize("url", ["bucket/key", "s3://Bad_Bucket/k", "s3://ab/k", "http://x/y"])
def test_bad_s3_urls(url: str) -> None:
    with pytest.raises(UsageError):
        parse_s3_url(url)


# --- The CLI ------------------------------------------------------------------------------
def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_keygen_encrypt_decrypt(tmp_path: Path, capsys) -> None:
    # GIVEN keygen WHEN run THEN a 0600 key file and an escrow pair appear
    keyfile = tmp_path / "m.key.json"
    code, out, _ = _cli(
        capsys, "keygen", "--out", str(keyfile), "--name", "cli-key", "--escrow-out", str(tmp_path / "esc")
    )
    assert code == 0 and "kommunmoln/cli-key" in out
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "esc.key.pem").stat().st_mode) == 0o600
    (tmp_path / "p.txt").write_text("Sekretess enligt OSL")
    # WHEN encrypt and decrypt run THEN the file round-trips and decrypt reports the context
    code, _, _ = _cli(capsys, "encrypt", str(tmp_path / "p.txt"), str(tmp_path / "c"), "--key", str(keyfile),
                      "--escrow-public-key", str(tmp_path / "esc.pub.pem"), "--context", "dept=soc")  # fmt: skip
    assert code == 0
    code, out, _ = _cli(capsys, "--key", str(keyfile), "decrypt", str(tmp_path / "c"), str(tmp_path / "o.txt"),
                        "--expect-context", "dept=soc")  # fmt: skip
    assert code == 0 and "dept=soc" in out and (tmp_path / "o.txt").read_text() == "Sekretess enligt OSL"
    # AND the escrow private key alone recovers it
    code, _, _ = _cli(capsys, "decrypt", str(tmp_path / "c"), str(tmp_path / "r.txt"),
                      "--escrow-private-key", str(tmp_path / "esc.key.pem"))  # fmt: skip
    assert code == 0 and (tmp_path / "r.txt").read_text() == "Sekretess enligt OSL"


def _assert_one_line(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err


def test_cli_errors_are_one_line_with_exit_codes(tmp_path: Path, key_file: Path, capsys, moto_endpoint: str) -> None:
    (tmp_path / "p.txt").write_text("x")
    _cli(capsys, "encrypt", str(tmp_path / "p.txt"), str(tmp_path / "c"), "--key", str(key_file))
    other = write_key_file(tmp_path / "other.key.json", RawAesKey.generate("kommunmoln", "other"))
    loose = tmp_path / "loose.key.json"
    loose.write_text(key_file.read_text())
    loose.chmod(0o644)
    cases = [
        # (argv, exit code, message fragment)
        (["decrypt", str(tmp_path / "missing"), str(tmp_path / "o"), "--key", str(key_file)], 2, "does not exist"),
        (["decrypt", str(tmp_path / "c"), str(tmp_path / "o"), "--key", str(other)], 1, "wrong key"),
        (
            ["decrypt", str(tmp_path / "p.txt"), str(tmp_path / "o"), "--key", str(key_file)],
            1,
            "not an AWS Encryption SDK",
        ),
        (
            ["decrypt", str(tmp_path / "c"), str(tmp_path / "o"), "--key", str(key_file), "--expect-context", "a=b"],
            1,
            "has no 'a'",
        ),
        (["decrypt", str(tmp_path / "c"), str(tmp_path / "o"), "--key", str(loose)], 2, "chmod 600"),
        (["decrypt", str(tmp_path / "c"), str(tmp_path / "o")], 2, "no key given"),
        (["encrypt", str(tmp_path / "p.txt"), str(tmp_path / "c2")], 2, "no key given"),
        (["upload", str(tmp_path / "p.txt"), "not-a-url", "--key", str(key_file)], 2, "not an S3 URL"),
        (["upload", str(tmp_path / "p.txt"), "s3://@stack/x", "--key", str(key_file)], 2, "needs --stack-name"),
        (
            [
                "--endpoint-url",
                moto_endpoint,
                "upload",
                str(tmp_path / "p.txt"),
                "s3://no-such-bucket-kommunmoln/x",
                "--key",
                str(key_file),
            ],
            2,
            "bucket does not exist",
        ),
        (
            [
                "--endpoint-url",
                moto_endpoint,
                "download",
                "s3://no-such-bucket-kommunmoln/x",
                str(tmp_path / "d"),
                "--key",
                str(key_file),
            ],
            2,
            "bucket does not exist",
        ),
        (["keygen", "--out", str(key_file)], 2, "already exists"),
        (
            ["encrypt", str(tmp_path / "p.txt"), str(tmp_path / "c3"), "--key", str(key_file), "--context", "bad"],
            2,
            "key=value",
        ),
        (["frobnicate"], 2, "invalid choice"),
    ]
    for argv, expected_code, fragment in cases:
        code, _, err = _cli(capsys, *argv)
        assert (code, fragment in err) == (expected_code, True), (argv, code, err)
        _assert_one_line(err)
    # AND no decrypt failure left an output file
    assert not (tmp_path / "o").exists()


def test_cli_upload_download_verify(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, s3, bucket: str
) -> None:
    # GIVEN a directory of files
    for rel, size in (("a.txt", 10), ("sub/b.bin", 6 * MIB)):
        _random_file(tmp_path / "in" / rel, size)
    common = ["--endpoint-url", moto_endpoint, "--key", str(key_file), "--quiet"]
    # WHEN uploaded recursively, with 5 MiB parts
    code, _, err = _cli(
        capsys, *common, "upload", str(tmp_path / "in"), f"s3://{bucket}/arende/", "--part-size-mib", "5"
    )
    assert code == 0, err
    # AND a plaintext object is put around the client, under the stored key of arende/plain.txt
    s3.put_object(Bucket=bucket, Key=stored_key(s3, bucket, "arende/plain.txt", key_file), Body=b"not encrypted")
    # THEN verify (by plaintext name) passes the encrypted ones, fails the plaintext, exits 1
    keyed = ["--endpoint-url", moto_endpoint, "--key", str(key_file)]
    code, out, _ = _cli(capsys, *keyed, "verify", f"s3://{bucket}/arende")
    assert code == 1
    assert f"pass s3://{bucket}/arende/a.txt" in out and f"pass s3://{bucket}/arende/sub/b.bin" in out
    assert f"FAIL s3://{bucket}/arende/plain.txt: not-esdk" in out
    code, out, _ = _cli(capsys, *keyed, "verify", f"s3://{bucket}/arende/a.txt")
    assert code == 0 and "1 passed, 0 failed" in out
    # WHEN the prefix is downloaded THEN encrypted files match and the plaintext one fails (exit 1, no file)
    code, _, err = _cli(capsys, *common, "download", f"s3://{bucket}/arende", str(tmp_path / "out"))
    assert code == 1 and "plain.txt" in err
    for rel in ("a.txt", "sub/b.bin"):
        assert _sha(tmp_path / "out" / rel) == _sha(tmp_path / "in" / rel)
    assert not (tmp_path / "out" / "plain.txt").exists()
    # AND a single object downloads into an existing directory under its own name
    code, _, _ = _cli(capsys, *common, "download", f"s3://{bucket}/arende/a.txt", str(tmp_path))
    assert code == 0 and _sha(tmp_path / "a.txt") == _sha(tmp_path / "in" / "a.txt")


def test_cli_stack_bucket_from_outputs(tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, bucket: str) -> None:
    # GIVEN a stack whose outputs name the data bucket (moto's CloudFormation, a template with only an output)
    cloudformation = boto3.client("cloudformation", endpoint_url=moto_endpoint, region_name="eu-north-1")
    stack_name = f"kommunmoln-test-{secrets.token_hex(3)}"
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {names.OUTPUT_DATA_BUCKET: {"Value": bucket}},
    }
    cloudformation.create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
    (tmp_path / "p.txt").write_text("via stack")
    # WHEN uploading to s3://@stack/... THEN the object lands in the stack's bucket
    code, _, err = _cli(capsys, "--endpoint-url", moto_endpoint, "--stack-name", stack_name, "--key", str(key_file),
                        "upload", str(tmp_path / "p.txt"), "s3://@stack/x/p.txt")  # fmt: skip
    assert code == 0, err
    boto = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-north-1")
    stored = stored_key(boto, bucket, "x/p.txt", key_file)
    assert boto.head_object(Bucket=bucket, Key=stored)["ContentLength"] > len("via stack")
    # AND an unknown stack is a usage error
    code, _, err = _cli(capsys, "--endpoint-url", moto_endpoint, "--stack-name", "nope", "--key", str(key_file),
                        "upload", str(tmp_path / "p.txt"), "s3://@stack/x/p.txt")  # fmt: skip
    assert code == 2 and "cannot read stack" in err


# --- The demo -----------------------------------------------------------------------------------
def test_demo_end_to_end(tmp_path: Path, capsys) -> None:
    # GIVEN the demo with a 17 MiB "large" file (three parts at the default 8 MiB) to stay fast
    # WHEN it runs THEN it exits 0 and shows the expected outcomes
    code = main(["demo", "--large-mib", "17", "--workdir", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "result: all expected outcomes" in out
    assert "multipart, 3 parts" in out
    assert "quarantined arende/okrypterat/personnummer.txt  [ok]" in out
    assert "context-mismatch" in out
    assert "recovered with escrow-rsa-" in out
    # AND it shows what AWS stores beside what the municipality sees: opaque keys, no name in any header
    assert "municipality: s3://" in out and "AWS stores: s3://" in out
    assert "plaintext path segments in the stored keys of client uploads: none" in out
    assert "context (plaintext, visible to AWS; no name in it)" in out and "socialnamnden" not in out.split(
        "AWS stores: s3://")[1].splitlines()[0]  # fmt: skip
    assert "Where this local run differs from AWS" in out
