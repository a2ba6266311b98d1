"""Tier C bench: latency of the XKS proxy's encrypt and decrypt against SoftHSM2 at fixed offered rates.

    python -m bench.xks                  # rates 100-1800 req/s (7 rungs), 10 s each, HTTP and TLS: ~3 min
    python -m bench.xks --quick          # rates 100,400,800, 3 s each, HTTP only
    make bench  (section `xks` of bench.run)

Open-loop load, as KMS offers it: requests are scheduled at fixed intervals (offered rate / client
processes apart, in each process) whether or not earlier answers have come back, and each latency is
measured from the request's *scheduled* send time, so time a request spends queued behind a slow one
counts (no coordinated omission). Half the requests are encrypt (a 32-byte data key, as GenerateDataKey
sends) and half decrypt (of ciphertexts the same client made before the rung), each SigV4-signed by the
client at send time as KMS signs it, over keep-alive HTTP/1.1 connections (KMS reuses connections).

The proxy runs as `python -m usecases.external_key_store serve` on loopback, over plain HTTP (the test
flag) and, in a second pass, over TLS with a self-signed certificate the clients trust (the production
mode). KMS times out at 250 ms and recommends round trips under 35 ms; a rung is *sustained* when the
achieved rate is at least 98 % of the offered rate, p99 of both operations is under 35 ms and no request
failed, was throttled (429) or was still unanswered DRAIN_SECONDS after the last send ("late"). The machine's load average, and the CPU share of the clients and of the proxy,
are recorded per rung, since other work shares the machine.

A run in which more than ERROR_LIMIT of the requests of any rung fail (a broken proxy or bench, not
overload: throttled and late requests are counted apart) exits non-zero and writes no doc.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing
import os
import platform
import resource
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from kommunmoln.tier_c import local, sigv4

TARGET_P99_MS = 35.0
KMS_TIMEOUT_MS = 250.0
SUSTAINED_FRACTION = 0.98
ERROR_LIMIT = 0.01  # more failed requests than this in any rung: the run is broken, no doc is written
RATES = (100, 200, 400, 800, 1000, 1200, 1800)
QUICK_RATES = (100, 400, 800)
CLIENT_PROCESSES = 2
CONNECTIONS_PER_PROCESS = 16  # kept open before the rung starts; more are opened if all are busy
MAX_CONNECTIONS_PER_PROCESS = 64
DRAIN_SECONDS = 3.0  # after the last scheduled send; what has not come back by then counts as failed
REPO_ROOT = Path(__file__).resolve().parent.parent
KEY = "sekretess-s3-data"
META = {
    "awsPrincipalArn": "arn:aws:iam::111122223333:role/kommun-bench",
    "kmsKeyArn": "arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "kmsRequestId": "bench",
    "kmsViaService": "s3",
}
AAD = base64.b64encode(b"bench-context").decode()
OK, THROTTLED = 200, 429
NO_ANSWER = 0  # refused, reset or cut off: a failure
LATE = -1  # sent, but not answered by the end of the drain: overload, like throttling


class BrokenRun(Exception):
    """Too many requests failed: the bench or the proxy is broken; nothing is published."""


# ---- client processes -----------------------------------------------------------------------------
class _Connection:
    """One keep-alive HTTP/1.1 connection: just enough of the protocol for the proxy's JSON answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(head + body)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _body(op: str, sealed: dict | None = None) -> bytes:
    if op == "encrypt":
        body = {"requestMetadata": {**META, "kmsOperation": "GenerateDataKey"}, "encryptionAlgorithm": "AES_GCM",
                "plaintext": base64.b64encode(os.urandom(32)).decode(), "additionalAuthenticatedData": AAD}  # fmt: skip
    else:
        body = {"requestMetadata": {**META, "kmsOperation": "Decrypt"}, "encryptionAlgorithm": "AES_GCM",
                "additionalAuthenticatedData": AAD, **(sealed or {})}  # fmt: skip
    return json.dumps(body).encode()


class _Client:
    def __init__(self, port: int, akid: str, secret: str, cafile: str | None) -> None:
        self.host = f"127.0.0.1:{port}"
        self.port, self.akid, self.secret = port, akid, secret
        self.scheme = "https" if cafile else "http"
        self.ssl = ssl.create_default_context(cafile=cafile) if cafile else None
        self.idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self.open = 0

    async def connect(self) -> _Connection:
        self.open += 1
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", self.port, ssl=self.ssl, server_hostname="127.0.0.1" if self.ssl else None
            )
        except OSError:
            self.open -= 1
            raise
        return _Connection(reader, writer)

    async def send(self, op: str, body: bytes) -> tuple[int, bytes]:
        """Sign and send one request on an idle connection (a new one if none is idle, up to the cap)."""
        if self.idle.empty() and self.open < MAX_CONNECTIONS_PER_PROCESS:
            connection = await self.connect()
        else:
            connection = await self.idle.get()
        path = f"{local.PREFIX}/kms/xks/v1/keys/{KEY}/{op}"
        headers = sigv4.sign(url=f"{self.scheme}://{self.host}{path}", body=body, access_key_id=self.akid,
                             secret_access_key=self.secret, region=local.REGION)  # fmt: skip
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        try:
            answer = await connection.post(head.encode(), body)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            connection.close()
            self.open -= 1
            raise
        self.idle.put_nowait(connection)
        return answer


async def _rung(job: dict) -> dict:
    client = _Client(job["port"], job["akid"], job["secret"], job["cafile"])
    for _ in range(CONNECTIONS_PER_PROCESS):
        client.idle.put_nowait(await client.connect())
    sealed = []
    for _ in range(32):  # ciphertexts to decrypt during the rung, made before it
        status, payload = await client.send("encrypt", _body("encrypt"))
        if status == OK:
            sealed.append(json.loads(payload))
    samples: list[tuple[str, float, int]] = []  # (operation, ms from scheduled send, status)
    last_answer = [0.0]

    async def one(op: str, body: bytes, scheduled: float) -> None:
        try:
            status, _ = await client.send(op, body)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            status = NO_ANSWER
        now = time.perf_counter()
        samples.append((op, (now - scheduled) * 1000, status))
        if status == OK:
            last_answer[0] = max(last_answer[0], now)

    interval = 1.0 / job["rate"]
    count = int(job["rate"] * job["seconds"])
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(max(0.0, job["start_at"] - time.time()))
    zero = time.perf_counter()
    start = zero + job["offset"] * interval
    tasks = []
    for i in range(count):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        op = "encrypt" if i % 2 == 0 or not sealed else "decrypt"
        body = _body(op) if op == "encrypt" else _body(op, sealed[i % len(sealed)])
        tasks.append(asyncio.ensure_future(one(op, body, scheduled)))
    _done, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    samples += [("pending", DRAIN_SECONDS * 1000, LATE)] * len(pending)
    elapsed = last_answer[0] - zero  # to the last answer: a proxy that falls behind stretches it
    while not client.idle.empty():
        client.idle.get_nowait().close()
    return {
        "samples": samples,
        "elapsed": max(elapsed, job["seconds"]),
        "cpu": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
    }


def _client_process(job: dict) -> dict:
    """One client process, one rung: `job["rate"]` requests/s for `job["seconds"]`."""
    return asyncio.run(_rung(job))


# ---- summary (pure: tested with made-up samples) ----------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(offered: float, seconds: float, samples: list[tuple[str, float, int]]) -> dict:
    """One rung's row from its samples (operation, ms from the scheduled send, HTTP status or 0)."""
    ok = [s for s in samples if s[2] == OK]
    row: dict = {
        "offered": offered,
        "achieved": round(len(ok) / seconds, 1) if seconds else 0.0,
        "requests": len(samples),
        "errors": sum(1 for s in samples if s[2] not in (OK, THROTTLED, LATE)),
        "throttled": sum(1 for s in samples if s[2] == THROTTLED),
        "late": sum(1 for s in samples if s[2] == LATE),
        "over_kms_timeout": sum(1 for s in samples if s[2] in (OK, LATE) and s[1] > KMS_TIMEOUT_MS),
        "error_statuses": sorted({s[2] for s in samples if s[2] not in (OK, THROTTLED, LATE)}),
    }
    for op in ("encrypt", "decrypt"):
        ms = [s[1] for s in ok if s[0] == op]
        row[op] = {"p50": round(statistics.median(ms), 2), "p99": round(percentile(ms, 0.99), 2)} if ms else {}
    row["sustained"] = sustained(row)
    return row


def sustained(row: dict) -> bool:
    """Achieved >= 98 % of offered, p99 < 35 ms for both operations, nothing failed or throttled."""
    return (
        row["achieved"] >= SUSTAINED_FRACTION * row["offered"]
        and row["errors"] == 0
        and row["throttled"] == 0
        and row["late"] == 0
        and all(row[op] and row[op]["p99"] < TARGET_P99_MS for op in ("encrypt", "decrypt"))
    )


def check_not_broken(rows: list[dict], limit: float = ERROR_LIMIT) -> None:
    """Raise BrokenRun if any rung has no requests or more than `limit` of its requests failed."""
    for row in rows:
        if row["requests"] == 0 or row["errors"] > limit * row["requests"]:
            raise BrokenRun(
                f"{row.get('mode', '')} {row['offered']} req/s: {row['errors']} of {row['requests']} requests failed "
                f"(statuses {row['error_statuses']}; 0 = no answer); the proxy or the bench is broken"
            )


def highest_sustained(rows: list[dict]) -> dict | None:
    ok = [r for r in rows if r["sustained"]]
    return max(ok, key=lambda r: r["offered"]) if ok else None


# ---- driver --------------------------------------------------------------------------------------------
def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_mode(setup: local.LocalSetup, mode: str, rates: list[int], seconds: float, workers) -> list[dict]:
    """Every rung of the ladder against a running proxy; `workers` is the pool of client processes."""
    akid, secret = setup.credentials[0]
    cafile = str(setup.ca_file) if mode == "tls" else None
    rows = []
    with local.running_proxy(setup) as proxy:
        base = {"port": setup.port, "akid": akid, "secret": secret, "cafile": cafile}
        warm = [{**base, "rate": 100, "seconds": 1.0, "start_at": 0, "offset": 0}] * CLIENT_PROCESSES
        workers.map(_client_process, warm)
        for rate in rates:
            load_before = os.getloadavg()[0]
            proxy_cpu = _proc_cpu_seconds(proxy.pid)
            start_at = time.time() + 0.3
            jobs = [{**base, "rate": rate / CLIENT_PROCESSES, "seconds": seconds, "start_at": start_at,
                     "offset": i / CLIENT_PROCESSES} for i in range(CLIENT_PROCESSES)]  # fmt: skip
            parts = workers.map(_client_process, jobs)
            wall = max(p["elapsed"] for p in parts)
            row = summarise(rate, wall, [s for p in parts for s in p["samples"]])
            row.update(
                mode=mode,
                load_average=round((load_before + os.getloadavg()[0]) / 2, 2),
                client_cpu_share=round(sum(p["cpu"] for p in parts) / (wall * os.cpu_count()), 3),
                proxy_cpu_share=round((_proc_cpu_seconds(proxy.pid) - proxy_cpu) / (wall * os.cpu_count()), 3),
            )
            rows.append(row)
            print(f"[xks bench] {mode:4} {rate:5d} req/s offered, {row['achieved']:7.1f} achieved, encrypt "
                  f"{row['encrypt']}, decrypt {row['decrypt']}, errors {row['errors']}, throttled {row['throttled']}, "
                  f"load {row['load_average']}, CPU clients {row['client_cpu_share']:.0%} proxy "
                  f"{row['proxy_cpu_share']:.0%}", flush=True)  # fmt: skip
    return rows


def proxy_fingerprint() -> str:
    """sha256 (first 12 hex digits) over the proxy's modules, to tie a record to the code it measured."""
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "kommunmoln" / "tier_c").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def measure(rates: list[int], seconds: float, pool_size: int, modes: list[str]) -> dict:
    """Run the proxy in each mode and every rung; returns the results as a dict (raises BrokenRun)."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="kommunmoln-xks-bench-") as tmp:
        setup = local.make_setup(Path(tmp), pool_size=pool_size)
        with multiprocessing.get_context("spawn").Pool(CLIENT_PROCESSES) as workers:
            for mode in modes:
                if mode == "tls":
                    local.use_tls(setup)
                rows += measure_mode(setup, mode, rates, seconds, workers)
                check_not_broken(rows)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "seconds_per_rate": seconds,
        "session_pool_size": pool_size,
        "proxy_code": proxy_fingerprint(),
        "client_processes": CLIENT_PROCESSES,
        "rows": rows,
        "sustained": {mode: highest_sustained([r for r in rows if r["mode"] == mode]) for mode in modes},
    }


def render(result: dict) -> str:
    lines = [
        "# Tier C: XKS proxy bench (`python -m bench.xks`)",
        "",
        f"{result['date']}; {result['machine']}; proxy session pool {result['session_pool_size']}, code "
        f"{result.get('proxy_code', '?')} (sha256 of kommunmoln/tier_c/*.py); "
        f"{result['seconds_per_rate']} s per rate; {result['client_processes']} client processes. SoftHSM2 token, "
        "loopback. Open loop: requests sent at fixed intervals, half encrypt (32-byte data key) and half decrypt, "
        "each SigV4-signed by the client at send time, over keep-alive connections; latency from the scheduled "
        "send time (queueing included); `> 250 ms`: answers KMS would have timed out, late ones included; `late`: "
        f"not answered {DRAIN_SECONDS:.0f} s after the last send (overload). `tls`: TLS 1.2+ with a self-signed certificate the clients trust. The "
        "machine is shared with other work and the clients run on it too: see the load average and the CPU "
        "shares (of all cores) per row.",
        "",
        "| mode | offered req/s | achieved req/s | encrypt p50 ms | encrypt p99 ms | decrypt p50 ms | decrypt p99 ms "
        "| > 250 ms | errors | throttled | late | load avg | CPU clients | CPU proxy | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        e, d = r["encrypt"] or {"p50": "-", "p99": "-"}, r["decrypt"] or {"p50": "-", "p99": "-"}
        lines.append(
            f"| {r['mode']} | {r['offered']} | {r['achieved']} | {e['p50']} | {e['p99']} | {d['p50']} | {d['p99']} "
            f"| {r['over_kms_timeout']} | {r['errors']} | {r['throttled']} | {r['late']} | {r['load_average']} "
            f"| {r['client_cpu_share']:.0%} | {r['proxy_cpu_share']:.0%} | {'yes' if r['sustained'] else 'no'} |"
        )
    lines += ["", f"Highest sustained rate (achieved >= {SUSTAINED_FRACTION:.0%} of offered, p99 < "
              f"{TARGET_P99_MS:.0f} ms for both operations, nothing failed, throttled or late):"]  # fmt: skip
    for mode, s in result["sustained"].items():
        lines.append(
            f"- {mode}: "
            + (f"**{s['offered']} requests/s** (load average {s['load_average']})" if s else "none of the rates")
        )
    lines += [
        "",
        "KMS allows an external key store 1,800 requests/s by default, times a request out after 250 ms and "
        "recommends round trips under 35 ms. The rates above are one proxy process on this 2-core machine, with "
        "the load generator beside it; production runs two or more proxies behind a load balancer.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.xks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rates", default=None, help="offered requests/s per rung (100,200,400,800,1000,1200,1800)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per rung (10; --quick 3)")
    parser.add_argument("--modes", default=None, help="http,tls (default; --quick: http)")
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "BENCHMARKS-xks.md")
    args = parser.parse_args(argv)
    if not local.available():
        print("SoftHSM2 or python-pkcs11 is missing: the XKS bench is skipped (make system-deps)")
        return 0
    rates = [int(x) for x in args.rates.split(",")] if args.rates else list(QUICK_RATES if args.quick else RATES)
    modes = (args.modes or ("http" if args.quick else "http,tls")).split(",")
    try:
        result = measure(rates, args.seconds or (3.0 if args.quick else 10.0), args.pool_size, modes)
    except BrokenRun as error:
        print(f"[xks bench] FAILED, nothing written: {error}", flush=True)
        return 2
    args.out.write_text(render(result), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"[xks bench] written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
