"""`ls`, `sync` and `rm` end to end on moto: what is uploaded, kept, deleted, and never destroyed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kommunmoln.tier_a import cli
from kommunmoln.tier_a.codec import FRAME_LENGTH
from kommunmoln.tier_a.keys import Keyring, RawAesKey
from kommunmoln.tier_a.sync import Filters, SizeModel
from kommunmoln.tier_a.transfer import upload_encrypted
from tests.stored_names import listed_names, stored_key

PAST = 1_600_000_000  # 2020: local files older than anything the test uploads


@pytest.fixture
def s3(client_s3):
    return client_s3


@pytest.fixture
def key(client_key: RawAesKey) -> RawAesKey:
    return client_key


@pytest.fixture
def key_file(client_key_file: Path) -> Path:
    return client_key_file


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (PAST, PAST))


def _run(capsys, *argv: str) -> tuple[int, list[dict]]:
    code = cli.main(["--json", *argv])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def test_size_model_is_exact(tmp_path: Path, s3, make_bucket, key: RawAesKey) -> None:
    # GIVEN files around the frame boundary WHEN uploaded THEN the model predicts each stored size exactly
    bucket = make_bucket()
    keyring = Keyring(key.master_key())
    model = SizeModel(keyring, bucket)
    for size in (0, 1, FRAME_LENGTH - 1, FRAME_LENGTH, FRAME_LENGTH + 1):
        path = tmp_path / f"f{size}"
        path.write_bytes(os.urandom(size))
        name = f"dir/åäö-{size}.bin"
        result = upload_encrypted(s3, source_path=path, bucket=bucket, key=name, key_provider=keyring)
        assert model.stored_size(size, name) == result.stored_bytes
        assert model.plaintext_size(result.stored_bytes, name) == size


def test_filters_follow_the_aws_cli_order_rule() -> None:
    filters = Filters([("exclude", "*"), ("include", "*.txt"), ("exclude", "tmp/*")])
    assert filters.included("a.txt") and not filters.included("a.bin") and not filters.included("tmp/a.txt")
    assert Filters().included("anything")


def test_sync_uploads_new_and_changed_only_and_delete_adds_markers(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, s3, make_bucket
) -> None:
    bucket = make_bucket()
    src = tmp_path / "share"
    _tree(src, {"a.txt": b"a" * 10, "sub/b.txt": b"b" * 20, "skip.tmp": b"t"})
    common = ["--endpoint-url", moto_endpoint, "--key", str(key_file), "sync", str(src), f"s3://{bucket}/fs/"]
    # WHEN the first sync runs with an exclude THEN the two files go up, the excluded one does not
    code, events = _run(capsys, *common, "--exclude", "*.tmp")
    assert code == 0 and events[-1]["uploaded"] == 2 and events[-1]["unchanged"] == 0
    # WHEN nothing changed THEN a second sync uploads nothing
    code, events = _run(capsys, *common, "--exclude", "*.tmp")
    assert code == 0 and events[-1]["uploaded"] == 0 and events[-1]["unchanged"] == 2
    # WHEN one file changes size and another disappears THEN --dryrun shows it and changes nothing
    _tree(src, {"a.txt": b"a" * 11})
    (src / "sub/b.txt").unlink()
    code, events = _run(capsys, *common, "--exclude", "*.tmp", "--delete", "--dryrun")
    assert code == 0 and {(e.get("action"), e.get("key")) for e in events if e["event"] == "result"} == {
        ("upload", "fs/a.txt"), ("delete", "fs/sub/b.txt")}  # fmt: skip
    b_stored = stored_key(s3, bucket, "fs/sub/b.txt", key_file)
    assert s3.head_object(Bucket=bucket, Key=b_stored)
    # AND the real run uploads it and puts a delete marker on the other, keeping its version
    code, events = _run(capsys, *common, "--exclude", "*.tmp", "--delete")
    assert code == 0 and events[-1]["uploaded"] == 1 and events[-1]["deleted"] == 1
    versions = s3.list_object_versions(Bucket=bucket, Prefix=b_stored)
    assert len(versions["Versions"]) == 1 and len(versions["DeleteMarkers"]) == 1
    # AND an excluded local file is never taken for deleted remote state (it was never uploaded)
    assert listed_names(s3, bucket, key_file) == ["fs/a.txt"]  # (fs/sub/b.txt has its delete marker)


def test_sync_detects_a_newer_file_of_the_same_size(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, s3, make_bucket
) -> None:
    bucket = make_bucket()
    src = tmp_path / "share"
    _tree(src, {"a.txt": b"1234"})
    common = ["--endpoint-url", moto_endpoint, "--key", str(key_file), "sync", str(src), f"s3://{bucket}/"]
    assert _run(capsys, *common)[0] == 0
    (src / "a.txt").write_bytes(b"5678")
    future = 4_000_000_000
    os.utime(src / "a.txt", (future, future))
    code, events = _run(capsys, *common)
    assert code == 0 and events[-1]["uploaded"] == 1


def test_delete_and_rm_are_refused_without_versioning(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, s3, make_bucket
) -> None:
    bucket = make_bucket(versioned=False)
    s3.put_object(Bucket=bucket, Key="old.txt", Body=b"x")
    (tmp_path / "empty").mkdir()
    base = ["--endpoint-url", moto_endpoint, "--key", str(key_file), "--plain-names"]  # a bucket of plain names
    code, events = _run(capsys, *base, "sync", str(tmp_path / "empty"), f"s3://{bucket}/", "--delete")
    assert code == 2 and "versioning is not enabled" in events[-1]["message"]
    code, events = _run(capsys, *base, "rm", f"s3://{bucket}/old.txt")
    assert code == 2 and "versioning is not enabled" in events[-1]["message"]
    assert s3.get_object(Bucket=bucket, Key="old.txt")["Body"].read() == b"x"


def test_rm_adds_a_delete_marker_and_ls_shows_plaintext_sizes(
    tmp_path: Path, key_file: Path, capsys, moto_endpoint: str, s3, make_bucket
) -> None:
    bucket = make_bucket()
    _tree(tmp_path / "d", {"x.txt": b"x" * 1234, "y.txt": b"y"})
    base = ["--endpoint-url", moto_endpoint, "--key", str(key_file)]
    assert _run(capsys, *base, "upload", str(tmp_path / "d"), f"s3://{bucket}/r/")[0] == 0
    code, events = _run(capsys, *base, "ls", f"s3://{bucket}/r/")
    sizes = {e["key"]: e["plaintext_bytes"] for e in events if e["event"] == "result"}
    assert code == 0 and sizes == {"r/x.txt": 1234, "r/y.txt": 1}
    code, _ = _run(capsys, *base, "rm", f"s3://{bucket}/r/")
    assert code == 2  # a prefix needs --recursive
    code, events = _run(capsys, *base, "rm", f"s3://{bucket}/r/x.txt")
    assert code == 0 and events[0]["delete_marker_version_id"]
    versions = s3.list_object_versions(Bucket=bucket, Prefix=stored_key(s3, bucket, "r/x.txt", key_file))
    assert len(versions["Versions"]) == 1 and versions["DeleteMarkers"][0]["IsLatest"]
