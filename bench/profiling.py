"""Where our client's CPU time goes: py-spy over one upload and one download (bench.run's `profile`).

py-spy samples every thread of the child process (`--threads`, idle threads left out) and
writes collapsed stacks (`--format raw`); `parse_pyspy_raw` counts them by stage (the first
matching rule over the whole stack), by thread and by innermost function (own time, with
the line for this project's code, where one line is one operation: a read, a write, a
cipher call). Interpreter start and imports, and samples with no Python frame (the
interpreter exiting after the operation), are counted apart.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.report import ProfileSummary

STARTUP = "interpreter start and imports"
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (STARTUP, ("<frozen importlib",)),
    ("ESDK (header, data key, key derivation; whole messages with the ESDK engine)", ("aws_encryption_sdk/",)),
    ("request checksum (CRC32)", ("httpchecksum", "crc32", "checksum")),
    ("SigV4 signing (payload hash over HTTP)", ("botocore/auth.py",)),
    ("HTTP send/receive (sockets, TLS)", ("urllib3/", "http/client.py", "socket.py", "ssl.py")),
    ("reading the file, and its SHA-256 for the manifest", ("_fill_plain", "_Counting")),
    ("frame encryption (AES-GCM into the part)", ("FrameEncryptor",)),
    ("frame decryption (AES-GCM, frame checks)", ("FrameDecryptor",)),
    ("writing the file (pwrite into the page cache)", ("_decrypt_run",)),
    ("part buffers (ciphertext cut into parts)", ("_PartReader",)),
    ("waiting for parts or ranges (thread pool, locks; py-spy counts some waits as busy)",
     ("concurrent/futures", "threading.py")),
    ("client set-up (botocore models, key file)", ("_our_client", "_keyring", "botocore/loaders.py")),
    ("other botocore", ("botocore/",)),
)  # fmt: skip
_OURS = "kommunmoln/"


@dataclass(frozen=True)
class PySpyProfile:
    own: Counter[str]  # own samples per function (start-up excluded)
    threads: Counter[str]  # samples per thread name (start-up excluded)
    stages: Counter[str]  # samples per stage (start-up excluded)
    total: int  # samples, start-up excluded
    startup: int  # samples in interpreter start and imports, or with no Python frame (exit)


def _own_name(frame: str) -> str:
    """The innermost frame: with its line for this project's code, without for libraries."""
    return frame if _OURS in frame else re.sub(r":\d+\)$", ")", frame)


def parse_pyspy_raw(text: str) -> PySpyProfile:
    """py-spy `--format raw --threads` output, summarized; imports are counted apart."""
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    names: dict[str, str] = {}
    rows = []
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        first, *frames = stack.split(";")
        tid, _, name = first.partition(": ")
        if name:
            names[tid] = name
        rows.append((tid, frames, int(count_text)))
    total = startup = 0
    for tid, frames, count in rows:
        if not frames:  # no Python frame: the interpreter exiting after the operation (freeing memory)
            startup += count
            continue
        joined = ";".join(frames)
        stage = next((label for label, needles in STAGES if any(n in joined for n in needles)), "other")
        if stage == STARTUP:
            startup += count
            continue
        total += count
        stages[stage] += count
        threads[re.sub(r"_\d+$", "", names.get(tid, tid))] += count
        if frames:
            own[_own_name(frames[-1])] += count
    return PySpyProfile(own, threads, stages, total, startup)


def record(
    pyspy: Path, child_argv: Sequence[str], *, env: dict[str, str], cwd: Path, raw: Path, operation: str,
    size_bytes: int, rate: int = 100,
) -> ProfileSummary | str:  # fmt: skip
    """Run `child_argv` under py-spy; its summary, or why it could not be profiled."""
    import time

    argv = [str(pyspy), "record", "-r", str(rate), "--threads", "-f", "raw", "-o", str(raw), "--", *child_argv]
    started = time.perf_counter()
    completed = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode != 0 or not raw.exists():
        return f"py-spy failed: {completed.stderr.strip()[-300:]}"
    summary = parse_pyspy_raw(raw.read_text())
    total = max(1, summary.total)
    return ProfileSummary(
        tool=f"py-spy {rate} Hz, all threads, idle excluded, {summary.startup / rate:.1f} CPU s of start-up, "
        "imports and exit left out",
        size_bytes=size_bytes,
        wall_seconds=wall,
        top_functions=tuple((name, n / total) for name, n in summary.own.most_common(12)),
        by_thread=tuple((name, n / rate) for name, n in summary.threads.most_common()),
        by_stage=tuple((name, n / total) for name, n in summary.stages.most_common()),
        operation=operation,
    )
