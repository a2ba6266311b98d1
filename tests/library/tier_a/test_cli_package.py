"""The tier A client as an installable package: its layout, entry point, version and help."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib

import pytest
import setuptools
from packaging.requirements import Requirement

import kommunmoln
from kommunmoln.tier_a import cli
from tests.conftest import REPO_ROOT
from usecases import client_side_encryption

# Modules a client install does not have: the CDK app, the Lambda code, the test emulation.
REPOSITORY_ONLY = ("lambdas", "stacks", "usecases", "aws_cdk", "cdk_nag", "constructs", "moto", "aws_lambda_powertools")


def test_the_client_library_loads_without_the_repository_only_modules() -> None:
    # GIVEN a fresh interpreter WHEN it imports the CLI and every tier A module it uses
    # THEN nothing from lambdas/, stacks/, usecases/ or the CDK/test dependencies is loaded.
    code = (
        "import sys, kommunmoln.tier_a.cli, kommunmoln.tier_a.pkcs11_key, kommunmoln.object_check; "
        f"print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {REPOSITORY_ONLY!r})))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert loaded.stdout.strip() == ""


def test_the_tier_c_package_loads_without_the_repository_only_modules() -> None:
    # GIVEN a fresh interpreter WHEN it imports every module of kommunmoln.tier_c (the proxy, its CLI)
    # THEN nothing from lambdas/, stacks/, usecases/ or the CDK/test dependencies is loaded.
    import kommunmoln.tier_c

    modules = sorted(f"kommunmoln.tier_c.{m.name}" for m in pkgutil.iter_modules(kommunmoln.tier_c.__path__))
    assert "kommunmoln.tier_c.cli" in modules and "kommunmoln.tier_c.server" in modules
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
        f"print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in {REPOSITORY_ONLY!r})))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert loaded.stdout.strip() == ""


def test_the_installed_packages_are_the_client_and_the_tier_c_proxy() -> None:
    # GIVEN pyproject's packages.find WHEN setuptools resolves it THEN tier A and tier C are in, the rest out
    include = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    found = set(setuptools.find_packages(where=str(REPO_ROOT), include=include["include"]))
    assert {"kommunmoln", "kommunmoln.tier_a", "kommunmoln.tier_c"} <= found
    assert not {p for p in found if p.startswith(("kommunmoln.compliance", "kommunmoln.tier_b"))}


def test_the_xks_extra_covers_the_proxy_and_admits_the_pinned_versions() -> None:
    # GIVEN the [xks] extra and requirements.txt's pins THEN the extra names the serving stack and
    # python-pkcs11, and every pinned version satisfies the extra's range (the tested versions install).
    extra = [Requirement(text) for text in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["xks"]]  # fmt: skip
    assert {r.name for r in extra} == {"python-pkcs11", "uvicorn", "h11"}
    pins = dict(
        line.split("#")[0].strip().split("==")
        for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line.split("#")[0]
    )
    for requirement in extra:
        assert requirement.specifier.contains(pins[requirement.name]), (requirement, pins[requirement.name])


def test_pyproject_installs_only_what_the_client_needs() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    required = {dep.split(">")[0].split("=")[0].split("<")[0].strip() for dep in project["dependencies"]}
    assert required == {"boto3", "aws-encryption-sdk", "cryptography"}
    assert [dep.split(">")[0] for dep in project["optional-dependencies"]["pkcs11"]] == ["python-pkcs11"]
    module, _, function = project["scripts"]["kommunmoln"].partition(":")
    assert (module, function) == ("kommunmoln.tier_a.cli", "console_main")
    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert not any(
        p.startswith(("lambdas", "stacks", "usecases", "kommunmoln.compliance")) for p in packages["include"]
    )


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"kommunmoln {kommunmoln.__version__}"


def test_help_shows_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:\n  kommunmoln keygen" in out
    for line in ("0    success", "1    a check", "2    bad input", "130  interrupted"):
        assert line in out


def test_the_package_has_no_demo_but_the_repository_script_does(capsys: pytest.CaptureFixture[str]) -> None:
    # The demo needs moto and the validator's code: only the clone's script offers it.
    assert cli.main(["demo"]) == 2
    assert "invalid choice: 'demo'" in capsys.readouterr().err
    assert client_side_encryption.main(["demo", "--help"]) == 0
    assert "python -m usecases.client_side_encryption demo" in capsys.readouterr().out


def test_abbreviated_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # `--end` must not silently mean `--endpoint-url`.
    assert cli.main(["verify", "--end", "http://127.0.0.1:1", "s3://b/k"]) == 2
    assert "unrecognized arguments: --end" in capsys.readouterr().err


def test_without_posix_modes_key_files_stay_usable(tmp_path, monkeypatch) -> None:
    # Windows reports mode 0o666 for every writable file: the 0600 check would refuse every key file.
    from kommunmoln.tier_a import keys

    monkeypatch.setattr(keys, "POSIX_PERMISSIONS", False)
    monkeypatch.delattr(keys.os, "fchmod")  # absent on Windows before Python 3.13
    path = keys.write_key_file(tmp_path / "k.json", keys.RawAesKey.generate("kommunmoln", "win"))
    path.chmod(0o666)
    assert keys.load_key_file(path).name == "win"
