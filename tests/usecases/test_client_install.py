"""The client installs like a product: a fresh venv outside the repository, `pip install <clone>`.

Then `kommunmoln --help`, `--version`, `keygen` and `sync` against the local moto server
run from a directory that is not the repository, and the CDK app's dependencies are absent.
Package downloads come from PyPI through pip's cache (CI has PyPI; repeated runs reuse it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import boto3
import pytest

import kommunmoln
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh venv with the clone installed into it."""
    home = tmp_path_factory.mktemp("fresh-venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(home / "venv")
    pip = home / "venv" / "bin" / "pip"
    try:
        subprocess.run([str(pip), "install", "--quiet", "--disable-pip-version-check", str(REPO_ROOT)],
                       check=True, capture_output=True, text=True, cwd=home, timeout=600)  # fmt: skip
    except subprocess.CalledProcessError as error:
        pytest.fail(f"pip install of the clone failed:\n{error.stdout[-2000:]}\n{error.stderr[-2000:]}")
    finally:  # setuptools builds in the source tree; leave the clone as it was
        shutil.rmtree(REPO_ROOT / "build", ignore_errors=True)
        shutil.rmtree(REPO_ROOT / "kommunmoln.egg-info", ignore_errors=True)
    return home / "venv" / "bin"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


def _run(bin_dir: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "kommunmoln"), *argv], capture_output=True, text=True, cwd=cwd, env=_env(),
                          timeout=120, check=False)  # fmt: skip


def test_fresh_install_runs_help_version_keygen_and_sync(installed: Path, tmp_path: Path, moto_endpoint: str) -> None:
    work = tmp_path / "fileserver"
    (work / "share" / "sub").mkdir(parents=True)
    (work / "share" / "protokoll.txt").write_text("Socialnämnden 2025-03-12\n")
    (work / "share" / "sub" / "beslut.txt").write_text("beslut\n")
    # THEN help and version work from outside the repository
    result = _run(installed, work, "--help")
    assert result.returncode == 0 and "exit codes:" in result.stdout and "sync" in result.stdout
    result = _run(installed, work, "--version")
    assert result.stdout.strip() == f"kommunmoln {kommunmoln.__version__}"
    # AND keygen writes a 0600 key file
    result = _run(installed, work, "keygen", "--out", "key.json")
    assert result.returncode == 0, result.stderr
    assert (work / "key.json").stat().st_mode & 0o777 == 0o600
    # AND sync uploads the share to the local moto server, and a second run finds nothing to do
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-north-1")
    bucket = f"fresh-install-{os.getpid()}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    argv = ["--endpoint-url", moto_endpoint, "--key", "key.json", "sync", "share", f"s3://{bucket}/arende/"]
    result = _run(installed, work, *argv)
    assert result.returncode == 0, result.stderr
    stored = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(stored) == 4 and not any("protokoll" in k or "arende" in k for k in stored)  # 2 files + 2 records
    listing = _run(installed, work, "--endpoint-url", moto_endpoint, "--key", "key.json", "ls", f"s3://{bucket}/")
    assert (
        f"s3://{bucket}/arende/protokoll.txt" in listing.stdout
        and f"s3://{bucket}/arende/sub/beslut.txt" in listing.stdout
    )
    result = _run(installed, work, *argv)
    assert result.returncode == 0 and "uploaded 0, unchanged 2" in result.stdout


def test_fresh_install_has_only_the_client_dependencies(installed: Path) -> None:
    code = "import importlib.util as u; print([m for m in ('aws_cdk', 'cdk_nag', 'moto', 'lambdas', 'stacks') if u.find_spec(m)])"
    result = subprocess.run([str(installed / "python"), "-c", code], capture_output=True, text=True, env=_env(),
                            cwd=installed, check=True)  # fmt: skip
    assert result.stdout.strip() == "[]"
    assert sys.prefix not in str(installed)


def test_fresh_install_has_kommunmoln_xks_and_names_the_extra_it_lacks(installed: Path, tmp_path: Path) -> None:
    # GIVEN the base install (no [xks] extra) and a proxy configuration outside the repository
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[server]\nhost = "127.0.0.1"\nport = 8443\nplain_http_for_tests = true\nkill_switch_file = "kill.json"\n'
        '[sigv4]\nregion = "eu-north-1"\n[[sigv4.credentials]]\naccess_key_id = "ABCDEFGHIJKLMNOPQRST"\n'
        'secret_env = "XKS_UNSET_SECRET"\n[hsm]\nlibrary = "/nonexistent/libpkcs11.so"\ntoken_label = "t"\n'
        'pin_env = "XKS_UNSET_PIN"\n[audit]\npath = "audit.jsonl"\n[keys.k1]\nlabel = "xks-k1"\n'
        'operations = ["ENCRYPT", "DECRYPT"]\n'
    )
    # WHEN the operator flips the kill switch and reads it back THEN the installed package does it
    # (kommunmoln.tier_c is in the wheel; kill/status need no extra, no secret, no PIN)
    assert _run(installed, tmp_path, "xks", "kill", "--config", str(config), "--key", "k1").returncode == 0
    status = _run(installed, tmp_path, "xks", "status", "--config", str(config))
    assert (status.returncode, status.stdout.strip()) == (0, "kill switch: refused keys: k1")
    # WHEN the proxy is to be served without the extra THEN one line naming what to install, exit 2
    served = _run(installed, tmp_path, "xks", "serve", "--config", str(config))
    assert served.returncode == 2 and "pip install 'kommunmoln[xks]'" in served.stderr
    assert served.stderr.count("\n") == 1 and "Traceback" not in served.stderr
