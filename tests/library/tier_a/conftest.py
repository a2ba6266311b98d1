"""Fixtures for the tier A library tests: keys and small sample files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kommunmoln.tier_a.keys import Keyring, RawAesKey, write_escrow_pair, write_key_file


@pytest.fixture
def key() -> RawAesKey:
    return RawAesKey.generate("kommunmoln", "test-key-1")


@pytest.fixture
def key_file(tmp_path: Path, key: RawAesKey) -> Path:
    return write_key_file(tmp_path / "test.key.json", key)


@pytest.fixture
def keyring(key: RawAesKey) -> Keyring:
    return Keyring(key.master_key())


@pytest.fixture(scope="session")
def escrow_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(public PEM, private PEM): RSA-4096 generation is slow, so once per session."""
    return write_escrow_pair(tmp_path_factory.mktemp("escrow") / "escrow")


@pytest.fixture
def plaintext(tmp_path: Path) -> Path:
    """Three frames and a bit: exercises the framed body and the final frame."""
    path = tmp_path / "plain.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    return path
