"""Fixtures for the end-to-end tests against the local moto server."""

from __future__ import annotations

import secrets

import pytest

from kommunmoln.tier_a.transfer import AwsSettings, make_session, s3_client


@pytest.fixture
def s3(moto_endpoint: str):
    aws = AwsSettings(endpoint_url=moto_endpoint)
    return s3_client(make_session(aws), aws)


@pytest.fixture
def bucket(s3) -> str:
    name = f"tier-a-test-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name
