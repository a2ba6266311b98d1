"""Benchmarks of the tier A client against its peers, in one run (`make bench`).

    python -m bench.run                      # full: 256 MiB and 1 GiB, 3 runs, memory at 1 and 4 GiB
    python -m bench.run --quick              # development: 32 MiB, 1 run, small memory sizes
    python -m bench.run --sizes 256 --runs 5 --only upload,download

Starts its own moto server (a separate process, so its CPU is not under our GIL), runs
every measured operation in a fresh child process (bench/peers.py), and writes
docs/BENCHMARKS.md and docs/benchmarks.png. Installs what it needs when missing: the
packages in bench/requirements.txt into this venv, the AWS S3 Encryption Client into its
own venv (bench/requirements-s3ec.txt), and rclone with apt-get (as root).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import peers, profiling, small_files
from bench.report import (
    AES_REFERENCE,
    DOWNLOAD,
    ENCRYPT,
    ENCRYPT_MEMORY,
    FAST_HTTP,
    FAST_HTTPS,
    MEMORY_DOWNLOAD,
    MEMORY_UPLOAD,
    MIB,
    MOTO,
    SWEEP,
    UPLOAD,
    BenchResults,
    Measurement,
    ValidatorResult,
    render_chart,
    render_markdown,
    update_readme,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
BUCKET = "kommunmoln-bench"
SECTIONS = (
    "upload", "download", "encrypt", "memory", "validator", "names", "synth", "profile", "sweep", "xks", "small-files",
)  # fmt: skip
DEFAULT_SECTIONS = SECTIONS
TRANSFER_PEERS = ("boto3", "kommunmoln", "rclone-crypt", "s3ec")
ENDPOINTS = (FAST_HTTP, FAST_HTTPS, MOTO)
CLIENT_MODULES = (
    "codec.py",
    "errors.py",
    "frames.py",
    "keys.py",
    "ranged.py",
    "transfer.py",
)  # what bench.peers imports
RCLONE_PASSWORD = "kommunmoln-bench-only"  # noqa: S105 - a throwaway password for a local benchmark


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- dependencies ------------------------------------------------------------------------------
def ensure_dependencies() -> dict[str, str]:
    """Install what is missing; return {peer: reason} for peers that cannot run."""
    unavailable: dict[str, str] = {}
    venv_bin = Path(sys.executable).parent
    if importlib.util.find_spec("matplotlib") is None or not (venv_bin / "py-spy").exists():
        log(f"installing bench/requirements.txt into {sys.prefix}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-r", str(BENCH_DIR / "requirements.txt")], check=True)
    if shutil.which("rclone") is None:
        apt = shutil.which("apt-get")
        if os.geteuid() == 0 and apt:
            log("rclone is missing: apt-get install -y rclone")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            if subprocess.run([apt, "install", "-y", "rclone"], env=env).returncode != 0:
                subprocess.run([apt, "update"], env=env, check=False)
                subprocess.run([apt, "install", "-y", "rclone"], env=env, check=False)
        if shutil.which("rclone") is None:
            unavailable["rclone-crypt"] = "rclone is not installed (Debian package `rclone`; needs root to install)"
    python = peers.s3ec_python()
    if not python.exists() or subprocess.run([str(python), "-c", "import s3_encryption"]).returncode != 0:
        log(f"installing the AWS S3 Encryption Client into its own venv {peers.S3EC_VENV}")
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(peers.S3EC_VENV)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "-r", str(BENCH_DIR / "requirements-s3ec.txt")], check=True
            )
        except (subprocess.CalledProcessError, OSError) as error:
            unavailable["s3ec"] = f"could not install amazon-s3-encryption-client-python: {error}"
    return unavailable


# --- the local AWS emulation ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """A moto server in its own process on loopback; its temp files go to `workdir`."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server_bin = Path(sys.executable).with_name("moto_server")
    env = {**os.environ, "TMPDIR": str(workdir)}
    with open(workdir / "moto.log", "wb") as moto_log:
        server = subprocess.Popen(
            [str(server_bin), "-H", "127.0.0.1", "-p", str(port)], stdout=moto_log, stderr=moto_log, env=env
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):  # noqa: S310 - loopback
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"moto server did not start on {endpoint}") from None
                    time.sleep(0.2)
            yield endpoint
        finally:
            server.terminate()
            server.wait(timeout=20)


@contextmanager
def fast_endpoint(workdir: Path, *, tls: bool) -> Iterator[tuple[str, Path | None]]:
    """bench/fast_s3.py in its own process; yields its URL and (HTTPS) the CA bundle to trust."""
    name = "https" if tls else "http"
    tls_dir = workdir / f"fast-{name}-tls" if tls else None
    argv = [sys.executable, "-m", "bench.fast_s3", "--store", str(workdir / f"fast-{name}-store")]
    argv += ["--tls-dir", str(tls_dir)] if tls_dir else []
    with open(workdir / f"fast-{name}.log", "wb") as server_log:
        server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=server_log, cwd=REPO_ROOT, text=True)
        try:
            assert server.stdout is not None
            endpoint = server.stdout.readline().strip()
            if not endpoint.startswith(name + "://"):
                raise RuntimeError(f"the fast {name} endpoint did not start (see {workdir}/fast-{name}.log)")
            yield endpoint, (tls_dir / "cert.pem" if tls_dir else None)
        finally:
            server.terminate()
            server.wait(timeout=20)


def _s3(endpoint: str):
    return peers._plain_s3(endpoint)


def empty_bucket(endpoint: str) -> None:
    s3 = _s3(endpoint)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


# --- child processes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChildResult:
    seconds: float  # as the child timed it, or wall time for non-Python peers
    max_rss_kib: int
    cpu_seconds: float | None = None  # user + sys of the operation (start-up excluded)


def run_child(
    argv: Sequence[str],
    env: dict[str, str],
    workdir: Path,
    *,
    timed_inside: bool = True,
    startup_cpu_seconds: float = 0.0,
) -> ChildResult:
    """Run a child after `os.sync()`; return its own timing (or wall time), CPU time and peak resident set.

    CPU time: reported by Python children for the operation alone; for others (rclone) the
    child's user + sys from wait4 less `startup_cpu_seconds` (its measured start-up).

    The peak is the child's VmHWM: reported by the child itself where it can, and polled
    from /proc every 20 ms otherwise (rclone). `ru_maxrss` from wait4 is not used: on Linux
    it includes the parent's resident set at the fork.
    """
    out_path, err_path = workdir / "child.out", workdir / "child.err"
    polled = 0
    # Every peer starts with nothing dirty in the page cache: without this, the writeback of the
    # previous peer's unsynced file (or of the endpoint's stored upload) lands in this one's time.
    os.sync()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env, cwd=REPO_ROOT)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            polled = max(polled, peers.peak_rss_kib(process.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = err_path.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{shlex.join(argv[:4])} ... exited {process.returncode}:\n{tail}")
    if not timed_inside:
        cpu = max(0.0, usage.ru_utime + usage.ru_stime - startup_cpu_seconds)
        return ChildResult(seconds=wall, max_rss_kib=polled, cpu_seconds=cpu)
    report = json.loads(out_path.read_text().strip().splitlines()[-1])
    return ChildResult(
        seconds=report["seconds"],
        max_rss_kib=max(polled, int(report.get("peak_rss_kib", 0))),
        cpu_seconds=report.get("cpu_seconds"),
    )


def startup_cpu(argv: Sequence[str], env: dict[str, str], runs: int = 3) -> float:
    """Median user + sys CPU of a command that only starts and exits (subtracted from rclone's figures)."""
    samples = []
    for _ in range(runs):
        process = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _, _, usage = os.wait4(process.pid, 0)
        samples.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(samples)


def attempt(ctx: Context, label: str, operation: Callable[..., ChildResult], *args: object) -> ChildResult | None:
    """Run one measured operation; retry once; on a second failure note it and go on.

    The client under test is being developed in the same tree while the benchmark runs, so
    one broken intermediate version must not cost the whole run.
    """
    for tries in (1, 2):
        try:
            return operation(*args)
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1][:300]
            log(f"{label} failed (try {tries}): {reason}")
            if tries == 2:
                ctx.results.notes.append(f"{label}: failed twice, left out ({reason})")
    return None


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_CA_BUNDLE")}
    env.update(peers.FAKE_CREDENTIALS)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


# --- data -----------------------------------------------------------------------------------------------
def make_file(path: Path, size: int) -> Path:
    """A file of random bytes (a 16 MiB random block with a per-block counter, so no block repeats)."""
    block = os.urandom(16 * MIB)
    with open(path, "wb") as out:
        written, counter = 0, 0
        while written < size:
            piece = counter.to_bytes(8, "big") + block[8 : min(len(block), size - written)]
            out.write(piece[: size - written])
            written += len(piece[: size - written])
            counter += 1
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


# --- machine facts --------------------------------------------------------------------------------------
def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "not installed"


def machine_facts() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    aes = ", ".join(f for f in ("aes", "vaes", "vpclmulqdq", "avx2", "avx512f") if f" {f} " in f"{flags} ")
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total_kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) if "MemTotal" in meminfo else 0
    s3ec = _command_output(
        [
            str(peers.s3ec_python()),
            "-c",
            "import importlib.metadata as m; print(m.version('amazon-s3-encryption-client-python'))",
        ]
    )
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": f"{model} ({aes or 'no AES-NI flag'})",
        "cores": str(os.cpu_count()),
        "RAM": f"{total_kib / 1024 / 1024:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "Python": platform.python_version(),
        "boto3": _version("boto3"),
        "botocore": _version("botocore"),
        "aws-encryption-sdk": _version("aws-encryption-sdk"),
        "cryptography": _version("cryptography"),
        "moto": _version("moto"),
        "amazon-s3-encryption-client-python": s3ec or "not installed",
        "rclone": (_command_output(["rclone", "version"]).splitlines() or ["not installed"])[0],
        "OpenSSL": _command_output(["openssl", "version"]),
        "git commit": _command_output(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"]),
        "client code measured": client_fingerprint(),
    }


# --- sections -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """One S3 endpoint the transfers run against, and how its clients reach it."""

    name: str  # FAST_HTTP, FAST_HTTPS or MOTO
    url: str
    env: dict[str, str]  # child environment (AWS_CA_BUNDLE for HTTPS, KMS on moto)
    rclone_env: dict[str, str] | None


@dataclass
class Context:
    args: argparse.Namespace
    endpoint: str  # the first endpoint: memory, profile and sweep run there
    work: Path
    key_file: Path
    kms_key_id: str
    results: BenchResults
    env: dict[str, str]
    rclone_env: dict[str, str] | None
    endpoints: list[Endpoint]
    moto: str  # KMS (for the S3 Encryption Client) and the validator's endpoint
    rclone_startup_cpu: float = 0.0
    where: str = MOTO  # the endpoint name of `endpoint`

    def measurement(self, section: str, peer: str, size: int, variant: str = "", endpoint: str = MOTO) -> Measurement:
        key = (section, peer, size, variant, endpoint)
        found = next(
            (m for m in self.results.measurements if (m.section, m.peer, m.size_bytes, m.variant, m.endpoint) == key),
            None,
        )
        if found is None:
            found = Measurement(section, peer, size, variant=variant, endpoint=endpoint)
            self.results.measurements.append(found)
        return found

    def record(self, m: Measurement, result: ChildResult) -> None:
        m.seconds.append(result.seconds)
        m.max_rss_kib.append(result.max_rss_kib)
        if result.cpu_seconds is not None:
            m.cpu_seconds.append(result.cpu_seconds)
        m.load.append(os.getloadavg()[0])  # other work on the machine, shown next to every figure

    def at(self, endpoint: Endpoint) -> Context:
        """This context with `endpoint` as the one transfers go to."""
        return dataclasses.replace(
            self, endpoint=endpoint.url, env=endpoint.env, rclone_env=endpoint.rclone_env, where=endpoint.name
        )

    def tuning(self) -> dict[str, int]:
        tuning = {}
        if self.args.part_size_mib:
            tuning["part_size_mib"] = self.args.part_size_mib
        if self.args.concurrency:
            tuning["concurrency"] = self.args.concurrency
        return tuning


def _upload(ctx: Context, peer: str, path: Path, key: str) -> ChildResult:
    common = {"endpoint": ctx.endpoint, "bucket": BUCKET, "key": key, "path": path}
    if peer == "boto3":
        return run_child(peers.child_argv("boto3-upload", common), ctx.env, ctx.work)
    if peer == "kommunmoln":
        args = {**common, "key_file": ctx.key_file, **ctx.tuning()}
        return run_child(peers.child_argv("kommunmoln-upload", args), ctx.env, ctx.work)
    if peer == "rclone-crypt":
        assert ctx.rclone_env is not None
        argv = peers.rclone_upload_argv(path, key, ctx.args.rclone_concurrency)
        return run_child(argv, ctx.rclone_env, ctx.work, timed_inside=False, startup_cpu_seconds=ctx.rclone_startup_cpu)
    if peer == "s3ec":
        return run_child(peers.s3ec_upload_argv(ctx.endpoint, ctx.kms_key_id, path, BUCKET, key), ctx.env, ctx.work)
    raise ValueError(peer)


def _download(ctx: Context, peer: str, key: str, dest: Path) -> ChildResult:
    common = {"endpoint": ctx.endpoint, "bucket": BUCKET, "key": key, "dest": dest}
    if peer in ("boto3", "boto3-get"):
        op = "boto3-download" if peer == "boto3" else "boto3-get"
        return run_child(peers.child_argv(op, common), ctx.env, ctx.work)
    if peer == "kommunmoln":
        args = {**common, "key_file": ctx.key_file, **ctx.tuning()}
        return run_child(peers.child_argv("kommunmoln-download", args), ctx.env, ctx.work)
    if peer == "rclone-crypt":
        assert ctx.rclone_env is not None
        argv = peers.rclone_download_argv(key, dest)
        return run_child(argv, ctx.rclone_env, ctx.work, timed_inside=False, startup_cpu_seconds=ctx.rclone_startup_cpu)
    if peer == "s3ec":
        return run_child(peers.s3ec_download_argv(ctx.endpoint, ctx.kms_key_id, BUCKET, key, dest), ctx.env, ctx.work)
    raise ValueError(peer)


def transfers(base: Context, transfer_peers: list[str], do_upload: bool, do_download: bool) -> None:
    """Every peer on every endpoint, interleaved: run r of all of them before run r + 1 of any."""
    for size_mib in base.args.sizes:
        size = size_mib * MIB
        source = make_file(base.work / f"plain-{size_mib}", size)
        digest = sha256(source)
        for run in range(base.args.runs):
            for endpoint in base.endpoints:
                ctx = base.at(endpoint)
                _transfer_run(ctx, transfer_peers, run, size_mib, source, digest, do_upload, do_download)
        source.unlink()


def _transfer_run(
    ctx: Context, transfer_peers: list[str], run: int, size_mib: int, source: Path, digest: str,
    do_upload: bool, do_download: bool,
) -> None:  # fmt: skip
    size = size_mib * MIB
    order = transfer_peers[run % len(transfer_peers) :] + transfer_peers[: run % len(transfer_peers)]
    for peer in order:
        key = f"{peer}-{size_mib}-{run}"
        result = attempt(ctx, f"upload {size_mib} MiB {peer}", _upload, ctx, peer, source, key)
        if result is None:
            empty_bucket(ctx.endpoint)
            continue
        if do_upload:
            ctx.record(ctx.measurement(UPLOAD, peer, size, endpoint=ctx.where), result)
        log(f"upload   {size_mib} MiB {peer:<13} {ctx.where:<10} run {run + 1}: {_show(result)}")
        if do_download:
            downloaders = [peer, "boto3-get"] if peer == "boto3" else [peer]
            for downloader in downloaders:
                dest = ctx.work / f"dest-{downloader}"
                result = attempt(ctx, f"download {size_mib} MiB {downloader}", _download, ctx, downloader, key, dest)
                if result is None:
                    dest.unlink(missing_ok=True)
                    continue
                ctx.record(ctx.measurement(DOWNLOAD, downloader, size, endpoint=ctx.where), result)
                log(f"download {size_mib} MiB {downloader:<13} {ctx.where:<10} run {run + 1}: {_show(result)}")
                if run == 0 and sha256(dest) != digest:
                    raise RuntimeError(f"{downloader}: the downloaded file differs from the uploaded one")
                dest.unlink()
        empty_bucket(ctx.endpoint)


def _show(result: ChildResult) -> str:
    cpu = f", CPU {result.cpu_seconds:5.2f} s" if result.cpu_seconds is not None else ""
    return f"{result.seconds:6.2f} s{cpu}, {result.max_rss_kib / 1024:.0f} MiB RSS"


def encrypt_only(ctx: Context) -> None:
    memory_ops = (
        (AES_REFERENCE, "aes-gcm-reference"),
        ("kommunmoln", "kommunmoln-encrypt-memory"),
        ("esdk-default", "esdk-default-encrypt-memory"),
    )
    for size_mib in ctx.args.sizes:
        size = size_mib * MIB
        source = make_file(ctx.work / f"plain-{size_mib}", size)
        for run in range(ctx.args.runs):
            for peer, op in memory_ops:
                args = {"source": source, "key_file": ctx.key_file}
                argv = peers.child_argv(op, args)
                result = attempt(ctx, f"encrypt to memory {size_mib} MiB {peer}", run_child, argv, ctx.env, ctx.work)
                if result is not None:
                    ctx.record(ctx.measurement(ENCRYPT_MEMORY, peer, size), result)
                    log(f"encrypt to memory {size_mib} MiB {peer:<13} run {run + 1}: {_show(result)}")
            for peer, op in (("kommunmoln", "kommunmoln-encrypt"), ("esdk-default", "esdk-default-encrypt")):
                dest = ctx.work / f"enc-{peer}"
                args = {"source": source, "dest": dest, "key_file": ctx.key_file}
                result = attempt(
                    ctx, f"encrypt {size_mib} MiB {peer}", run_child, peers.child_argv(op, args), ctx.env, ctx.work
                )
                dest.unlink(missing_ok=True)
                if result is None:
                    continue
                ctx.record(ctx.measurement(ENCRYPT, peer, size), result)
                log(f"encrypt  {size_mib} MiB {peer:<13} run {run + 1}: {result.seconds:6.2f} s")
            limit = peers.openssl_aes_gcm()
            ctx.results.openssl_bytes_per_s.append(limit)
            log(f"openssl aes-256-gcm 16 KiB blocks: {limit / MIB:.0f} MiB/s")
        source.unlink()


def memory(ctx: Context) -> None:
    for size_mib in ctx.args.memory_sizes:
        size = size_mib * MIB
        source = make_file(ctx.work / f"plain-{size_mib}", size)
        key = f"memory-{size_mib}"
        result = attempt(ctx, f"memory upload {size_mib} MiB", _upload, ctx, "kommunmoln", source, key)
        source.unlink()  # room for the download
        if result is None:
            continue
        ctx.record(ctx.measurement(MEMORY_UPLOAD, "kommunmoln", size), result)
        log(f"memory upload   {size_mib} MiB: {result.max_rss_kib / 1024:.0f} MiB RSS, {result.seconds:.1f} s")
        dest = ctx.work / "memory-dest"
        result = attempt(ctx, f"memory download {size_mib} MiB", _download, ctx, "kommunmoln", key, dest)
        dest.unlink(missing_ok=True)
        empty_bucket(ctx.endpoint)
        if result is None:
            continue
        ctx.record(ctx.measurement(MEMORY_DOWNLOAD, "kommunmoln", size), result)
        log(f"memory download {size_mib} MiB: {result.max_rss_kib / 1024:.0f} MiB RSS, {result.seconds:.1f} s")


def name_hiding(ctx: Context) -> None:
    """Encrypted names (bench/names.py): mapping both ways, and the no-change re-run on moto."""
    from bench import names as name_bench

    mapping = name_bench.bench_mapping(10_000 if ctx.args.quick else 100_000)
    rerun = name_bench.bench_rerun(1_000 if ctx.args.quick else 10_000, ctx.work / "names", ctx.moto)
    ctx.results.notes.append(name_bench.summary(mapping, rerun))
    log(name_bench.summary(mapping, rerun))


def validator(ctx: Context) -> None:
    from kommunmoln import names
    from kommunmoln.config import DEFAULTS
    from kommunmoln.tier_a.keys import load_key_file
    from lambdas.tier_a_validator.logic import Settings, check_object

    settings = Settings(
        allowed_namespaces=(load_key_file(ctx.key_file).namespace,),
        required_context_keys=names.REQUIRED_CONTEXT_KEYS,
        header_read_bytes=int(DEFAULTS["tier_a_header_read_bytes"]),
        alarm_topic_arn="arn:aws:sns:eu-north-1:123456789012:kommunmoln-bench",
    )
    ctx = dataclasses.replace(ctx, endpoint=ctx.moto, where=MOTO)  # one ranged GET: moto is fine
    s3 = _s3(ctx.endpoint)
    for size in ctx.args.validator_sizes:
        source = make_file(ctx.work / "validator-plain", size)
        key = f"validator-{size}"
        _upload(ctx, "kommunmoln", source, key)
        source.unlink()
        timings, outcome = [], None
        for _ in range(max(5, ctx.args.runs)):
            started = time.perf_counter()
            outcome = check_object(s3, bucket=BUCKET, key=key, version_id=None, settings=settings)
            timings.append(time.perf_counter() - started)
        assert outcome is not None
        ctx.results.validator.append(ValidatorResult(size, outcome.bytes_read, tuple(timings), outcome.status))
        log(
            f"validator {size} B: read {outcome.bytes_read} B, {statistics.median(timings) * 1000:.1f} ms, {outcome.status}"
        )
    empty_bucket(ctx.endpoint)


def synthesis(ctx: Context) -> None:
    for run in range(ctx.args.runs):
        with tempfile.TemporaryDirectory(dir=ctx.work) as outdir:
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "stacks.summary", "--outdir", outdir],
                cwd=REPO_ROOT,
                env={**ctx.env, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
                check=True,
                capture_output=True,
            )
            seconds = time.perf_counter() - started
        ctx.results.synthesis_seconds.append(seconds)
        log(f"synthesis run {run + 1}: {seconds:.1f} s")


# --- profile ---------------------------------------------------------------------------------------
def profile(ctx: Context) -> None:
    """py-spy over our upload and download on each fast endpoint: bench/profiling.py."""
    pyspy = Path(sys.executable).with_name("py-spy")
    size_mib = ctx.args.profile_size
    source = make_file(ctx.work / "profile-plain", size_mib * MIB)
    fast = [e for e in ctx.endpoints if e.name != MOTO] or ctx.endpoints[:1]
    for endpoint in fast:
        common = {
            "endpoint": endpoint.url,
            "bucket": BUCKET,
            "key": "profile",
            "key_file": ctx.key_file,
            **ctx.tuning(),
        }
        ops = [
            ("kommunmoln-upload", f"encrypt+upload, {endpoint.name}", {**common, "path": source}),
            ("kommunmoln-download", f"download+decrypt, {endpoint.name}", {**common, "dest": ctx.work / "p"}),
        ]
        for op, operation, args in ops:
            summary = profiling.record(pyspy, peers.child_argv(op, args), env=endpoint.env, cwd=REPO_ROOT,
                                       raw=ctx.work / "profile.txt", operation=operation, size_bytes=size_mib * MIB)  # fmt: skip
            if isinstance(summary, str):
                ctx.results.skipped[f"profile {operation}"] = summary
                continue
            ctx.results.profiles.append(summary)
            log(f"profile {operation}: stages {dict(summary.by_stage)}")
        (ctx.work / "p").unlink(missing_ok=True)
        empty_bucket(endpoint.url)
    source.unlink()


def sweep(ctx: Context) -> None:
    """Our upload with other part sizes and concurrency (transfer settings the client exposes), and
    without the manifest digest (as `kommunmoln rotate` uploads): what the SHA-256 of the plaintext costs;
    then, on each fast endpoint, our download with several numbers of GETs in flight."""
    size_mib = ctx.args.profile_size
    source = make_file(ctx.work / "sweep-plain", size_mib * MIB)
    variants = [(16, 4, True), (8, 4, True), (32, 4, True), (16, 2, True), (16, 8, True), (8, 10, True), (8, 8, True),
                (8, 8, False)]  # fmt: skip
    common = {"endpoint": ctx.endpoint, "bucket": BUCKET, "key": "sweep", "path": source, "key_file": ctx.key_file}

    def measure(op: str, args: dict, variant: str) -> float:
        result = run_child(peers.child_argv(op, args), ctx.env, ctx.work)
        ctx.record(ctx.measurement(SWEEP, "upload", size_mib * MIB, variant=variant, endpoint=ctx.where), result)
        empty_bucket(ctx.endpoint)
        return result.seconds

    for _ in range(ctx.args.runs):
        for part, concurrency, digest in variants:
            variant = f"part {part} MiB x {concurrency} in flight" + ("" if digest else ", no manifest digest")
            args = {**common, "part_size_mib": part, "concurrency": concurrency, "digest": digest}
            log(f"sweep {variant}: {measure('kommunmoln-upload', args, variant):.2f} s")
        measure("boto3-upload", common, "plain boto3 (reference)")
    for endpoint in [e for e in ctx.endpoints if e.name != MOTO]:
        _download_streams_sweep(ctx.at(endpoint), source, size_mib)
    source.unlink()


DOWNLOAD_STREAMS = (1, 2, 3, 5)  # GETs in flight (TransferSettings.download_streams); 5 = the 2-core default
DOWNLOAD_REFERENCES = (("boto3-get", "get_object, one stream (reference)"),
                       ("boto3-download", "boto3 download_file (reference)"))  # fmt: skip


def _download_streams_sweep(ctx: Context, source: Path, size_mib: int) -> None:
    """Our download with 1, 2, 3 and 5 GETs in flight, interleaved with the two plain references
    (one `get_object` stream and `download_file`), on one fast endpoint."""
    common = {"endpoint": ctx.endpoint, "bucket": BUCKET, "key_file": ctx.key_file, **ctx.tuning()}
    run_child(peers.child_argv("kommunmoln-upload", {**common, "key": "sweep-enc", "path": source}), ctx.env, ctx.work)
    run_child(peers.child_argv("boto3-upload", {**common, "key": "sweep-plain", "path": source}), ctx.env, ctx.work)
    dest = ctx.work / "sweep-dest"
    runs = [(f"{n} download stream{'s' if n > 1 else ''}", "kommunmoln-download",
             {**common, "key": "sweep-enc", "download_streams": n}) for n in DOWNLOAD_STREAMS]  # fmt: skip
    runs += [(variant, op, {**common, "key": "sweep-plain"}) for op, variant in DOWNLOAD_REFERENCES]
    for _ in range(ctx.args.runs):
        for variant, op, args in runs:
            result = run_child(peers.child_argv(op, {**args, "dest": dest}), ctx.env, ctx.work)
            dest.unlink(missing_ok=True)
            ctx.record(ctx.measurement(SWEEP, "download", size_mib * MIB, variant=variant, endpoint=ctx.where), result)
            log(f"sweep download {ctx.where} {variant}: {result.seconds:.2f} s")
    empty_bucket(ctx.endpoint)


# --- main -------------------------------------------------------------------------------------------
def _mib_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="development: 32 MiB, 1 run, small memory sizes")
    parser.add_argument("--sizes", type=_mib_list, default=None, help="transfer/encrypt sizes in MiB (256,1024)")
    parser.add_argument("--memory-sizes", type=_mib_list, default=None, help="memory sizes in MiB (1024,4096)")
    parser.add_argument("--runs", type=int, default=None, help="runs per measurement (3; median reported)")
    parser.add_argument("--only", default=",".join(DEFAULT_SECTIONS), help=f"sections: {','.join(SECTIONS)}")
    parser.add_argument("--peers", default=",".join(TRANSFER_PEERS), help="transfer peers")
    parser.add_argument(
        "--endpoints",
        default=",".join(ENDPOINTS),
        help=f"S3 endpoints, the first also for memory/profile/sweep: {','.join(ENDPOINTS)}",
    )
    parser.add_argument("--profile-size", type=int, default=None, help="MiB for the profile and sweep (256)")
    parser.add_argument("--part-size-mib", type=int, default=None, help="our client's part size (client default)")
    parser.add_argument("--concurrency", type=int, default=None, help="our client's parts in flight (client default)")
    parser.add_argument("--rclone-concurrency", type=int, default=4, help="rclone --s3-upload-concurrency (4)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()), help="where test files go")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--chart", type=Path, default=REPO_ROOT / "docs" / "benchmarks.png")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([32] if quick else [256, 1024])
    args.memory_sizes = args.memory_sizes or ([64, 256] if quick else [1024, 4096])
    args.runs = args.runs or (1 if quick else 3)
    args.profile_size = args.profile_size or (32 if quick else 256)
    args.validator_sizes = [MIB, (32 if quick else 1024) * MIB]
    args.sections = [s for s in args.only.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    args.peer_list = [p for p in args.peers.split(",") if p]
    args.endpoint_list = [e for e in args.endpoints.split(",") if e]
    if not args.endpoint_list or set(args.endpoint_list) - set(ENDPOINTS):
        parser.error(f"--endpoints must name some of {', '.join(ENDPOINTS)}")
    return args


def _free_disk_check(work: Path, args: argparse.Namespace) -> None:
    needed = 3 * max([*args.sizes, *args.memory_sizes]) * MIB  # file + moto's copy + download
    free = shutil.disk_usage(work).free
    if free < needed:
        raise SystemExit(f"{work} has {free / 2**30:.1f} GiB free; the benchmark needs about {needed / 2**30:.1f} GiB")


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: stop moto, remove the work dir


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = parse_args(argv)
    command = "python -m bench.run" + (" " + shlex.join(argv if argv is not None else sys.argv[1:])).rstrip()
    unavailable = ensure_dependencies()
    results = BenchResults(
        date=_dt.date.today().isoformat(),
        commands=["make bench", command.rstrip()],
        machine=machine_facts(),
        runs=args.runs,
    )
    for peer, reason in unavailable.items():
        results.skipped[peer] = reason
    transfer_peers = [p for p in args.peer_list if p not in unavailable]
    args.workdir.mkdir(parents=True, exist_ok=True)
    _free_disk_check(args.workdir, args)
    with tempfile.TemporaryDirectory(prefix="kommunmoln-bench-", dir=args.workdir) as tmp, ExitStack() as stack:
        work = Path(tmp)
        moto = stack.enter_context(moto_server(work))
        log(f"moto server {moto}; work dir {work}")
        os.environ.update({k: v for k, v in peers.FAKE_CREDENTIALS.items()})
        import boto3

        kms = boto3.client("kms", endpoint_url=moto, region_name=peers.REGION)
        kms_key_id = kms.create_key(Description="bench: S3 Encryption Client peer")["KeyMetadata"]["Arn"]
        key_file = work / "bench.key.json"
        peers.write_key(key_file)
        endpoints = [_endpoint(stack, work, name, moto, transfer_peers) for name in args.endpoint_list]
        first = endpoints[0]
        ctx = Context(
            args, first.url, work, key_file, kms_key_id, results, first.env, first.rclone_env,
            endpoints=endpoints, moto=moto, where=first.name,
        )  # fmt: skip
        if "rclone-crypt" in transfer_peers:
            ctx.rclone_startup_cpu = startup_cpu([peers.rclone_binary(), "version"], os.environ.copy())
        results.settings = {
            "boto3": "`upload_file`/`download_file`, default TransferConfig (8 MiB parts, 10 threads)",
            "boto3-get": "one `get_object` streamed to the file in 1 MiB reads (same object as plain boto3)",
            "kommunmoln": "client defaults"
            + (f", part size {args.part_size_mib} MiB" if args.part_size_mib else "")
            + (f", concurrency {args.concurrency}" if args.concurrency else ""),
            "rclone-crypt": f"`rclone copyto`, crypt over an S3 remote, `--s3-upload-concurrency={args.rclone_concurrency}`, other flags default",
            "s3ec": "`upload_file` (8 MiB parts, sequential) and `get_object` streamed to a file in 1 MiB reads; KMS keyring on moto's KMS (also when S3 is the fast endpoint)",
            "esdk-default": "`EncryptionSDKClient().stream(mode='e')`, default suite and frame, raw AES key, 1 MiB reads",
        }
        sections = args.sections
        steps: list[tuple[str, Callable[[], None]]] = []
        if "upload" in sections or "download" in sections:
            steps.append(
                ("transfers", lambda: transfers(ctx, transfer_peers, "upload" in sections, "download" in sections))
            )
        steps += [
            (name, function)
            for name, function in (
                ("encrypt", lambda: encrypt_only(ctx)),
                ("memory", lambda: memory(ctx)),
                ("validator", lambda: validator(ctx)),
                ("names", lambda: name_hiding(ctx)),
                ("profile", lambda: profile(ctx)),
                ("sweep", lambda: sweep(ctx)),
                (
                    "small-files",
                    lambda: ctx.results.notes.extend(
                        small_files.bench_step(
                            ctx.endpoint,
                            ctx.work,
                            ctx.key_file,
                            quick=ctx.args.quick,
                            out=ctx.args.out.with_name("BENCHMARKS-small-files.md"),
                        )
                    ),
                ),  # bench/small_files.py (issue 13)
            )
            if name in sections
        ]
        for name, function in steps:
            _run_step(name, function, results, args)
        stack.close()  # stop the endpoints before synthesis
        if "synth" in sections:
            _run_step("synth", lambda: synthesis(ctx), results, args)
        if "xks" in sections:  # tier C proxy bench, its own module and record (docs/BENCHMARKS-xks.md)
            from bench import xks

            def xks_step() -> None:
                if xks.main(["--quick"] if args.quick else []) != 0:  # a broken run writes no doc
                    raise RuntimeError("the XKS bench failed (see its output); docs/BENCHMARKS-xks.md not written")

            _run_step("xks", xks_step, results, args)
    results.machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results.notes += [
        "Two kinds of endpoint, both on loopback and both sharing the 2 cores with the client. The fast "
        "local endpoint (bench/fast_s3.py) does the least an S3 server can (no signature or checksum "
        "checks, bodies to page-cache files, GETs by sendfile; over HTTPS it pays for TLS); it is for "
        "throughput only and never for correctness. moto is CPU-bound in its Python request handling and "
        "bounds every peer there. Ratios are meaningful, absolute MiB/s are not S3's.",
        "Client CPU-seconds per GiB: getrusage of the child process around the operation (all threads, "
        "user + sys); for rclone, wait4's figure less the median CPU of `rclone version` (its start-up).",
        "Python peers are timed inside their child process (interpreter start and imports excluded); "
        "rclone is timed from outside (its process start, ~50 ms, included). Peak RSS is the child's VmHWM "
        "(reported by Python children, polled every 20 ms for rclone).",
        "The machine is shared with other work; the load average above shows how busy it was. Each "
        "measured child starts after `os.sync()`, so no peer pays for the writeback of the one before. "
        "The machine is a virtual machine whose host takes back idle memory: writing 1 GiB into the page "
        "cache cost 1.87 s of system CPU when its pages were touched for the first time and 0.21 s when "
        "they were reused (measured with pwrite on this machine), which is most of the spread between "
        "the runs of one peer in the tables above.",
        "moto answers every GET, ranged or not, by copying the whole object "
        "(`FakeKey.value` reads the full buffer, then slices). boto3 `download_file` fetches 8 MiB ranges, so "
        "against moto it costs O(size) per range; the single-stream `get_object` row is the like-for-like "
        "plain download for a streaming decryptor. The same effect makes the validator's ranged GET slower on "
        "larger objects here although it reads the same number of bytes; on S3 a range costs what it returns.",
    ]
    end_fingerprint = client_fingerprint()
    if end_fingerprint != results.machine["client code measured"]:
        results.notes.append(
            f"The client code changed during the run (sha256 {results.machine['client code measured']} at the "
            f"start, {end_fingerprint} at the end): another engineer was editing it."
        )
    write_outputs(results, args)
    log(f"wrote {args.out} and {args.chart}")
    return 0


def _endpoint(stack: ExitStack, work: Path, name: str, moto: str, transfer_peers: list[str]) -> Endpoint:
    """Start (or reuse, for moto) one endpoint, create the bucket there, and say how clients reach it."""
    env = {**child_env(), "KMS_ENDPOINT_URL": moto}
    url, ca_bundle = moto, None
    if name != MOTO:
        url, ca_bundle = stack.enter_context(fast_endpoint(work, tls=name == FAST_HTTPS))
        log(f"fast endpoint {url}")
    if ca_bundle:
        env["AWS_CA_BUNDLE"] = str(ca_bundle)
        os.environ["AWS_CA_BUNDLE"] = str(ca_bundle)  # this process empties the bucket between runs
    _s3(url).create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": peers.REGION})
    rclone = None
    if "rclone-crypt" in transfer_peers:
        rclone = peers.rclone_env(url, BUCKET, RCLONE_PASSWORD)
        if ca_bundle:
            rclone["RCLONE_CA_CERT"] = str(ca_bundle)  # rclone refuses AWS_CA_BUNDLE
    return Endpoint(name, url, env, rclone)


def write_outputs(results: BenchResults, args: argparse.Namespace) -> None:
    """docs/BENCHMARKS.md and the chart; README.md's targets block too when the run writes the docs' file."""
    args.out.write_text(render_markdown(results) + "\n")
    render_chart(results, args.chart)
    if args.out.resolve() == (REPO_ROOT / "docs" / "BENCHMARKS.md").resolve():
        update_readme(REPO_ROOT / "README.md", results)


def _run_step(name: str, function: Callable[[], None], results: BenchResults, args: argparse.Namespace) -> None:
    """One section; a failure is recorded and the others still run. Results are written after each."""
    try:
        function()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        reason = str(error).strip().splitlines()[-1][:300] if str(error).strip() else type(error).__name__
        log(f"section {name} failed: {reason}")
        results.skipped[name] = f"failed: {reason}"
    write_outputs(results, args)


def client_fingerprint() -> str:
    """sha256 (first 12 hex digits) over the client modules the benchmark runs, to tie numbers to code."""
    digest = hashlib.sha256()
    for name in CLIENT_MODULES:
        path = REPO_ROOT / "kommunmoln" / "tier_a" / name
        if path.exists():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


if __name__ == "__main__":
    sys.exit(main())
