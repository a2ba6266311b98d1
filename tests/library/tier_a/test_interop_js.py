"""The exit path with a second, independent ESDK: the AWS Encryption SDK for JavaScript.

`interop/js/esdk_raw_aes.mjs` uses only `@aws-crypto/client-node` (pinned in
`interop/js/package.json` and its lock file) and the key file's namespace, name and material.
These tests show that it reads what our CLI writes and writes what our CLI reads
(docs/use-case-1.md, section 6).

The package is installed here (`npm ci`) when `interop/js/node_modules` is missing or stale.
The tests skip only when node or npm is absent or the registry cannot be reached; any other
install failure, and any interoperability failure, fails them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kommunmoln.tier_a.codec import FRAME_LENGTH, read_file_head, summarize_header
from kommunmoln.tier_a.keys import RawAesKey, load_key_file, write_key_file
from tests.conftest import REPO_ROOT
from usecases.client_side_encryption import main

pytestmark = pytest.mark.usefixtures("codec_engine")  # both engines: frames and the ESDK's stream

JS_DIR = REPO_ROOT / "interop" / "js"
SCRIPT = JS_DIR / "esdk_raw_aes.mjs"
PACKAGE = "@aws-crypto/client-node"
NPM_TIMEOUT_S = 300
NODE_TIMEOUT_S = 120
SUITE = "ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY"
KEY_NAME = "interop-js-1"
# npm's words when the registry cannot be reached (DNS, refused, reset, timeout, proxy).
_OFFLINE_MARKERS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH",
                    "EHOSTUNREACH", "network request", "npm error network", "npm ERR! network")  # fmt: skip

# Our required keys only, and a context whose UTF-8 byte order (every ESDK's canonical order)
# differs from JavaScript's String.localeCompare order: mixed case, punctuation and Swedish
# letters. The second one breaks unless the JS keyring is built with `utf8Sorting: true`.
CONTEXTS = {
    "required keys": {"kommunmoln:bucket": "kommun-data", "kommunmoln:key": "socialtjanst/akt-1.pdf"},
    "mixed-order keys": {
        "kommunmoln:bucket": "kommun-data",
        "kommunmoln:key": "förvaltning/år 2026.pdf",
        "Zon": "norr",
        "år": "2026",
        "a-b": "1",
        "a_b": "2",
    },
}


# --- The JavaScript ESDK, installed on demand -----------------------------------------------
def _pinned_version() -> str:
    return json.loads((JS_DIR / "package.json").read_text())["dependencies"][PACKAGE]


def _installed_version() -> str | None:
    manifest = JS_DIR / "node_modules" / PACKAGE / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One `npm ci` at a time for this checkout (pytest-xdist workers share the directory)."""
    tag = hashlib.sha256(str(JS_DIR).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"kommunmoln-interop-js-{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def js_esdk() -> str:
    """The pinned JS ESDK is installed; returns the node executable."""
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed (the JS ESDK interoperability tests need Node.js >= 18 and npm)")
    pinned = _pinned_version()
    with _install_lock():
        if _installed_version() != pinned:
            npm = shutil.which("npm")
            if not npm:
                pytest.skip(f"npm is not installed, so {PACKAGE}@{pinned} cannot be installed in {JS_DIR}")
            try:
                done = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=JS_DIR, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False,
                    env={**os.environ, "npm_config_update_notifier": "false"},
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                pytest.skip(f"npm ci in {JS_DIR} did not finish in {NPM_TIMEOUT_S} s (no network to the npm registry?)")
            output = f"{done.stdout}\n{done.stderr}"
            offline = [line for line in output.splitlines() if any(marker in line for marker in _OFFLINE_MARKERS)]
            if done.returncode != 0 and offline:
                pytest.skip(f"cannot reach the npm registry to install {PACKAGE}@{pinned}: {offline[0].strip()[:200]}")
            assert done.returncode == 0, f"npm ci failed in {JS_DIR}:\n{output[-3000:]}"
        assert _installed_version() == pinned, f"{PACKAGE} {_installed_version()} installed, {pinned} pinned"
    return node


def _js(node: str, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(SCRIPT), *map(str, argv)], cwd=JS_DIR, capture_output=True, text=True, timeout=NODE_TIMEOUT_S,
        check=False,
    )  # fmt: skip


def _our(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([*map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _items(context: dict[str, str], option: str) -> list[str]:
    return [part for key, value in context.items() for part in (option, f"{key}={value}")]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _partials(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".partial")]


# --- Fixtures -------------------------------------------------------------------------------
@pytest.fixture
def cli_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A key file written by our `keygen`."""
    path = tmp_path / "municipality.key.json"
    code, _, err = _our(capsys, "keygen", "--out", path, "--name", KEY_NAME, "--quiet")
    assert code == 0, err
    return path


@pytest.fixture
def same_names_other_material(tmp_path: Path, cli_key_file: Path) -> Path:
    """A key file with the same namespace and name as `cli_key_file` but other key bytes."""
    key = load_key_file(cli_key_file)
    return write_key_file(tmp_path / "impostor.key.json", RawAesKey(key.namespace, key.name, os.urandom(32)))


@pytest.fixture
def small_plaintext(tmp_path: Path) -> Path:
    path = tmp_path / "akt.txt"
    path.write_bytes("Uppgifter som omfattas av sekretess enligt OSL, 26 kap. 1 § (socialtjänst).\n".encode() * 100)
    return path


# --- Our CLI -> the JS ESDK -----------------------------------------------------------------
@pytest.mark.parametrize("context", list(CONTEXTS))
def test_js_esdk_decrypts_our_cli_message(
    js_esdk: str, tmp_path: Path, capsys, cli_key_file: Path, small_plaintext: Path, context: str
) -> None:
    # GIVEN a key file from our keygen and a file encrypted by our CLI with an encryption context
    expected = CONTEXTS[context]
    code, _, err = _our(capsys, "encrypt", small_plaintext, tmp_path / "msg", "--key", cli_key_file,
                        *_items(expected, "--context"))  # fmt: skip
    assert code == 0, err
    # WHEN the JS ESDK decrypts it with the key file's namespace, name and material
    done = _js(js_esdk, "decrypt", cli_key_file, tmp_path / "msg", tmp_path / "out", *_items(expected, "--expect"))
    # THEN the plaintext is byte-identical and the reported context and suite match
    assert done.returncode == 0, done.stderr
    assert _sha(tmp_path / "out") == _sha(small_plaintext)
    report = json.loads(done.stdout)
    assert report["encryptionContext"] == expected
    assert report["suite"] == SUITE
    assert report["plaintextBytes"] == small_plaintext.stat().st_size


def test_js_esdk_decrypts_our_message_with_escrow(
    js_esdk: str, tmp_path: Path, capsys, cli_key_file: Path, small_plaintext: Path, escrow_pair: tuple[Path, Path]
) -> None:
    # GIVEN a message whose data key is wrapped twice: our AES key and the RSA escrow key
    public_pem, _ = escrow_pair
    code, _, err = _our(capsys, "encrypt", small_plaintext, tmp_path / "msg", "--key", cli_key_file,
                        "--escrow-public-key", public_pem, "--context", "kommunmoln:key=a")  # fmt: skip
    assert code == 0, err
    assert len(summarize_header(read_file_head(tmp_path / "msg")).wrapping_keys) == 2
    # WHEN the JS ESDK decrypts it with the AES key file alone
    done = _js(js_esdk, "decrypt", cli_key_file, tmp_path / "msg", tmp_path / "out")
    # THEN its raw AES keyring skips the RSA data key and unwraps ours
    assert done.returncode == 0, done.stderr
    assert _sha(tmp_path / "out") == _sha(small_plaintext)


# --- The JS ESDK -> our CLI -----------------------------------------------------------------
@pytest.mark.parametrize("context", list(CONTEXTS))
def test_our_cli_decrypts_js_esdk_message(
    js_esdk: str, tmp_path: Path, capsys, cli_key_file: Path, small_plaintext: Path, context: str
) -> None:
    # GIVEN a file encrypted by the JS ESDK with the key file and a context
    expected = CONTEXTS[context]
    done = _js(js_esdk, "encrypt", cli_key_file, small_plaintext, tmp_path / "msg", *_items(expected, "--context"))
    assert done.returncode == 0, done.stderr
    # WHEN our CLI decrypts it, requiring that context
    code, out, err = _our(capsys, "decrypt", tmp_path / "msg", tmp_path / "out", "--key", cli_key_file,
                          *_items(expected, "--expect-context"))  # fmt: skip
    # THEN it succeeds with byte-identical plaintext
    assert code == 0, err
    assert _sha(tmp_path / "out") == _sha(small_plaintext)
    assert "kommunmoln:bucket=kommun-data" in out
    # AND the JS message has our format: committing unsigned suite, our key identity in the key info
    header = summarize_header(read_file_head(tmp_path / "msg"))
    assert header.algorithm == "AES_256_GCM_HKDF_SHA512_COMMIT_KEY" and header.committing
    assert header.wrapping_keys == (("kommunmoln", KEY_NAME),)
    assert header.encryption_context == expected


# --- Several 1 MiB frames, both ways ----------------------------------------------------------
@pytest.mark.parametrize("direction", ["ours to js", "js to ours"])
def test_multi_frame_both_ways(
    js_esdk: str, tmp_path: Path, capsys, cli_key_file: Path, plaintext: Path, direction: str
) -> None:
    # GIVEN a file of a few MiB (more than three 1 MiB frames) encrypted by one implementation
    assert plaintext.stat().st_size > 3 * FRAME_LENGTH
    context = CONTEXTS["required keys"]
    if direction == "ours to js":
        code, _, err = _our(capsys, "encrypt", plaintext, tmp_path / "msg", "--key", cli_key_file,
                            *_items(context, "--context"))  # fmt: skip
        assert code == 0, err
        # WHEN the other one decrypts it
        done = _js(js_esdk, "decrypt", cli_key_file, tmp_path / "msg", tmp_path / "out", *_items(context, "--expect"))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["plaintextBytes"] == plaintext.stat().st_size
    else:
        done = _js(js_esdk, "encrypt", cli_key_file, plaintext, tmp_path / "msg", *_items(context, "--context"))
        assert done.returncode == 0, done.stderr
        code, _, err = _our(capsys, "decrypt", tmp_path / "msg", tmp_path / "out", "--key", cli_key_file,
                            *_items(context, "--expect-context"))  # fmt: skip
        assert code == 0, err
    # THEN the plaintext is byte-identical, and the message was framed in 1 MiB frames
    assert _sha(tmp_path / "out") == _sha(plaintext)
    assert summarize_header(read_file_head(tmp_path / "msg")).frame_length == FRAME_LENGTH


# --- Refusals ---------------------------------------------------------------------------------
def test_js_esdk_with_other_material_cannot_decrypt_our_message(
    js_esdk: str, tmp_path: Path, capsys, cli_key_file: Path, same_names_other_material: Path, small_plaintext: Path
) -> None:
    # GIVEN our message, and a key file with the same namespace and name but other key bytes
    code, _, err = _our(capsys, "encrypt", small_plaintext, tmp_path / "msg", "--key", cli_key_file)
    assert code == 0, err
    # WHEN the JS ESDK tries to decrypt it with that key
    done = _js(js_esdk, "decrypt", same_names_other_material, tmp_path / "msg", tmp_path / "out")
    # THEN it fails with one line, and no plaintext (not even a partial file) is left
    assert done.returncode == 1, done.stdout
    assert f"no data key in the message unwraps with key kommunmoln/{KEY_NAME}" in done.stderr
    assert done.stderr.count("\n") == 1 and not done.stdout
    assert not (tmp_path / "out").exists() and not _partials(tmp_path)


def test_our_cli_refuses_js_message_under_another_key(
    js_esdk: str, tmp_path: Path, capsys, cli_key_file: Path, same_names_other_material: Path, small_plaintext: Path
) -> None:
    # GIVEN a JS ESDK message encrypted under another key (same namespace and name, other bytes)
    done = _js(js_esdk, "encrypt", same_names_other_material, small_plaintext, tmp_path / "msg")
    assert done.returncode == 0, done.stderr
    # WHEN our CLI decrypts it with our key file
    code, _, err = _our(capsys, "decrypt", tmp_path / "msg", tmp_path / "out", "--key", cli_key_file)
    # THEN it refuses with a one-line reason and leaves no output file
    assert code == 1
    assert "key material differs" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not _partials(tmp_path)


def test_js_esdk_refuses_an_unexpected_context(
    js_esdk: str, tmp_path: Path, capsys, cli_key_file: Path, small_plaintext: Path
) -> None:
    # GIVEN our message for one object key
    code, _, err = _our(capsys, "encrypt", small_plaintext, tmp_path / "msg", "--key", cli_key_file,
                        "--context", "kommunmoln:key=a.pdf")  # fmt: skip
    assert code == 0, err
    # WHEN the JS script is told to expect another object key (the object was moved)
    done = _js(js_esdk, "decrypt", cli_key_file, tmp_path / "msg", tmp_path / "out", "--expect", "kommunmoln:key=b.pdf")
    # THEN it refuses and writes nothing
    assert done.returncode == 1
    assert "encryption context mismatch: kommunmoln:key" in done.stderr
    assert not (tmp_path / "out").exists() and not _partials(tmp_path)
