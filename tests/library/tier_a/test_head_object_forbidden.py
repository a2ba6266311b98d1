"""A not-yet-validated object answers HeadObject with 403: it exists, it is only not readable yet.

AWS rule (S3 API Reference, HeadObject, "Permissions"): HEAD needs s3:GetObject; tier A's bucket
policy denies GetObject until the version is tagged validated, so HeadObject returns 403 Forbidden
(a HEAD response has no error body: botocore's code is "403"). ListObjectsV2 needs only
s3:ListBucket and still lists the key with its Size.
"""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber

from kommunmoln.tier_a.transfer import object_exists, object_size

BUCKET, KEY = "kommunmoln-exempel-tier-a-data", "beslut/ny.pdf.kmn"


@pytest.fixture
def s3():
    client = boto3.client("s3", region_name="eu-north-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def _forbidden_head(stub: Stubber) -> None:
    stub.add_client_error("head_object", "403", "Forbidden", http_status_code=403,
                          expected_params={"Bucket": BUCKET, "Key": KEY})  # fmt: skip


def test_a_forbidden_head_of_a_listed_key_means_it_exists(s3) -> None:
    client, stub = s3
    # GIVEN HeadObject 403 (not yet validated) and a listing that shows the key
    _forbidden_head(stub)
    stub.add_response("list_objects_v2", {"Contents": [{"Key": KEY, "Size": 1234, "LastModified": dt.datetime.now(dt.UTC)}]},
                      {"Bucket": BUCKET, "Prefix": KEY, "MaxKeys": 1})  # fmt: skip
    # WHEN its size is asked THEN it exists with the listed size
    assert object_size(client, BUCKET, KEY) == 1234


def test_a_forbidden_head_of_an_unlisted_key_stays_access_denied(s3) -> None:
    client, stub = s3
    # GIVEN HeadObject 403 and a listing without the key (only a longer key shares the prefix)
    _forbidden_head(stub)
    stub.add_response("list_objects_v2", {"Contents": [{"Key": KEY + ".old", "Size": 1, "LastModified": dt.datetime.now(dt.UTC)}]},
                      {"Bucket": BUCKET, "Prefix": KEY, "MaxKeys": 1})  # fmt: skip
    # WHEN asked THEN the refusal is reported, naming what makes tier A objects readable
    with pytest.raises(Exception, match="validated"):
        object_exists(client, BUCKET, KEY)
