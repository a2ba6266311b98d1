"""`kommunmoln rotate` end to end on the local moto server: re-encryption under a new wrapping key.

S3 rules the tests rely on (moto 5 implements them on PutObject):
- conditional writes: PutObject with If-Match fails with 412 Precondition Failed when the
  current object's ETag differs (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html);
- in a versioning-enabled bucket every PutObject adds a version and keeps the earlier ones
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/versioning-workflows.html).
moto does not check If-Match on CompleteMultipartUpload; the multipart test covers streaming only.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from kommunmoln import names
from kommunmoln.config import DEFAULTS
from kommunmoln.tier_a import cli, rotate
from kommunmoln.tier_a.bucket_names import BUCKET_RECORD, open_bucket_names
from kommunmoln.tier_a.codec import summarize_header
from kommunmoln.tier_a.custody import CustodyOptions, open_custody
from kommunmoln.tier_a.errors import DecryptionError
from kommunmoln.tier_a.keys import Keyring, RawAesKey, write_escrow_pair, write_key_file
from kommunmoln.tier_a.manifest import MANIFEST_KEY, check_current, entry_for_upload, load_manifest, save_manifest
from kommunmoln.tier_a.transfer import MIB, download_decrypted, read_object_head, upload_encrypted
from lambdas.tier_a_validator.logic import STATUS_VALIDATED, Settings, check_object
from tests.library.tier_a.test_pkcs11 import PIN, SOFTHSM_LIB, token  # noqa: F401 - fixture

OLD = ("kommunmoln", "tier-a-old")
NEW = ("kommunmoln", "tier-a-new")
VALIDATOR = Settings(
    allowed_namespaces=tuple(DEFAULTS["tier_a_key_namespaces"]),
    required_context_keys=names.REQUIRED_CONTEXT_KEYS,
    header_read_bytes=int(DEFAULTS["tier_a_header_read_bytes"]),
    alarm_topic_arn="",
)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, RawAesKey]:
    return {"old": RawAesKey.generate(*OLD), "new": RawAesKey.generate(*NEW)}


@pytest.fixture
def key_files(tmp_path: Path, keys: dict[str, RawAesKey]) -> dict[str, str]:
    return {label: str(write_key_file(tmp_path / f"{label}.json", key)) for label, key in keys.items()}


def _upload(s3, tmp_path: Path, bucket: str, files: dict[str, bytes], keyring: Keyring) -> dict[str, object]:
    results = {}
    for name, data in files.items():
        path = tmp_path / "src" / name.replace("/", "_")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        results[name] = upload_encrypted(s3, source_path=path, bucket=bucket, key=name, key_provider=keyring)
    return results


def _wrapped(s3, bucket: str, key: str) -> set[tuple[str, str]]:
    return set(summarize_header(read_object_head(s3, bucket, key, 64 * 1024)).wrapping_keys)


def _run(capsys, moto_endpoint: str, *argv: str) -> tuple[int, list[dict], str]:
    code = cli.main(["--json", "--endpoint-url", moto_endpoint, *argv])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def _recorded(s3, tmp_path: Path, bucket: str, key_file: str, files: dict[str, bytes]) -> dict[str, object]:
    """Upload under `key_file` into a plain-names bucket with a record and a manifest of the uploads."""
    with open_custody(CustodyOptions(key_file=key_file), need_primary=True) as custody:
        open_bucket_names(s3, custody, bucket, plain_names=True, create=True)
        results = _upload(s3, tmp_path, bucket, files, custody.encrypting_keyring())
        updates = {name: entry_for_upload(result) for name, result in results.items()}
        save_manifest(s3, custody, bucket, load_manifest(s3, custody, bucket), updates)
    return results


def _message_id(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _versions(s3, bucket: str, key: str) -> int:
    return len([v for v in s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", []) if v["Key"] == key])


def test_rotate_reencrypts_every_object_and_a_second_run_skips_them(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint
) -> None:
    # GIVEN a bucket (plain names) with three objects under the old key, one of them multipart
    bucket = make_bucket()
    files = {"a.txt": b"a" * 100, "dir/b.bin": os.urandom(70_000), "big.bin": os.urandom(11 * MIB)}
    uploaded = _upload(s3, tmp_path, bucket, files, Keyring(keys["old"].master_key()))
    rotate_argv = ["--key", key_files["new"], "--key", key_files["old"], "rotate", "--plain-names",
                   "--part-size-mib", "5", f"s3://{bucket}/"]  # fmt: skip
    # WHEN rotate runs with the new key first and the old key after it
    code, events, _ = _run(capsys, moto_endpoint, *rotate_argv)
    # THEN every object is rotated, exit 0, and the summary counts them
    assert code == 0
    assert events[-1]["event"] == "summary" and events[-1]["rotated"] == 3 and events[-1]["failed"] == 0
    assert events[-1]["target_keys"] == ["kommunmoln/tier-a-new"]
    for name, data in files.items():
        # AND each is wrapped for the new key only, passes the validator's check, decrypts with the new key alone
        assert _wrapped(s3, bucket, name) == {NEW}
        # AND keeps its context, naming the message it replaced
        context = summarize_header(read_object_head(s3, bucket, name, 64 * 1024)).encryption_context
        assert context[names.CONTEXT_KEY] == name and context[names.CONTEXT_BUCKET] == bucket
        assert context[names.CONTEXT_ROTATED_FROM] == _message_id(uploaded[name].message_id)
        assert check_object(s3, bucket=bucket, key=name, version_id=None, settings=VALIDATOR).status == STATUS_VALIDATED
        out = tmp_path / "out" / name.replace("/", "_")
        out.parent.mkdir(exist_ok=True)
        download_decrypted(s3, bucket=bucket, key=name, dest=out, key_provider=Keyring(keys["new"].master_key()))
        assert out.read_bytes() == data
        # AND the old version is kept (versioning): it is still wrapped for the old key
        assert _versions(s3, bucket, name) == 2
    # WHEN rotate runs again THEN every object is reported as already rotated and nothing is written
    code, events, _ = _run(capsys, moto_endpoint, *rotate_argv)
    assert code == 0 and events[-1]["already_rotated"] == 3 and events[-1]["rotated"] == 0
    assert all(_versions(s3, bucket, name) == 2 for name in files)


def test_an_interrupted_rotate_resumes_where_it_stopped(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint, monkeypatch
) -> None:
    # GIVEN four objects under the old key
    bucket = make_bucket()
    files = {f"f{i}.txt": os.urandom(1000 + i) for i in range(4)}
    _upload(s3, tmp_path, bucket, files, Keyring(keys["old"].master_key()))
    real = rotate.upload_stream
    calls = []

    def interrupted_on_the_third(*args, **kwargs):
        calls.append(kwargs["key"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rotate, "upload_stream", interrupted_on_the_third)
    argv = ["--key", key_files["new"], "--key", key_files["old"], "rotate", "--plain-names", f"s3://{bucket}/"]
    # WHEN the run is interrupted (Ctrl-C) during the third object
    code, _, err = _run(capsys, moto_endpoint, *argv)
    # THEN it exits 130 and exactly two objects carry the new key
    assert code == 130 and "interrupted" in err
    rotated = sorted(name for name in files if _wrapped(s3, bucket, name) == {NEW})
    assert rotated == sorted(calls[:2])
    # WHEN it runs again THEN the two are skipped (read from their headers) and the other two rotated
    monkeypatch.setattr(rotate, "upload_stream", real)
    code, events, _ = _run(capsys, moto_endpoint, *argv)
    assert code == 0 and (events[-1]["already_rotated"], events[-1]["rotated"]) == (2, 2)
    assert {e["key"] for e in events if e.get("status") == rotate.ALREADY} == set(calls[:2])
    assert all(_wrapped(s3, bucket, name) == {NEW} for name in files)


def test_an_object_under_an_unknown_key_fails_and_the_others_are_rotated(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint
) -> None:
    # GIVEN one object under the old key and one under a key the operator does not give
    bucket = make_bucket()
    _upload(s3, tmp_path, bucket, {"known.txt": b"k" * 10}, Keyring(keys["old"].master_key()))
    stranger = RawAesKey.generate("kommunmoln", "tier-a-stranger")
    _upload(s3, tmp_path, bucket, {"unknown.txt": b"u" * 10}, Keyring(stranger.master_key()))
    # WHEN rotate runs THEN it exits 1, names the key the object is wrapped for, and rotates the other
    code, events, err = _run(capsys, moto_endpoint, "--key", key_files["new"], "--key", key_files["old"],
                             "rotate", "--plain-names", f"s3://{bucket}/")  # fmt: skip
    assert code == 1 and "kommunmoln/tier-a-stranger" in err and "none of the given keys" in err
    assert events[-1]["rotated"] == 1 and events[-1]["failed"] == 1
    # AND the unknown object was not touched (one version, still its own key)
    assert _versions(s3, bucket, "unknown.txt") == 1 and _wrapped(s3, bucket, "unknown.txt") == {
        stranger_name(stranger)
    }


def stranger_name(key: RawAesKey) -> tuple[str, str]:
    return (key.namespace, key.name)


def test_without_the_old_key_nothing_is_rotated_and_the_dryrun_changes_nothing(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint
) -> None:
    bucket = make_bucket()
    _upload(s3, tmp_path, bucket, {"x.txt": b"x"}, Keyring(keys["old"].master_key()))
    # GIVEN only the new key WHEN rotate runs THEN the object fails (no key unwraps it) with exit 1
    code, events, _ = _run(capsys, moto_endpoint, "--key", key_files["new"], "rotate", "--plain-names",
                           f"s3://{bucket}/")  # fmt: skip
    assert code == 1 and events[-1]["failed"] == 1
    # GIVEN both keys WHEN --dryrun THEN it reports what would rotate and writes nothing
    code, events, _ = _run(capsys, moto_endpoint, "--key", key_files["new"], "--key", key_files["old"], "rotate",
                           "--plain-names", "--dryrun", f"s3://{bucket}/")  # fmt: skip
    assert code == 0 and events[-1]["would_rotate"] == 1 and _versions(s3, bucket, "x.txt") == 1


def test_a_tampered_object_is_refused_and_nothing_is_stored(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint
) -> None:
    # GIVEN an object whose last byte was flipped after upload (a new version replaces it)
    bucket = make_bucket()
    _upload(s3, tmp_path, bucket, {"t.bin": os.urandom(5000)}, Keyring(keys["old"].master_key()))
    body = bytearray(s3.get_object(Bucket=bucket, Key="t.bin")["Body"].read())
    body[-1] ^= 1
    s3.put_object(Bucket=bucket, Key="t.bin", Body=bytes(body))
    # WHEN rotate runs THEN the authentication failure is reported, exit 1, and no version is added
    code, _, err = _run(capsys, moto_endpoint, "--key", key_files["new"], "--key", key_files["old"], "rotate",
                        "--plain-names", f"s3://{bucket}/")  # fmt: skip
    assert code == 1 and "authentication" in err
    assert _versions(s3, bucket, "t.bin") == 2 and _wrapped(s3, bucket, "t.bin") == {OLD}


def test_an_object_replaced_during_rotation_is_not_overwritten(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint, monkeypatch
) -> None:
    # GIVEN an object under the old key, and a writer that replaces it just before rotate's write
    bucket = make_bucket()
    _upload(s3, tmp_path, bucket, {"c.txt": b"first"}, Keyring(keys["old"].master_key()))
    real = rotate.upload_stream

    def concurrent_writer(*args, **kwargs):
        (tmp_path / "second").write_bytes(b"second")
        upload_encrypted(s3, source_path=tmp_path / "second", bucket=bucket, key="c.txt",
                         key_provider=Keyring(keys["old"].master_key()))  # fmt: skip
        return real(*args, **kwargs)

    monkeypatch.setattr(rotate, "upload_stream", concurrent_writer)
    # WHEN rotate runs THEN the conditional write (If-Match) fails: exit 1, and the other writer's version stays current
    code, _, err = _run(capsys, moto_endpoint, "--key", key_files["new"], "--key", key_files["old"], "rotate",
                        "--plain-names", f"s3://{bucket}/")  # fmt: skip
    assert code == 1 and "changed meanwhile" in err
    out = tmp_path / "now"
    download_decrypted(s3, bucket=bucket, key="c.txt", dest=out, key_provider=Keyring(keys["old"].master_key()))
    assert out.read_bytes() == b"second"


def test_escrow_wrapping_is_kept_or_dropped_only_on_purpose(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint
) -> None:
    # GIVEN an object wrapped for the old key and an RSA escrow key
    public, _ = write_escrow_pair(tmp_path / "escrow")
    bucket = make_bucket()
    with open_custody(CustodyOptions(key_file=key_files["old"], escrow_public_key=str(public)), need_primary=True) as c:
        _upload(s3, tmp_path, bucket, {"e.txt": b"escrowed"}, c.encrypting_keyring())
        escrow = next(k for k in c.encrypting_names() if k != OLD)
    base = ["--key", key_files["new"], "--key", key_files["old"], "rotate", "--plain-names", f"s3://{bucket}/"]
    # WHEN rotate runs without the escrow public key THEN it refuses to drop the escrow wrapping (exit 1)
    code, _, err = _run(capsys, moto_endpoint, *base)
    assert code == 1 and "would drop wrapping key" in err and _wrapped(s3, bucket, "e.txt") == {OLD, escrow}
    # WHEN it runs with the escrow public key THEN the new message is wrapped for the new key and the escrow key
    code, _, _ = _run(capsys, moto_endpoint, *base, "--escrow-public-key", str(public))
    assert code == 0 and _wrapped(s3, bucket, "e.txt") == {NEW, escrow}
    # WHEN it runs again without escrow but with --drop-key THEN the escrow wrapping is retired on purpose
    code, _, _ = _run(capsys, moto_endpoint, *base, "--drop-key", "/".join(escrow))
    assert code == 0 and _wrapped(s3, bucket, "e.txt") == {NEW}


def test_encrypted_names_record_and_manifest_follow_the_new_key(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint
) -> None:
    # GIVEN a bucket with encrypted names, its bucket record and a manifest, all under the old key
    bucket = make_bucket()
    plain_name = "socialnamnden/2025/akt.pdf"
    with open_custody(CustodyOptions(key_file=key_files["old"]), need_primary=True) as old:
        bucket_names = open_bucket_names(s3, old, bucket, plain_names=False, create=True)
        stored = bucket_names.stored(plain_name).key
        results = _upload(s3, tmp_path, bucket, {stored: b"secret act"}, old.encrypting_keyring())
        save_manifest(s3, old, bucket, load_manifest(s3, old, bucket), {stored: entry_for_upload(results[stored])})
    # WHEN rotate runs on the plaintext prefix
    code, events, _ = _run(capsys, moto_endpoint, "--key", key_files["new"], "--key", key_files["old"], "rotate",
                           f"s3://{bucket}/socialnamnden/")  # fmt: skip
    assert code == 0, events
    # THEN the report shows the plaintext name, and the record, the object and the manifest carry the new key only
    assert any(e.get("name") == plain_name and e["status"] == rotate.ROTATED for e in events)
    assert _wrapped(s3, bucket, BUCKET_RECORD) == {NEW} and _wrapped(s3, bucket, stored) == {NEW}
    assert _wrapped(s3, bucket, MANIFEST_KEY) == {NEW}
    # AND with the new key alone the name maps back and the manifest names the new message (no false rollback)
    with open_custody(CustodyOptions(key_file=key_files["new"]), need_primary=True) as new:
        assert open_bucket_names(s3, new, bucket, plain_names=False, create=False).plain_name(stored) == plain_name
        manifest = load_manifest(s3, new, bucket)
        head = read_object_head(s3, bucket, stored, 64 * 1024)
        from kommunmoln.tier_a.manifest import message_id_of

        check_current(manifest, stored, message_id_of(head), shown_name=plain_name)


def test_an_object_rotated_before_a_crash_gets_its_manifest_entry_on_the_next_run(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint, monkeypatch
) -> None:
    # GIVEN a manifest bucket where a run rotated an object but died before writing the manifest
    bucket = make_bucket()
    _recorded(s3, tmp_path, bucket, key_files["old"], {"m.txt": b"manifested"})
    monkeypatch.setattr(rotate.Rotation, "flush", lambda self, force=False: None)  # the crash: no manifest write
    argv = ["--key", key_files["new"], "--key", key_files["old"], "rotate", "--plain-names", f"s3://{bucket}/"]
    assert _run(capsys, moto_endpoint, *argv)[0] == 0
    monkeypatch.undo()
    # WHEN rotate runs again THEN the object's authenticated rotated-from names the recorded message: entry updated
    code, events, _ = _run(capsys, moto_endpoint, *argv)
    assert code == 0 and any("manifest entry updated" in e.get("reason", "") for e in events)
    with open_custody(CustodyOptions(key_file=key_files["new"]), need_primary=True) as new:
        from kommunmoln.tier_a.manifest import message_id_of

        head = read_object_head(s3, bucket, "m.txt", 64 * 1024)
        check_current(load_manifest(s3, new, bucket), "m.txt", message_id_of(head), shown_name="m.txt")


@pytest.mark.softhsm
@pytest.mark.skipif(not (Path(SOFTHSM_LIB).exists() and shutil.which("softhsm2-util")), reason="no SoftHSM2")
def test_rotation_from_a_key_file_to_an_hsm_key_and_on_to_another_hsm_key(
    tmp_path: Path,
    s3,
    make_bucket,
    keys,
    key_files,
    capsys,
    moto_endpoint,
    token,  # noqa: F811 - the SoftHSM2 fixture
    monkeypatch,
) -> None:
    # GIVEN an object under a key file and two non-extractable AES keys in a SoftHSM2 token
    from kommunmoln.tier_a.pkcs11_key import open_hsm_key

    monkeypatch.setenv(names.ENV_PKCS11_PIN, PIN)
    for label in ("rotate-hsm-1", "rotate-hsm-2"):
        hsm, _ = open_hsm_key(lib_path=SOFTHSM_LIB, token_label=token, pin=PIN, key_label=label, generate=True)
        hsm.close()
    bucket = make_bucket()
    _upload(s3, tmp_path, bucket, {"h.txt": b"to the hsm"}, Keyring(keys["old"].master_key()))
    hsm_options = ["--pkcs11-lib", SOFTHSM_LIB, "--pkcs11-token", token]
    # WHEN rotate runs with the HSM key and the old key file THEN the object is wrapped by the HSM key
    code, _, _ = _run(capsys, moto_endpoint, *hsm_options, "--pkcs11-key-label", "rotate-hsm-1",
                      "--key", key_files["old"], "rotate", "--plain-names", f"s3://{bucket}/")  # fmt: skip
    assert code == 0 and _wrapped(s3, bucket, "h.txt") == {("kommunmoln", "rotate-hsm-1")}
    # WHEN it runs with a second HSM label first THEN the object moves on to that key
    code, _, _ = _run(capsys, moto_endpoint, *hsm_options, "--pkcs11-key-label", "rotate-hsm-2",
                      "--pkcs11-key-label", "rotate-hsm-1", "rotate", "--plain-names", f"s3://{bucket}/")  # fmt: skip
    assert code == 0 and _wrapped(s3, bucket, "h.txt") == {("kommunmoln", "rotate-hsm-2")}


def test_key_plan_decisions() -> None:
    plan = rotate.KeyPlan(target=frozenset({NEW}), held=frozenset({NEW, OLD}), retiring=frozenset({OLD}))
    assert plan.decide([NEW])[0] == rotate.ALREADY
    assert plan.decide([OLD])[0] == rotate.ROTATED
    assert plan.decide([NEW, OLD])[0] == rotate.ROTATED  # an overlap message loses the old key
    assert plan.decide([("kommunmoln", "x")])[0] == rotate.FAILED
    assert plan.decide([OLD, ("kommunmoln", "escrow")])[0] == rotate.FAILED
    with pytest.raises(Exception, match="NAMESPACE/NAME"):
        rotate.parse_key_name("no-slash")


def test_an_object_under_the_new_key_that_is_no_rotation_of_the_record_is_refused(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint
) -> None:
    # GIVEN a manifest recording an upload under the old key, then other content written under
    # the new key without the manifest knowing (a writer outside the client, or a restore)
    bucket = make_bucket()
    results = _recorded(s3, tmp_path, bucket, key_files["old"], {"r.txt": b"recorded"})
    _upload(s3, tmp_path, bucket, {"r.txt": b"something else"}, Keyring(keys["new"].master_key()))
    # WHEN rotate runs THEN that object fails (exit 1) and the manifest still records the old message
    code, _, err = _run(capsys, moto_endpoint, "--key", key_files["new"], "--key", key_files["old"], "rotate",
                        "--plain-names", f"s3://{bucket}/")  # fmt: skip
    assert code == 1 and "not the rotation of the version the manifest records" in err
    with open_custody(CustodyOptions(key_file=key_files["new"]), need_primary=True) as new:
        entry = load_manifest(s3, new, bucket).entries["r.txt"]
    assert entry.message_id == _message_id(results["r.txt"].message_id)


def test_during_a_rotation_downloads_read_old_and_new_objects_with_both_keys(
    tmp_path: Path, s3, make_bucket, keys, key_files
) -> None:
    # GIVEN one object under the old key and one under the new key
    bucket = make_bucket()
    _upload(s3, tmp_path, bucket, {"old.txt": b"old"}, Keyring(keys["old"].master_key()))
    _upload(s3, tmp_path, bucket, {"new.txt": b"new"}, Keyring(keys["new"].master_key()))
    options = CustodyOptions(key_file=key_files["new"], decrypt_key_files=(key_files["old"],))
    with open_custody(options, need_primary=True) as custody:
        # WHEN both are downloaded with --key new --key old THEN both decrypt
        for name, data in (("old.txt", b"old"), ("new.txt", b"new")):
            out = tmp_path / f"dl-{name}"
            download_decrypted(s3, bucket=bucket, key=name, dest=out, key_provider=custody.decrypting_keyring())
            assert out.read_bytes() == data
    # AND with the new key alone the old object fails, naming the key it is wrapped for
    alone = CustodyOptions(key_file=key_files["new"])
    with open_custody(alone, need_primary=True) as custody, pytest.raises(DecryptionError, match="tier-a-old"):
        download_decrypted(s3, bucket=bucket, key="old.txt", dest=tmp_path / "x",
                           key_provider=custody.decrypting_keyring())  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_ctrl_c_during_a_multipart_rotation_aborts_it_and_the_next_run_rotates(
    tmp_path: Path, s3, make_bucket, keys, key_files, capsys, moto_endpoint, monkeypatch
) -> None:
    # GIVEN an object of three 5 MiB parts under the old key
    bucket = make_bucket()
    data = os.urandom(11 * MIB)
    _upload(s3, tmp_path, bucket, {"big.bin": data}, Keyring(keys["old"].master_key()))
    real = rotate.upload_stream

    class PartTwoInterrupted:
        """The client as rotate uses it, but Ctrl-C arrives while the second part is sent."""

        def __init__(self, client) -> None:
            self._client, self.parts = client, 0

        def upload_part(self, **kwargs):
            self.parts += 1
            if self.parts == 2:
                raise KeyboardInterrupt
            return self._client.upload_part(**kwargs)

        def __getattr__(self, name):
            return getattr(self._client, name)

    monkeypatch.setattr(rotate, "upload_stream", lambda client, **kw: real(PartTwoInterrupted(client), **kw))
    argv = ["--key", key_files["new"], "--key", key_files["old"], "rotate", "--plain-names", "--part-size-mib", "5",
            "--concurrency", "1", f"s3://{bucket}/"]  # fmt: skip
    # WHEN the rotation is interrupted during the upload
    code, _, err = _run(capsys, moto_endpoint, *argv)
    # THEN exit 130, the multipart upload was aborted (no parts left), and the object is as it was
    assert code == 130 and "aborted, nothing stored" in err
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert _versions(s3, bucket, "big.bin") == 1 and _wrapped(s3, bucket, "big.bin") == {OLD}
    # WHEN it runs again undisturbed THEN the object is rotated and decrypts to the same bytes with the new key
    monkeypatch.setattr(rotate, "upload_stream", real)
    code, events, _ = _run(capsys, moto_endpoint, *argv)
    assert code == 0 and events[-1]["rotated"] == 1
    out = tmp_path / "big.out"
    download_decrypted(s3, bucket=bucket, key="big.bin", dest=out, key_provider=Keyring(keys["new"].master_key()))
    assert out.read_bytes() == data


def test_the_client_round_trip_through_rotate_keeps_names_padding_and_change_detection(
    tmp_path: Path, make_bucket, key_files, capsys, moto_endpoint
) -> None:
    # GIVEN a folder uploaded by the client itself (encrypted names, manifest) with size padding
    bucket = make_bucket()
    source = tmp_path / "share"
    (source / "nämnd").mkdir(parents=True)
    (source / "nämnd" / "beslut.txt").write_bytes(b"beslut " * 300)
    os.utime(source / "nämnd" / "beslut.txt", (1_600_000_000, 1_600_000_000))
    endpoint = ["--endpoint-url", moto_endpoint]
    assert cli.main([*endpoint, "-q", "--key", key_files["old"], "sync", "--pad", str(source), f"s3://{bucket}/"]) == 0
    # WHEN rotate runs on the plaintext folder name
    code, events, _ = _run(capsys, moto_endpoint, "--key", key_files["new"], "--key", key_files["old"], "rotate",
                           f"s3://{bucket}/nämnd/")  # fmt: skip
    assert code == 0 and events[-1]["failed"] == 0 and events[-1]["rotated"] >= 1
    # THEN the new key alone downloads it (rollback check against the rewritten manifest, padding removed)
    out = tmp_path / "out.txt"
    assert cli.main([*endpoint, "-q", "--key", key_files["new"], "download", f"s3://{bucket}/nämnd/beslut.txt",
                     str(out)]) == 0  # fmt: skip
    assert out.read_bytes() == b"beslut " * 300
    # AND change detection still sees the file as unchanged (the manifest kept the file's own digest and size)
    capsys.readouterr()
    code, events, _ = _run(capsys, moto_endpoint, "--key", key_files["new"], "sync", "--pad", "--dryrun", str(source),
                           f"s3://{bucket}/")  # fmt: skip
    assert code == 0 and events[-1]["to_upload"] == 0
