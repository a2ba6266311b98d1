"""Bucket name mode and name-key custody against the local moto server (bucket_names.py).

Conditional writes (If-None-Match: *, If-Match: ETag -> 412 Precondition Failed) are
S3 behaviour documented at https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html;
moto 5 implements them on PutObject, which these tests rely on.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from kommunmoln import names
from kommunmoln.config import DEFAULTS
from kommunmoln.tier_a.bucket_names import (
    BUCKET_RECORD,
    LONG_NAME_PREFIX,
    get_control_object,
    open_bucket_names,
    rewrap_bucket_record,
)
from kommunmoln.tier_a.custody import CustodyOptions, open_custody
from kommunmoln.tier_a.errors import DecryptionError, UsageError
from kommunmoln.tier_a.keys import RawAesKey, write_escrow_pair, write_key_file
from lambdas.tier_a_validator.logic import STATUS_VALIDATED, Settings, check_object
from tests.library.tier_a.test_pkcs11 import PIN, SOFTHSM_LIB, token  # noqa: F401 - fixture

SENSITIVE = "socialnamnden/2025/anna-andersson-191212.pdf"


def _key_file(tmp_path: Path, name: str) -> str:
    return str(write_key_file(tmp_path / f"{name}.key.json", RawAesKey.generate("kommunmoln", name)))


@pytest.fixture(scope="module")
def escrow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_escrow_pair(tmp_path_factory.mktemp("escrow-names") / "escrow")


def test_new_bucket_gets_a_record_and_names_map_the_same_on_every_open(s3, bucket, tmp_path) -> None:
    options = CustodyOptions(key_file=_key_file(tmp_path, "k1"))
    with open_custody(options, need_primary=True) as custody:
        # GIVEN a new bucket  WHEN a writer opens it
        first = open_bucket_names(s3, custody, bucket, plain_names=False, create=True)
        stored = first.stored(SENSITIVE).key
        # THEN a second client (reader) maps names identically, through the stored record
        second = open_bucket_names(s3, custody, bucket, plain_names=False, create=False)
        assert second.stored(SENSITIVE).key == stored
        assert second.plain_name(stored) == SENSITIVE
    # AND the record is an ESDK message the validator accepts, with no name key in the clear
    body = s3.get_object(Bucket=bucket, Key=BUCKET_RECORD)["Body"].read()
    assert b"name_key" not in body and b"encrypted" not in body
    settings = Settings(
        allowed_namespaces=tuple(DEFAULTS["tier_a_key_namespaces"]),
        required_context_keys=names.REQUIRED_CONTEXT_KEYS,
        header_read_bytes=int(DEFAULTS["tier_a_header_read_bytes"]),
        alarm_topic_arn="",
    )
    assert check_object(s3, bucket=bucket, key=BUCKET_RECORD, version_id=None, settings=settings).status == (
        STATUS_VALIDATED
    )


def test_modes_never_mix_unnoticed(s3, bucket, tmp_path) -> None:
    options = CustodyOptions(key_file=_key_file(tmp_path, "k1"))
    with open_custody(options, need_primary=True) as custody:
        # GIVEN a bucket written with --plain-names  THEN an encrypted-names client is refused
        open_bucket_names(s3, custody, bucket, plain_names=True, create=True)
        with pytest.raises(UsageError, match="--plain-names"):
            open_bucket_names(s3, custody, bucket, plain_names=False, create=True)
        # AND the plain client keeps working
        assert open_bucket_names(s3, custody, bucket, plain_names=True, create=False).plain
    other = f"{bucket}-enc"
    s3.create_bucket(Bucket=other, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    with open_custody(options, need_primary=True) as custody:
        # GIVEN an encrypted-names bucket  THEN a --plain-names client is refused
        open_bucket_names(s3, custody, other, plain_names=False, create=True)
        with pytest.raises(UsageError, match="encrypted names"):
            open_bucket_names(s3, custody, other, plain_names=True, create=True)


def test_bucket_with_objects_from_an_older_client_is_noticed(s3, bucket, tmp_path) -> None:
    # GIVEN objects written by a client without name encryption (no bucket record)
    s3.put_object(Bucket=bucket, Key="socialnamnden/old.pdf", Body=b"legacy")
    with open_custody(CustodyOptions(key_file=_key_file(tmp_path, "k1")), need_primary=True) as custody:
        # THEN encrypted-names use is refused with the reason
        with pytest.raises(UsageError, match="plain names"):
            open_bucket_names(s3, custody, bucket, plain_names=False, create=True)
        # AND --plain-names adopts it, writing the plain record so the mode is fixed from now on
        assert open_bucket_names(s3, custody, bucket, plain_names=True, create=True).plain
        assert get_control_object(s3, custody, bucket, BUCKET_RECORD) is not None


def test_reading_a_bucket_without_record_is_refused(s3, bucket, tmp_path) -> None:
    options = CustodyOptions(key_file=_key_file(tmp_path, "k1"))
    with open_custody(options, need_primary=True) as custody, pytest.raises(UsageError, match="nothing was uploaded"):
        open_bucket_names(s3, custody, bucket, plain_names=False, create=False)


def test_escrow_only_recovery_restores_names(s3, bucket, tmp_path, escrow) -> None:
    public, private = escrow
    writer = CustodyOptions(key_file=_key_file(tmp_path, "k1"), escrow_public_key=str(public))
    with open_custody(writer, need_primary=True) as custody:
        stored = open_bucket_names(s3, custody, bucket, plain_names=False, create=True).stored(SENSITIVE).key
    # WHEN only the offline escrow private key is at hand (the key file is lost)
    with open_custody(CustodyOptions(escrow_private_key=str(private)), need_primary=False) as recovery:
        names_ = open_bucket_names(s3, recovery, bucket, plain_names=False, create=False)
        # THEN names decrypt
        assert names_.plain_name(stored) == SENSITIVE


def test_adding_escrow_later_rewraps_the_record(s3, bucket, tmp_path, escrow) -> None:
    public, private = escrow
    key_file = _key_file(tmp_path, "k1")
    with open_custody(CustodyOptions(key_file=key_file), need_primary=True) as custody:
        stored = open_bucket_names(s3, custody, bucket, plain_names=False, create=True).stored(SENSITIVE).key
    # GIVEN a writer that now also wraps for escrow  WHEN it opens the bucket
    with open_custody(CustodyOptions(key_file=key_file, escrow_public_key=str(public)), need_primary=True) as c:
        open_bucket_names(s3, c, bucket, plain_names=False, create=True)
    # THEN escrow-only recovery restores names written before escrow was added
    with open_custody(CustodyOptions(escrow_private_key=str(private)), need_primary=False) as recovery:
        assert open_bucket_names(s3, recovery, bucket, plain_names=False, create=False).plain_name(stored) == SENSITIVE


def test_writer_without_escrow_never_drops_the_escrow_wrapping(s3, bucket, tmp_path, escrow) -> None:
    public, _ = escrow
    key_file = _key_file(tmp_path, "k1")
    with open_custody(CustodyOptions(key_file=key_file, escrow_public_key=str(public)), need_primary=True) as c:
        open_bucket_names(s3, c, bucket, plain_names=False, create=True)
        before = get_control_object(s3, c, bucket, BUCKET_RECORD)
    # WHEN a writer with the same primary key but no escrow opens the bucket
    with open_custody(CustodyOptions(key_file=key_file), need_primary=True) as custody:
        assert not open_bucket_names(s3, custody, bucket, plain_names=False, create=True).plain
        after = get_control_object(s3, custody, bucket, BUCKET_RECORD)
    # THEN the record keeps its escrow wrapping (it is not rewritten with fewer keys)
    assert before is not None and after is not None
    assert after.etag == before.etag and len(after.wrapping_keys) == 2


def test_key_rotation_keeps_old_names_readable(s3, bucket, tmp_path) -> None:
    old = CustodyOptions(key_file=_key_file(tmp_path, "old"))
    new = CustodyOptions(key_file=_key_file(tmp_path, "new"))
    with open_custody(old, need_primary=True) as custody:
        stored = open_bucket_names(s3, custody, bucket, plain_names=False, create=True).stored(SENSITIVE).key
    # GIVEN the new key cannot read the record yet
    with open_custody(new, need_primary=True) as custody, pytest.raises(DecryptionError, match="rewrap"):
        open_bucket_names(s3, custody, bucket, plain_names=False, create=False)
    # WHEN the record is rewrapped from the old key to the new one
    with open_custody(old, need_primary=True) as old_c, open_custody(new, need_primary=True) as new_c:
        wrapped = rewrap_bucket_record(s3, old_c, new_c, bucket)
    assert wrapped == (("kommunmoln", "new"),)
    # THEN the old names map the same under the new key, and the old key no longer opens it
    with open_custody(new, need_primary=True) as custody:
        names_ = open_bucket_names(s3, custody, bucket, plain_names=False, create=False)
        assert names_.plain_name(stored) == SENSITIVE and names_.stored(SENSITIVE).key == stored
    with open_custody(old, need_primary=True) as custody, pytest.raises(DecryptionError):
        open_bucket_names(s3, custody, bucket, plain_names=False, create=False)


def test_long_names_are_recovered_from_their_record(s3, bucket, tmp_path) -> None:
    long = "ärende-" + "x" * 180 + ".pdf"
    options = CustodyOptions(key_file=_key_file(tmp_path, "k1"))
    with open_custody(options, need_primary=True) as custody:
        writer = open_bucket_names(s3, custody, bucket, plain_names=False, create=True)
        stored = writer.stored(f"mapp/{long}")
        writer.write_long_names(stored)
        # THEN a fresh reader resolves the digest segment through the record in the bucket
        reader = open_bucket_names(s3, custody, bucket, plain_names=False, create=False)
        assert reader.plain_name(stored.key) == f"mapp/{long}"
    digest = stored.key.rsplit("/", 1)[1]
    record = s3.get_object(Bucket=bucket, Key=LONG_NAME_PREFIX + digest)["Body"].read()
    assert "x" * 20 not in record.decode("latin-1")


def test_reserved_prefix_is_refused_as_a_name(s3, bucket, tmp_path) -> None:
    with open_custody(CustodyOptions(key_file=_key_file(tmp_path, "k1")), need_primary=True) as custody:
        for plain in (True, False):
            other = f"{bucket}-{int(plain)}"
            s3.create_bucket(Bucket=other, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
            with pytest.raises(UsageError, match="reserved"):
                open_bucket_names(s3, custody, other, plain_names=plain, create=True).stored(BUCKET_RECORD)


def test_record_moved_to_another_bucket_is_refused(s3, bucket, tmp_path) -> None:
    options = CustodyOptions(key_file=_key_file(tmp_path, "k1"))
    with open_custody(options, need_primary=True) as custody:
        open_bucket_names(s3, custody, bucket, plain_names=False, create=True)
        other = f"{bucket}-copy"
        s3.create_bucket(Bucket=other, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
        s3.copy_object(Bucket=other, Key=BUCKET_RECORD, CopySource={"Bucket": bucket, "Key": BUCKET_RECORD})
        with pytest.raises(DecryptionError, match="context"):
            open_bucket_names(s3, custody, other, plain_names=False, create=False)


@pytest.mark.softhsm
@pytest.mark.skipif(not (Path(SOFTHSM_LIB).exists() and shutil.which("softhsm2-util")), reason="no SoftHSM2")
def test_hsm_custody_holds_the_name_key(s3, bucket, token, monkeypatch) -> None:  # noqa: F811
    # GIVEN a non-extractable AES key in a SoftHSM2 token
    monkeypatch.setenv(names.ENV_PKCS11_PIN, PIN)
    options = CustodyOptions(pkcs11_lib=SOFTHSM_LIB, pkcs11_token=token, pkcs11_key_label="names-hsm")
    from kommunmoln.tier_a.pkcs11_key import open_hsm_key

    hsm, _ = open_hsm_key(lib_path=SOFTHSM_LIB, token_label=token, pin=PIN, key_label="names-hsm", generate=True)
    hsm.close()
    with open_custody(options, need_primary=True) as custody:
        stored = open_bucket_names(s3, custody, bucket, plain_names=False, create=True).stored(SENSITIVE).key
    # THEN the record is wrapped by the HSM key and a new session maps the name back
    with open_custody(options, need_primary=True) as custody:
        found = get_control_object(s3, custody, bucket, BUCKET_RECORD)
        assert found is not None and found.wrapping_keys == (("kommunmoln", "names-hsm"),)
        assert json.loads(found.plaintext)["names"] == "encrypted"
        assert open_bucket_names(s3, custody, bucket, plain_names=False, create=False).plain_name(stored) == SENSITIVE
    assert os.environ.get(names.ENV_PKCS11_PIN) == PIN
