"""Fixtures of the tier A client's end-to-end tests (local moto server)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from kommunmoln.tier_a.keys import RawAesKey, write_key_file
from kommunmoln.tier_a.transfer import AwsSettings, make_session, s3_client


@pytest.fixture
def client_s3(moto_endpoint: str):
    """An S3 client of the tier A library against the moto server."""
    aws = AwsSettings(endpoint_url=moto_endpoint)
    return s3_client(make_session(aws), aws)


@pytest.fixture
def make_bucket(client_s3) -> Callable[..., str]:
    """A new bucket per call (versioned unless told otherwise); tests share the server."""

    def make(*, versioned: bool = True) -> str:
        name = f"tier-a-client-{secrets.token_hex(4)}"
        client_s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
        if versioned:
            client_s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    return make


@pytest.fixture
def client_key() -> RawAesKey:
    return RawAesKey.generate("kommunmoln", "client-key")


@pytest.fixture
def client_key_file(tmp_path: Path, client_key: RawAesKey) -> Path:
    return write_key_file(tmp_path / "client.key.json", client_key)


@pytest.fixture
def s3(client_s3):
    """The same client under the short name the older tests use."""
    return client_s3


@pytest.fixture
def bucket(make_bucket) -> str:
    """One versioned bucket."""
    return make_bucket()
