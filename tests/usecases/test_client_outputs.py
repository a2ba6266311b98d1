"""The tier A client never destroys or surprises (issue 13, items 4-7), end to end on moto.

Outputs (no symlinks, devices or FIFOs replaced; no clobbering without --force; `-` for
stdin/stdout; input != output), many-file runs that carry on past failures, truthful
Ctrl-C, --json, verify -q and progress that counts bytes sent.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kommunmoln.tier_a import bulk, cli
from kommunmoln.tier_a.errors import Interrupted, TransferError
from kommunmoln.tier_a.keys import Keyring, RawAesKey
from kommunmoln.tier_a.progress import Progress
from kommunmoln.tier_a.transfer import (
    MIB,
    TransferSettings,
    upload_encrypted,
)
from tests.conftest import REPO_ROOT
from tests.stored_names import listed_names, stored_key


@pytest.fixture
def s3(client_s3):
    return client_s3


@pytest.fixture
def bucket(make_bucket) -> str:
    return make_bucket()


@pytest.fixture
def key(client_key: RawAesKey) -> RawAesKey:
    return client_key


@pytest.fixture
def key_file(client_key_file: Path) -> Path:
    return client_key_file


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def encrypted(tmp_path: Path, key_file: Path, capsys, text: bytes = b"sekretess enligt OSL\n") -> Path:
    plain = tmp_path / "plain.txt"
    plain.write_bytes(text)
    code, _, err = run(capsys, "encrypt", str(plain), str(tmp_path / "msg.esdk"), "--key", str(key_file), "-q")
    assert code == 0, err
    return tmp_path / "msg.esdk"


# --- Item 4: outputs ----------------------------------------------------------------------
def test_decrypt_refuses_a_symlink_and_leaves_it_and_its_target_alone(tmp_path: Path, key_file: Path, capsys) -> None:
    message = encrypted(tmp_path, key_file, capsys)
    target = tmp_path / "target.txt"
    target.write_text("keep me")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    code, _, err = run(capsys, "decrypt", str(message), str(link), "--key", str(key_file), "--force")
    assert code == 2 and "is a symlink" in err
    assert link.is_symlink() and target.read_text() == "keep me"


def test_a_fifo_is_never_replaced(tmp_path: Path, key_file: Path, capsys) -> None:
    # A FIFO stands in for a device node (the bug replaced /dev/stdout): same rule, no risk to the machine.
    message = encrypted(tmp_path, key_file, capsys)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for argv in (["decrypt", str(message), str(fifo)], ["encrypt", str(tmp_path / "plain.txt"), str(fifo)]):
        code, _, err = run(capsys, *argv, "--key", str(key_file), "--force")
        assert code == 2 and "is a FIFO; it is never replaced" in err
        assert fifo.is_fifo()


def test_existing_outputs_need_force(tmp_path: Path, key_file: Path, capsys) -> None:
    message = encrypted(tmp_path, key_file, capsys)
    existing = tmp_path / "existing.txt"
    existing.write_text("old")
    # WHEN decrypt and encrypt meet an existing file without --force THEN they refuse, file unchanged
    code, _, err = run(capsys, "decrypt", str(message), str(existing), "--key", str(key_file))
    assert code == 2 and "exists; use --force" in err and existing.read_text() == "old"
    code, _, err = run(capsys, "encrypt", str(tmp_path / "plain.txt"), str(existing), "--key", str(key_file))
    assert code == 2 and "exists; use --force" in err and existing.read_text() == "old"
    # WHEN --force is given THEN the regular file is replaced
    code, _, err = run(capsys, "decrypt", str(message), str(existing), "--key", str(key_file), "--force", "-q")
    assert code == 0, err
    assert existing.read_bytes() == b"sekretess enligt OSL\n"


def test_input_and_output_must_differ(tmp_path: Path, key_file: Path, capsys) -> None:
    plain = tmp_path / "same.txt"
    plain.write_text("x")
    code, _, err = run(capsys, "encrypt", str(plain), str(plain), "--key", str(key_file), "--force")
    assert code == 2 and "input and output are the same file" in err and plain.read_text() == "x"


def test_stdin_and_stdout_round_trip_and_a_tampered_message_writes_nothing(tmp_path: Path, key_file: Path) -> None:
    base = [sys.executable, "-m", "kommunmoln.tier_a.cli", "--key", str(key_file)]
    plaintext = os.urandom(3 * MIB + 11)
    enc = subprocess.run([*base, "encrypt", "-", "-"], input=plaintext, capture_output=True, cwd=REPO_ROOT, check=False)
    assert enc.returncode == 0, enc.stderr
    assert enc.stdout[:1] == b"\x02" and b"encrypted - -> -" in enc.stderr  # the report goes to stderr
    dec = subprocess.run(
        [*base, "decrypt", "-", "-"], input=enc.stdout, capture_output=True, cwd=REPO_ROOT, check=False
    )
    assert dec.returncode == 0 and dec.stdout == plaintext
    # GIVEN a message with one byte flipped in its last frame WHEN decrypted to stdout
    tampered = bytearray(enc.stdout)
    tampered[-40] ^= 1
    bad = subprocess.run(
        [*base, "decrypt", "-", "-"], input=bytes(tampered), capture_output=True, cwd=REPO_ROOT, check=False
    )
    # THEN not one byte of plaintext reaches the pipe (frames before the bad one were authentic)
    assert bad.returncode == 1 and bad.stdout == b"" and b"authentication" in bad.stderr


def test_download_applies_the_same_rules(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, bucket: str
) -> None:
    common = ["--endpoint-url", moto_endpoint, "--key", str(key_file), "-q"]
    (tmp_path / "a.txt").write_text("one")
    assert run(capsys, *common, "upload", str(tmp_path / "a.txt"), f"s3://{bucket}/x/a.txt")[0] == 0
    dest = tmp_path / "dest.txt"
    dest.write_text("old")
    code, _, err = run(capsys, *common, "download", f"s3://{bucket}/x/a.txt", str(dest))
    assert code == 2 and "exists; use --force" in err and dest.read_text() == "old"
    assert run(capsys, *common, "download", f"s3://{bucket}/x/a.txt", str(dest), "--force")[0] == 0
    assert dest.read_text() == "one"
    code, out, _ = run(capsys, *common, "download", f"s3://{bucket}/x/a.txt", "-")
    assert code == 0 and out == "one"


# --- Item 5: many files ------------------------------------------------------------------
def test_directory_upload_carries_on_past_a_failing_file(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, bucket: str, s3, monkeypatch
) -> None:
    # GIVEN three files, a symlink and a FIFO, and an S3 that refuses the second file
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / "in" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_text(name)
    (tmp_path / "in" / "link.txt").symlink_to(tmp_path / "in" / "a.txt")
    os.mkfifo(tmp_path / "in" / "fifo")
    real = bulk.upload_encrypted

    def refuse_b(s3_client, **kwargs):
        if kwargs["source_path"].name == "b.txt":
            raise TransferError("upload of b.txt: AccessDenied: injected")
        return real(s3_client, **kwargs)

    monkeypatch.setattr(bulk, "upload_encrypted", refuse_b)
    code, _, err = run(capsys, "--endpoint-url", moto_endpoint, "--key", str(key_file), "upload",
                       str(tmp_path / "in"), f"s3://{bucket}/d/")  # fmt: skip
    # THEN the others are uploaded, the symlink and FIFO are reported, the summary says so, exit 1
    assert listed_names(s3, bucket, key_file) == ["d/a.txt", "d/c.txt"]
    assert f"skipped: {tmp_path / 'in' / 'link.txt'}: symlink (not followed)" in err
    assert "fifo: not a regular file" in err
    assert "error: upload of b.txt: AccessDenied: injected" in err
    assert "error: uploaded 2 of 5, 1 failed, 2 skipped" in err and code == 1


def test_symlinks_alone_are_reported_but_do_not_fail_the_upload(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, bucket: str
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a")
    (tmp_path / "in" / "l").symlink_to("a.txt")
    code, out, err = run(capsys, "--endpoint-url", moto_endpoint, "--key", str(key_file), "upload",
                         str(tmp_path / "in"), f"s3://{bucket}/s/")  # fmt: skip
    assert code == 0 and "skipped:" in err and "uploaded 1 of 2, 1 skipped" in out


def test_prefix_download_with_an_unsafe_key_downloads_the_rest(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, bucket: str, s3
) -> None:
    # (a bucket written with --plain-names: there, S3 keys are what the client turns into local paths)
    common = ["--endpoint-url", moto_endpoint, "--key", str(key_file), "-q", "--plain-names"]
    (tmp_path / "ok.txt").write_text("ok")
    assert run(capsys, *common, "upload", str(tmp_path / "ok.txt"), f"s3://{bucket}/p/ok.txt")[0] == 0
    s3.put_object(Bucket=bucket, Key="p/../escape.txt", Body=b"whatever")
    code, _, err = run(capsys, *common, "download", f"s3://{bucket}/p/", str(tmp_path / "out"))
    assert (tmp_path / "out" / "ok.txt").read_text() == "ok"
    assert not (tmp_path / "escape.txt").exists()
    assert "skipped: s3://" in err and "not a safe local path" in err
    assert "error: downloaded 1 of 2, 1 skipped" in err and code == 1


# --- Item 6: Ctrl-C ----------------------------------------------------------------------
def _interrupt_after(s3, operation: str) -> None:
    def interrupt(**_kwargs) -> None:
        raise KeyboardInterrupt

    s3.meta.events.register(f"after-call.s3.{operation}", interrupt)


def test_ctrl_c_after_complete_multipart_upload_reports_the_object_as_stored(
    tmp_path: Path, s3, bucket: str, key: RawAesKey
) -> None:
    # GIVEN Ctrl-C arriving just after S3 answered CompleteMultipartUpload
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(11 * MIB))
    _interrupt_after(s3, "CompleteMultipartUpload")
    with pytest.raises(Interrupted) as interrupted:
        upload_encrypted(s3, source_path=source, bucket=bucket, key="big.bin", key_provider=Keyring(key.master_key()),
                         settings=TransferSettings(part_size=5 * MIB, concurrency=2))  # fmt: skip
    # THEN it says the object was stored, and it was
    assert interrupted.value.stored is True and "was stored" in interrupted.value.reason
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ContentLength"] > 11 * MIB


def test_ctrl_c_during_parts_reports_the_upload_as_aborted(tmp_path: Path, s3, bucket: str, key: RawAesKey) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(11 * MIB))
    _interrupt_after(s3, "UploadPart")
    with pytest.raises(Interrupted) as interrupted:
        upload_encrypted(s3, source_path=source, bucket=bucket, key="big.bin", key_provider=Keyring(key.master_key()),
                         settings=TransferSettings(part_size=5 * MIB, concurrency=1))  # fmt: skip
    assert interrupted.value.stored is False and "aborted, nothing stored" in interrupted.value.reason
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_ctrl_c_after_put_object_is_reported_as_stored(tmp_path: Path, s3, bucket: str, key: RawAesKey) -> None:
    # moto stores unencrypted objects, whose single-PUT ETag is the body's MD5 (S3 API Reference, Object.ETag).
    source = tmp_path / "small.txt"
    source.write_text("small")
    _interrupt_after(s3, "PutObject")
    with pytest.raises(Interrupted) as interrupted:
        upload_encrypted(s3, source_path=source, bucket=bucket, key="small.txt", key_provider=Keyring(key.master_key()))
    assert interrupted.value.stored is True


def test_cli_reports_the_interruption_truthfully(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, bucket: str, monkeypatch
) -> None:
    def stored_then_interrupted(_s3, **kwargs):
        raise Interrupted(f"interrupted after s3://{kwargs['bucket']}/{kwargs['key']} was stored", stored=True)

    monkeypatch.setattr(cli, "upload_encrypted", stored_then_interrupted)
    (tmp_path / "f.txt").write_text("f")
    code, _, err = run(capsys, "--endpoint-url", moto_endpoint, "--key", str(key_file), "--json", "upload",
                       str(tmp_path / "f.txt"), f"s3://{bucket}/f.txt")  # fmt: skip
    assert code == 130
    assert f"error: interrupted after s3://{bucket}/f.txt was stored" in err
    assert "aborted" not in err


# --- Item 7: --json, verify -q, progress -------------------------------------------------------
def test_json_lines_for_upload_verify_download_and_errors(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, bucket: str
) -> None:
    common = ["--endpoint-url", moto_endpoint, "--key", str(key_file), "--json"]
    (tmp_path / "in").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "in" / name).write_text(name)
    code, out, _ = run(capsys, *common, "upload", str(tmp_path / "in"), f"s3://{bucket}/j/")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [e["event"] for e in events] == ["result", "result", "summary"]
    assert {e["key"] for e in events[:2]} == {"j/a.txt", "j/b.txt"} and events[2]["done"] == 2
    code, out, _ = run(capsys, *common, "verify", f"s3://{bucket}/j/")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and events[-1] == {"event": "summary", "command": "verify", "passed": 2, "failed": 0}
    code, out, _ = run(capsys, *common, "download", f"s3://{bucket}/nothing-here/", str(tmp_path / "o"))
    assert code == 2
    (error,) = [json.loads(line) for line in out.splitlines()]
    assert error["event"] == "error" and error["exit_code"] == 2 and "no object or prefix" in error["message"]


def test_verify_quiet_prints_only_failures(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, bucket: str, s3
) -> None:
    (tmp_path / "a.txt").write_text("a")
    assert run(capsys, "--endpoint-url", moto_endpoint, "--key", str(key_file), "-q", "upload",
               str(tmp_path / "a.txt"), f"s3://{bucket}/v/a.txt")[0] == 0  # fmt: skip
    keyed = ["--endpoint-url", moto_endpoint, "--key", str(key_file)]
    code, out, err = run(capsys, *keyed, "verify", "-q", f"s3://{bucket}/v/")
    assert (code, out, err) == (0, "", "")
    s3.put_object(Bucket=bucket, Key=stored_key(s3, bucket, "v/plain.txt", key_file), Body=b"plaintext")
    code, out, err = run(capsys, *keyed, "verify", "-q", f"s3://{bucket}/v/")
    assert code == 1 and out == "" and err.startswith(f"FAIL s3://{bucket}/v/plain.txt: not-esdk")
    assert err.count("\n") == 1


def test_upload_progress_counts_bytes_acknowledged_by_s3(tmp_path: Path, s3, bucket: str, key: RawAesKey) -> None:
    # GIVEN a 12 MiB file in 5 MiB parts, and a record of the bytes counted when each part is sent
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * MIB))
    counted: list[int] = []
    counted_at_send: list[int] = []
    s3.meta.events.register("before-call.s3.UploadPart", lambda **_: counted_at_send.append(sum(counted)))
    result = upload_encrypted(s3, source_path=source, bucket=bucket, key="p.bin", key_provider=Keyring(key.master_key()),
                              settings=TransferSettings(part_size=5 * MIB, concurrency=1), on_bytes=counted.append)  # fmt: skip
    # THEN the count is the stored (ciphertext) bytes, per part, and never ran ahead of what S3 acknowledged
    assert sum(counted) == result.stored_bytes and len(counted) == result.parts == 3
    assert counted_at_send == [0, 5 * MIB, 10 * MIB]


def test_progress_line_shows_files_totals_and_percentages() -> None:
    stream = io.StringIO()
    bar = Progress("upload", 4 * MIB, enabled=True, stream=stream, files=3)
    bar.update(MIB)
    bar.file_done()
    bar.close()
    assert "upload 1/3 files [#####" in stream.getvalue() and " 25.0% 1.0/4.0 MiB" in stream.getvalue()


# --- Item 10: many small files in flight -----------------------------------------------------
def test_small_files_go_up_many_at_a_time_and_bounded(tmp_path: Path, s3, bucket: str, key: RawAesKey) -> None:
    # GIVEN 40 small files and an S3 whose PutObject records how many calls overlap
    import threading
    import time

    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def enter(**_kwargs) -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.02)  # a round trip long enough for overlap to show

    def leave(**_kwargs) -> None:
        with lock:
            state["now"] -= 1

    s3.meta.events.register("before-call.s3.PutObject", enter)
    s3.meta.events.register("after-call.s3.PutObject", leave)
    jobs = []
    for index in range(40):
        path = tmp_path / f"f{index}.txt"
        path.write_text(f"file {index}")
        jobs.append(bulk.Job(path, f"many/f{index}.txt", path.stat().st_size))
    outcomes: list[bulk.Outcome] = []
    bulk.upload_many(s3, jobs, bucket=bucket, key_provider=Keyring(key.master_key()), extra_context=None,
                     settings=TransferSettings(), files_in_flight=6, on_outcome=outcomes.append)  # fmt: skip
    # THEN all are stored, several were in flight at once, never more than asked
    assert len(outcomes) == 40 and all(o.error is None for o in outcomes)
    assert 2 <= state["peak"] <= 6
    assert len(s3.list_objects_v2(Bucket=bucket, Prefix="many/")["Contents"]) == 40
