"""Test helper: the stored (encrypted) key the client uses for a plaintext name in a bucket."""

from __future__ import annotations

import os

from kommunmoln.tier_a.bucket_names import open_bucket_names
from kommunmoln.tier_a.custody import CustodyOptions, open_custody


def stored_key(s3, bucket: str, name: str, key_file: str | os.PathLike[str]) -> str:
    """The key S3 holds for plaintext `name` (reads the bucket record with `key_file`)."""
    with open_custody(CustodyOptions(key_file=str(key_file)), need_primary=False) as custody:
        names_ = open_bucket_names(s3, custody, bucket, plain_names=False, create=False)
        return names_.stored(name).key


def listed_names(s3, bucket: str, key_file: str | os.PathLike[str]) -> list[str]:
    """The plaintext names of every data object in the bucket (the client's records left out), sorted."""
    with open_custody(CustodyOptions(key_file=str(key_file)), need_primary=False) as custody:
        names_ = open_bucket_names(s3, custody, bucket, plain_names=False, create=False)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return sorted(names_.plain_name(k) for k in keys if not names_.is_record(k))
