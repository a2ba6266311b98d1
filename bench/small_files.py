"""Small-files bench: a municipal file share migrated file by file (issue 13, item 10).

    python -m bench.small_files            # 10,000 x 10 KiB and 1,000 x 1 MiB (as in `make bench`)
    python -m bench.small_files --quick    # 1,000 x 10 KiB and 100 x 1 MiB

Three peers upload the same directory to the same endpoint in the same run: plain boto3
(`put_object` from a pool of the same number of threads: no encryption), the kommunmoln
client's bulk path (`kommunmoln.tier_a.bulk.upload_many`: ESDK encryption, many files in
flight) and rclone crypt (`rclone copy` with `--transfers` equal to that number). Reported:
files per second, MiB/s of plaintext, and each peer's ratio to plain boto3. The endpoint is
bench/fast_s3.py over HTTP (the least an S3 server can do), so the client's own cost shows;
absolute figures are this machine's, ratios are the result. Writes docs/BENCHMARKS-small-files.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench import peers

REPO_ROOT = Path(__file__).resolve().parent.parent
KIB = 1024
MIB = 1024 * KIB
FULL = ((10_000, 10 * KIB), (1_000, MIB))
QUICK = ((1_000, 10 * KIB), (100, MIB))
IN_FLIGHT = 16  # the client's default --files-in-flight; boto3 and rclone get the same number
BUCKET = "kommunmoln-small-files"


@dataclass(frozen=True)
class Row:
    peer: str
    files: int
    size: int
    seconds: float

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds

    @property
    def mib_per_second(self) -> float:
        return self.files * self.size / MIB / self.seconds


def make_tree(root: Path, files: int, size: int) -> Path:
    """`files` random files of `size` bytes in 100-file directories (like a share)."""
    for index in range(files):
        path = root / f"d{index // 100:04d}" / f"f{index:06d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return root


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def boto3_upload(endpoint: str, root: Path, prefix: str) -> float:
    s3 = peers._plain_s3(endpoint)
    files = _files(root)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        list(pool.map(lambda p: s3.put_object(Bucket=BUCKET, Key=prefix + p.relative_to(root).as_posix(),
                                              Body=p.read_bytes()), files))  # fmt: skip
    return time.perf_counter() - started


def kommunmoln_upload(endpoint: str, key_file: Path, root: Path, prefix: str) -> float:
    from kommunmoln.tier_a import bulk
    from kommunmoln.tier_a.transfer import AwsSettings, TransferSettings, make_session, s3_client

    aws = AwsSettings(endpoint_url=endpoint)
    s3 = s3_client(make_session(aws), aws, concurrency=IN_FLIGHT)
    jobs = [bulk.Job(p, prefix + p.relative_to(root).as_posix(), p.stat().st_size) for p in _files(root)]
    failures: list[bulk.Outcome] = []
    started = time.perf_counter()
    bulk.upload_many(s3, jobs, bucket=BUCKET, key_provider=peers._keyring(key_file), extra_context=None,
                     settings=TransferSettings(), files_in_flight=IN_FLIGHT,
                     on_outcome=lambda o: failures.append(o) if o.error else None)  # fmt: skip
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} uploads failed, first: {failures[0].error}")
    return elapsed


def rclone_upload(endpoint: str, root: Path, prefix: str) -> float:
    env = peers.rclone_env(endpoint, BUCKET, "bench-password")
    argv = [peers.rclone_binary(), "copy", str(root), f"{peers.RCLONE_CRYPT_REMOTE}:{prefix}",
            f"--transfers={IN_FLIGHT}", "--checkers=16"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def measure(endpoint: str, work: Path, key_file: Path, sets: tuple[tuple[int, int], ...]) -> list[Row]:
    """Every peer on every set, in this run, against `endpoint` (which must have BUCKET)."""
    rows = []
    for files, size in sets:
        root = make_tree(work / f"share-{files}x{size}", files, size)
        runs = {
            "boto3": lambda p, r=root: boto3_upload(endpoint, r, p),
            "kommunmoln": lambda p, r=root: kommunmoln_upload(endpoint, key_file, r, p),
        }
        if Path(peers.rclone_binary()).exists():
            runs["rclone-crypt"] = lambda p, r=root: rclone_upload(endpoint, r, p)
        for peer, run in runs.items():
            seconds = run(f"{peer}/{files}x{size}/")
            rows.append(Row(peer, files, size, seconds))
            print(f"{peer:13} {files:>6} x {size // KIB:>5} KiB: {seconds:7.2f} s", file=sys.stderr, flush=True)
    return rows


def render(rows: list[Row], command: str) -> str:
    lines = [
        "# Small files: bulk upload (issue 13, item 10)",
        "",
        f"{_dt.date.today().isoformat()}, `{command}`, {os.cpu_count()} cores shared with other work. Endpoint: "
        "bench/fast_s3.py over HTTP on loopback. Each peer uploads the same tree with "
        f"{IN_FLIGHT} files in flight. Ratio = files/s of the peer / files/s of plain boto3 (no encryption).",
        "",
        "| Files | Size | Peer | Seconds | Files/s | MiB/s | Ratio to boto3 |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        base = next(r for r in rows if r.peer == "boto3" and (r.files, r.size) == (row.files, row.size))
        lines.append(
            f"| {row.files:,} | {row.size // KIB:,} KiB | {row.peer} | {row.seconds:.2f} | "
            f"{row.files_per_second:,.0f} | {row.mib_per_second:,.1f} | {row.files_per_second / base.files_per_second:.2f} |"
        )
    return "\n".join(lines) + "\n"


def bench_step(endpoint: str, work: Path, key_file: Path, *, quick: bool, out: Path) -> list[str]:
    """The `small-files` section of `make bench` (bench/run.py): measures, writes `out`, returns note lines."""
    s3 = peers._plain_s3(endpoint)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    rows = measure(endpoint, work, key_file, QUICK if quick else FULL)
    out.write_text(render(rows, "make bench" + (" (--quick)" if quick else "")))
    base = {(r.files, r.size): r for r in rows if r.peer == "boto3"}
    return [
        f"Small files ({r.files:,} x {r.size // KIB:,} KiB, {IN_FLIGHT} in flight): {r.peer} "
        f"{r.files_per_second:,.0f} files/s, {r.files_per_second / base[(r.files, r.size)].files_per_second:.2f}x plain boto3 "
        f"(details: {out.name})"
        for r in rows
        if r.peer != "boto3"
    ]


def run_bench(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.small_files", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 x 10 KiB and 100 x 1 MiB")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "BENCHMARKS-small-files.md")
    args = parser.parse_args(argv)
    from bench.run import fast_endpoint

    os.environ.update(peers.FAKE_CREDENTIALS)
    with (
        tempfile.TemporaryDirectory(prefix="kommunmoln-small-files-") as tmp,
        fast_endpoint(Path(tmp), tls=False) as (
            endpoint,
            _,
        ),
    ):
        work = Path(tmp)
        peers._plain_s3(endpoint).create_bucket(Bucket=BUCKET)
        key_file = work / "bench.key.json"
        peers.write_key(key_file)
        rows = measure(endpoint, work, key_file, QUICK if args.quick else FULL)
        # Written before the endpoint stops: a slow teardown of a large store must not lose the figures.
        command = "python -m bench.small_files" + (" --quick" if args.quick else "")
        args.out.write_text(render(rows, command))
        print(f"wrote {args.out}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    run_bench()
    sys.exit(0)
