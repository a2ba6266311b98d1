"""The archive drills (kommunmoln/compliance/drills.py) on the local moto server: dated by the results plugin.

S3 rules the drills rely on (moto 5 implements them):
- in a versioning-enabled bucket an overwrite adds a version and a DELETE without a version id adds a
  delete marker; earlier versions stay readable with GetObject?versionId
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeletingObjectVersions.html,
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/RetrievingObjectVersions.html);
- CopyObject with `CopySource` naming a version id copies that version as the new current one
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/RestoringPreviousVersions.html).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kommunmoln.compliance import drills
from kommunmoln.compliance.drills import ESCROW_AES, ESCROW_RSA, SAMPLE_RECORDS
from kommunmoln.tier_a.keys import RawAesKey, write_key_file
from kommunmoln.tier_a.transfer import read_object_head

REQUEST = "diarium/2026/KS-2026-0042 beslut.txt"


@pytest.fixture
def archive(moto_endpoint: str, tmp_path: Path) -> drills.Archive:
    return drills.seed_archive(moto_endpoint, tmp_path / "archive", escrow=ESCROW_AES)


def test_deliver_drill_finds_decrypts_and_delivers_the_requested_record(archive: drills.Archive, tmp_path: Path):
    # GIVEN an archive whose names S3 sees only encrypted, and a request naming one record
    stored = [o["Key"] for o in drills.s3_for(archive.endpoint_url).list_objects_v2(Bucket=archive.bucket)["Contents"]]
    assert not any("KS-2026" in key for key in stored)
    # WHEN the decrypt-and-deliver drill runs
    result = drills.deliver_drill(archive, REQUEST, tmp_path / "out")
    # THEN it passes, the delivered file is the original, and the elapsed time and steps are recorded
    assert result.passed, result.failure
    assert (tmp_path / "out" / "KS-2026-0042 beslut.txt").read_bytes() == SAMPLE_RECORDS[REQUEST]
    assert result.elapsed_seconds >= 0 and result.started <= result.finished
    assert any("matches the register" in step for step in result.steps)


def test_deliver_drill_fails_for_a_record_not_in_the_archive(archive: drills.Archive, tmp_path: Path):
    # GIVEN a request for a record that was never stored  WHEN the drill runs  THEN it fails, saying so
    result = drills.deliver_drill(archive, "diarium/2026/KS-2026-9999 saknas.txt", tmp_path / "out")
    assert not result.passed and "is not in" in result.failure


def test_deliver_drill_fails_when_the_stored_record_was_replaced(archive: drills.Archive, tmp_path: Path):
    # GIVEN the requested record's stored object replaced outside the client by another record's ciphertext
    s3 = drills.s3_for(archive.endpoint_url)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=archive.bucket)["Contents"]]
    found = drills.Kommunmoln(archive.endpoint_url).must("ls", "ls", "--key", str(archive.key_file),
                                                         f"s3://{archive.bucket}/diarium/2026/")  # fmt: skip
    target = next(e["stored_key"] for e in found if e.get("key") == REQUEST)
    other = next(e["stored_key"] for e in found if e.get("key") and e["key"] != REQUEST)
    assert target in keys and other in keys
    s3.copy_object(Bucket=archive.bucket, Key=target, CopySource={"Bucket": archive.bucket, "Key": other})
    # WHEN the drill runs  THEN nothing is delivered and the drill fails (the context names another object)
    result = drills.deliver_drill(archive, REQUEST, tmp_path / "out")
    assert not result.passed and "exited" in result.failure
    assert not (tmp_path / "out" / "KS-2026-0042 beslut.txt").exists()


@pytest.mark.parametrize("escrow", [ESCROW_AES, ESCROW_RSA])
def test_escrow_drill_recovers_without_the_primary_key(moto_endpoint: str, tmp_path: Path, escrow: str):
    # GIVEN records uploaded with an escrow key (symmetric AES, or RSA)
    archive = drills.seed_archive(moto_endpoint, tmp_path / "archive", escrow=escrow)
    # AND every record carries a data key for both the primary and the escrow key
    s3 = drills.s3_for(moto_endpoint)
    key = s3.list_objects_v2(Bucket=archive.bucket)["Contents"][0]["Key"]
    assert read_object_head(s3, archive.bucket, key, 4096)  # an object, readable as ciphertext
    # WHEN the primary key is lost (deleted) and the escrow drill runs
    archive.key_file.unlink()
    result = drills.escrow_drill(archive, REQUEST, tmp_path / "recovered")
    # THEN the record is recovered with the escrow key alone and matches the register
    assert result.passed, result.failure
    assert (tmp_path / "recovered" / "KS-2026-0042 beslut.txt").read_bytes() == SAMPLE_RECORDS[REQUEST]


def test_escrow_drill_fails_when_the_records_have_no_escrow(moto_endpoint: str, tmp_path: Path):
    # GIVEN records uploaded without any escrow key, and an escrow key made afterwards
    archive = drills.seed_archive(moto_endpoint, tmp_path / "archive", escrow=None)
    late = write_key_file(tmp_path / "late-escrow.key.json", RawAesKey.generate("kommunmoln", "late-escrow"))
    # WHEN the escrow drill runs without an escrow key, and with the late one
    missing = drills.escrow_drill(archive, REQUEST, tmp_path / "r1")
    wrong = drills.escrow_drill(archive, REQUEST, tmp_path / "r2", escrow_key=late)
    # THEN both fail: the first finds no escrow key on file, the second cannot decrypt; nothing is written
    assert not missing.passed and "no escrow key on file" in missing.failure
    assert not wrong.passed and "recover with the escrow key" in wrong.failure
    assert not (tmp_path / "r2" / "KS-2026-0042 beslut.txt").exists()


def test_restore_drill_restores_an_overwritten_and_deleted_record(archive: drills.Archive, tmp_path: Path):
    # GIVEN a versioned archive  WHEN a record is overwritten, deleted and restored by the drill
    result = drills.restore_drill(archive, REQUEST, tmp_path / "restore")
    # THEN the original comes back through the client, a plain S3 copy was refused as a rollback
    assert result.passed, result.failure
    assert any("rollback detection" in step for step in result.steps)
    assert (tmp_path / "restore" / "KS-2026-0042 beslut.txt").read_bytes() == SAMPLE_RECORDS[REQUEST]
    # AND the current record downloads as the original for anyone holding the key
    again = drills.deliver_drill(archive, REQUEST, tmp_path / "again")
    assert again.passed, again.failure


def test_restore_drill_fails_without_versioning(moto_endpoint: str, tmp_path: Path):
    # GIVEN an archive in a bucket without versioning  WHEN the restore drill runs
    archive = drills.seed_archive(moto_endpoint, tmp_path / "archive", versioned=False)
    result = drills.restore_drill(archive, REQUEST, tmp_path / "restore")
    # THEN it fails: the overwrite or the delete destroyed the original
    assert not result.passed, result.steps


def test_make_drills_writes_dated_results(moto_endpoint: str, tmp_path: Path, capsys):
    # GIVEN the moto server  WHEN `make drills` runs (main) against it
    out = tmp_path / "drills.json"
    code = drills.main(["--out", str(out), "--endpoint-url", moto_endpoint])
    # THEN every drill passed and the file lists each with its start time and elapsed seconds
    document = json.loads(out.read_text())
    assert code == 0, capsys.readouterr().out
    assert document["format"] == "kommunmoln-drills/1" and document["commit"]
    ran = {d["drill"] for d in document["drills"]}
    assert ran == {drills.DRILL_DELIVER, drills.DRILL_ESCROW, drills.DRILL_RESTORE}
    assert all(d["passed"] and d["started"].endswith("Z") and d["elapsed_seconds"] >= 0 for d in document["drills"])
