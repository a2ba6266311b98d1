"""Encrypted names, change detection and rollback detection end to end on the moto server.

S3 behaviour relied on: ListObjectsV2 returns each object's ETag; CopyObject of an older
version makes it current with the same bytes; If-Match/If-None-Match conditional writes
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html). moto 5
implements all three.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest

from kommunmoln.tier_a import cli, named_bucket, size_padding
from kommunmoln.tier_a.bucket_names import open_bucket_names
from kommunmoln.tier_a.codec import HEADER_PEEK_BYTES, summarize_header
from kommunmoln.tier_a.custody import CustodyOptions, open_custody
from kommunmoln.tier_a.keys import RawAesKey, write_escrow_pair, write_key_file
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
            s3, source_path=path, bucket=bucket, key=stored.key, key_provider=custody.encrypting_keyring()
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
            s3, source_path=path, bucket=bucket, key=stored, key_provider=custody.encrypting_keyring()
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


# --- The CLI end to end: every command speaks plaintext names, S3 holds none -------------------
def _cli(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = cli.main(["--json", *argv])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def _everything_stored(s3, bucket: str) -> str:
    """Every key, header, metadata value, tag and ESDK header field of every version S3 holds."""
    seen: list[str] = []
    for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        key, version_id = version["Key"], version["VersionId"]
        seen.append(key)
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        seen.extend(f"{k}={v}" for k, v in head["ResponseMetadata"]["HTTPHeaders"].items())
        seen.extend(f"{k}={v}" for k, v in head.get("Metadata", {}).items())
        tags = s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)["TagSet"]
        seen.extend(f"{t['Key']}={t['Value']}" for t in tags)
        body = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id, Range="bytes=0-65535")["Body"].read()
        summary = summarize_header(body)
        seen.extend(f"{k}={v}" for k, v in summary.encryption_context.items())
        seen.extend(f"{ns}/{name}" for ns, name in summary.wrapping_keys)
    return "\n".join(seen).lower()


def _segments() -> set[str]:
    segments = {unicodedata.normalize(f, s) for name in TREE for s in name.split("/") for f in ("NFC", "NFD")}
    return segments | {s.rsplit(".", 1)[0] for s in set(segments) if "." in s} | {"tree"}


def test_cli_stores_no_plaintext_name_and_serves_every_command_by_name(
    s3, bucket, tmp_path, moto_endpoint, capsys
) -> None:
    key_file = write_key_file(tmp_path / "k.json", RawAesKey.generate("kommunmoln", "cli-names"))
    _write_tree(tmp_path / "tree")
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "Överklagande Lisa Ek.pdf").write_bytes(b"overklagande")
    base = ["--endpoint-url", moto_endpoint, "--key", str(key_file)]
    # GIVEN a tree with sensitive names uploaded through the CLI (a directory, a padded file, a sync)
    assert _cli(capsys, *base, "upload", str(tmp_path / "tree"), f"s3://{bucket}/")[0] == 0
    single = tmp_path / "single" / "Överklagande Lisa Ek.pdf"
    assert _cli(capsys, *base, "upload", "--pad", str(single), f"s3://{bucket}/socialnamnden/")[0] == 0
    code, events, _ = _cli(capsys, *base, "sync", str(tmp_path / "tree"), f"s3://{bucket}/kopia/")
    assert code == 0 and events[-1]["uploaded"] == len(TREE)
    # WHEN everything the emulation stores is collected
    text = _everything_stored(s3, bucket)
    # THEN no plaintext path segment appears in any key, header, tag, metadata value or ESDK header
    names_used = _segments() | {"Överklagande Lisa Ek.pdf", "Överklagande Lisa Ek", "kopia"}
    assert sorted(s for s in names_used if s.lower() in text) == []
    # AND ls shows plaintext names with plaintext sizes
    code, events, _ = _cli(capsys, *base, "ls", f"s3://{bucket}/socialnamnden/")
    listed = {e["key"]: e["plaintext_bytes"] for e in events if e["event"] == "result"}
    assert code == 0 and listed == {
        "socialnamnden/2025/anna-andersson-191212.pdf": len(TREE["socialnamnden/2025/anna-andersson-191212.pdf"]),
        "socialnamnden/2025/Örjan Åkesson 19700101-1234.docx": len(TREE["socialnamnden/2025/Örjan Åkesson 19700101-1234.docx"]),
        "socialnamnden/Överklagande Lisa Ek.pdf": len(b"overklagande"),
    }  # fmt: skip
    # AND verify passes by plaintext name (folder and one file, the latter typed in NFD as macOS does)
    code, events, _ = _cli(capsys, *base, "verify", f"s3://{bucket}/barn-och-utbildning/")
    assert code == 0 and events[-1]["passed"] == 2
    nfd = unicodedata.normalize("NFD", "socialnamnden/2025/Örjan Åkesson 19700101-1234.docx")
    code, events, _ = _cli(capsys, *base, "verify", f"s3://{bucket}/{nfd}")
    assert code == 0 and events[0]["key"] == unicodedata.normalize("NFC", nfd) and events[0]["status"] == "validated"
    # AND a folder downloads by plaintext name to the same tree, the padded file without its padding
    code, _, err = _cli(capsys, *base, "download", f"s3://{bucket}/", str(tmp_path / "out"))
    assert code == 0, err
    for name, data in TREE.items():
        assert (tmp_path / "out").joinpath(*name.split("/")).read_bytes() == data
        assert (tmp_path / "out" / "kopia").joinpath(*name.split("/")).read_bytes() == data
    assert (tmp_path / "out" / "socialnamnden" / "Överklagande Lisa Ek.pdf").read_bytes() == b"overklagande"
    # AND rm takes a plaintext name, and that object is gone from the listing
    assert _cli(capsys, *base, "rm", f"s3://{bucket}/kopia/", "--recursive")[0] == 0
    code, events, _ = _cli(capsys, *base, "ls", f"s3://{bucket}/")
    assert not any(e.get("key", "").startswith("kopia/") for e in events if e["event"] == "result")


def test_cli_errors_name_the_plaintext_locally(s3, bucket, tmp_path, moto_endpoint, capsys) -> None:
    key_file = write_key_file(tmp_path / "k.json", RawAesKey.generate("kommunmoln", "cli-errors"))
    (tmp_path / "anna.txt").write_bytes(b"x")
    base = ["--endpoint-url", moto_endpoint, "--key", str(key_file)]
    assert _cli(capsys, *base, "upload", str(tmp_path / "anna.txt"), f"s3://{bucket}/sekretess/anna.txt")[0] == 0
    # GIVEN the stored object replaced by something that is not a message
    stored = open_names(s3, key_file, bucket).stored("sekretess/anna.txt").key
    s3.put_object(Bucket=bucket, Key=stored, Body=b"garbage")
    # WHEN downloaded  THEN the one-line error names the plaintext name, not the stored key
    code, events, _ = _cli(capsys, *base, "download", f"s3://{bucket}/sekretess/anna.txt", str(tmp_path / "o"))
    assert code == 1 and "sekretess/anna.txt" in events[-1]["message"] and stored not in events[-1]["message"]


def open_names(s3, key_file: Path, bucket: str):
    with open_custody(CustodyOptions(key_file=str(key_file)), need_primary=False) as opened:
        return open_bucket_names(s3, opened, bucket, plain_names=False, create=False)


def test_cli_sync_rerun_costs_a_listing_and_reads_no_content(
    s3, bucket, tmp_path, moto_endpoint, capsys, monkeypatch
) -> None:
    key_file = write_key_file(tmp_path / "k.json", RawAesKey.generate("kommunmoln", "cli-sync"))
    plan = _write_tree(tmp_path / "tree")
    base = ["--endpoint-url", moto_endpoint, "--key", str(key_file)]
    sync = [*base, "sync", str(tmp_path / "tree"), f"s3://{bucket}/nas/"]
    assert _cli(capsys, *sync)[0] == 0
    calls: list[str] = []
    real = cli.s3_client

    def counted(*args, **kwargs):
        client = real(*args, **kwargs)
        client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
        return client

    monkeypatch.setattr(cli, "s3_client", counted)
    # WHEN nothing changed
    code, events, _ = _cli(capsys, *sync)
    # THEN nothing is uploaded; the run cost one listing page and the two control objects, no content GET
    assert code == 0 and events[-1]["uploaded"] == 0 and events[-1]["unchanged"] == len(TREE)
    assert sorted(calls) == ["GetObject", "GetObject", "ListObjectsV2"]
    # WHEN a file is edited keeping its size and mtime
    path = plan[0][0]
    stat = path.stat()
    path.write_bytes(b"beslut om avslag!")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    code, events, _ = _cli(capsys, *sync)
    # THEN exactly that file is uploaded (the digest lives only in the encrypted manifest)
    uploads = [e["key"] for e in events if e["event"] == "result"]
    assert code == 0 and uploads == ["nas/" + plan[0][1]]
    # AND the new content is what downloads
    assert _cli(capsys, *base, "download", f"s3://{bucket}/nas/{plan[0][1]}", str(tmp_path / "back"))[0] == 0
    assert (tmp_path / "back").read_bytes() == b"beslut om avslag!"


def test_cli_plain_names_and_encrypted_names_never_mix(s3, make_bucket, tmp_path, moto_endpoint, capsys) -> None:
    key_file = write_key_file(tmp_path / "k.json", RawAesKey.generate("kommunmoln", "cli-modes"))
    (tmp_path / "a.txt").write_bytes(b"a")
    base = ["--endpoint-url", moto_endpoint, "--key", str(key_file)]
    plain, hidden = make_bucket(), make_bucket()
    # GIVEN one bucket written with --plain-names (keys are names, as before) and one with encrypted names
    assert _cli(capsys, *base, "--plain-names", "upload", str(tmp_path / "a.txt"), f"s3://{plain}/x/a.txt")[0] == 0
    assert s3.head_object(Bucket=plain, Key="x/a.txt")
    assert _cli(capsys, *base, "upload", str(tmp_path / "a.txt"), f"s3://{hidden}/x/a.txt")[0] == 0
    # WHEN either is used in the other mode  THEN refused with a usage error that says what to do
    code, events, _ = _cli(capsys, *base, "upload", str(tmp_path / "a.txt"), f"s3://{plain}/x/b.txt")
    assert code == 2 and "was written with --plain-names" in events[-1]["message"]
    code, events, _ = _cli(capsys, *base, "--plain-names", "download", f"s3://{hidden}/x/a.txt", str(tmp_path / "o"))
    assert code == 2 and "uses encrypted names; drop --plain-names" in events[-1]["message"]
    # AND each works in its own mode
    assert _cli(capsys, *base, "--plain-names", "download", f"s3://{plain}/x/a.txt", str(tmp_path / "p"))[0] == 0
    assert _cli(capsys, *base, "download", f"s3://{hidden}/x/a.txt", str(tmp_path / "h"))[0] == 0


def test_cli_escrow_only_recovery_restores_names(s3, bucket, tmp_path, moto_endpoint, capsys) -> None:
    key_file = write_key_file(tmp_path / "k.json", RawAesKey.generate("kommunmoln", "cli-escrow"))
    public, private = write_escrow_pair(tmp_path / "escrow")
    _write_tree(tmp_path / "tree")
    common = ["--endpoint-url", moto_endpoint]
    # GIVEN a tree uploaded with the escrow key added
    assert _cli(capsys, *common, "--key", str(key_file), "upload", str(tmp_path / "tree"), f"s3://{bucket}/",
                "--escrow-public-key", str(public))[0] == 0  # fmt: skip
    key_file.unlink()  # the municipality's key is lost
    # WHEN only the offline escrow private key is used  THEN names and contents come back
    code, _, err = _cli(capsys, *common, "download", f"s3://{bucket}/", str(tmp_path / "out"),
                        "--escrow-private-key", str(private))  # fmt: skip
    assert code == 0, err
    for name, data in TREE.items():
        assert (tmp_path / "out").joinpath(*name.split("/")).read_bytes() == data


def test_cli_padding_hides_exact_sizes_and_round_trips(s3, bucket, tmp_path, moto_endpoint, capsys) -> None:
    key_file = write_key_file(tmp_path / "k.json", RawAesKey.generate("kommunmoln", "cli-pad"))
    base = ["--endpoint-url", moto_endpoint, "--key", str(key_file)]
    sizes = (0, 1, 1000, 1001, 70_000)
    for size in sizes:
        (tmp_path / f"f{size}").write_bytes(os.urandom(size))
    # GIVEN files of near sizes uploaded with --pad
    for size in sizes:
        assert _cli(capsys, *base, "upload", "--pad", str(tmp_path / f"f{size}"), f"s3://{bucket}/p/f{size}")[0] == 0
    names_ = open_names(s3, key_file, bucket)
    stored = {
        size: s3.head_object(Bucket=bucket, Key=names_.stored(f"p/f{size}").key)["ContentLength"] for size in sizes
    }
    # THEN 1000 and 1001 bytes are stored at the same size (one Padmé bucket), the context names only the scheme
    assert stored[1000] == stored[1001]
    head = summarize_header(read_object_head(s3, bucket, names_.stored("p/f1000").key, HEADER_PEEK_BYTES))
    assert head.encryption_context[size_padding.CONTEXT_KEY] == "padme-v1"
    # AND every file downloads exactly, padding removed
    for size in sizes:
        assert _cli(capsys, *base, "download", f"s3://{bucket}/p/f{size}", str(tmp_path / f"o{size}"))[0] == 0
        assert (tmp_path / f"o{size}").read_bytes() == (tmp_path / f"f{size}").read_bytes()
    # AND a padded message fetched around the client (aws s3 cp) decrypts locally without its padding
    raw = s3.get_object(Bucket=bucket, Key=names_.stored("p/f1001").key)["Body"].read()
    (tmp_path / "f1001.esdk").write_bytes(raw)
    assert cli.main(["-q", "--key", str(key_file), "decrypt", str(tmp_path / "f1001.esdk"), str(tmp_path / "d")]) == 0
    assert (tmp_path / "d").read_bytes() == (tmp_path / "f1001").read_bytes()


def test_cli_writes_the_manifest_during_a_long_run(s3, bucket, tmp_path, moto_endpoint, capsys, monkeypatch) -> None:
    # GIVEN a flush every 2 uploads (1000 by default) and a 5-file tree
    monkeypatch.setattr(named_bucket, "MANIFEST_FLUSH_EVERY", 2)
    key_file = write_key_file(tmp_path / "k.json", RawAesKey.generate("kommunmoln", "cli-flush"))
    for i in range(5):
        (tmp_path / "tree" / f"f{i}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / "tree" / f"f{i}.txt").write_bytes(b"x" * i)
    base = ["--endpoint-url", moto_endpoint, "--key", str(key_file), "--files-in-flight", "1"]
    # WHEN the tree is uploaded
    assert _cli(capsys, *base[:4], "upload", *base[4:], str(tmp_path / "tree"), f"s3://{bucket}/t/")[0] == 0
    # THEN the manifest was written along the way (after 2 and 4 files) and at the end, and records all 5
    versions = s3.list_object_versions(Bucket=bucket, Prefix="_kommunmoln/manifest")["Versions"]
    assert len(versions) == 3
    with open_custody(CustodyOptions(key_file=str(key_file)), need_primary=False) as opened:
        assert len(load_manifest(s3, opened, bucket).entries) == 5
