"""Encrypted names, change detection and rollback detection end to end on the moto server.

S3 behaviour relied on: ListObjectsV2 returns each object's ETag; CopyObject of an older
version makes it current with the same bytes; If-Match/If-None-Match conditional writes
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html). moto 5
implements all three.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest

from kommunmoln.tier_a.bucket_names import open_bucket_names
from kommunmoln.tier_a.codec import HEADER_PEEK_BYTES, summarize_header
from kommunmoln.tier_a.custody import CustodyOptions, open_custody
from kommunmoln.tier_a.keys import RawAesKey, write_key_file
from kommunmoln.tier_a.manifest import (
    RollbackError,
    check_current,
    entry_for_upload,
    load_manifest,
    message_id_of,
    save_manifest,
    unchanged_plan,
)
from kommunmoln.tier_a.transfer import read_object_head, upload_encrypted

TREE = {
    "socialnamnden/2025/anna-andersson-191212.pdf": b"beslut om bistand",
    "socialnamnden/2025/Örjan Åkesson 19700101-1234.docx": b"utredning",
    "barn-och-utbildning/elevhalsa/kalle-karlsson-201501.txt": b"elevakt",
    "barn-och-utbildning/elevhalsa/" + "mycket-langt-filnamn-" * 8 + ".pdf": b"lang",
}


@pytest.fixture
def custody(tmp_path: Path):
    key_file = write_key_file(tmp_path / "k.json", RawAesKey.generate("kommunmoln", "names-e2e"))
    with open_custody(CustodyOptions(key_file=str(key_file)), need_primary=True) as opened:
        yield opened


def _write_tree(root: Path) -> list[tuple[Path, str]]:
    plan = []
    for name, data in TREE.items():
        path = root.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        plan.append((path, name))
    return plan


def _upload_all(s3, custody, bucket: str, plan: list[tuple[Path, str]]):
    names_ = open_bucket_names(s3, custody, bucket, plain_names=False, create=True)
    manifest = load_manifest(s3, custody, bucket)
    updates = {}
    for path, name in plan:
        stored = names_.stored(name)
        names_.write_long_names(stored)
        result = upload_encrypted(
            s3, source_path=path, bucket=bucket, key=stored.key, key_provider=custody.encrypting_keyring(),
            plaintext_digest=True,
        )
        updates[stored.key] = entry_for_upload(result)
    return names_, save_manifest(s3, custody, bucket, manifest, updates)


def _listing(s3, bucket: str) -> dict[str, str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}


def test_nothing_aws_stores_contains_a_plaintext_segment(s3, bucket, tmp_path, custody) -> None:
    # GIVEN a tree with sensitive names uploaded with encrypted names
    _upload_all(s3, custody, bucket, _write_tree(tmp_path / "tree"))
    segments = {unicodedata.normalize(form, seg) for name in TREE for seg in name.split("/") for form in ("NFC", "NFD")}
    segments |= {seg.rsplit(".", 1)[0] for seg in set(segments) if "." in seg}
    # WHEN everything the emulation stores is collected: keys, headers, metadata, tags, ESDK headers
    seen: list[str] = []
    versions = s3.list_object_versions(Bucket=bucket)
    assert versions.get("Versions")
    for version in versions["Versions"]:
        key, version_id = version["Key"], version["VersionId"]
        seen.append(key)
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        seen.extend(f"{k}={v}" for k, v in head["ResponseMetadata"]["HTTPHeaders"].items())
        seen.extend(f"{k}={v}" for k, v in head.get("Metadata", {}).items())
        tags = s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)["TagSet"]
        seen.extend(f"{t['Key']}={t['Value']}" for t in tags)
        summary = summarize_header(read_object_head(s3, bucket, key, HEADER_PEEK_BYTES))
        seen.extend(f"{k}={v}" for k, v in summary.encryption_context.items())
        seen.extend(f"{ns}/{name}" for ns, name in summary.wrapping_keys)
    # THEN no plaintext path segment (in either Unicode form, with or without extension) appears anywhere
    text = "\n".join(seen).lower()
    leaked = sorted(s for s in segments if s.lower() in text)
    assert leaked == []


def test_tree_round_trips_by_plaintext_name_and_prefix(s3, bucket, tmp_path, custody) -> None:
    names_, _ = _upload_all(s3, custody, bucket, _write_tree(tmp_path / "tree"))
    # WHEN the stored keys under one plaintext folder are listed
    prefix = names_.stored_prefix("socialnamnden/2025/")
    listed = [k for k in _listing(s3, bucket) if k.startswith(prefix)]
    # THEN they are exactly that folder's files, and map back to their plaintext names
    assert sorted(names_.plain_name(k) for k in listed) == sorted(
        n for n in TREE if n.startswith("socialnamnden/2025/")
    )


def test_no_change_rerun_skips_everything_without_reading_content(s3, bucket, tmp_path, custody) -> None:
    plan = _write_tree(tmp_path / "tree")
    names_, _ = _upload_all(s3, custody, bucket, plan)
    calls: list[str] = []
    s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    # WHEN the same tree is checked again: one listing, the manifest, the bucket record
    reader = open_bucket_names(s3, custody, bucket, plain_names=False, create=True)
    manifest = load_manifest(s3, custody, bucket)
    stored_plan = [(path, reader.stored(name).key) for path, name in plan]
    todo, unchanged = unchanged_plan(stored_plan, manifest, _listing(s3, bucket))
    # THEN nothing is to upload, and no content object was read (only the two control objects)
    assert todo == [] and len(unchanged) == len(TREE)
    assert calls.count("ListObjectsV2") == 1 and calls.count("GetObject") == 2 and len(calls) == 3
    assert names_.stored(plan[0][1]).key == stored_plan[0][1]


def test_edit_that_keeps_size_and_mtime_is_detected(s3, bucket, tmp_path, custody) -> None:
    plan = _write_tree(tmp_path / "tree")
    names_, manifest = _upload_all(s3, custody, bucket, plan)
    # GIVEN one file edited in place with the same size, and its mtime put back
    path = plan[0][0]
    stat = path.stat()
    path.write_bytes(b"beslut om avslag!")
    assert len(b"beslut om avslag!") == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # THEN exactly that file is to upload
    stored_plan = [(p, names_.stored(n).key) for p, n in plan]
    todo, _ = unchanged_plan(stored_plan, manifest, _listing(s3, bucket))
    assert [p for p, _ in todo] == [path]


def test_object_replaced_outside_the_client_is_uploaded_again(s3, bucket, tmp_path, custody) -> None:
    plan = _write_tree(tmp_path / "tree")
    names_, manifest = _upload_all(s3, custody, bucket, plan)
    stored = names_.stored(plan[1][1]).key
    s3.put_object(Bucket=bucket, Key=stored, Body=b"something else")
    todo, _ = unchanged_plan([(p, names_.stored(n).key) for p, n in plan], manifest, _listing(s3, bucket))
    assert [p for p, _ in todo] == [plan[1][0]]


def test_rolled_back_object_is_refused(s3, bucket, tmp_path, custody) -> None:
    # GIVEN version 1 then version 2 of a decision uploaded, recorded in the manifest
    path = tmp_path / "beslut.txt"
    names_ = open_bucket_names(s3, custody, bucket, plain_names=False, create=True)
    stored = names_.stored("beslut.txt").key
    manifest = load_manifest(s3, custody, bucket)
    for text in (b"decision: rejected", b"decision: approved"):
        path.write_bytes(text)
        result = upload_encrypted(
            s3, source_path=path, bucket=bucket, key=stored, key_provider=custody.encrypting_keyring(),
            plaintext_digest=True,
        )
        manifest = save_manifest(s3, custody, bucket, manifest, {stored: entry_for_upload(result)})
    current = message_id_of(read_object_head(s3, bucket, stored, HEADER_PEEK_BYTES))
    check_current(manifest, stored, current, shown_name="beslut.txt")  # the current version passes
    # WHEN version 1 is restored as current (a copy of the older version over the newer)
    old = s3.list_object_versions(Bucket=bucket, Prefix=stored)["Versions"][-1]["VersionId"]
    s3.copy_object(Bucket=bucket, Key=stored, CopySource={"Bucket": bucket, "Key": stored, "VersionId": old})
    rolled = message_id_of(read_object_head(s3, bucket, stored, HEADER_PEEK_BYTES))
    # THEN it is refused, naming the plaintext name locally
    with pytest.raises(RollbackError, match=r"beslut\.txt: the stored object is not the version"):
        check_current(load_manifest(s3, custody, bucket), stored, rolled, shown_name="beslut.txt")
    # AND an object the manifest never recorded is refused too
    with pytest.raises(RollbackError, match="not recorded"):
        check_current(manifest, "unknown", rolled, shown_name="x")


def test_concurrent_manifest_writers_merge(s3, bucket, tmp_path, custody) -> None:
    plan = _write_tree(tmp_path / "tree")
    _, first = _upload_all(s3, custody, bucket, plan[:1])
    stale = load_manifest(s3, custody, bucket)
    # GIVEN another writer updates the manifest after we read it
    save_manifest(s3, custody, bucket, first, {"other": first.entries[next(iter(first.entries))]})
    # WHEN we write from our stale copy  THEN the conditional write fails, we merge, and both updates survive
    merged = save_manifest(s3, custody, bucket, stale, {"ours": stale.entries[next(iter(stale.entries))]})
    assert {"other", "ours"} <= set(merged.entries)
    assert {"other", "ours"} <= set(load_manifest(s3, custody, bucket).entries)
