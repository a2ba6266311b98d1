"""`kommunmoln xks ...`: the tier C operator commands through the installed `kommunmoln` command.

The repository script (`python -m usecases.external_key_store`) is the same parser and code; the
tests run the package's entry point (kommunmoln.tier_a.cli.main / console_main) unless they say so.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from kommunmoln.tier_a import cli
from kommunmoln.tier_c import audit, local
from kommunmoln.tier_c import cli as xks_cli
from usecases import external_key_store

SECRET = "B" * 43
CONFIG = """
[server]
host = "127.0.0.1"
port = 8443
plain_http_for_tests = true
kill_switch_file = "kill.json"
[sigv4]
region = "eu-north-1"
[[sigv4.credentials]]
access_key_id = "ABCDEFGHIJKLMNOPQRST"
secret_env = "XKS_TEST_SECRET"
[hsm]
library = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "t"
pin_env = "XKS_TEST_PIN"
[audit]
path = "audit.jsonl"
[keys.k1]
label = "xks-k1"
operations = ["ENCRYPT", "DECRYPT"]
[keys.k2]
label = "xks-k2"
operations = []
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv("XKS_TEST_SECRET", raising=False)
    monkeypatch.delenv("XKS_TEST_PIN", raising=False)
    path = tmp_path / "proxy.toml"
    path.write_text(CONFIG)
    return path


def xks(*args: str) -> int:
    return cli.main(["xks", *args])


def test_kill_status_and_revive_work_without_secrets_pin_or_extra(config, monkeypatch, capsys) -> None:
    # GIVEN a configuration, no SigV4 secret, no PIN, and neither python-pkcs11 nor uvicorn importable
    monkeypatch.setitem(sys.modules, "pkcs11", None)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    # WHEN the operator kills one key THEN the state file refuses that key and status says so
    assert xks("kill", "--config", str(config), "--key", "k1") == 0
    assert xks("status", "--config", str(config)) == 0
    assert capsys.readouterr().out.splitlines() == ["kill switch: refused keys: k1"] * 2
    assert json.loads((config.parent / "kill.json").read_text())["keys"] == ["k1"]
    # WHEN everything is killed and then revived THEN nothing is refused
    assert xks("kill", "--config", str(config), "--all") == 0
    assert "ALL keys refused" in capsys.readouterr().out
    assert xks("revive", "--config", str(config), "--all") == 0
    assert capsys.readouterr().out.strip() == "kill switch: refused keys: none"


def test_a_missing_config_file_is_one_line_naming_it_exit_2(tmp_path, capsys) -> None:
    # GIVEN no file WHEN any command reads it THEN exit 2 and one line on stderr, no traceback
    assert xks("status", "--config", str(tmp_path / "absent.toml")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "absent.toml: cannot read the configuration" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_config_key_is_named_and_nothing_is_written(config, capsys) -> None:
    # GIVEN a configuration with a port out of range
    config.write_text(CONFIG.replace("port = 8443", "port = 70000"))
    # WHEN the kill switch is flipped THEN it refuses to act on a file it cannot validate
    assert xks("kill", "--config", str(config), "--all") == 2
    assert capsys.readouterr().err.strip() == "error: server.port: 1-65535"
    assert not (config.parent / "kill.json").exists()


def test_an_unknown_key_id_is_refused(config, capsys) -> None:
    assert xks("kill", "--config", str(config), "--key", "k1", "--key", "nope") == 2
    assert capsys.readouterr().err.strip() == "error: unknown external key id(s): nope"
    assert not (config.parent / "kill.json").exists()


def test_create_keys_without_the_pin_variable_names_it(config, monkeypatch, capsys) -> None:
    pytest.importorskip("pkcs11")
    # GIVEN the SigV4 secret but no PIN in the environment
    monkeypatch.setenv("XKS_TEST_SECRET", SECRET)
    # WHEN keys are to be created THEN exit 2 naming the variable, before the HSM is opened
    assert xks("create-keys", "--config", str(config)) == 2
    assert capsys.readouterr().err.strip() == "error: hsm.pin_env: environment variable XKS_TEST_PIN is not set"


def test_serve_without_the_sigv4_secret_names_its_variable(config, capsys) -> None:
    pytest.importorskip("pkcs11")
    pytest.importorskip("uvicorn")
    assert xks("serve", "--config", str(config)) == 2
    err = capsys.readouterr().err
    assert "sigv4.credentials[0].secret_env: environment variable XKS_TEST_SECRET" in err
    assert SECRET not in err


@pytest.mark.parametrize(("command", "missing"), [("serve", "uvicorn"), ("serve", "pkcs11"), ("create-keys", "pkcs11")])
def test_without_the_xks_extra_the_error_says_what_to_install(config, monkeypatch, capsys, command, missing) -> None:
    # GIVEN a package of the [xks] extra that cannot be imported
    monkeypatch.setitem(sys.modules, missing, None)
    # WHEN a command that needs it runs THEN one line naming the package and the pip command, exit 2
    assert xks(command, "--config", str(config)) == 2
    err = capsys.readouterr().err
    assert missing in err and "pip install 'kommunmoln[xks]'" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_verify_audit_reports_an_intact_and_a_broken_chain(config, capsys) -> None:
    # GIVEN an audit log of three records
    log = audit.AuditLog(config.parent / "audit.jsonl")
    for number in range(3):
        log.write({"event": "request", "n": number})
    log.close()
    assert xks("verify-audit", "--config", str(config)) == 0
    assert capsys.readouterr().out.strip() == "3 lines; chain intact"
    # WHEN the second line is altered THEN the third line's link breaks: exit 1
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join([lines[0], lines[1].replace('"n":1', '"n":7'), lines[2]]) + "\n")
    assert xks("verify-audit", "--config", str(config)) == 1
    assert capsys.readouterr().out.strip() == "3 lines; chain BROKEN at line 3"


def test_verify_audit_without_a_log_is_a_usage_error(config, capsys) -> None:
    assert xks("verify-audit", "--config", str(config)) == 2
    assert capsys.readouterr().err.startswith("error: audit.path: cannot read ")


def test_the_repository_script_is_the_same_parser(config, capsys) -> None:
    # GIVEN both entry points WHEN asked for help THEN they offer the same commands
    assert external_key_store.main(["--help"]) == 0
    script = capsys.readouterr().out
    assert xks("--help") == 0
    package = capsys.readouterr().out
    for name in xks_cli.HELP:
        assert f"    {name}" in script and f"    {name}" in package
    assert script.startswith("usage: python -m usecases.external_key_store") and "usage: kommunmoln xks" in package
    # AND a usage error is exit 2, not a SystemExit
    assert external_key_store.main(["kill", "--config", str(config)]) == 2
    assert "one of the arguments --all --key is required" in capsys.readouterr().err


@pytest.mark.softhsm
@pytest.mark.skipif(not local.available(), reason="SoftHSM2 is not installed (make system-deps)")
def test_kommunmoln_xks_serves_the_proxy_and_stops_cleanly_on_sigterm(tmp_path) -> None:
    # GIVEN a SoftHSM2 token with the example keys (made by the repository script)
    setup = local.make_setup(tmp_path / "xks")
    entry = [sys.executable, "-c", "from kommunmoln.tier_a.cli import console_main; console_main()", "xks"]
    again = subprocess.run([*entry, "create-keys", "--config", str(setup.config_path)], env=setup.env,
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert again.returncode == 0 and again.stdout.count("exists ") == 1 + len(local.EXAMPLE_KEYS), again.stderr
    # WHEN the installed command's entry point serves it
    process = subprocess.Popen([*entry, "serve", "--config", str(setup.config_path)], env=setup.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    health = {"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "cli"}}
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                status, _ = local.call(setup, "/health", health)
                break
            except OSError:
                assert time.monotonic() < deadline, "the proxy did not start"
                time.sleep(0.1)
        # THEN it answers signed requests, and `kommunmoln xks kill` refuses the next one
        assert status == 200
        killed = subprocess.run([*entry, "kill", "--all", "--config", str(setup.config_path)], env=setup.env,
                                capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert killed.returncode == 0, killed.stderr
        assert local.call(setup, "/health", health)[1]["errorName"] == "InvalidStateException"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    # AND SIGTERM is a graceful stop: exit 0, one line, shutdown recorded in the audit log
    assert process.returncode == 0, stderr
    assert stderr.strip().splitlines()[-1] == "xks proxy stopped" and "Traceback" not in stderr
    assert json.loads((setup.root / "audit.jsonl").read_text().splitlines()[-1])["event"] == "shutdown"


def test_the_documented_example_configuration_loads_with_its_four_keys(tmp_path, capsys) -> None:
    # GIVEN the example configuration of docs/use-case-3.md, verbatim, and its secrets in the environment
    from pathlib import Path

    from kommunmoln.tier_c.config import load_config

    doc = (Path(__file__).resolve().parents[3] / "docs" / "use-case-3.md").read_text(encoding="utf-8")
    section = doc[doc.index("### Example configuration (SoftHSM2, four keys)") :]
    example = section[section.index("```toml\n") + len("```toml\n") : section.index("\n```", section.index("```toml"))]
    path = tmp_path / "proxy.toml"
    path.write_text(example)
    env = {"XKS_SECRET_CURRENT": "C" * 43, "XKS_SECRET_NEXT": "N" * 44}
    # WHEN it is loaded THEN it is valid, with the four combinations of allowed operations
    config = load_config(path, env)
    assert {k: sorted(r.operations) for k, r in config.keys.items()} == {
        "sekretess-s3-data": ["DECRYPT", "ENCRYPT"], "inkorg-encrypt-only": ["ENCRYPT"],
        "arkiv-decrypt-only": ["DECRYPT"], "parkerad-neither": [],
    }  # fmt: skip
    assert len(config.credentials) == 2 and config.api_base == "/kommunmoln-xks/kms/xks/v1"
    # AND the documented `status` command reads it without any secret in the environment
    assert xks("status", "--config", str(path)) == 0
    assert capsys.readouterr().out.strip() == "kill switch: refused keys: none"


@pytest.mark.softhsm
@pytest.mark.skipif(not local.available(), reason="SoftHSM2 is not installed (make system-deps)")
def test_a_token_that_cannot_be_opened_is_one_line_exit_1(tmp_path) -> None:
    # GIVEN a configuration naming a token label the HSM does not have
    setup = local.make_setup(tmp_path / "xks")
    text = setup.config_path.read_text()
    assert 'token_label = "kommunmoln-xks"' in text
    setup.config_path.write_text(text.replace('token_label = "kommunmoln-xks"', 'token_label = "no-such-token"'))
    entry = [sys.executable, "-c", "from kommunmoln.tier_a.cli import console_main; console_main()", "xks"]
    for command, reason in (("create-keys", "no PKCS#11 token labelled 'no-such-token'"), ("serve", "NoSuchToken")):
        # WHEN keys are created or the proxy started THEN exit 1 and one line naming the cause, no traceback
        done = subprocess.run([*entry, command, "--config", str(setup.config_path)], env=setup.env,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 1, (command, done.stderr)
        assert done.stderr.startswith("error: ") and reason in done.stderr and done.stderr.count("\n") == 1
