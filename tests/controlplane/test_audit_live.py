"""`make audit`'s live checks beyond buckets and trails (kommunmoln/compliance/audit_live.py) against moto.

moto implements GetKeyPolicy, DescribeLogGroups/ListTagsForResource, GetObjectLockConfiguration and
DescribeAlarms/SetAlarmState. Stubbed rules (botocore Stubber, where moto cannot create the resource):
- a key in a CloudHSM key store: DescribeKey returns Origin AWS_CLOUDHSM with CustomKeyStoreId and
  AWSAccountId (AWS KMS API Reference, "DescribeKey", "KeyMetadata":
  https://docs.aws.amazon.com/kms/latest/APIReference/API_DescribeKey.html), and GetKeyPolicy returns
  {"Policy": <JSON string>, "PolicyName": "default"}, "default" being the only valid policy name
  (https://docs.aws.amazon.com/kms/latest/APIReference/API_GetKeyPolicy.html).
"""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from kommunmoln import names
from kommunmoln.compliance.audit import FACT, FAIL, PASS, UNVERIFIED, audit_buckets, failed, run_audit
from kommunmoln.compliance.audit_live import (
    audit_alarms,
    audit_key_policies,
    audit_log_groups,
    audit_residency,
    audit_trail_object_lock,
    reporting_deadlines,
)

REGION = "eu-north-1"
ACCOUNT = "123456789012"  # moto's default account
OTHER = "111122223333"
_LOC = {"CreateBucketConfiguration": {"LocationConstraint": REGION}}
HSM_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"


def _strict_policy(extra: list[dict] | None = None) -> dict:
    root = f"arn:aws:iam::{ACCOUNT}:root"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": root},
             "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:PutKeyPolicy"], "Resource": "*"},
            {"Sid": "Use", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/usage"},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*"},
            *(extra or []),
        ],
    }  # fmt: skip


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def _protected_bucket_with_key(s3, name: str, key_arn: str) -> None:
    s3.create_bucket(Bucket=name, **_LOC)
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [
        {"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED},
        {"Key": names.TAG_TIER, "Value": names.TIER_B}]})  # fmt: skip
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}}]})  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "verdict", "says"),
    [
        (None, FAIL, "KommunmolnOSL-5"),  # the KMS default policy: kms:* for the root
        (_strict_policy(), PASS, "no outside principal"),
        (
            _strict_policy(
                [
                    {
                        "Sid": "Partner",
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
                        "Action": "kms:Decrypt",
                        "Resource": "*",
                    }
                ]
            ),
            FAIL,
            OTHER,
        ),
    ],
    ids=["default-policy", "strict", "other-account"],
)
def test_live_key_policy_is_held_to_rules_4_and_5(aws, policy, verdict: str, says: str) -> None:
    # GIVEN a protected bucket whose default key has the given live key policy
    s3, kms = aws.client("s3"), aws.client("kms")
    key = kms.create_key(**({"Policy": json.dumps(policy)} if policy else {}))["KeyMetadata"]
    _protected_bucket_with_key(s3, "protected", key["Arn"])
    keys: dict = {}
    audit_buckets(s3, kms, keys)
    # WHEN the audit reads that key's policy  THEN the verdict is the rules' own, with the reason
    assert list(keys) == [key["Arn"]]
    [finding] = audit_key_policies(kms, keys)
    assert finding.status == verdict and says in finding.detail


def test_hsm_key_policy_is_read_live_and_unreadable_is_unverified() -> None:
    # GIVEN a tier B key in a CloudHSM key store (Stubber: DescribeKey then GetKeyPolicy) with a kms:* grant
    kms = boto3.client("kms", region_name=REGION)
    metadata = {"KeyId": HSM_KEY_ARN.split("/")[-1], "Arn": HSM_KEY_ARN, "AWSAccountId": ACCOUNT,
                "Origin": "AWS_CLOUDHSM", "CustomKeyStoreId": "cks-1234567890abcdef0"}  # fmt: skip
    loose = _strict_policy([{"Sid": "All", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                             "Action": "kms:*", "Resource": "*"}])  # fmt: skip
    with Stubber(kms) as stub:
        stub.add_response("get_key_policy", {"Policy": json.dumps(loose), "PolicyName": "default"},
                          {"KeyId": HSM_KEY_ARN, "PolicyName": "default"})  # fmt: skip
        stub.add_client_error("get_key_policy", "AccessDeniedException", "not allowed")
        # WHEN the policy is audited, then audited by a caller who may not read it
        [loose_finding] = audit_key_policies(kms, {HSM_KEY_ARN: metadata})
        [denied] = audit_key_policies(kms, {HSM_KEY_ARN: metadata})
    # THEN kms:* on a key of protected data fails rule 5, and an unreadable policy is unverified (fails the run)
    assert loose_finding.status == FAIL and "kms:*" in loose_finding.detail
    assert denied.status == UNVERIFIED and failed([denied])


def test_log_group_retention_needs_the_gallring_decision_tag(aws) -> None:
    # GIVEN three log groups: kept, expiring with the decision tag, expiring without it
    logs = aws.client("logs")
    logs.create_log_group(logGroupName="/kommunmoln/kept")
    logs.create_log_group(logGroupName="/kommunmoln/decided", tags={names.TAG_GALLRING_DECISION: "KS 2026/123"})
    logs.create_log_group(logGroupName="/kommunmoln/undecided")
    for name in ("/kommunmoln/decided", "/kommunmoln/undecided"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=365)
    # WHEN the audit reads them
    found = {f.resource: f for f in audit_log_groups(logs)}
    # THEN only the group that destroys events without a decision fails
    assert found["/kommunmoln/kept"].status == PASS
    assert found["/kommunmoln/decided"].status == PASS and "KS 2026/123" in found["/kommunmoln/decided"].detail
    assert found["/kommunmoln/undecided"].status == FAIL and "365 days" in found["/kommunmoln/undecided"].detail


def test_bucket_lifecycle_expiry_needs_the_gallring_decision_tag(aws) -> None:
    # GIVEN buckets with: no lifecycle, a delete-marker clean-up only, noncurrent expiry untagged, and tagged
    s3, kms = aws.client("s3"), aws.client("kms")
    for name in ("keep", "markers", "expires", "decided"):
        s3.create_bucket(Bucket=name, **_LOC)
    rule = {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}}
    s3.put_bucket_lifecycle_configuration(Bucket="markers", LifecycleConfiguration={"Rules": [
        {**rule, "Expiration": {"ExpiredObjectDeleteMarker": True}}]})  # fmt: skip
    for name in ("expires", "decided"):
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [
            {**rule, "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]})  # fmt: skip
    s3.put_bucket_tagging(Bucket="decided", Tagging={"TagSet": [{"Key": names.TAG_GALLRING_DECISION, "Value": "KS 1"}]})
    # WHEN the buckets are audited
    found = {f.resource: f for f in audit_buckets(s3, kms) if f.check == "expiry only under a gallring decision"}
    # THEN only the untagged expiry fails
    assert {name: f.status for name, f in found.items()} == {"keep": PASS, "markers": PASS, "expires": FAIL,
                                                             "decided": PASS}  # fmt: skip
    assert "noncurrent versions" in found["expires"].detail


def test_trail_buckets_need_object_lock_in_compliance_mode(aws) -> None:
    # GIVEN three trails writing to: a COMPLIANCE-locked bucket, a GOVERNANCE-locked one, an unlocked one
    s3, cloudtrail = aws.client("s3"), aws.client("cloudtrail")
    for name, mode in (("trail-compliance", "COMPLIANCE"), ("trail-governance", "GOVERNANCE"), ("trail-none", None)):
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=mode is not None, **_LOC)
        if mode:
            s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": 365}}})  # fmt: skip
        cloudtrail.create_trail(Name=f"t-{name}", S3BucketName=name)
    # WHEN the audit reads them  THEN only compliance mode passes
    found = {f.resource: f for f in audit_trail_object_lock(s3, cloudtrail)}
    assert found["trail-compliance"].status == PASS and "365 days" in found["trail-compliance"].detail
    assert found["trail-governance"].status == FAIL and "GOVERNANCE" in found["trail-governance"].detail
    assert found["trail-none"].status == FAIL and "not enabled" in found["trail-none"].detail


def test_reporting_deadlines_follow_nis2_article_23() -> None:
    # GIVEN an alarm at 10:00 UTC on 28 Jan 2026  THEN 24 h, 72 h, and one month after the 72 h notification
    aware = datetime.datetime(2026, 1, 28, 10, 0, tzinfo=datetime.UTC)
    deadlines = reporting_deadlines(aware)
    assert deadlines["early warning"] == datetime.datetime(2026, 1, 29, 10, 0, tzinfo=datetime.UTC)
    assert deadlines["incident notification"] == datetime.datetime(2026, 1, 31, 10, 0, tzinfo=datetime.UTC)
    assert deadlines["final report"] == datetime.datetime(
        2026, 2, 28, 10, 0, tzinfo=datetime.UTC
    )  # 31 Feb: the last day
    december = reporting_deadlines(datetime.datetime(2026, 12, 10, tzinfo=datetime.UTC))["final report"]
    assert december == datetime.datetime(2027, 1, 13, tzinfo=datetime.UTC)


def test_alarm_timestamps_give_the_reporting_deadlines(aws) -> None:
    cloudwatch, sns = aws.client("cloudwatch"), aws.client("sns")
    # GIVEN no alarms at all  THEN the audit fails: nothing would start the clock
    assert audit_alarms(cloudwatch)[0].status == FAIL
    # GIVEN an alarm with an SNS action that goes to ALARM, and one without actions
    topic = sns.create_topic(Name="kommunmoln-alarms")["TopicArn"]
    common = {"MetricName": "QuarantinedObjects", "Namespace": "Kommunmoln", "Statistic": "Sum", "Period": 60,
              "EvaluationPeriods": 1, "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold"}  # fmt: skip
    cloudwatch.put_metric_alarm(AlarmName="quarantine", AlarmActions=[topic], **common)
    cloudwatch.put_metric_alarm(AlarmName="silent", ActionsEnabled=False, **common)
    cloudwatch.set_alarm_state(AlarmName="quarantine", StateValue="ALARM", StateReason="an object was quarantined")
    # WHEN the audit reads the alarms
    found = audit_alarms(cloudwatch)
    by_name = {f.resource: f for f in found}
    # THEN the alarm in ALARM is a fact with its state time and the three deadlines it starts
    alarm = cloudwatch.describe_alarms(AlarmNames=["quarantine"])["MetricAlarms"][0]
    since = alarm["StateUpdatedTimestamp"].astimezone(datetime.UTC)
    fact = by_name["quarantine"]
    assert fact.status == FACT and since.strftime("%Y-%m-%dT%H:%M:%SZ") in fact.detail
    expected = reporting_deadlines(since)["early warning"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"early warning by {expected}" in fact.detail and "final report by" in fact.detail
    # AND the summary names the alarm nobody is notified by; facts do not fail the run
    assert "silent" in by_name["region"].detail and "1 in ALARM" in by_name["region"].detail
    assert not failed(found)


def test_run_audit_covers_every_live_check_on_one_session(aws) -> None:
    # GIVEN an emulated account with one protected bucket on an AWS_KMS key  WHEN the whole audit runs
    s3, kms = aws.client("s3"), aws.client("kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    _protected_bucket_with_key(s3, "protected", key)
    findings = run_audit(aws, (REGION,))
    # THEN every check reports, and the drift (an AWS_KMS key, its default policy, no trail) fails the run
    checks = {f.check for f in findings}
    assert {"key origin", "key policy (rules 4 and 5)", "expiry only under a gallring decision",
            "object access logged", "residency SCP/RCP present and attached",
            "incident reporting clock (alarm timestamps)", "region (rule 1)", "replication destinations (rule 1)",
            "key not multi-Region (rule 1)"} <= checks  # fmt: skip
    assert failed(findings)


# --- residency (rule 1 live): GetBucketLocation, GetBucketReplication, MultiRegion -------------------------
def _replicate(s3, source: str, destination: str, status: str = "Enabled") -> None:
    # S3 requires versioning on source and destination for replication (PutBucketReplication, S3 API Reference)
    for bucket in (source, destination):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_replication(Bucket=source, ReplicationConfiguration={
        "Role": f"arn:aws:iam::{ACCOUNT}:role/replication",
        "Rules": [{"ID": "copy", "Priority": 1, "Status": status, "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": f"arn:aws:s3:::{destination}"}}]})  # fmt: skip


def _residency(aws, destination: str | None = None, multi_region: bool = False) -> list:
    """Audit one protected bucket (on a new key) that replicates to `destination`, if given."""
    s3, kms = aws.client("s3"), aws.client("kms")
    key = kms.create_key(MultiRegion=multi_region)["KeyMetadata"]["Arn"]
    _protected_bucket_with_key(s3, "protected", key)
    if destination:
        _replicate(s3, "protected", destination)
    keys: dict = {}
    protected: list[str] = []
    audit_buckets(s3, kms, keys, protected)
    assert protected == ["protected"]
    return audit_residency(s3, protected, keys, (REGION,))


def test_residency_protected_bucket_replicating_to_us_east_1_fails(aws) -> None:
    # GIVEN a protected bucket in eu-north-1 replicating to a bucket in us-east-1 (moto: GetBucketLocation
    # returns null for us-east-1, as AWS documents)
    aws.client("s3", region_name="us-east-1").create_bucket(Bucket="far-copy")  # no LocationConstraint
    # WHEN the residency check runs
    found = _residency(aws, "far-copy")
    by_check = {f.check: f for f in found}
    # THEN the bucket's own region passes and the replication rule fails, naming the region
    assert by_check["region (rule 1)"].status == PASS and REGION in by_check["region (rule 1)"].detail
    replication = by_check["replication destinations (rule 1)"]
    assert replication.status == FAIL and "us-east-1" in replication.detail and "copy" in replication.detail
    assert failed(found)


def test_residency_replication_in_region_passes(aws) -> None:
    # GIVEN a protected bucket replicating to a bucket in the allowed region, on a single-Region key
    aws.client("s3").create_bucket(Bucket="near-copy", **_LOC)
    found = _residency(aws, "near-copy")
    # THEN every residency finding passes
    assert {f.check: f.status for f in found} == {
        "region (rule 1)": PASS, "replication destinations (rule 1)": PASS, "key not multi-Region (rule 1)": PASS,
    }  # fmt: skip


def test_residency_multi_region_key_fails_and_no_replication_passes(aws) -> None:
    # GIVEN a protected bucket without replication whose key is multi-Region
    found = _residency(aws, multi_region=True)
    by_check = {f.check: f for f in found}
    # THEN no replication passes (ReplicationConfigurationNotFoundError), the multi-Region key fails
    assert by_check["replication destinations (rule 1)"].status == PASS
    assert by_check["key not multi-Region (rule 1)"].status == FAIL


def test_residency_unreadable_destination_is_unverified() -> None:
    # GIVEN a destination whose GetBucketLocation is denied (Stubber: AWS returns AccessDenied to a caller
    # without s3:GetBucketLocation on that bucket; GetBucketReplication response shape per the S3 API
    # Reference, https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketReplication.html)
    s3 = boto3.client("s3", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(s3) as stub:
        stub.add_response("get_bucket_location", {"LocationConstraint": REGION}, {"Bucket": "protected"})
        stub.add_response("get_bucket_replication", {"ReplicationConfiguration": {"Role": "r", "Rules": [
            {"ID": "copy", "Status": "Enabled", "Destination": {"Bucket": "arn:aws:s3:::elsewhere"}}]}},
            {"Bucket": "protected"})  # fmt: skip
        stub.add_client_error("get_bucket_location", "AccessDenied", http_status_code=403)
        found = audit_residency(s3, ["protected"], {}, (REGION,))
    # THEN the destination is unverified (fail closed), which fails the run
    (replication,) = [f for f in found if f.check == "replication destinations (rule 1)"]
    assert replication.status == UNVERIFIED and "AccessDenied" in replication.detail
    assert failed(found)
