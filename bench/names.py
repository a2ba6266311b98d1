"""Name-hiding benchmark: mapping names both ways, and a no-change re-run against `aws s3 sync`.

    python -m bench.names [--names 100000] [--files 10000] [--json OUT]

1. Mapping: encrypt and decrypt N realistic three-segment paths with the bucket's name
   cipher (kommunmoln/tier_a/name_cipher.py); names per second each way, and the plain
   `cryptography` AES-SIV call on the same bytes as the peer in the same run.
2. No-change re-run of an F-file tree already uploaded with encrypted names, on the local
   moto server (which pages ListObjectsV2 at 1,000 keys like S3):
   - peer, `aws s3 sync`-style: ListObjectsV2 pages, then compare size and mtime locally;
   - ours: the same listing plus the bucket record and the manifest (two GETs), then the
     local SHA-256 of every file (`manifest.unchanged_plan`).
   Reported: S3 requests per file, content bytes read from S3 (must be 0), seconds.
Timings are figures for docs/BENCHMARKS.md, never assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from bench.peers import FAKE_CREDENTIALS
from kommunmoln.local_aws import moto_server
from kommunmoln.tier_a.bucket_names import RESERVED_PREFIX, open_bucket_names
from kommunmoln.tier_a.custody import CustodyOptions, open_custody
from kommunmoln.tier_a.keys import RawAesKey, write_key_file
from kommunmoln.tier_a.manifest import entry_for_upload, load_manifest, save_manifest, unchanged_plan
from kommunmoln.tier_a.name_cipher import DOMAIN, NameCipher
from kommunmoln.tier_a.transfer import AwsSettings, make_session, s3_client, upload_encrypted

FIRST = ["socialnamnden", "barn-och-utbildning", "bygg-och-miljo", "kommunstyrelsen", "vard-och-omsorg"]
GIVEN = ["anna", "erik", "åsa", "örjan", "kalle", "lena", "märta", "nils"]
FAMILY = ["andersson", "johansson", "karlsson", "nilsson", "öberg", "ekström"]


def sample_names(count: int, seed: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(FIRST)}/{rng.randint(2015, 2026)}/"
        f"{rng.choice(GIVEN)}-{rng.choice(FAMILY)}-{rng.randint(190001, 201912)}-{i}.pdf"
        for i in range(count)
    ]


def bench_mapping(count: int) -> dict[str, float]:
    names = sample_names(count)
    key = NameCipher.generate_key()
    cipher = NameCipher(key)
    start = time.perf_counter()
    stored = [cipher.encrypt_key(n).key for n in names]
    encrypt_s = time.perf_counter() - start
    start = time.perf_counter()
    back = [cipher.decrypt_key(s) for s in stored]
    decrypt_s = time.perf_counter() - start
    assert back == names
    # Peer: the bare AES-SIV calls (3 segments per name), no normalization, padding or encoding.
    siv = AESSIV(key)
    segments = [s.encode() for n in names for s in n.split("/")]
    start = time.perf_counter()
    for segment in segments:
        siv.encrypt(segment, [DOMAIN, b"parent/"])
    peer_s = time.perf_counter() - start
    plain_bytes = sum(len(n.encode()) for n in names)
    stored_bytes = sum(len(s) for s in stored)
    return {
        "names": count,
        "encrypt_names_per_s": count / encrypt_s,
        "decrypt_names_per_s": count / decrypt_s,
        "bare_aessiv_names_per_s": count / peer_s,
        "mean_plain_key_bytes": plain_bytes / count,
        "mean_stored_key_bytes": stored_bytes / count,
    }


class _Counter:
    """Counts S3 calls and the content bytes GetObject returned for data (non-control) objects."""

    def __init__(self, s3) -> None:
        self.calls: list[str] = []
        self.content_bytes = 0
        s3.meta.events.register("before-call.s3.*", self._before)
        s3.meta.events.register("after-call.s3.GetObject", self._after_get)

    def _before(self, model, params, **_):
        self.calls.append(model.name)

    def _after_get(self, parsed, context=None, **_):
        key = (context or {}).get("input_params", {}).get("Key", "")
        if not str(key).startswith(RESERVED_PREFIX):
            self.content_bytes += int(parsed.get("ContentLength", 0) or 0)

    def reset(self) -> None:
        self.calls.clear()
        self.content_bytes = 0


def _listing(s3, bucket: str) -> dict[str, dict]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: item for page in pages for item in page.get("Contents", [])}


def bench_rerun(files: int, workdir: Path, endpoint: str) -> dict[str, float]:
    aws = AwsSettings(endpoint_url=endpoint)
    s3 = s3_client(make_session(aws), aws, concurrency=8)
    bucket = f"bench-names-{os.getpid()}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    tree = workdir / "tree"
    names = sample_names(files)
    plan = []
    for i, name in enumerate(names):
        path = tree.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(256 + i % 512))
        plan.append((path, name))
    key_file = write_key_file(workdir / "bench.key.json", RawAesKey.generate("kommunmoln", "bench-names"))
    with open_custody(CustodyOptions(key_file=str(key_file)), need_primary=True) as custody:
        keyring = custody.encrypting_keyring()
        writer = open_bucket_names(s3, custody, bucket, plain_names=False, create=True)
        stored_plan = [(p, writer.stored(n).key) for p, n in plan]

        def put(item):
            path, stored = item
            return stored, entry_for_upload(
                upload_encrypted(s3, source_path=path, bucket=bucket, key=stored, key_provider=keyring)
            )

        with ThreadPoolExecutor(8) as pool:
            updates = dict(pool.map(put, stored_plan))
        save_manifest(s3, custody, bucket, load_manifest(s3, custody, bucket), updates)

        counter = _Counter(s3)
        # Peer: `aws s3 sync`-style listing + size/mtime comparison (it cannot see same-size edits).
        start = time.perf_counter()
        listed = _listing(s3, bucket)
        peer_skips = sum(1 for p, k in stored_plan if k in listed and listed[k]["Size"] >= p.stat().st_size)
        peer_s = time.perf_counter() - start
        peer_calls = len(counter.calls)
        counter.reset()
        # Ours: bucket record + manifest + listing, local SHA-256 of every file.
        start = time.perf_counter()
        reader = open_bucket_names(s3, custody, bucket, plain_names=False, create=True)
        manifest = load_manifest(s3, custody, bucket)
        etags = {k: v["ETag"] for k, v in _listing(s3, bucket).items()}
        todo, unchanged = unchanged_plan([(p, reader.stored(n).key) for p, n in plan], manifest, etags)
        ours_s = time.perf_counter() - start
        assert not todo and len(unchanged) == files and peer_skips == files
    return {
        "files": files,
        "peer_requests": peer_calls,
        "peer_requests_per_file": peer_calls / files,
        "peer_seconds": peer_s,
        "ours_requests": len(counter.calls),
        "ours_requests_per_file": len(counter.calls) / files,
        "ours_content_bytes_read": counter.content_bytes,
        "ours_seconds": ours_s,
        "ours_calls": {name: counter.calls.count(name) for name in sorted(set(counter.calls))},
    }


def summary(mapping: dict[str, float], rerun: dict) -> str:
    """One sentence for the benchmark record."""
    return (
        f"Encrypted names (bench/names.py): {mapping['names']:,} names mapped at "
        f"{mapping['encrypt_names_per_s']:,.0f}/s encrypting and {mapping['decrypt_names_per_s']:,.0f}/s decrypting "
        f"(bare AES-SIV on the same segments {mapping['bare_aessiv_names_per_s']:,.0f}/s); mean key "
        f"{mapping['mean_plain_key_bytes']:.0f} -> {mapping['mean_stored_key_bytes']:.0f} bytes. No-change re-run of "
        f"{rerun['files']:,} files on moto: {rerun['ours_requests']} S3 requests "
        f"({rerun['ours_requests_per_file']:.4f}/file, {rerun['ours_content_bytes_read']} content bytes read) "
        f"vs {rerun['peer_requests']} ({rerun['peer_requests_per_file']:.4f}/file) for an aws-s3-sync-style listing; "
        f"{rerun['ours_seconds']:.1f} s vs {rerun['peer_seconds']:.1f} s (ours hashes every local file)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.names", description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.update(FAKE_CREDENTIALS)  # the local moto server only; never an AWS account
    results: dict[str, object] = {"mapping": bench_mapping(args.names)}
    with tempfile.TemporaryDirectory() as tmp, moto_server(os.environ.get("KOMMUNMOLN_MOTO_ENDPOINT")) as endpoint:
        results["no_change_rerun"] = bench_rerun(args.files, Path(tmp), endpoint)
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
