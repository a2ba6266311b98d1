"""Tampering matrix for tier A: every modified message is refused and no plaintext byte is written.

Messages are written by the client's own encoder (committing suite, no signature, 1 MiB
frames; 2 MiB + 1000 bytes of plaintext = two full frames and a final frame) and, for the signature
region, by the ESDK with the committing+ECDSA suite under the same key (`decrypt` reads
any ESDK message wrapped under that key). For each named region of the message (header
fields, encrypted data key, each frame's IV/body/tag, the final frame, the signature),
the first, middle and last byte is flipped; the message is cut at region boundaries and
at seeded random offsets; bytes are appended (`--slow-fuzz`: 600 more seeded random flips/cuts). Each case goes through the documented CLI
(`decrypt IN OUT --key KEYFILE --expect-context ...`, in-process): exit code 1, one line
on stderr, OUT absent and no temporary file left in its directory.
Against S3 (moto): a swapped body, an object copied under another key, and a replayed
older version are checked through `download`.
"""

from __future__ import annotations

import io
import random
import re
import subprocess
import sys
from pathlib import Path

import aws_encryption_sdk
import boto3
import pytest

from kommunmoln import names
from kommunmoln.tier_a import codec
from kommunmoln.tier_a.keys import Keyring, RawAesKey, load_key_file, write_key_file
from kommunmoln.tier_a.transfer import upload_encrypted
from tests.conftest import REPO_ROOT
from tests.reliability import esdk_samples as samples
from tests.stored_names import stored_key
from usecases.client_side_encryption import main as cli

pytestmark = pytest.mark.usefixtures("codec_engine")  # both engines: frames and the ESDK's stream

CATEGORY = "tamper_matrix"
MATERIAL = bytes(range(32))
KEY_NAME = "tamper-key"
PLAINTEXT = random.Random(3).randbytes(2 * codec.FRAME_LENGTH + 1000)
CONTEXT_ARGS = [f"--expect-context={k}={v}" for k, v in samples.CONTEXT.items()]


def _client_message() -> bytes:
    sink = io.BytesIO()
    key = RawAesKey("kommunmoln", KEY_NAME, MATERIAL)
    codec.encrypt_stream(io.BytesIO(PLAINTEXT), sink, key.master_key(), samples.CONTEXT)
    return sink.getvalue()


def _signed_message() -> bytes:
    return samples.encrypt(
        PLAINTEXT[:5000],
        master_key=samples.raw_master_key("kommunmoln", KEY_NAME, MATERIAL),
        algorithm=aws_encryption_sdk.Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
        frame_length=2048,
    )


MESSAGES = {"client": _client_message(), "signed": _signed_message()}


def _cases() -> list:
    """pytest params (case id, message name, operation, offset): every region, boundaries, appends."""
    cases = []
    for message_name, message in MESSAGES.items():
        regions = samples.message_regions(message)
        names_seen = {r.name for r in regions}
        assert any(n.startswith("edk-") for n in names_seen) and "final-frame-tag" in names_seen
        if message_name == "signed":
            assert "footer(signature)" in names_seen
        for region in regions:
            for label, offset in (
                ("first", region.start),
                ("middle", (region.start + region.end - 1) // 2),
                ("last", region.end - 1),
            ):
                case_id = f"{message_name}-flip-{region.name}-{label}"
                # the first two footer bytes are the signature length; the rest is the signature
                cases.append(pytest.param(case_id, message_name, "flip", offset, id=case_id))
        cuts = {0, 1, len(message) - 1}
        for region in regions:
            cuts.update({region.start, region.end - 1})
        rng = random.Random(len(message))
        cuts.update(rng.randrange(1, len(message)) for _ in range(4))
        for cut in sorted(c for c in cuts if 0 <= c < len(message)):
            case_id = f"{message_name}-truncate-at-{cut}"
            cases.append(pytest.param(case_id, message_name, "truncate", cut, id=case_id))
        for extra in (1, 16, 4096):
            case_id = f"{message_name}-append-{extra}-bytes"
            cases.append(pytest.param(case_id, message_name, "append", extra, id=case_id))
        case_id = f"{message_name}-append-second-message"
        cases.append(pytest.param(case_id, message_name, "append-message", 0, id=case_id))
    return cases


def _random_cases(count: int) -> list:
    """Seeded random flips and cuts anywhere in the client's message (the slow campaign)."""
    message = MESSAGES["client"]
    rng = random.Random(2026)
    cases = []
    for index in range(count):
        operation = rng.choice(["flip", "truncate"])
        offset = rng.randrange(0, len(message))
        cases.append(pytest.param(f"rand-{index}", "client", operation, offset, id=f"random-{operation}-{offset}"))
    return cases


CASES = _cases()


def _tampered(message_name: str, operation: str, offset: int) -> bytes:
    data = bytearray(MESSAGES[message_name])
    if operation == "flip":
        data[offset] ^= 0x01
    elif operation == "truncate":
        del data[offset:]
    elif operation == "append":
        data += random.Random(offset).randbytes(offset)
    else:
        data += MESSAGES[message_name]
    return bytes(data)


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "tier-a.key.json"
    write_key_file(path, RawAesKey("kommunmoln", KEY_NAME, MATERIAL))
    return path


def _leftovers(directory: Path, expected: set[str]) -> list[Path]:
    return [p for p in directory.iterdir() if p.name not in expected]


def _assert_refused(ledger, capsys, exit_code: int, out_dir: Path, dest: Path, expected_files: set[str]) -> str:
    stderr = capsys.readouterr().err
    released = (dest.stat().st_size if dest.exists() else 0) + sum(
        p.stat().st_size for p in _leftovers(out_dir, expected_files)
    )
    ledger.add(CATEGORY, inputs=1, plaintext_bytes_released=released, false_passes=int(exit_code == 0))
    assert exit_code == 1, f"exit {exit_code}; stderr: {stderr!r}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr and not re.match(r"error: unexpected [A-Z]\w*:", stderr), stderr
    assert not dest.exists(), "a plaintext file was left at the destination"
    assert _leftovers(out_dir, expected_files) == [], "temporary files were left behind"
    return lines[0]


@pytest.mark.parametrize(("case", "message_name", "operation", "offset"), CASES)
def test_tampered_message_is_refused_without_plaintext(
    ledger, capsys, tmp_path, keyfile, case, message_name, operation, offset
) -> None:
    _refused_property(ledger, capsys, tmp_path, keyfile, message_name, operation, offset)


@pytest.mark.slow_fuzz
@pytest.mark.parametrize(("case", "message_name", "operation", "offset"), _random_cases(600))
def test_slow_random_tampering_is_refused(
    ledger, capsys, tmp_path, keyfile, case, message_name, operation, offset
) -> None:
    _refused_property(ledger, capsys, tmp_path, keyfile, message_name, operation, offset)


def _refused_property(ledger, capsys, tmp_path, keyfile, message_name, operation, offset) -> None:
    # GIVEN a tier A message modified in one place
    source = tmp_path / "in.esdk"
    source.write_bytes(_tampered(message_name, operation, offset))
    dest = tmp_path / "out.bin"
    # WHEN the municipality decrypts it with the right key and the expected context
    code = cli(["decrypt", str(source), str(dest), "--key", str(keyfile), "--quiet", *CONTEXT_ARGS])
    # THEN it is refused with one line, exit code 1, and no plaintext byte on disk
    _assert_refused(ledger, capsys, code, tmp_path, dest, {"in.esdk"})


def test_untampered_messages_decrypt(ledger, capsys, tmp_path, keyfile) -> None:
    # GIVEN both untouched messages (the matrix's control case)
    for name, message in MESSAGES.items():
        source = tmp_path / f"{name}.esdk"
        source.write_bytes(message)
        dest = tmp_path / f"{name}.out"
        # WHEN decrypted  THEN exit 0 and the exact plaintext
        assert cli(["decrypt", str(source), str(dest), "--key", str(keyfile), "--quiet", *CONTEXT_ARGS]) == 0, (
            capsys.readouterr().err
        )
        assert dest.read_bytes() == (PLAINTEXT if name == "client" else PLAINTEXT[:5000])
        ledger.add(CATEGORY, inputs=1)


def test_wrong_key_and_wrong_context_are_refused(ledger, capsys, tmp_path, keyfile) -> None:
    # GIVEN a valid message, a key file with other material under the same name, and a wrong expected context
    source = tmp_path / "in.esdk"
    source.write_bytes(MESSAGES["client"])
    other = tmp_path / "other.key.json"
    write_key_file(other, RawAesKey("kommunmoln", KEY_NAME, bytes(32)))
    dest = tmp_path / "out.bin"
    expected = {"in.esdk", "other.key.json"}
    # WHEN decrypted with the wrong material  THEN refused without plaintext
    code = cli(["decrypt", str(source), str(dest), "--key", str(other), "--quiet", *CONTEXT_ARGS])
    _assert_refused(ledger, capsys, code, tmp_path, dest, expected)
    # WHEN decrypted expecting another object key  THEN refused, naming the mismatch
    code = cli(["decrypt", str(source), str(dest), "--key", str(keyfile), "--quiet",
                f"--expect-context={names.CONTEXT_KEY}=another/object.pdf"])  # fmt: skip
    line = _assert_refused(ledger, capsys, code, tmp_path, dest, expected)
    assert "mismatch" in line


def test_tampered_message_in_a_separate_process(ledger, tmp_path, keyfile) -> None:
    # GIVEN a message whose last frame tag is flipped (plaintext of earlier frames already authenticated)
    data = bytearray(MESSAGES["client"])
    data[-1] ^= 0x80
    source = tmp_path / "in.esdk"
    source.write_bytes(bytes(data))
    dest = tmp_path / "out.bin"
    # WHEN the CLI runs as its own process
    result = subprocess.run(
        [sys.executable, "-m", "usecases.client_side_encryption", "decrypt", str(source), str(dest), "--key", str(keyfile), "--quiet"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    ledger.add(CATEGORY, inputs=1, plaintext_bytes_released=dest.stat().st_size if dest.exists() else 0)
    # THEN exit 1, one line, no output and no temporary file
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.esdk"]


# --- Against S3: swapped bodies, copies under another key, replayed versions ---------------------
@pytest.fixture
def versioned_bucket(moto_endpoint, request):
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-north-1")
    bucket = f"rel-tamper-{abs(hash(request.node.name)) % 10**8}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return s3, bucket


def _upload(moto_endpoint, keyfile, path: Path, url: str, *extra: str) -> None:
    code = cli(["--endpoint-url", moto_endpoint, "upload", str(path), url, "--key", str(keyfile), "--quiet", *extra])
    assert code == 0


def _download(moto_endpoint, keyfile, url: str, dest: Path, *extra: str) -> int:
    return cli(["--endpoint-url", moto_endpoint, "download", url, str(dest), "--key", str(keyfile), "--quiet", *extra])


def test_swapped_bodies_are_refused(ledger, capsys, tmp_path, keyfile, moto_endpoint, versioned_bucket) -> None:
    s3, bucket = versioned_bucket
    # GIVEN two objects uploaded by the client, then their stored bodies swapped by someone with S3 access
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(name.encode() * 1000)
        _upload(moto_endpoint, keyfile, tmp_path / name, f"s3://{bucket}/dir/{name}.txt")
    key_a, key_b = (stored_key(s3, bucket, f"dir/{name}.txt", keyfile) for name in ("a", "b"))
    body_a = s3.get_object(Bucket=bucket, Key=key_a)["Body"].read()
    body_b = s3.get_object(Bucket=bucket, Key=key_b)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key_a, Body=body_b)
    s3.put_object(Bucket=bucket, Key=key_b, Body=body_a)
    capsys.readouterr()
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a", "b"):
        dest = out / f"{name}.txt"
        # WHEN each is downloaded
        code = _download(moto_endpoint, keyfile, f"s3://{bucket}/dir/{name}.txt", dest)
        # THEN refused: the message's context binds the other key
        line = _assert_refused(ledger, capsys, code, out, dest, set())
        assert "mismatch" in line or "moved" in line


def test_copy_under_another_key_is_refused(ledger, capsys, tmp_path, keyfile, moto_endpoint, versioned_bucket) -> None:
    s3, bucket = versioned_bucket
    # GIVEN an object copied server-side to another key (e.g. to pass it off as another case file)
    (tmp_path / "p").write_bytes(b"secret" * 100)
    _upload(moto_endpoint, keyfile, tmp_path / "p", f"s3://{bucket}/case-1.pdf")
    case_1, case_2 = (stored_key(s3, bucket, name, keyfile) for name in ("case-1.pdf", "case-2.pdf"))
    s3.copy_object(Bucket=bucket, Key=case_2, CopySource={"Bucket": bucket, "Key": case_1})
    capsys.readouterr()
    out = tmp_path / "out"
    out.mkdir()
    # WHEN the copy is downloaded  THEN refused, no plaintext
    code = _download(moto_endpoint, keyfile, f"s3://{bucket}/case-2.pdf", out / "case-2.pdf")
    _assert_refused(ledger, capsys, code, out, out / "case-2.pdf", set())


def test_replayed_version_of_another_object_is_refused(
    ledger, capsys, tmp_path, keyfile, moto_endpoint, versioned_bucket
) -> None:
    s3, bucket = versioned_bucket
    # GIVEN an older version of object X restored as the current version of object Y
    (tmp_path / "x1").write_bytes(b"x version 1")
    (tmp_path / "x2").write_bytes(b"x version 2")
    (tmp_path / "y").write_bytes(b"y")
    _upload(moto_endpoint, keyfile, tmp_path / "x1", f"s3://{bucket}/x")
    x, y = (stored_key(s3, bucket, name, keyfile) for name in ("x", "y"))
    old = s3.list_object_versions(Bucket=bucket, Prefix=x)["Versions"][0]["VersionId"]
    _upload(moto_endpoint, keyfile, tmp_path / "x2", f"s3://{bucket}/x")
    _upload(moto_endpoint, keyfile, tmp_path / "y", f"s3://{bucket}/y")
    s3.copy_object(Bucket=bucket, Key=y, CopySource={"Bucket": bucket, "Key": x, "VersionId": old})
    capsys.readouterr()
    out = tmp_path / "out"
    out.mkdir()
    # WHEN y is downloaded  THEN refused
    code = _download(moto_endpoint, keyfile, f"s3://{bucket}/y", out / "y")
    _assert_refused(ledger, capsys, code, out, out / "y", set())


def test_replayed_version_is_refused_with_a_generation_in_the_context(
    ledger, capsys, tmp_path, keyfile, moto_endpoint, versioned_bucket
) -> None:
    s3, bucket = versioned_bucket
    # GIVEN versions 1 and 2 of one object, each with a generation in its encryption context,
    # and version 1 restored over version 2 (a rollback by someone with S3 access)
    (tmp_path / "v1").write_bytes(b"decision: rejected")
    (tmp_path / "v2").write_bytes(b"decision: approved")
    _upload(moto_endpoint, keyfile, tmp_path / "v1", f"s3://{bucket}/beslut", "--context", "generation=1")
    beslut = stored_key(s3, bucket, "beslut", keyfile)
    old = s3.list_object_versions(Bucket=bucket, Prefix=beslut)["Versions"][0]["VersionId"]
    _upload(moto_endpoint, keyfile, tmp_path / "v2", f"s3://{bucket}/beslut", "--context", "generation=2")
    s3.copy_object(Bucket=bucket, Key=beslut, CopySource={"Bucket": bucket, "Key": beslut, "VersionId": old})
    capsys.readouterr()
    out = tmp_path / "out"
    out.mkdir()
    # WHEN downloaded expecting generation 2  THEN refused, no plaintext
    code = _download(
        moto_endpoint, keyfile, f"s3://{bucket}/beslut", out / "beslut", "--expect-context", "generation=2"
    )
    _assert_refused(ledger, capsys, code, out, out / "beslut", set())


def test_replayed_older_version_is_refused_by_default(
    ledger, capsys, tmp_path, keyfile, moto_endpoint, versioned_bucket
) -> None:
    # S3 rule relied on: CopyObject with CopySource VersionId makes a copy of that older version
    # the current version (Amazon S3 User Guide, "Restoring previous versions"); moto implements it.
    s3, bucket = versioned_bucket
    # GIVEN version 1 of an object restored over version 2 (a rollback by someone with S3 access)
    (tmp_path / "v1").write_bytes(b"decision: rejected")
    (tmp_path / "v2").write_bytes(b"decision: approved")
    _upload(moto_endpoint, keyfile, tmp_path / "v1", f"s3://{bucket}/beslut")
    beslut = stored_key(s3, bucket, "beslut", keyfile)
    old = s3.list_object_versions(Bucket=bucket, Prefix=beslut)["Versions"][0]["VersionId"]
    _upload(moto_endpoint, keyfile, tmp_path / "v2", f"s3://{bucket}/beslut")
    s3.copy_object(Bucket=bucket, Key=beslut, CopySource={"Bucket": bucket, "Key": beslut, "VersionId": old})
    capsys.readouterr()
    out = tmp_path / "out"
    out.mkdir()
    # WHEN downloaded without extra expectations
    code = _download(moto_endpoint, keyfile, f"s3://{bucket}/beslut", out / "beslut")
    # THEN refused before any plaintext is written: the manifest records version 2's message ID
    line = _assert_refused(ledger, capsys, code, out, out / "beslut", set())
    assert "beslut: the stored object is not the version this client last wrote" in line
    # AND even --allow-unrecorded does not accept a recorded object's older version
    code = _download(moto_endpoint, keyfile, f"s3://{bucket}/beslut", out / "beslut", "--allow-unrecorded")
    _assert_refused(ledger, capsys, code, out, out / "beslut", set())


def test_object_written_outside_the_client_needs_allow_unrecorded(
    ledger, capsys, tmp_path, keyfile, moto_endpoint, versioned_bucket
) -> None:
    s3, bucket = versioned_bucket
    # GIVEN a bucket the client wrote, and a valid message for "b" put by a program that skips the manifest
    (tmp_path / "a").write_bytes(b"a" * 100)
    _upload(moto_endpoint, keyfile, tmp_path / "a", f"s3://{bucket}/a")
    keyring = Keyring(load_key_file(keyfile).master_key())
    upload_encrypted(s3, source_path=tmp_path / "a", bucket=bucket, key=stored_key(s3, bucket, "b", keyfile),
                     key_provider=keyring)  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "out"
    out.mkdir()
    # WHEN it is downloaded  THEN it is refused by default (fail closed), naming the way out
    code = _download(moto_endpoint, keyfile, f"s3://{bucket}/b", out / "b")
    line = _assert_refused(ledger, capsys, code, out, out / "b", set())
    assert "not recorded in the bucket's manifest" in line and "--allow-unrecorded" in line
    # AND accepted when the caller says so explicitly
    assert _download(moto_endpoint, keyfile, f"s3://{bucket}/b", out / "b", "--allow-unrecorded") == 0
    assert (out / "b").read_bytes() == b"a" * 100
