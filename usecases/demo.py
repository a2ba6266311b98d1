"""`make demo`: the whole project on an embedded default, with no AWS account.

1. Synthesize every stack with the compliance gates (AwsSolutions, NIST 800-53 R5 and the
   Swedish public-sector pack) into cdk.out/, summarize, and print the evidence summary.
2. Tier A end to end: client-side encryption against a local AWS emulation (moto).
3. Tier B end to end: SSE-KMS data flow and validators on moto, CSR signing for real,
   the CloudHSM control plane against recorded API responses.
4. Tier C: the XKS proxy on loopback against SoftHSM2 (SigV4-signed requests, kill switch, audit
   log) and the external key store control plane against Stubber-checked recorded responses.

Each step prints its own output; the run ends with one line per step and exits non-zero
if any step failed.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _synth_and_compliance() -> int:
    """One synthesis into cdk.out/: the stack summary and the compliance evidence line."""
    from kommunmoln.compliance import report
    from stacks import summary

    outdir = REPO_ROOT / "cdk.out"
    started = time.perf_counter()
    evidence = report.collect_evidence(outdir=outdir)
    result = summary.summarize_outdir(outdir, time.perf_counter() - started)
    print(summary.render(result))
    print(report.summary_line(evidence))
    print("Templates are in cdk.out/; `make report` writes the full evidence report.")
    return 1 if result.unacknowledged else 0


def _tier_a() -> int:
    from usecases import client_side_encryption

    return client_side_encryption.main(["demo"])


def _tier_b() -> int:
    from usecases import cloudhsm_kms

    return cloudhsm_kms.main(["demo"])


def _tier_c() -> int:
    from usecases import tier_c_demo

    return tier_c_demo.main()


STEPS: list[tuple[str, Callable[[], int]]] = [
    ("Synthesis with compliance gates", _synth_and_compliance),
    ("Tier A: client-side encryption", _tier_a),
    ("Tier B: CloudHSM key store + SSE-KMS", _tier_b),
    ("Tier C: external key store proxy + KMS control plane", _tier_c),
]


def main() -> int:
    results: list[tuple[str, int, float]] = []
    for title, step in STEPS:
        print(f"\n{'=' * 78}\n== {title}\n{'=' * 78}", flush=True)
        started = time.perf_counter()
        try:
            status = step() or 0
        except Exception:  # report every step, then fail the run
            traceback.print_exc()
            status = 1
        results.append((title, status, time.perf_counter() - started))
    print(f"\n{'=' * 78}\nkommunmoln demo summary")
    for title, status, seconds in results:
        print(f"  {'ok  ' if status == 0 else 'FAIL'}  {title:<45} {seconds:6.1f} s")
    return 0 if all(status == 0 for _, status, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
