"""Change detection and rollback detection without telling AWS anything: an encrypted manifest.

The manifest `_kommunmoln/manifest` is one ESDK message per bucket (same keyrings and
context as any object, so the validator passes it and escrow recovery can read it). Its
plaintext is zlib-compressed JSON: for every stored key, the SHA-256 and size of the
plaintext that was encrypted, the ESDK message ID of that upload and the ETag S3 gave it.
AWS sees one opaque object whose size grows with the number of files.

- Skip unchanged files without downloading (`local_file_unchanged`): the local file's
  SHA-256 must equal the recorded one (so an edit that keeps size and mtime is seen) and
  the listing's ETag must equal the recorded one (so an object replaced outside the client
  is re-uploaded). A no-change run costs the ListObjectsV2 pages `aws s3 sync` makes plus
  the GETs of the bucket record and the manifest, and reads no content bytes.
- Detect rollback (`check_current`): the message ID in the object's authenticated header
  must be the one recorded for its key. An older version restored as current (a copy of
  version N-1 over version N) has another message ID and is refused before any plaintext
  is written.
- Concurrent writers: the manifest is written with If-Match on the ETag it was read with
  (S3 conditional writes, https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html);
  on 412 it is read again, the writer's own updates are re-applied, and the write retried.

Limit (documented in docs/use-case-1.md): someone who can write the bucket can roll back the
manifest *together with* the objects; only a record kept outside AWS (e.g. the manifest's
message ID noted locally) detects that.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aws_encryption_sdk.internal.formatting.deserialize import deserialize_header

from kommunmoln.tier_a.bucket_names import RESERVED_PREFIX, get_control_object, put_control_object
from kommunmoln.tier_a.codec import MAX_ENCRYPTED_DATA_KEYS
from kommunmoln.tier_a.errors import DecryptionError, UsageError

MANIFEST_KEY = RESERVED_PREFIX + "manifest"
MANIFEST_FORMAT = "kommunmoln-manifest-v1"
_READ_CHUNK = 1024 * 1024
_WRITE_ATTEMPTS = 5


class RollbackError(DecryptionError):
    """The stored object is not the version this client last wrote under that key."""


@dataclass(frozen=True)
class Entry:
    """What the client wrote under one stored key."""

    sha256: str  # hex, of the plaintext
    size: int  # plaintext bytes
    message_id: str  # base64 of the ESDK message ID
    etag: str  # as S3 returned it on upload


@dataclass
class Manifest:
    entries: dict[str, Entry] = field(default_factory=dict)
    etag: str | None = None  # of the manifest object as read (None: there was none)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _same_etag(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and a.strip('"') == b.strip('"')


def local_file_unchanged(path: str | os.PathLike[str], entry: Entry | None, listed_etag: str | None) -> bool:
    """True if `path` holds exactly what the stored object holds, without reading the object.

    `entry` is the manifest entry of the object's stored key and `listed_etag` the ETag a
    ListObjectsV2 (or HEAD) reports for it now. Reads the local file (to hash it), never S3.
    """
    if entry is None or not _same_etag(entry.etag, listed_etag):
        return False
    try:
        if os.stat(path).st_size != entry.size:
            return False
        return file_sha256(path) == entry.sha256
    except OSError:
        return False


def entry_for_upload(result) -> Entry:
    """The manifest entry of a finished upload (a transfer.UploadResult)."""
    if not result.message_id or not result.plaintext_sha256:
        raise UsageError("the upload result carries no message ID or digest")
    return Entry(
        sha256=result.plaintext_sha256,
        size=result.plaintext_bytes,
        message_id=base64.b64encode(result.message_id).decode("ascii"),
        etag=result.etag,
    )


def message_id_of(head: bytes) -> str:
    """The (authenticated on decryption) message ID of an ESDK message, from its first bytes."""
    try:
        header, _ = deserialize_header(io.BytesIO(head), MAX_ENCRYPTED_DATA_KEYS)
    except Exception:
        raise DecryptionError("not an AWS Encryption SDK message (or its header is cut short)") from None
    return base64.b64encode(bytes(header.message_id)).decode("ascii")


def check_current(manifest: Manifest, stored_key: str, message_id: bytes | str, *, shown_name: str) -> None:
    """Refuse an object whose message ID is not the one last recorded for its key.

    `shown_name` is the plaintext name, for the local error message only.
    """
    found = message_id if isinstance(message_id, str) else base64.b64encode(message_id).decode("ascii")
    entry = manifest.entries.get(stored_key)
    if entry is None:
        raise RollbackError(
            f"{shown_name}: not recorded in the bucket's manifest (written outside this client, "
            "or the manifest was rolled back); refused"
        )
    if entry.message_id != found:
        raise RollbackError(
            f"{shown_name}: the stored object is not the version this client last wrote "
            "(an older version restored as current, or replaced outside the client); refused"
        )


def _encode(entries: Mapping[str, Entry]) -> bytes:
    document = {"format": MANIFEST_FORMAT, "entries": {k: asdict(v) for k, v in sorted(entries.items())}}
    return zlib.compress(json.dumps(document, separators=(",", ":")).encode("utf-8"), 6)


def _decode(bucket: str, data: bytes) -> dict[str, Entry]:
    try:
        document = json.loads(zlib.decompress(data))
        if document.get("format") != MANIFEST_FORMAT:
            raise ValueError
        return {key: Entry(**value) for key, value in document["entries"].items()}
    except (ValueError, KeyError, TypeError, zlib.error):
        raise DecryptionError(f"s3://{bucket}/{MANIFEST_KEY} is not a kommunmoln manifest") from None


def load_manifest(s3, custody, bucket: str) -> Manifest:
    """Read the manifest (one GET); an empty one if the bucket has none yet."""
    found = get_control_object(s3, custody, bucket, MANIFEST_KEY)
    if found is None:
        return Manifest()
    return Manifest(_decode(bucket, found.plaintext), found.etag)


def save_manifest(s3, custody, bucket: str, manifest: Manifest, updates: Mapping[str, Entry | None]) -> Manifest:
    """Apply `updates` (None removes a key) and write with a conditional PUT; merges on conflict."""
    current = manifest
    for _ in range(_WRITE_ATTEMPTS):
        entries = dict(current.entries)
        for key, entry in updates.items():
            if entry is None:
                entries.pop(key, None)
            else:
                entries[key] = entry
        etag = put_control_object(
            s3, custody, bucket, MANIFEST_KEY, _encode(entries),
            if_match=current.etag, create_only=current.etag is None,
        )  # fmt: skip
        if etag is not None:
            return Manifest(entries, etag)
        current = load_manifest(s3, custody, bucket)  # someone else wrote first: merge onto theirs
    raise UsageError(f"s3://{bucket}: the manifest kept changing during {_WRITE_ATTEMPTS} attempts; run again")


def unchanged_plan(
    plan: list[tuple[Path, str]], manifest: Manifest, listing: Mapping[str, str]
) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Split (local path, stored key) pairs into (to upload, unchanged) using manifest and listing ETags."""
    todo, unchanged = [], []
    for path, stored_key in plan:
        entry = manifest.entries.get(stored_key)
        (unchanged if local_file_unchanged(path, entry, listing.get(stored_key)) else todo).append((path, stored_key))
    return todo, unchanged
