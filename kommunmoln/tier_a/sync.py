"""`ls`, `sync` and `rm` over encrypted objects: listings, change detection, delete markers.

Semantics follow `aws s3 sync` where the design allows (docs/use-case-1.md, "sync"):
- direction: local directory -> s3://bucket/prefix (the nightly job of a file server);
- a file is uploaded when its object is missing or changed. `aws s3 sync` calls a file
  changed when the sizes differ or the local file is newer than the object; here a file is
  unchanged only when its SHA-256 equals the one the bucket's encrypted manifest recorded
  for its stored key and the listing's ETag is the one recorded (manifest.py). So an edit
  that keeps size and mtime is uploaded, an object replaced outside the client is uploaded
  again, and AWS learns no digest, size or time: a no-change run reads local files and the
  listing, never an object's content;
- `--exclude` / `--include` take shell patterns on the (plaintext) path relative to the
  source, applied in order with the last match winning, everything included by default
  (as in the AWS CLI);
- `--delete` removes objects under the prefix that have no local file, with a plain
  DeleteObject: in a versioned bucket that only adds a delete marker (the current version
  becomes noncurrent, every version stays). It is refused on a bucket without versioning,
  where a delete would destroy data;
- `--dryrun` prints what would happen and changes nothing.
"""

from __future__ import annotations

import fnmatch
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kommunmoln.tier_a.codec import FRAME_LENGTH, encrypt_stream
from kommunmoln.tier_a.errors import UsageError
from kommunmoln.tier_a.named_bucket import Listed, NamedBucket, folder
from kommunmoln.tier_a.transfer import S3Location, Skipped, _s3_error, object_context, scan_uploads

FRAME_OVERHEAD = 32  # per full frame: 4-byte sequence number, 12-byte IV, 16-byte tag (ESDK message format)


@dataclass(frozen=True)
class LocalFile:
    path: Path
    key: str  # plaintext name
    stored: str  # stored key (the name itself in a --plain-names bucket)
    size: int
    mtime: float  # seconds since the epoch


class SizeModel:
    """The exact stored size of a message under one keyring and context shape.

    An ESDK message of n plaintext bytes with frame length F is a header (fixed for a
    keyring, growing byte for byte with the encryption context, which holds the object key)
    plus n bytes plus 32 bytes per full frame (final frame: same overhead as the empty
    message). Measured once by encrypting an empty message; no object is read.
    """

    _PROBE = "p"

    def __init__(self, key_provider, bucket: str, extra_context: Mapping[str, str] | None = None) -> None:
        context = object_context(bucket, self._PROBE, extra_context)
        self._empty = encrypt_stream(io.BytesIO(b""), io.BytesIO(), key_provider, context)

    def stored_size(self, plaintext_bytes: int, key: str) -> int:
        header_delta = len(key.encode("utf-8")) - len(self._PROBE)
        return self._empty + header_delta + plaintext_bytes + FRAME_OVERHEAD * (plaintext_bytes // FRAME_LENGTH)

    def plaintext_size(self, stored_bytes: int, key: str) -> int | None:
        """The plaintext size a stored object of this model has (None: not one of this model's)."""
        body = stored_bytes - self._empty - (len(key.encode("utf-8")) - len(self._PROBE))
        if body < 0:
            return None
        frames = body // (FRAME_LENGTH + FRAME_OVERHEAD)
        plaintext = body - frames * FRAME_OVERHEAD
        return plaintext if self.stored_size(plaintext, key) == stored_bytes else None


class Filters:
    """--exclude / --include in command-line order; the last matching one decides (AWS CLI rule)."""

    def __init__(self, rules: Iterable[tuple[str, str]] = ()) -> None:
        self.rules = list(rules)

    def included(self, relative: str) -> bool:
        verdict = True
        for kind, pattern in self.rules:
            if fnmatch.fnmatchcase(relative, pattern):
                verdict = kind == "include"
        return verdict


@dataclass
class SyncPlan:
    uploads: list[LocalFile]
    unchanged: list[LocalFile]
    deletes: list[Listed]
    skipped: list[Skipped]


def plan_sync(nb: NamedBucket, source: str, location: S3Location, *, filters: Filters, delete: bool) -> SyncPlan:
    """What `sync` would do: new and changed files to upload, objects without a file to delete.

    `location.key` is a plaintext prefix. Costs the ListObjectsV2 pages of the prefix (names
    are decrypted only for `--delete`) and, via the manifest, no object read.
    """
    if not Path(source).is_dir():
        raise UsageError(f"sync needs a local directory as its source; {source} is not one")
    prefix = folder(location.key)
    scan = scan_uploads([source], S3Location(location.bucket, prefix), allow_empty=True)
    plan = SyncPlan([], [], [], list(scan.skipped))
    remote = {item.stored: item for item in nb.listing(prefix, decrypt=delete)}
    local_keys = set()
    for path, key in scan.items:
        if not filters.included(key[len(prefix) :]):
            continue
        try:
            stored = nb.stored(key)
        except UsageError as error:
            plan.skipped.append(Skipped(str(path), str(error)))
            continue
        info = path.stat()
        local = LocalFile(path, key, stored, info.st_size, info.st_mtime)
        local_keys.add(stored)
        (plan.unchanged if nb.unchanged(path, remote.get(stored)) else plan.uploads).append(local)
    if delete:
        for stored, item in sorted(remote.items()):
            if stored in local_keys:
                continue
            if item.name is None:
                plan.skipped.append(Skipped(f"s3://{location.bucket}/{stored}", f"not deleted: {item.error}"))
            elif filters.included(item.name[len(prefix) :]):
                plan.deletes.append(item)
    return plan


def require_versioning(s3, bucket: str, what: str) -> None:
    """Refuse a delete on a bucket where it would destroy data instead of adding a delete marker."""
    try:
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    except Exception as error:
        raise _s3_error(error, f"versioning status of {bucket}") from None
    if status != "Enabled":
        raise UsageError(
            f"{what} refused: versioning is not enabled on {bucket}, so a delete would destroy the object "
            "(kommunmoln only ever adds delete markers)"
        )


def delete_current(s3, bucket: str, key: str) -> str | None:
    """DeleteObject without a version id: in a versioned bucket, a delete marker (every version stays).

    Returns the delete marker's version id. (Amazon S3 User Guide, "Deleting object
    versions from a versioning-enabled bucket": a simple DELETE inserts a delete marker.)
    """
    try:
        response = s3.delete_object(Bucket=bucket, Key=key)
    except Exception as error:
        raise _s3_error(error, f"delete of s3://{bucket}/{key}") from None
    return response.get("VersionId")
