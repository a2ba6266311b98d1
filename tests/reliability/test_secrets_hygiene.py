"""Key files and secrets: wrong permissions refused; key material and PIN never in logs, errors or reprs.

- every key-file mode with owner-read and any group or other bit is refused (all 256 of them), with a
  one-line error naming `chmod 600`, through the library and through the CLI (exit 2);
- a whole key-file flow (keygen, encrypt, decrypt, upload, download, verify, a failed
  decryption, a corrupted key file) runs with every logger at DEBUG (botocore, urllib3, the
  ESDK included): the key material in raw, hex, base64 and urlsafe base64 form never appears
  in captured logs, stdout, stderr, exception texts or reprs, and neither does the plaintext;
- the same for a PKCS#11 flow against a SoftHSM2 token (run as separate processes with
  DEBUG logging): the user PIN never appears, also not when a wrong PIN is given.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from kommunmoln import names
from kommunmoln.tier_a.errors import KeyFileError
from kommunmoln.tier_a.keys import Keyring, RawAesKey, load_key_file, write_key_file
from tests.conftest import REPO_ROOT
from usecases.client_side_encryption import main as cli

CATEGORY = "secrets_hygiene"
MARKER = b"personnummer 19121212-1212 hemlig uppgift"
SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"


def secret_forms(secret: bytes) -> list[str]:
    """Every text form in which a secret could leak (bytes reprs included)."""
    forms = [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
        repr(secret)[2:-1],
    ]
    return [f for f in forms if len(f) >= 8]


def assert_no_secret(text: str, secret: bytes, what: str) -> None:
    for form in secret_forms(secret):
        assert form not in text, f"{what} contains the secret (as {form[:6]}...)"


# --- Permissions ---------------------------------------------------------------------------------
OPEN_MODES = [mode for mode in range(0o1000) if mode & 0o077 and mode & 0o400]


def test_every_group_or_world_accessible_mode_is_refused(ledger, tmp_path) -> None:
    # GIVEN a valid key file
    key = RawAesKey.generate("kommunmoln", "perm-key")
    path = write_key_file(tmp_path / "k.key.json", key)
    refused = 0
    for mode in OPEN_MODES:
        # WHEN its mode lets group or others in
        os.chmod(path, mode)
        # THEN loading it is refused with one line naming the fix, and no key material
        with pytest.raises(KeyFileError) as raised:
            load_key_file(path)
        text = str(raised.value)
        assert "chmod 600" in text and "\n" not in text
        assert_no_secret(text + repr(raised.value), key.material(), "the error")
        refused += 1
    ledger.add(CATEGORY, inputs=len(OPEN_MODES), false_passes=len(OPEN_MODES) - refused)
    # AND the private modes are accepted
    for mode in (0o600, 0o400):
        os.chmod(path, mode)
        assert load_key_file(path).name == "perm-key"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666, 0o700 | 0o044])
def test_cli_refuses_open_key_file(ledger, capsys, tmp_path, mode: int) -> None:
    # GIVEN a key file readable by others, and a file to encrypt
    key = RawAesKey.generate("kommunmoln", "perm-key")
    path = write_key_file(tmp_path / "k.key.json", key)
    os.chmod(path, mode)
    (tmp_path / "in").write_bytes(MARKER)
    # WHEN the CLI encrypts with it
    code = cli(["encrypt", str(tmp_path / "in"), str(tmp_path / "out"), "--key", str(path)])
    err = capsys.readouterr().err
    ledger.add(CATEGORY, inputs=1, false_passes=int(code == 0))
    # THEN usage error (2), one line, no output file, no key material
    assert code == 2 and len(err.strip().splitlines()) == 1 and "chmod 600" in err
    assert not (tmp_path / "out").exists()
    assert_no_secret(err, key.material(), "stderr")


def test_keygen_writes_0600_even_with_a_permissive_umask(ledger, tmp_path) -> None:
    # GIVEN umask 000  WHEN keygen runs  THEN the key file is 0600 and is never overwritten
    old = os.umask(0)
    try:
        assert cli(["keygen", "--out", str(tmp_path / "k.key.json"), "--quiet"]) == 0
        assert stat.S_IMODE((tmp_path / "k.key.json").stat().st_mode) == 0o600
        before = (tmp_path / "k.key.json").read_bytes()
        assert cli(["keygen", "--out", str(tmp_path / "k.key.json"), "--quiet"]) == 2
        assert (tmp_path / "k.key.json").read_bytes() == before
    finally:
        os.umask(old)
    ledger.add(CATEGORY, inputs=2)


# --- Key material never in logs, output, errors or reprs ------------------------------------------
@pytest.fixture
def debug_logging(caplog):
    """Every logger at DEBUG for one test (levels restored afterwards: DEBUG botocore is slow)."""
    caplog.set_level(logging.DEBUG)
    loggers = [
        logging.getLogger(n) for n in ("botocore", "boto3", "urllib3", "aws_encryption_sdk", "s3transfer", "kommunmoln")
    ]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield caplog
    for logger, level in zip(loggers, saved, strict=True):
        logger.setLevel(level)


def test_key_material_never_leaks_in_a_whole_flow(ledger, debug_logging, capsys, tmp_path, moto_endpoint) -> None:
    caplog = debug_logging
    # GIVEN a generated key file and a plaintext with a recognizable secret
    keyfile = tmp_path / "k.key.json"
    assert cli(["keygen", "--out", str(keyfile)]) == 0
    material = base64.b64decode(json.loads(keyfile.read_text())["material_b64"])
    plain = tmp_path / "plain.txt"
    plain.write_bytes(MARKER * 50)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-north-1")
    s3.create_bucket(Bucket="rel-secrets", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    texts: list[str] = []
    # WHEN the whole flow runs at DEBUG, including failures
    steps = [
        ["encrypt", str(plain), str(tmp_path / "c.esdk"), "--key", str(keyfile), "--context", "case=42"],
        ["decrypt", str(tmp_path / "c.esdk"), str(tmp_path / "p.out"), "--key", str(keyfile)],
        [
            "decrypt",
            str(tmp_path / "c.esdk"),
            str(tmp_path / "p2.out"),
            "--key",
            str(keyfile),
            "--expect-context",
            "case=43",
        ],
        [
            "--endpoint-url",
            moto_endpoint,
            "upload",
            str(plain),
            "s3://rel-secrets/dir/plain.txt",
            "--key",
            str(keyfile),
        ],
        [
            "--endpoint-url",
            moto_endpoint,
            "download",
            "s3://rel-secrets/dir/plain.txt",
            str(tmp_path / "d.out"),
            "--key",
            str(keyfile),
        ],
        [
            "--endpoint-url",
            moto_endpoint,
            "verify",
            "s3://rel-secrets/dir/",
            "--key",
            str(keyfile),
        ],  # names need the key
    ]
    codes = [cli(step) for step in steps]
    out = capsys.readouterr()
    texts += [out.out, out.err]
    # a key file whose material is damaged: the error must not echo it
    broken = tmp_path / "broken.key.json"
    document = json.loads(keyfile.read_text())
    document["material_b64"] = document["material_b64"][:-4] + "!!!!"
    broken.write_text(json.dumps(document))
    os.chmod(broken, 0o600)
    codes.append(cli(["decrypt", str(tmp_path / "c.esdk"), str(tmp_path / "p3.out"), "--key", str(broken)]))
    out = capsys.readouterr()
    texts += [out.out, out.err]
    key = load_key_file(keyfile)
    texts += [repr(key), str(key), repr(Keyring(key.master_key())), repr(key.master_key())]
    try:
        load_key_file(broken)
    except KeyFileError as error:
        texts += [str(error), repr(error)]
    texts.append(caplog.text)
    texts += [r.getMessage() + repr(r.args) for r in caplog.records]
    ledger.add(CATEGORY, inputs=len(steps) + 2)
    # THEN the flow did what it should (two refusals), and no text holds the key material or the plaintext
    assert codes == [0, 0, 1, 0, 0, 0, 2], codes
    assert len(caplog.records) > 50, "DEBUG logging was not captured"
    everything = "\n".join(texts)
    assert_no_secret(everything, material, "logs/outputs/reprs")
    assert MARKER.decode() not in everything
    assert (tmp_path / "d.out").read_bytes() == MARKER * 50


# --- PKCS#11 PIN ----------------------------------------------------------------------------------
@pytest.mark.softhsm
@pytest.mark.skipif(
    not (Path(SOFTHSM_LIB).exists() and shutil.which("softhsm2-util")), reason="SoftHSM2 is not installed"
)
def test_pkcs11_pin_never_leaks(ledger, tmp_path) -> None:
    # GIVEN a fresh SoftHSM2 token with a recognizable PIN, used only by child processes
    pin = "Pin-" + os.urandom(6).hex()
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf), names.ENV_PKCS11_PIN: pin}
    subprocess.run([shutil.which("softhsm2-util"), "--init-token", "--free", "--label", "rel", "--pin", pin, "--so-pin", "so" + pin],
                   check=True, capture_output=True, env=env)  # fmt: skip
    (tmp_path / "plain").write_bytes(MARKER)
    hsm = ["--pkcs11-lib", SOFTHSM_LIB, "--pkcs11-token", "rel", "--pkcs11-key-label", "rel-key"]
    # One process per PIN: it runs the given CLI commands in turn with every logger at DEBUG and
    # exits with their return codes as a JSON list on the last stdout line.
    debug_main = (
        "import json, logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr); "
        "from usecases.client_side_encryption import main; "
        "print(json.dumps([main(c) for c in json.loads(sys.argv[1])]))"
    )

    def run(commands: list[list[str]], pin_value: str = pin) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", debug_main, json.dumps(commands)], cwd=REPO_ROOT, capture_output=True,
                              text=True, env={**env, names.ENV_PKCS11_PIN: pin_value}, timeout=120, check=False)  # fmt: skip

    # WHEN a key is generated in the token, a file encrypted and decrypted, all at DEBUG, and a wrong PIN tried
    results = [
        run(
            [
                ["keygen", *hsm],
                ["encrypt", str(tmp_path / "plain"), str(tmp_path / "c.esdk"), *hsm],
                ["decrypt", str(tmp_path / "c.esdk"), str(tmp_path / "p.out"), *hsm],
            ]
        ),
        run([["decrypt", str(tmp_path / "c.esdk"), str(tmp_path / "p2.out"), *hsm]], pin_value="Wrong-" + pin[4:]),
    ]
    ledger.add(CATEGORY, inputs=4)
    # THEN the good steps succeed, the wrong PIN is refused without output, and no output holds a PIN
    codes = [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]
    assert codes == [[0, 0, 0], [1]], [r.stderr[-300:] for r in results]
    assert not (tmp_path / "p2.out").exists()
    assert (tmp_path / "p.out").read_bytes() == MARKER
    everything = "\n".join(r.stdout + r.stderr for r in results)
    assert pin not in everything and pin[4:] not in everything, "the PIN (or the wrong PIN) appears in output"
    assert MARKER.decode() not in everything
