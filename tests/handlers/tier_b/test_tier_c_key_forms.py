"""Tier C reuses the tier B validator: it must accept the tier C key in each form S3 or a person names it.

S3 rule (Amazon S3 API Reference, HeadObject, https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html):
the response header x-amz-server-side-encryption-aws-kms-key-id (SSEKMSKeyId) "indicates the ID of the KMS key
that was used for object encryption"; the S3 User Guide's SSE-KMS examples show it as the full key ARN
(arn:<partition>:kms:<region>:<account>:key/<key id>), which is also what the bucket's default encryption sets
(KMSMasterKeyID = the key ARN). So the validator accepts the key ARN and the bare key id of the configured key,
in the aws and aws-eusc partitions, and an alias configured by name once DescribeKey resolved it.
"""

from __future__ import annotations

import pytest

from lambdas.tier_b_validator.logic import REASON_WRONG_KEY, KeyMatcher, evaluate

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
TIER_C_ARN = f"arn:aws:kms:eu-north-1:111122223333:key/{KEY_ID}"
EUSC_ARN = f"arn:aws-eusc:kms:eusc-de-east-1:111122223333:key/{KEY_ID}"
OTHER_KEY = "arn:aws:kms:eu-north-1:111122223333:key/0987dcba-09ba-87dc-65fe-0987654321ba"


def _head(key: str) -> dict:
    # The HeadObject fields the validator reads, as S3 returns them for an SSE-KMS object with a Bucket Key.
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key, "BucketKeyEnabled": True}


@pytest.mark.parametrize("configured", [TIER_C_ARN, EUSC_ARN])
def test_the_key_arn_s3_reports_is_accepted_in_both_partitions(configured: str) -> None:
    # GIVEN the validator configured with the tier C key ARN (the stack's KmsKeyArn)
    matcher = KeyMatcher.build(configured)
    # WHEN S3 reports that ARN, or the bare key id THEN the object is validated
    assert evaluate(_head(configured), matcher).ok
    assert evaluate(_head(KEY_ID), matcher).ok


def test_an_alias_is_resolved_and_then_matches_the_arn_s3_reports() -> None:
    # GIVEN the validator configured by alias name: DescribeKey (KMS API Reference: KeyId may be an alias name;
    # KeyMetadata carries KeyId and Arn) resolves it once
    calls = []

    def describe_key(KeyId: str) -> dict:
        calls.append(KeyId)
        return {"KeyMetadata": {"KeyId": KEY_ID, "Arn": TIER_C_ARN}}

    matcher = KeyMatcher.build("alias/kommunmoln-exempel-tier-c", describe_key)
    assert calls == ["alias/kommunmoln-exempel-tier-c"]
    # THEN the key ARN S3 reports matches, and the alias ARN in the key's account and Region too
    assert evaluate(_head(TIER_C_ARN), matcher).ok
    assert matcher.matches("arn:aws:kms:eu-north-1:111122223333:alias/kommunmoln-exempel-tier-c")


@pytest.mark.parametrize(
    "observed",
    [
        OTHER_KEY,  # another key of the account (e.g. tier B's HSM key)
        f"arn:aws:kms:eu-north-1:444455556666:key/{KEY_ID}",  # the same key id in another account
        f"arn:aws-eusc:kms:eusc-de-east-1:111122223333:key/{KEY_ID}",  # the same id in another partition
        "",
    ],
)
def test_any_other_key_is_quarantined(observed: str) -> None:
    verdict = evaluate(_head(observed), KeyMatcher.build(TIER_C_ARN))
    assert not verdict.ok and verdict.reason == REASON_WRONG_KEY
