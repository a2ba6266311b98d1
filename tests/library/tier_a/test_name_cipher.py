"""Encrypted object keys: deterministic AES-SIV per segment (kommunmoln/tier_a/name_cipher.py)."""

from __future__ import annotations

import re
import unicodedata

import pytest

from kommunmoln.tier_a.errors import DecryptionError, UsageError
from kommunmoln.tier_a.name_cipher import (
    DIGEST_SEGMENT_CHARS,
    LONG_SEGMENT,
    MAX_KEY_BYTES,
    NameCipher,
    is_digest_segment,
    stored_name_overhead,
)

SAFE = re.compile(r"[a-z2-7]+|0[a-z2-7]{52}")


@pytest.fixture
def cipher() -> NameCipher:
    return NameCipher(NameCipher.generate_key())


def _segments(key: str) -> list[str]:
    return key.split("/")


def test_mapping_is_deterministic_and_round_trips(cipher: NameCipher) -> None:
    # GIVEN a sensitive path  WHEN it is encrypted twice
    name = "socialnamnden/2025/anna-andersson-191212.pdf"
    first, second = cipher.encrypt_key(name), cipher.encrypt_key(name)
    # THEN both give the same stored key, with the same structure, in an S3-safe lowercase alphabet
    assert first.key == second.key
    assert len(_segments(first.key)) == 3
    assert all(SAFE.fullmatch(segment) for segment in _segments(first.key))
    assert "anna" not in first.key and "2025" not in first.key
    # AND it decrypts back to the plaintext name
    assert cipher.decrypt_key(first.key) == name


def test_same_name_in_different_folders_does_not_match(cipher: NameCipher) -> None:
    # GIVEN the same file name in two folders  THEN the stored last segments differ (parent is associated data)
    a = _segments(cipher.encrypt_key("skola/elev.pdf").key)[-1]
    b = _segments(cipher.encrypt_key("vard/elev.pdf").key)[-1]
    assert a != b


def test_another_key_cannot_read_and_moved_segment_is_refused(cipher: NameCipher) -> None:
    stored = cipher.encrypt_key("a/b/c.txt").key
    # WHEN another name key tries  THEN it is refused
    with pytest.raises(DecryptionError):
        NameCipher(NameCipher.generate_key()).decrypt_key(stored)
    # WHEN the last segment is moved under another folder  THEN it does not decrypt there
    moved = cipher.encrypt_key("x").key + "/" + _segments(stored)[-1]
    with pytest.raises(DecryptionError):
        cipher.decrypt_key(moved)


def test_prefix_listing_works_on_folder_boundaries(cipher: NameCipher) -> None:
    # GIVEN files in a folder  THEN every stored key starts with the stored folder prefix
    prefix = cipher.encrypt_prefix("socialnamnden/2025/").key
    assert prefix.endswith("/")
    assert cipher.encrypt_prefix("socialnamnden/2025").key == prefix
    for name in ("socialnamnden/2025/a.pdf", "socialnamnden/2025/sub/b.pdf"):
        assert cipher.encrypt_key(name).key.startswith(prefix)
    assert not cipher.encrypt_key("socialnamnden/2024/a.pdf").key.startswith(prefix)
    assert cipher.encrypt_prefix("").key == ""


def test_nfc_and_nfd_forms_map_to_one_key(cipher: NameCipher) -> None:
    # GIVEN å ä ö as Windows (NFC) and macOS (NFD) write them
    nfc = unicodedata.normalize("NFC", "förskola/Åsa Öberg ärende.pdf")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    # THEN both map to the same stored key, and it decrypts to the NFC form
    assert cipher.encrypt_key(nfc).key == cipher.encrypt_key(nfd).key
    assert cipher.decrypt_key(cipher.encrypt_key(nfd).key) == nfc


def test_spaces_are_kept(cipher: NameCipher) -> None:
    name = "mapp med mellanslag/ fil  med två .txt"
    assert cipher.decrypt_key(cipher.encrypt_key(name).key) == name


@pytest.mark.parametrize("name", ["a/../b", "../a", "a/./b", "a//b", "/a", "a/", "", "a/b\x00c", "a\\b"])
def test_unsafe_segments_are_refused(cipher: NameCipher, name: str) -> None:
    with pytest.raises(UsageError):
        cipher.encrypt_key(name)


def test_long_names_get_a_fixed_length_digest_segment(cipher: NameCipher) -> None:
    # GIVEN a 200-byte file name
    long = "x" * 200 + ".pdf"
    stored = cipher.encrypt_key(f"mapp/{long}")
    last = _segments(stored.key)[-1]
    # THEN the stored segment is the fixed-length digest and the full encrypted name is a record
    assert is_digest_segment(last) and len(last) == DIGEST_SEGMENT_CHARS
    assert set(stored.long_names) == {last}
    assert len(stored.long_names[last]) > LONG_SEGMENT
    # AND the name decrypts only given that record
    assert cipher.decrypt_key(stored.key, stored.long_names.__getitem__) == f"mapp/{long}"
    with pytest.raises(DecryptionError):
        cipher.decrypt_key(stored.key)
    # AND a record that does not match its digest is refused (the last character always changes:
    # replacing it with a fixed letter would leave the record intact whenever it already ended in it)
    record = stored.long_names[last]
    forged = record[:-1] + ("b" if record[-1] == "a" else "a")
    with pytest.raises(DecryptionError):
        cipher.decrypt_key(stored.key, lambda digest: forged)


def test_short_names_need_no_record(cipher: NameCipher) -> None:
    stored = cipher.encrypt_key("a" * 63)
    assert not stored.long_names and len(stored.key) <= LONG_SEGMENT


def test_too_deep_paths_are_refused_with_the_s3_limit(cipher: NameCipher) -> None:
    deep = "/".join(["mapp-med-ett-langre-namn"] * 20)
    with pytest.raises(UsageError, match=str(MAX_KEY_BYTES)):
        cipher.encrypt_key(deep)


def test_name_length_is_only_visible_in_16_byte_steps(cipher: NameCipher) -> None:
    lengths = {len(cipher.encrypt_key("n" * n).key) for n in range(1, 16)}
    assert lengths == {stored_name_overhead(1)} == {52}
    assert len(cipher.encrypt_key("n" * 16).key) == stored_name_overhead(16) == 77


def test_key_is_never_shown(cipher: NameCipher) -> None:
    assert "hidden" in repr(cipher)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(cipher)
    with pytest.raises(UsageError):
        NameCipher(b"short")
