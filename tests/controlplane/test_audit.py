"""`make audit` against a local emulation: moto for S3, CloudTrail and Organizations, botocore's Stubber
for the KMS key of a custom key store (moto cannot create one).

Stubbed rule: DescribeKey returns KeyMetadata.Origin AWS_CLOUDHSM for a key in a CloudHSM key store and
EXTERNAL_KEY_STORE for a key in an external key store, with CustomKeyStoreId and, for CloudHSM,
CloudHsmClusterId (AWS KMS API Reference, "DescribeKey" and "KeyMetadata":
https://docs.aws.amazon.com/kms/latest/APIReference/API_DescribeKey.html).
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from kommunmoln import names
from kommunmoln.compliance.audit import (
    FAIL,
    NOT_MET,
    PASS,
    UNVERIFIED,
    audit_buckets,
    audit_guardrails,
    audit_trails,
    failed,
)
from kommunmoln.compliance.guardrails import residency_scp

REGION = "eu-north-1"
HSM_KEY_ARN = "arn:aws:kms:eu-north-1:123456789012:key/11111111-2222-3333-4444-555555555555"
_LOC = {"CreateBucketConfiguration": {"LocationConstraint": REGION}}


def _protected(s3, name: str, tier: str) -> None:
    s3.create_bucket(Bucket=name, **_LOC)
    s3.put_bucket_tagging(
        Bucket=name,
        Tagging={
            "TagSet": [
                {"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED},
                {"Key": names.TAG_TIER, "Value": tier},
            ]
        },
    )


def _harden(s3, name: str) -> None:
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration=dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
        ),
    )
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def _hsm_kms(origin: str) -> tuple[object, Stubber]:
    kms = boto3.client("kms", region_name=REGION)
    stub = Stubber(kms)
    metadata = {
        "KeyId": HSM_KEY_ARN.split("/")[-1],
        "Arn": HSM_KEY_ARN,
        "Origin": origin,
        "CustomKeyStoreId": "cks-1234567890abcdef0",
    }
    if origin == "AWS_CLOUDHSM":
        metadata["CloudHsmClusterId"] = "cluster-1234567abcd"
    stub.add_response("describe_key", {"KeyMetadata": metadata}, {"KeyId": HSM_KEY_ARN})
    stub.activate()
    return kms, stub


@pytest.fixture
def s3():
    with mock_aws():
        yield boto3.client("s3", region_name=REGION)


@pytest.mark.parametrize(("origin", "tier"), [("AWS_CLOUDHSM", "tier B"), ("EXTERNAL_KEY_STORE", "tier C")])
def test_tier_b_and_c_buckets_are_not_met_never_pass(s3, origin: str, tier: str) -> None:
    # GIVEN a hardened tier B bucket whose default key is in a custom key store (Stubber: DescribeKey)
    _protected(s3, "tier-b", names.TIER_B)
    _harden(s3, "tier-b")
    s3.put_bucket_encryption(
        Bucket="tier-b",
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": HSM_KEY_ARN}}
            ]
        },
    )
    kms, stub = _hsm_kms(origin)
    findings = {f.check: f for f in audit_buckets(s3, kms)}
    stub.assert_no_pending_responses()
    # THEN the key origin passes, and the disclosure verdict is `not met` (the provider sees plaintext)
    assert findings["key origin"].status == PASS and origin in findings["key origin"].detail
    verdict = findings["no disclosure to the provider / EDPB Use Case 1"]
    assert verdict.status == NOT_MET and tier in verdict.detail
    assert findings["public access blocked"].status == PASS and findings["versioning"].status == PASS
    # AND `not met` alone does not fail the audit (it is the tier's documented position, not drift)
    assert not failed(list(findings.values()))


def test_drift_shows_aws_kms_key_and_public_access_opened(s3) -> None:
    # GIVEN a tier B bucket switched (outside the templates) to an ordinary AWS_KMS key, with no Block Public Access
    kms = boto3.client("kms", region_name=REGION)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    _protected(s3, "drifted", names.TIER_B)
    s3.put_bucket_encryption(
        Bucket="drifted",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_id}}]
        },
    )
    findings = {f.check: f for f in audit_buckets(s3, kms)}
    # THEN the key origin fails with the origin named, Block Public Access and versioning fail, the audit fails
    assert findings["key origin"].status == FAIL and "AWS_KMS" in findings["key origin"].detail
    assert findings["public access blocked"].status == FAIL and findings["versioning"].status == FAIL
    assert failed(list(findings.values()))


def test_tier_a_bucket_passes_only_with_its_put_deny(s3) -> None:
    # GIVEN a tier A bucket without, then with, the Deny of untagged uploads
    _protected(s3, "tier-a", names.TIER_A)
    _harden(s3, "tier-a")
    kms = boto3.client("kms", region_name=REGION)
    check = "no disclosure to the provider / EDPB Use Case 1"
    assert {f.check: f for f in audit_buckets(s3, kms)}[check].status == FAIL
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::tier-a/*",
        "Condition": {"StringNotEquals": {f"s3:RequestObjectTag/{names.OBJECT_TAG_ENCRYPTION}": "x"}},
    }
    s3.put_bucket_policy(Bucket="tier-a", Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]}))
    assert {f.check: f for f in audit_buckets(s3, kms)}[check].status == PASS


def test_trail_without_data_events_fails_and_with_them_passes(s3) -> None:
    cloudtrail = boto3.client("cloudtrail", region_name=REGION)
    s3.create_bucket(Bucket="trail-logs", **_LOC)
    cloudtrail.create_trail(Name="audit-trail", S3BucketName="trail-logs")
    cloudtrail.start_logging(Name="audit-trail")
    assert audit_trails(cloudtrail)[0].status == FAIL
    cloudtrail.put_event_selectors(
        TrailName="audit-trail",
        EventSelectors=[
            {"ReadWriteType": "All", "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}
        ],
    )
    assert audit_trails(cloudtrail)[0].status == PASS


@pytest.mark.parametrize("policy_type", ["SERVICE_CONTROL_POLICY", "RESOURCE_CONTROL_POLICY"])
def test_scp_set_absent_fails_unattached_fails_attached_passes(s3, policy_type: str) -> None:
    # GIVEN an organisation without the residency set
    organizations = boto3.client("organizations", region_name="us-east-1")
    organizations.create_organization(FeatureSet="ALL")
    assert audit_guardrails(organizations, (REGION,))[0].status == FAIL
    # WHEN the set is created as an SCP (or RCP) but attached nowhere  THEN it still fails: it prevents nothing
    policy_id = organizations.create_policy(
        Name="kommunmoln-residency",
        Description="residency",
        Type=policy_type,
        Content=json.dumps(residency_scp((REGION,))),
    )["Policy"]["PolicySummary"]["Id"]
    unattached = audit_guardrails(organizations, (REGION,))[0]
    assert unattached.status == FAIL and "attached to no" in unattached.detail
    # WHEN it is attached to the organisation's root  THEN it passes, naming the target
    root = organizations.list_roots()["Roots"][0]["Id"]
    organizations.attach_policy(PolicyId=policy_id, TargetId=root)
    attached = audit_guardrails(organizations, (REGION,))[0]
    assert attached.status == PASS and root in attached.detail


def test_member_account_without_organizations_access_is_unverified_not_pass() -> None:
    # Stubbed rule: ListPolicies "can only be called from the management account or a member account that is
    # a delegated administrator"; otherwise AccessDeniedException (AWS Organizations API Reference, ListPolicies).
    organizations = boto3.client("organizations", region_name="us-east-1")
    with Stubber(organizations) as stub:
        stub.add_client_error("list_policies", "AccessDeniedException", "not the management account")
        findings = audit_guardrails(organizations, (REGION,))
    assert findings[0].status == UNVERIFIED and failed(findings)
