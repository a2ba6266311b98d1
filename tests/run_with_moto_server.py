"""Run a command with a local moto server (AWS emulation) on loopback.

`python -m tests.run_with_moto_server -- pytest ...` starts `moto_server` on a free port,
exports its address as KOMMUNMOLN_MOTO_ENDPOINT (the `moto_endpoint` fixture uses it),
runs the command and stops the server, returning the command's exit code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kommunmoln.local_aws import free_port

ENDPOINT_VARIABLE = "KOMMUNMOLN_MOTO_ENDPOINT"


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: python -m tests.run_with_moto_server -- COMMAND ...", file=sys.stderr)
        return 2
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server_bin = Path(sys.executable).with_name("moto_server")
    log = open(os.devnull, "w")  # noqa: SIM115 - closed after the server stops
    server = subprocess.Popen([str(server_bin), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):  # noqa: S310 - loopback only
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print(f"moto server did not start on {endpoint}", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        print(f"moto server: {endpoint}", flush=True)
        return subprocess.call(argv, env={**os.environ, ENDPOINT_VARIABLE: endpoint})
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
