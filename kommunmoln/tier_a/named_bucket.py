"""The client's view of one tier A bucket: plaintext names, stored keys, the manifest, padding.

Every command of the CLI goes through a `NamedBucket`: it speaks plaintext names to the
user and stored keys to S3.

- Names: `bucket_names.py` (the bucket record: mode and name key) and `name_cipher.py`
  (AES-SIV per segment). In an encrypted-names bucket no request carries a plaintext
  name; with `--plain-names` the stored key is the name (today's behaviour). A bucket is
  one or the other: the record says which, and the other mode is refused.
- Manifest (`manifest.py`): uploads record what they stored (plaintext SHA-256 and size,
  ESDK message ID, ETag); `sync` skips unchanged files from it without reading any
  object; `download` refuses an object whose authenticated message ID is not the one
  recorded (rollback), before any plaintext is written.
- Padding (`size_padding.py`): `--pad` objects carry `kommunmoln:padding=padme-v1` in the
  context; download removes the padding whatever option it was given.

Errors name the plaintext name for the local user (`localize`); requests never do.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from kommunmoln.tier_a import size_padding
from kommunmoln.tier_a.bucket_names import BucketNames, open_bucket_names
from kommunmoln.tier_a.errors import DecryptionError, TierAError, UsageError
from kommunmoln.tier_a.manifest import (
    Entry,
    Manifest,
    RollbackError,
    check_current,
    entry_for_upload,
    load_manifest,
    local_file_unchanged,
    save_manifest,
)
from kommunmoln.tier_a.transfer import (
    DownloadPlan,
    S3Location,
    Skipped,
    UploadResult,
    list_objects,
    object_size,
    safe_relative,
)

MANIFEST_FLUSH_EVERY = 1000  # recorded uploads between manifest writes (and always at the end of a run)


def folder(prefix: str) -> str:
    """A key or prefix as a folder prefix: '' stays '', 'a/b' becomes 'a/b/'."""
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


@dataclass(frozen=True)
class Listed:
    """One object under a prefix: its plaintext name (None if it does not decrypt) and listing."""

    name: str | None
    stored: str
    size: int  # stored (ciphertext) bytes
    etag: str
    last_modified: _dt.datetime
    error: str = ""


@dataclass
class NamedBucket:
    """Plaintext names <-> stored keys for one bucket, plus its manifest (read on first use)."""

    s3: Any
    custody: Any
    bucket: str
    names: BucketNames
    _manifest: Manifest | None = field(default=None, repr=False)
    _updates: dict[str, Entry | None] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, s3, custody, bucket: str, *, plain_names: bool, create: bool, dry_run: bool = False) -> NamedBucket:
        """Read the bucket record (create it on a first upload); refuses the other name mode."""
        names_ = open_bucket_names(s3, custody, bucket, plain_names=plain_names, create=create, dry_run=dry_run)
        return cls(s3, custody, bucket, names_)

    @property
    def encrypted(self) -> bool:
        return not self.names.plain

    # --- names ----------------------------------------------------------------------------
    def stored(self, name: str, *, for_upload: bool = False) -> str:
        """The stored key of a plaintext name; an upload also writes any long-name record it needs."""
        stored = self.names.stored(name)
        if for_upload:
            self.names.write_long_names(stored)
        return stored.key

    def stored_prefix(self, name_prefix: str) -> str:
        return self.names.stored_prefix(folder(name_prefix))

    def name(self, stored: str) -> str:
        return self.names.plain_name(stored)

    def localize(self, text: str, stored: str, name: str) -> str:
        """An error text for the local user: the plaintext name in place of the stored key."""
        return text.replace(stored, name) if stored != name else text

    def listing(self, name_prefix: str, *, decrypt: bool = True) -> Iterator[Listed]:
        """The objects under a plaintext folder prefix (the client's own records left out)."""
        prefix = self.stored_prefix(name_prefix)
        for item in list_objects(self.s3, self.bucket, prefix):
            stored = item["Key"]
            if stored.endswith("/") or self.names.is_record(stored):
                continue
            name, error = None, ""
            if decrypt:
                try:
                    name = self.name(stored)
                except TierAError as failure:
                    error = str(failure)
            yield Listed(name, stored, int(item.get("Size", 0)), item.get("ETag", ""), item["LastModified"], error)

    def objects(self, name: str) -> tuple[bool, list[Listed]]:
        """(True, [it]) if `name` is one object, else (False, everything under the folder `name`)."""
        if name and not name.endswith("/"):
            stored = self.stored(name)
            size = object_size(self.s3, self.bucket, stored)
            if size is not None:
                canonical = self.name(stored)  # NFC, as stored (a name typed in NFD maps to it)
                return True, [Listed(canonical, stored, size, "", _dt.datetime.now(_dt.UTC))]
        return False, list(self.listing(name))

    def targets(self, name: str, *, recursive: bool) -> list[Listed]:
        """What `rm` deletes: one object, or with `recursive` everything under a folder."""
        if (not name or name.endswith("/")) and not recursive:
            raise UsageError(f"s3://{self.bucket}/{name} is a prefix; add --recursive to delete every object under it")
        single, found = self.objects(name) if name and not name.endswith("/") else (False, [])
        if recursive:
            return list(self.listing(name))
        if not single:
            raise UsageError(f"no object s3://{self.bucket}/{name}")
        return found

    # --- manifest ---------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = load_manifest(self.s3, self.custody, self.bucket)
        return self._manifest

    def entry(self, stored: str) -> Entry | None:
        return self.manifest.entries.get(stored)

    def unchanged(self, path: str | os.PathLike[str], listed: Listed | None) -> bool:
        """The local file holds what the stored object holds (manifest digest + listing ETag)."""
        return listed is not None and local_file_unchanged(path, self.entry(listed.stored), listed.etag)

    def plaintext_size(self, item: Listed, model=None) -> int | None:
        """The plaintext size: the manifest's when it records this very object, else `model`'s guess."""
        entry = self.entry(item.stored)
        if entry is not None and entry.etag.strip('"') == item.etag.strip('"'):
            return entry.size
        return model.plaintext_size(item.size, item.stored) if model else None

    def record_upload(self, result: UploadResult) -> None:
        """Remember an upload for the manifest; written every MANIFEST_FLUSH_EVERY uploads and by `save`.

        The periodic write bounds what a killed run (SIGKILL, power cut) leaves unrecorded.
        """
        self._updates[result.key] = entry_for_upload(result)
        if len(self._updates) >= MANIFEST_FLUSH_EVERY:
            self.save()

    def record_delete(self, stored: str) -> None:
        self._updates[stored] = None

    def save(self) -> None:
        """Write the recorded uploads and deletes into the manifest (conditional write, merged)."""
        if self._updates:
            self._manifest = save_manifest(self.s3, self.custody, self.bucket, self.manifest, self._updates)
            self._updates = {}

    # --- download -----------------------------------------------------------------------------
    def output_filter(
        self, stored: str, name: str, *, allow_unrecorded: bool = False
    ) -> Callable[[Any, BinaryIO], Any]:
        """The decryption hook: refuse a rolled-back object, then remove size padding if any."""

        def check(header, handle: BinaryIO):
            recorded = self.entry(stored) is not None
            try:
                if recorded or not allow_unrecorded:
                    check_current(self.manifest, stored, bytes(header.message_id), shown_name=name)
            except RollbackError as error:
                hint = "" if recorded else " (give --allow-unrecorded to accept objects written outside the client)"
                raise RollbackError(f"{error}{hint}") from None
            return unpadding(header, handle)

        return check

    def plan_downloads(self, location: S3Location, dest: str | os.PathLike[str]) -> tuple[DownloadPlan, dict[str, str]]:
        """(stored key, local path) pairs for a plaintext key or folder, and stored key -> name."""
        dest = Path(dest)
        single, found = self.objects(location.key)
        shown: dict[str, str] = {}
        if single:
            name = str(found[0].name)
            target = dest / Path(name).name if dest.is_dir() or str(dest).endswith(os.sep) else dest
            shown[found[0].stored] = name
            return DownloadPlan([(found[0].stored, target)], [], {found[0].stored: found[0].size}), shown
        prefix = folder(location.key)
        plan = DownloadPlan([], [])
        for item in found:
            if item.name is None:
                plan.skipped.append(Skipped(f"s3://{self.bucket}/{item.stored}", item.error))
                continue
            shown[item.stored] = item.name
            plan.sizes[item.stored] = item.size
            try:
                plan.items.append((item.stored, dest.joinpath(*safe_relative(item.name[len(prefix) :]).parts)))
            except UsageError as error:
                plan.skipped.append(Skipped(f"s3://{self.bucket}/{item.name}", str(error)))
        if not plan.items and not plan.skipped:
            raise UsageError(f"no object or prefix s3://{self.bucket}/{location.key}")
        if dest.exists() and not dest.is_dir():
            raise UsageError(f"{dest} is a file; a prefix downloads into a directory")
        return plan, shown


def unpadding(header, handle: BinaryIO):
    """The sink for a decrypted message: an Unpadder if its context says it is padded."""
    scheme = dict(header.encryption_context).get(size_padding.CONTEXT_KEY)
    if scheme is None:
        return handle
    if scheme != size_padding.SCHEME:
        raise DecryptionError(f"unknown padding scheme {scheme!r} in the encryption context; refused")
    return size_padding.Unpadder(handle)


def upload_context(extra: Mapping[str, str], *, pad: bool) -> dict[str, str]:
    """The extra encryption context of an upload: the user's entries plus the padding marker."""
    if size_padding.CONTEXT_KEY in extra:
        raise UsageError(f"--context {size_padding.CONTEXT_KEY} is set by the client (use --pad)")
    return {**extra, size_padding.CONTEXT_KEY: size_padding.SCHEME} if pad else dict(extra)
