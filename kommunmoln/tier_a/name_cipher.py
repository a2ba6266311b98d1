"""Encrypted object keys: each path segment under deterministic AES-SIV (RFC 5297).

Construction (docs/use-case-1.md, "Names"):
- a path `a/b/c.pdf` is split on '/'; every segment is NFC-normalized (macOS writes NFD,
  Windows and Linux usually NFC: both must map to one key), UTF-8 encoded and padded with
  PKCS#7 to a multiple of 16 bytes (the stored length reveals the name length only in
  16-byte steps);
- the padded segment is encrypted with AES-256-SIV (`cryptography`'s AESSIV, a 64-byte key)
  with two associated-data items: the domain label `kommunmoln-name-v1` and the *stored*
  (already encrypted) parent path. SIV is deterministic and misuse resistant: the same name
  in the same folder always gives the same key (so uploads overwrite and prefix listing
  works), while the same name in another folder gives an unrelated segment;
- the 16-byte SIV tag + ciphertext is written in lowercase RFC 4648 base32 without padding
  (`a-z2-7`): S3-safe, URL-safe and case-stable on case-insensitive file systems and tools;
- a segment whose encoding exceeds LONG_SEGMENT characters is replaced by a fixed-length
  digest segment `0` + base32(SHA-256(full encoded segment)) (53 characters; '0' is outside
  the base32 alphabet so the two forms never collide). The full encoded segment is kept
  in a long-name record the client writes as an ESDK message (`bucket_names.py`).

Directory structure stays visible (as in rclone crypt), by choice: prefixes keep their
meaning, so listing and downloading a folder are ListObjectsV2 calls on one prefix exactly
as with `aws s3`. AWS therefore sees the tree's shape (depth, number of entries per folder),
each segment's length in 16-byte steps, and when the same name is written again; not the
names. Flattening (Cryptomator) hides the shape but costs a directory-record lookup per
folder on every listing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from kommunmoln.tier_a.errors import DecryptionError, UsageError

NAME_KEY_BYTES = 64  # AES-256-SIV: two 256-bit keys (S2V/CMAC and CTR)
DOMAIN = b"kommunmoln-name-v1"
LONG_SEGMENT = 128  # encoded characters; names up to 63 UTF-8 bytes stay inline
DIGEST_MARK = "0"  # not in the base32 alphabet
DIGEST_SEGMENT_CHARS = 1 + 52  # '0' + base32 of 32 bytes without padding
MAX_KEY_BYTES = 1024  # S3's limit for an object key (UTF-8 bytes)
MAX_SEGMENT_BYTES = 1024  # a plaintext segment, after NFC (file systems stop at 255)
_PAD_BITS = 128
_BASE32_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
    if not text or not set(text) <= _BASE32_ALPHABET:
        raise ValueError("not lowercase base32")
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


def normalize_segment(segment: str) -> str:
    """The NFC form of one plaintext path segment; refuses what is not a safe file name."""
    if segment in ("", ".", ".."):
        raise UsageError(f"path segment {segment!r} is not allowed (empty, '.' and '..' are refused)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment) or "\\" in segment or "/" in segment:
        raise UsageError(f"path segment {segment!r} contains a control character, '/' or '\\'")
    nfc = unicodedata.normalize("NFC", segment)
    if len(nfc.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise UsageError(f"path segment {nfc[:40]!r}... is longer than {MAX_SEGMENT_BYTES} bytes")
    return nfc


def long_name_digest(full_segment: str) -> str:
    """The fixed-length stand-in for a long encoded segment."""
    return DIGEST_MARK + _b32(hashlib.sha256(full_segment.encode("ascii")).digest())


def is_digest_segment(segment: str) -> bool:
    return len(segment) == DIGEST_SEGMENT_CHARS and segment.startswith(DIGEST_MARK)


@dataclass(frozen=True)
class StoredKey:
    """An encrypted object key, and the long-name records it needs (digest -> full segment)."""

    key: str
    long_names: dict[str, str] = field(default_factory=dict)


class NameCipher:
    """Maps plaintext object keys to stored (encrypted) keys and back. `repr` never shows the key."""

    __slots__ = ("__siv",)

    def __init__(self, key: bytes) -> None:
        if len(key) != NAME_KEY_BYTES:
            raise UsageError(f"a name key is {NAME_KEY_BYTES} bytes (AES-256-SIV), got {len(key)}")
        self.__siv = AESSIV(key)

    @staticmethod
    def generate_key() -> bytes:
        return os.urandom(NAME_KEY_BYTES)

    def __repr__(self) -> str:
        return "NameCipher(key=<hidden>)"

    def __reduce__(self):
        raise TypeError("NameCipher cannot be pickled")

    # --- one segment ---------------------------------------------------------------------
    def encrypt_segment(self, segment: str, stored_parent: str) -> str:
        """The full (possibly long) encoded segment for `segment` under `stored_parent`."""
        padder = padding.PKCS7(_PAD_BITS).padder()
        padded = padder.update(normalize_segment(segment).encode("utf-8")) + padder.finalize()
        return _b32(self.__siv.encrypt(padded, [DOMAIN, stored_parent.encode("ascii")]))

    def decrypt_segment(self, encoded: str, stored_parent: str) -> str:
        """Raises DecryptionError for anything that is not a segment this key wrote under this parent."""
        try:
            padded = self.__siv.decrypt(_unb32(encoded), [DOMAIN, stored_parent.encode("ascii")])
            unpadder = padding.PKCS7(_PAD_BITS).unpadder()
            return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise DecryptionError(
                f"stored name segment {encoded[:24]}... does not decrypt with this bucket's name key "
                "(renamed, moved, or not written by this client)"
            ) from None

    # --- whole keys ----------------------------------------------------------------------
    def encrypt_key(self, plain_key: str) -> StoredKey:
        """Encrypt every segment of `plain_key` ('a/b/c'). Raises UsageError for unsafe or too long keys."""
        if plain_key.startswith("/") or plain_key.endswith("/"):
            raise UsageError(f"object name {plain_key!r} must not start or end with '/'")
        parent = ""
        long_names: dict[str, str] = {}
        for segment in plain_key.split("/"):
            encoded = self.encrypt_segment(segment, parent)
            if len(encoded) > LONG_SEGMENT:
                digest = long_name_digest(encoded)
                long_names[digest] = encoded
                encoded = digest
            parent = f"{parent}{encoded}/"
        stored = parent[:-1]
        if len(stored) > MAX_KEY_BYTES:
            raise UsageError(
                f"object name {plain_key!r} is too deep or too long once encrypted "
                f"({len(stored)} bytes; S3 allows {MAX_KEY_BYTES}): shorten the path"
            )
        return StoredKey(stored, long_names)

    def encrypt_prefix(self, plain_prefix: str) -> StoredKey:
        """A folder prefix ('a/b' or 'a/b/') as a stored prefix ending in '/' ('' stays '')."""
        folder = plain_prefix.rstrip("/")
        if not folder:
            return StoredKey("")
        stored = self.encrypt_key(folder)
        return StoredKey(stored.key + "/", stored.long_names)

    def decrypt_key(self, stored_key: str, long_name: Callable[[str], str] | None = None) -> str:
        """The plaintext name of a stored key. `long_name(digest)` returns a long segment's full form."""
        parent = ""
        plain: list[str] = []
        for segment in stored_key.split("/"):
            encoded = segment
            if is_digest_segment(segment):
                if long_name is None:
                    raise DecryptionError(f"stored key has a long-name segment {segment} and no record was given")
                encoded = long_name(segment)
                if long_name_digest(encoded) != segment:
                    raise DecryptionError(f"long-name record for {segment} does not match its digest")
            plain.append(self.decrypt_segment(encoded, parent))
            parent = f"{parent}{segment}/"
        return "/".join(plain)


def stored_name_overhead(plain_bytes: int) -> int:
    """Characters an encrypted segment takes for a plaintext segment of `plain_bytes` UTF-8 bytes."""
    padded = (plain_bytes // 16 + 1) * 16
    chars = -(-(16 + padded) * 8 // 5)
    return DIGEST_SEGMENT_CHARS if chars > LONG_SEGMENT else chars
