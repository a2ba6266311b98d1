"""Name-hiding benchmark: mapping names both ways, and a no-change re-run against `aws s3 sync`.

    python -m bench.names [--names 100000] [--files 10000] [--json OUT]

1. Mapping: encrypt and decrypt N realistic three-segment paths with the bucket's name
   cipher (kommunmoln/tier_a/name_cipher.py); names per second each way, and the plain
   `cryptography` AES-SIV call on the same bytes as the peer in the same run.
2. No-change re-run of an F-file tree first uploaded with `kommunmoln sync` (encrypted
   names), on the local moto server (which pages ListObjectsV2 at 1,000 keys like S3):
   - peer, `aws s3 sync`-style: ListObjectsV2 pages, then compare size and mtime locally;
   - ours: `kommunmoln sync` run again exactly as a user runs it (the CLI in-process): the
     same listing plus the bucket record and the manifest (two GETs), then the local
     SHA-256 of every file.
   Reported: S3 requests per file, content bytes read from S3 (must be 0), seconds.
Timings are figures for docs/BENCHMARKS.md, never assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from bench.peers import FAKE_CREDENTIALS
from kommunmoln.local_aws import moto_server
from kommunmoln.tier_a import cli
from kommunmoln.tier_a.bucket_names import RESERVED_PREFIX
from kommunmoln.tier_a.keys import RawAesKey, write_key_file
from kommunmoln.tier_a.name_cipher import DOMAIN, NameCipher
from kommunmoln.tier_a.transfer import AwsSettings, make_session, s3_client

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


def _cli_sync(endpoint: str, key_file: Path, tree: Path, bucket: str, counters: list[_Counter] | None = None) -> dict:
    """`kommunmoln sync` as a user runs it (the CLI in-process); returns its JSON summary."""
    argv = [
        "--endpoint-url",
        endpoint,
        "--key",
        str(key_file),
        "--json",
        "--quiet",
        "sync",
        str(tree),
        f"s3://{bucket}/",
    ]
    real = cli.s3_client

    def counted(*args, **kwargs):
        client = real(*args, **kwargs)
        if counters is not None:
            counters.append(_Counter(client))
        return client

    out = io.StringIO()
    with mock.patch.object(cli, "s3_client", counted), contextlib.redirect_stdout(out):
        code = cli.main(argv)
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    if code != 0:
        raise RuntimeError(f"sync failed ({code}): {lines[-1:]}")
    return lines[-1]


def bench_rerun(files: int, workdir: Path, endpoint: str) -> dict[str, float]:
    """A first `kommunmoln sync` of an F-file tree, then the measured no-change re-run and its peer."""
    aws = AwsSettings(endpoint_url=endpoint)
    s3 = s3_client(make_session(aws), aws, concurrency=8)
    bucket = f"bench-names-{os.getpid()}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    tree = workdir / "tree"
    for i, name in enumerate(sample_names(files)):
        path = tree.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(256 + i % 512))
    key_file = write_key_file(workdir / "bench.key.json", RawAesKey.generate("kommunmoln", "bench-names"))
    start = time.perf_counter()
    first = _cli_sync(endpoint, key_file, tree, bucket)
    first_s = time.perf_counter() - start
    assert first["uploaded"] == files, first
    local = [p for p in tree.rglob("*") if p.is_file()]
    # Peer: `aws s3 sync`-style listing + size/mtime comparison (it cannot see same-size edits).
    counter = _Counter(s3)
    start = time.perf_counter()
    listed = _listing(s3, bucket)
    sizes = sorted(item["Size"] for item in listed.values())
    peer_skips = sum(1 for p in local if p.stat().st_size <= sizes[-1])
    peer_s = time.perf_counter() - start
    peer_calls = len(counter.calls)
    # Ours: the CLI's no-change re-run (bucket record, manifest, listing; local SHA-256 of every file).
    counters: list[_Counter] = []
    start = time.perf_counter()
    again = _cli_sync(endpoint, key_file, tree, bucket, counters)
    ours_s = time.perf_counter() - start
    calls = [c for counted in counters for c in counted.calls]
    content = sum(counted.content_bytes for counted in counters)
    assert again["uploaded"] == 0 and again["unchanged"] == files and peer_skips == files, again
    return {
        "files": files,
        "first_sync_seconds": first_s,
        "peer_requests": peer_calls,
        "peer_requests_per_file": peer_calls / files,
        "peer_seconds": peer_s,
        "ours_requests": len(calls),
        "ours_requests_per_file": len(calls) / files,
        "ours_content_bytes_read": content,
        "ours_seconds": ours_s,
        "ours_calls": {name: calls.count(name) for name in sorted(set(calls))},
        "load_average_1min": os.getloadavg()[0],
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
        f"{rerun['ours_seconds']:.1f} s vs {rerun['peer_seconds']:.1f} s (ours hashes every local file)"
        + (
            f"; load average {rerun['load_average_1min']:.1f} on 2 shared cores."
            if "load_average_1min" in rerun
            else "."
        )
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
