"""The admin host installs only the CloudHSM CLI package whose checksum it verifies (issue 10 defect 11, #11 item 13).

The install script (`stacks/components/admin_host_install.sh`, written to the host by its user data)
runs here with stand-ins for `aws` and `dnf` on PATH, so its decisions are exercised, not just read.
Rules it encodes:
- The CloudHSM CLI for Amazon Linux 2023 is an RPM AWS serves from an S3 bucket in us-east-1
  (https://docs.aws.amazon.com/cloudhsm/latest/userguide/gs_cloudhsm_cli-install.html); an S3 gateway
  endpoint reaches buckets of its own Region only (AWS PrivateLink Guide, "Gateway endpoints for Amazon S3"),
  so the package is staged in the account and its SHA-256 pinned by the operator.
- dnf checks the signatures of repository packages when `gpgcheck=1` (the Amazon Linux 2023 repository
  is configured so, with the Amazon Linux key shipped in the AMI); a local RPM is not checked by
  default (`localpkg_gpgcheck=0`), hence the pinned checksum for the package itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from stacks.components.hsm_admin_host import INSTALL_COMMAND, INSTALL_SCRIPT
from tests.conftest import Synthesized

PACKAGE = b"\xed\xab\xee\xdb fake rpm bytes of the staged CloudHSM CLI package"


def _sandbox(tmp_path: Path, *, pinned: str, staged: bytes) -> tuple[dict[str, str], Path]:
    """PATH with fake `aws` (copies the staged file) and `dnf` (records its arguments), an env file."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (tmp_path / "staged.rpm").write_bytes(staged)
    scripts = {
        "aws": f'#!/bin/bash\necho "aws $*" >> {log}\ncp {tmp_path / "staged.rpm"} "$4"\n',
        "dnf": f'#!/bin/bash\necho "dnf $*" >> {log}\n',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env_file = tmp_path / "kommunmoln-cloudhsm.env"
    env_file.write_text(f"CLUSTER_ID=cluster-abc\nSTAGING_BUCKET=staging-bucket\nCLI_SHA256={pinned}\n")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "KOMMUNMOLN_ENV": str(env_file), "TMPDIR": str(tmp_path)}
    return env, log


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash, "the admin host script is bash; bash must be installed to test it"
    return subprocess.run([bash, str(INSTALL_SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def test_the_pinned_package_installs_with_dependencies_signature_checked(tmp_path: Path) -> None:
    # GIVEN the staged package and its SHA-256 pinned in the config
    env, log = _sandbox(tmp_path, pinned=hashlib.sha256(PACKAGE).hexdigest(), staged=PACKAGE)
    # WHEN the operator runs the install script on the host
    result = _run(env)
    # THEN it copies the package from the staging bucket and installs it with dnf, dependencies only from
    # the Amazon Linux repository with signature checks on
    assert result.returncode == 0, result.stderr
    aws, dnf = log.read_text().splitlines()
    assert aws.startswith("aws s3 cp s3://staging-bucket/cloudhsm-cli.rpm ")
    assert dnf.startswith("dnf install -y --setopt=gpgcheck=1 --repo amazonlinux ")


def test_a_swapped_package_is_refused_before_dnf_runs(tmp_path: Path) -> None:
    # GIVEN someone replaced the staged package after its checksum was pinned
    env, log = _sandbox(tmp_path, pinned=hashlib.sha256(PACKAGE).hexdigest(), staged=PACKAGE + b"backdoor")
    # WHEN the install script runs THEN it refuses, names the pinned checksum, and dnf never runs
    result = _run(env)
    assert result.returncode == 4
    assert "does not have the pinned SHA-256" in result.stderr
    assert not any(line.startswith("dnf") for line in log.read_text().splitlines())


@pytest.mark.parametrize("pinned", ["", "not-a-checksum", "A" * 64])
def test_without_a_valid_pin_nothing_is_fetched_or_installed(tmp_path: Path, pinned: str) -> None:
    # GIVEN no (or a malformed) tier_b_cloudhsm_cli_sha256
    env, log = _sandbox(tmp_path, pinned=pinned, staged=PACKAGE)
    # WHEN the install script runs THEN it fails closed before touching S3 or dnf, naming the setting
    result = _run(env)
    assert result.returncode == 3
    assert "tier_b_cloudhsm_cli_sha256" in result.stderr
    assert not log.exists()


def test_the_host_gets_exactly_this_script_and_the_pin(synthesized: Synthesized) -> None:
    # GIVEN the synthesized admin host (default config: no pin)
    (instance,) = synthesized.resources("-tier-b", "AWS::EC2::Instance").values()
    user_data = instance["Properties"]["UserData"]["Fn::Base64"]
    text = user_data if isinstance(user_data, str) else json.dumps(user_data)
    if isinstance(user_data, str):
        try:
            text = base64.b64decode(user_data).decode()
        except ValueError:
            text = user_data
    # THEN the user data writes the script verbatim to the command the docs name, and the (empty) pin
    script = INSTALL_SCRIPT.read_text(encoding="utf-8")
    assert json.dumps(script)[1:-1] in text or script in text
    assert INSTALL_COMMAND in text and "CLI_SHA256=" in text
