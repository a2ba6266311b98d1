"""`make deploy` runs `make preflight` first and handles cdk's approval prompt without a terminal."""

from __future__ import annotations

import shutil
import subprocess

from tests.conftest import REPO_ROOT

KEEP = ["-o", ".venv/.installed", "-o", "node_modules/.installed"]
MAKE = shutil.which("make") or "make"


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAKE, *KEEP, *args], cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_deploy_runs_preflight_first_with_the_same_context() -> None:
    plan = " ".join(_make("-n", "deploy", "REGION=eu-north-1", "CONTEXT=-c workshop_mode=true").stdout.split())
    assert plan.index("deploy.preflight --context region=eu-north-1 --context workshop_mode=true") < plan.index(
        "cdk deploy"
    )


def test_deploy_without_a_terminal_stops_with_what_to_do_instead() -> None:
    # GIVEN no terminal (CI): cdk's `--require-approval broadening` would wait for an answer no one can give
    done = _make("-o", "preflight", "deploy")
    # THEN make deploy stops before cdk, says how to review and approve, and exits non-zero
    assert done.returncode != 0
    assert "make diff" in done.stderr and "APPROVAL=never" in done.stderr
    # AND with the explicit approval the deploy command carries it
    assert "--require-approval never" in _make("-n", "-o", "preflight", "deploy", "APPROVAL=never").stdout
