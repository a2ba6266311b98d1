"""A bucket's name mode and name key, kept in the bucket as ESDK messages.

Every tier A bucket the client writes carries one bucket record, `_kommunmoln/bucket`:
an ESDK message (the same format, keyrings and encryption context as any object, so the
validator passes it like any other) whose plaintext is a small JSON document naming the
mode (`encrypted` or `plain` names) and, in encrypted mode, the 64-byte AES-SIV name key.

- Custody follows the wrapping key: the name key is wrapped by exactly the keyring that
  wraps content (key file or PKCS#11 HSM, plus the escrow RSA key when given), so whoever
  can decrypt content (escrow-only recovery included) can decrypt names.
- Key rotation changes only the wrapping (`rewrap_bucket_record`): the name key, and so
  every stored name, stays the same; old names stay readable.
- One mode per bucket: a client asked for the other mode, or a bucket holding objects but
  no record (written before name encryption), is refused with an explanation.
- Long-name records `_kommunmoln/long/<digest>` hold a long segment's full encrypted form
  (itself AES-SIV ciphertext), again as an ESDK message.

Nothing plaintext about a name leaves the client: the control objects' keys are fixed or
digests, their contents are ciphertext, and their context binds only bucket and key.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from kommunmoln.tier_a.codec import ALGORITHM, FRAME_LENGTH, esdk_client, summarize_header
from kommunmoln.tier_a.errors import DecryptionError, TierAError, UsageError
from kommunmoln.tier_a.name_cipher import NameCipher, StoredKey
from kommunmoln.tier_a.transfer import CONTENT_TYPE, TAGGING, _s3_error, object_context

RESERVED_PREFIX = "_kommunmoln/"  # never a stored encrypted segment (base32 has no '_')
BUCKET_RECORD = RESERVED_PREFIX + "bucket"
LONG_NAME_PREFIX = RESERVED_PREFIX + "long/"
RECORD_FORMAT = "kommunmoln-bucket-v1"
MODE_ENCRYPTED = "encrypted"
MODE_PLAIN = "plain"
MAX_CONTROL_OBJECT_BYTES = 64 * 1024 * 1024


# --- control objects: small ESDK messages written and read whole ---------------------------
def _code(error: Exception) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def put_control_object(
    s3, custody, bucket: str, key: str, plaintext: bytes, *, if_match: str | None = None, create_only: bool = False
) -> str | None:
    """Encrypt `plaintext` with the custody's keyring and PutObject it; returns the ETag.

    `create_only` sends If-None-Match: * and `if_match` If-Match: ETag (S3 conditional
    writes, https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html):
    returns None when S3 answers 412 Precondition Failed (someone else wrote first).
    """
    message, _ = esdk_client().encrypt(
        source=plaintext,
        key_provider=custody.encrypting_keyring(),
        encryption_context=object_context(bucket, key),
        algorithm=ALGORITHM,
        frame_length=FRAME_LENGTH,
    )
    extra: dict[str, str] = {}
    if create_only:
        extra["IfNoneMatch"] = "*"
    if if_match:
        extra["IfMatch"] = if_match
    try:
        response = s3.put_object(
            Bucket=bucket, Key=key, Body=message, Tagging=TAGGING, ContentType=CONTENT_TYPE, **extra
        )
    except Exception as error:
        if _code(error) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            return None
        raise _s3_error(error, f"write of s3://{bucket}/{key}") from None
    return response.get("ETag")


@dataclass(frozen=True)
class ControlObject:
    plaintext: bytes
    etag: str
    wrapping_keys: tuple[tuple[str, str], ...]


def get_control_object(s3, custody, bucket: str, key: str) -> ControlObject | None:
    """GET and decrypt a control object (None if absent). The context must bind bucket and key."""
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except Exception as error:
        if _code(error) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise _s3_error(error, f"read of s3://{bucket}/{key}") from None
    body = response["Body"].read(MAX_CONTROL_OBJECT_BYTES + 1)
    if len(body) > MAX_CONTROL_OBJECT_BYTES:
        raise DecryptionError(f"s3://{bucket}/{key} is larger than a control object can be")
    header = summarize_header(body)
    keyring = custody.decrypting_keyring(header if custody.needs_header else None)
    try:
        plaintext, decrypted_header = esdk_client().decrypt(source=body, key_provider=keyring)
    except TierAError:
        raise
    except Exception:
        wrapped = ", ".join(f"{ns}/{name}" for ns, name in header.wrapping_keys)
        raise DecryptionError(
            f"s3://{bucket}/{key} does not decrypt with {keyring.describe()} (it is wrapped for {wrapped}; "
            "after a key rotation, rewrap the bucket record with the old key)"
        ) from None
    context = dict(decrypted_header.encryption_context)
    expected = object_context(bucket, key)
    if any(context.get(k) != v for k, v in expected.items()):
        raise DecryptionError(f"s3://{bucket}/{key}: encryption context does not bind this bucket and key; refused")
    return ControlObject(plaintext, response.get("ETag", ""), header.wrapping_keys)


# --- the bucket record ----------------------------------------------------------------------
def _record_bytes(mode: str, name_key: bytes | None) -> bytes:
    document: dict[str, Any] = {"format": RECORD_FORMAT, "names": mode}
    if name_key is not None:
        document["name_key_b64"] = base64.b64encode(name_key).decode("ascii")
    return json.dumps(document, sort_keys=True).encode("utf-8")


def _parse_record(bucket: str, plaintext: bytes) -> tuple[str, bytes | None]:
    try:
        document = json.loads(plaintext)
        mode = document["names"]
        if document.get("format") != RECORD_FORMAT or mode not in (MODE_ENCRYPTED, MODE_PLAIN):
            raise ValueError
        name_key = base64.b64decode(document["name_key_b64"], validate=True) if mode == MODE_ENCRYPTED else None
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise DecryptionError(f"s3://{bucket}/{BUCKET_RECORD} is not a kommunmoln bucket record") from None
    return mode, name_key


def _keyring_members(custody) -> set[tuple[str, str]]:
    keyring = custody.encrypting_keyring()
    return {(m.provider_id, m.key_id.decode("utf-8", "replace")) for m in keyring.master_keys}


@dataclass
class BucketNames:
    """How one bucket names its objects; maps plaintext names to stored keys and back."""

    s3: Any
    custody: Any
    bucket: str
    plain: bool
    cipher: NameCipher | None = None
    _long: dict[str, str] = field(default_factory=dict, repr=False)

    def stored(self, plain_key: str) -> StoredKey:
        """The stored key of a plaintext name (plain mode: the name itself, checked)."""
        if plain_key.startswith(RESERVED_PREFIX) or plain_key == RESERVED_PREFIX.rstrip("/"):
            raise UsageError(f"{RESERVED_PREFIX} is reserved for the client's records")
        if self.plain:
            return StoredKey(plain_key)
        assert self.cipher is not None
        return self.cipher.encrypt_key(plain_key)

    def stored_prefix(self, plain_prefix: str) -> str:
        if self.plain:
            return plain_prefix
        assert self.cipher is not None
        return self.cipher.encrypt_prefix(plain_prefix).key

    def plain_name(self, stored_key: str) -> str:
        """The plaintext name of a stored key (reads a long-name record once, if needed)."""
        if self.plain:
            return stored_key
        assert self.cipher is not None
        return self.cipher.decrypt_key(stored_key, self._long_name)

    def _long_name(self, digest: str) -> str:
        if digest not in self._long:
            found = get_control_object(self.s3, self.custody, self.bucket, LONG_NAME_PREFIX + digest)
            if found is None:
                raise DecryptionError(f"long-name record {LONG_NAME_PREFIX}{digest} is missing")
            self._long[digest] = found.plaintext.decode("ascii", "replace")
        return self._long[digest]

    def write_long_names(self, stored: StoredKey) -> None:
        """Store the long-name records a key needs (write-once; an existing record is kept)."""
        for digest, full in stored.long_names.items():
            if digest in self._long:
                continue
            put_control_object(
                self.s3, self.custody, self.bucket, LONG_NAME_PREFIX + digest, full.encode("ascii"), create_only=True
            )
            self._long[digest] = full

    def is_record(self, stored_key: str) -> bool:
        return stored_key.startswith(RESERVED_PREFIX)


def _bucket_has_objects(s3, bucket: str) -> bool:
    try:
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=10)
    except Exception as error:
        raise _s3_error(error, f"listing of s3://{bucket}") from None
    return any(not item["Key"].startswith(RESERVED_PREFIX) for item in page.get("Contents", []))


def open_bucket_names(
    s3, custody, bucket: str, *, plain_names: bool, create: bool, dry_run: bool = False
) -> BucketNames:
    """Read the bucket record (creating it when `create` and the bucket is new).

    With `dry_run` a record that would be created is not written: the names of a throwaway
    key are good enough to plan a first upload (nothing is listed under them).

    Refuses a mode that differs from the bucket's, and a bucket with objects but no record
    unless `plain_names` (a bucket written before name encryption). When writing with a
    keyring that adds a wrapping key (e.g. escrow), the record is rewrapped to include it,
    as long as no key it was wrapped for would be dropped.
    """
    for _ in range(3):
        found = get_control_object(s3, custody, bucket, BUCKET_RECORD)
        if found is not None:
            mode, name_key = _parse_record(bucket, found.plaintext)
            if plain_names and mode == MODE_ENCRYPTED:
                raise UsageError(f"s3://{bucket} uses encrypted names; drop --plain-names")
            if not plain_names and mode == MODE_PLAIN:
                raise UsageError(f"s3://{bucket} was written with --plain-names; give --plain-names to use it")
            if create and not dry_run and custody.primary is not None:
                _extend_wrapping(s3, custody, bucket, found, mode, name_key)
            return BucketNames(s3, custody, bucket, mode == MODE_PLAIN, NameCipher(name_key) if name_key else None)
        has_objects = _bucket_has_objects(s3, bucket)
        if has_objects and not plain_names:
            raise UsageError(
                f"s3://{bucket} holds objects but no {BUCKET_RECORD}: it was written with plain names "
                "(by a client before name encryption); give --plain-names to use it"
            )
        if not create:
            if plain_names:
                return BucketNames(s3, custody, bucket, True)
            raise UsageError(f"s3://{bucket} has no {BUCKET_RECORD} yet: nothing was uploaded with this client")
        mode = MODE_PLAIN if plain_names else MODE_ENCRYPTED
        name_key = None if plain_names else NameCipher.generate_key()
        if dry_run:
            return BucketNames(s3, custody, bucket, plain_names, NameCipher(name_key) if name_key else None)
        if put_control_object(s3, custody, bucket, BUCKET_RECORD, _record_bytes(mode, name_key), create_only=True):
            return BucketNames(s3, custody, bucket, plain_names, NameCipher(name_key) if name_key else None)
        # 412: another client created the record at the same moment; read theirs
    raise UsageError(f"s3://{bucket}: the bucket record keeps changing; try again")


def _extend_wrapping(s3, custody, bucket: str, found: ControlObject, mode: str, name_key: bytes | None) -> None:
    wrapped = set(found.wrapping_keys)
    mine = _keyring_members(custody)
    if mine <= wrapped:
        return
    if not wrapped <= mine:
        missing = ", ".join(f"{ns}/{name}" for ns, name in sorted(mine - wrapped))
        raise UsageError(
            f"s3://{bucket}: the bucket's name key is not wrapped for {missing}; objects written now could be "
            "recovered but not their names: rewrap the bucket record with every key first"
        )
    put_control_object(s3, custody, bucket, BUCKET_RECORD, _record_bytes(mode, name_key), if_match=found.etag)


def rewrap_bucket_record(s3, old_custody, new_custody, bucket: str) -> tuple[tuple[str, str], ...]:
    """Key rotation: decrypt the record with `old_custody`, rewrite it wrapped by `new_custody`.

    The name key does not change, so every stored name stays readable. Returns the new
    wrapping keys. The write is conditional on the record not having changed meanwhile.
    """
    found = get_control_object(s3, old_custody, bucket, BUCKET_RECORD)
    if found is None:
        raise UsageError(f"s3://{bucket} has no {BUCKET_RECORD}")
    mode, name_key = _parse_record(bucket, found.plaintext)
    if not put_control_object(
        s3, new_custody, bucket, BUCKET_RECORD, _record_bytes(mode, name_key), if_match=found.etag
    ):
        raise UsageError(f"s3://{bucket}: the bucket record changed during the rewrap; run it again")
    return tuple(sorted(_keyring_members(new_custody)))
