"""The live checks of `make audit` beyond buckets and trails: key policies, log retention, trail Object Lock, alarms.

Each takes a boto3 client and returns `Finding`s (kommunmoln/compliance/audit.py), read-only
(Get/List/Describe), failing closed: what it cannot read is `unverified`.

- Key policies: the live policy of every key that protects a protected bucket is put into a one-stack
  model (the key, and a protected bucket whose default key it is) and evaluated with the pack's own
  `Evaluator` rules 4 (no principal outside the account) and 5 (no wildcard actions on a key of
  protected data), so the live account is held to exactly the rules the templates are.
- Log groups: a retention period destroys log events, so it needs the gallring decision tag (rule 9).
- Trail buckets: Object Lock enabled with a default retention in COMPLIANCE mode (GOVERNANCE can be
  bypassed with s3:BypassGovernanceRetention, so it is not enough for audit logs).
- Residency (rule 1): each protected bucket's region (GetBucketLocation), its replication rules'
  destinations (GetBucketReplication, then GetBucketLocation of each destination) and MultiRegion of
  its keys (DescribeKey), against allowed_regions.
- Alarms (a fact): each alarm in ALARM gives the time its state changed, which is the earliest time the
  municipality can have become aware of a significant incident, and the deadlines that starts under
  NIS2 Art. 23(4) as cybersäkerhetslagen (2025:1506) applies it: early warning within 24 hours,
  incident notification within 72 hours, final report within one month of the notification.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from kommunmoln import names
from kommunmoln.compliance.audit import FACT, FAIL, PASS, UNVERIFIED, Finding, _code
from kommunmoln.compliance.catalog import RULES_BY_NUMBER
from kommunmoln.compliance.checks import COMPLIANT, Evaluator
from kommunmoln.compliance.model import AppModel, ResourceRef, StackModel

_LIVE_STACK, _KEY, _BUCKET = "live", "LiveKey", "LiveProtectedBucket"


def key_policy_model(policy: dict[str, Any], account: str, region: str) -> tuple[AppModel, ResourceRef]:
    """A one-stack model of a live key (with its live policy) as the default key of a protected bucket."""
    bucket = {
        "Type": "AWS::S3::Bucket",
        "Properties": {
            "Tags": [{"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED}],
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": {"Fn::GetAtt": [_KEY, "Arn"]},
                        }
                    }
                ]
            },
        },
    }
    key = {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": policy}}
    model = AppModel()
    model.add(StackModel(_LIVE_STACK, {"Resources": {_KEY: key, _BUCKET: bucket}}, region, account))
    return model, ResourceRef(_LIVE_STACK, _KEY)


def evaluate_key_policy(policy: dict[str, Any], account: str, region: str) -> list[str]:
    """Rules 4 and 5 on a live key policy: the reasons it fails (empty: it passes both)."""
    model, ref = key_policy_model(policy, account, region)
    evaluator = Evaluator(model)
    problems = []
    for number in (4, 5):
        outcome = evaluator.evaluate(RULES_BY_NUMBER[number], ref)
        if outcome.status != COMPLIANT:
            problems.extend(f"{RULES_BY_NUMBER[number].rule_id}: {reason}" for reason in outcome.reasons)
    return problems


def audit_key_policies(kms: Any, keys: dict[str, dict[str, Any]]) -> list[Finding]:
    """The live policy of each key (ARN -> DescribeKey KeyMetadata) passes rules 4 and 5."""
    check = "key policy (rules 4 and 5)"
    found = []
    for arn, metadata in sorted(keys.items()):
        try:
            policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
        except (ClientError, ValueError, KeyError) as error:
            code = _code(error) if isinstance(error, ClientError) else type(error).__name__
            found.append(Finding(check, arn, UNVERIFIED, f"GetKeyPolicy failed ({code})"))
            continue
        account = str(metadata.get("AWSAccountId") or arn.split(":")[4])
        region = arn.split(":")[3]
        problems = evaluate_key_policy(policy, account, region)
        found.append(
            Finding(check, arn, FAIL if problems else PASS, "; ".join(problems) or "no outside principal, no wildcard")
        )
    return found


def _log_groups(logs: Any) -> Iterator[dict[str, Any]]:
    for page in logs.get_paginator("describe_log_groups").paginate():
        yield from page.get("logGroups", [])


def audit_log_groups(logs: Any) -> list[Finding]:
    """Rule 9 live: a log group with a retention period carries the gallring decision tag."""
    check = "log retention only under a gallring decision"
    found = []
    for group in _log_groups(logs):
        name = group["logGroupName"]
        days = group.get("retentionInDays")
        if days is None:
            found.append(Finding(check, name, PASS, "never expire: log events are kept"))
            continue
        arn = group.get("logGroupArn") or str(group.get("arn", "")).removesuffix(":*")
        try:
            tags = logs.list_tags_for_resource(resourceArn=arn).get("tags", {})
        except ClientError as error:
            found.append(Finding(check, name, UNVERIFIED, f"tags unreadable ({_code(error)})"))
            continue
        decision = tags.get(names.TAG_GALLRING_DECISION, "").strip()
        if decision:
            found.append(Finding(check, name, PASS, f"events expire after {days} days under decision {decision!r}"))
        else:
            reason = f"events expire after {days} days without a gallring decision (tag {names.TAG_GALLRING_DECISION})"
            found.append(Finding(check, name, FAIL, reason))
    return found


def audit_trail_object_lock(s3: Any, cloudtrail: Any) -> list[Finding]:
    """Every trail's bucket has Object Lock with a COMPLIANCE-mode default retention."""
    check = "trail bucket Object Lock (compliance mode)"
    found = []
    buckets = sorted(
        {t["S3BucketName"] for t in cloudtrail.describe_trails().get("trailList", []) if "S3BucketName" in t}
    )
    for bucket in buckets:
        try:
            lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        except ClientError as error:
            if _code(error) == "ObjectLockConfigurationNotFoundError":
                found.append(Finding(check, bucket, FAIL, "Object Lock is not enabled: log files can be deleted"))
            else:
                found.append(Finding(check, bucket, UNVERIFIED, f"Object Lock unreadable ({_code(error)})"))
            continue
        retention = (lock.get("Rule") or {}).get("DefaultRetention") or {}
        period = f"{retention.get('Days') or retention.get('Years')} {'days' if retention.get('Days') else 'years'}"
        if lock.get("ObjectLockEnabled") == "Enabled" and retention.get("Mode") == "COMPLIANCE":
            found.append(Finding(check, bucket, PASS, f"COMPLIANCE mode, {period}"))
        else:
            shown = retention.get("Mode") or "no default retention"
            found.append(Finding(check, bucket, FAIL, f"{shown}: not compliance mode"))
    return found


def _plus_month(moment: datetime.datetime) -> datetime.datetime:
    """The same day and time one calendar month later (the last day of a shorter month)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    for day in range(moment.day, 27, -1):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return moment.replace(year=year, month=month, day=min(moment.day, 28))


def reporting_deadlines(aware: datetime.datetime) -> dict[str, datetime.datetime]:
    """NIS2 Art. 23(4): early warning 24 h, notification 72 h, final report one month after the notification."""
    notification = aware + datetime.timedelta(hours=72)
    return {
        "early warning": aware + datetime.timedelta(hours=24),
        "incident notification": notification,
        "final report": _plus_month(notification),
    }


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_alarms(cloudwatch: Any) -> list[Finding]:
    """Facts for the incident-reporting clock: each alarm in ALARM with its state time and deadlines."""
    check = "incident reporting clock (alarm timestamps)"
    alarms = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate():
        alarms.extend(page.get("MetricAlarms", []) + page.get("CompositeAlarms", []))
    if not alarms:
        return [Finding(check, "region", FAIL, "no CloudWatch alarms: nothing starts the clock or notifies anyone")]
    found = []
    silent = [a["AlarmName"] for a in alarms if not (a.get("ActionsEnabled") and a.get("AlarmActions"))]
    for alarm in (a for a in alarms if a.get("StateValue") == "ALARM"):
        aware = alarm["StateUpdatedTimestamp"]
        deadlines = "; ".join(f"{name} by {_iso(at)}" for name, at in reporting_deadlines(aware).items())
        found.append(Finding(check, alarm["AlarmName"], FACT, f"in ALARM since {_iso(aware)}: {deadlines}"))
    found.append(
        Finding(
            check,
            "region",
            FACT,
            f"{len(alarms)} alarms, {len(found)} in ALARM"
            + (f"; without enabled actions (nobody is notified): {', '.join(silent)}" if silent else ""),
        )
    )
    return found


# --- residency of protected buckets (rule 1 live) ------------------------------------------------
def bucket_region(s3: Any, bucket: str) -> str:
    """The bucket's region from GetBucketLocation.

    AWS: "Buckets in Region us-east-1 have a LocationConstraint of null. Buckets with a
    LocationConstraint of EU reside in eu-west-1." (Amazon S3 API Reference, GetBucketLocation,
    Response Elements: https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketLocation.html).
    """
    location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def audit_residency(
    s3: Any, buckets: Sequence[str], keys: dict[str, dict[str, Any]], allowed_regions: Sequence[str]
) -> list[Finding]:
    """Rule 1 on the live account: each protected bucket, its replication destinations, its keys.

    - GetBucketLocation: the bucket is in an allowed region.
    - GetBucketReplication: every rule not `Disabled` copies to a bucket whose GetBucketLocation is an
      allowed region (no configuration: error ReplicationConfigurationNotFoundError, nothing copied).
      A destination whose location cannot be read is `unverified` (fail closed).
    - DescribeKey (from `audit_buckets`): each key of a protected bucket has MultiRegion false; a
      KeyMetadata without MultiRegion is `unverified`.
    """
    allowed = ", ".join(allowed_regions)
    found: list[Finding] = []
    for bucket in buckets:
        try:
            region = bucket_region(s3, bucket)
            status = PASS if region in allowed_regions else FAIL
            found.append(Finding("region (rule 1)", bucket, status, f"{region}; allowed: {allowed}"))
        except ClientError as error:
            found.append(Finding("region (rule 1)", bucket, UNVERIFIED, f"GetBucketLocation failed ({_code(error)})"))
        found.extend(_replication(s3, bucket, allowed_regions))
    for arn, metadata in sorted(keys.items()):
        multi = metadata.get("MultiRegion")
        status = UNVERIFIED if multi is None else FAIL if multi else PASS
        detail = "MultiRegion not in DescribeKey" if multi is None else f"MultiRegion {str(multi).lower()}"
        found.append(Finding("key not multi-Region (rule 1)", arn, status, detail))
    return found


def _replication(s3: Any, bucket: str, allowed_regions: Sequence[str]) -> list[Finding]:
    check = "replication destinations (rule 1)"
    try:
        rules = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"].get("Rules", [])
    except ClientError as error:
        if _code(error) == "ReplicationConfigurationNotFoundError":
            return [Finding(check, bucket, PASS, "no replication configuration")]
        return [Finding(check, bucket, UNVERIFIED, f"GetBucketReplication failed ({_code(error)})")]
    found = []
    for index, rule in enumerate(rules):
        if rule.get("Status") == "Disabled":
            continue
        name = rule.get("ID") or f"#{index + 1}"
        destination = str((rule.get("Destination") or {}).get("Bucket", ""))
        target = destination.removeprefix("arn:aws:s3:::")
        try:
            region = bucket_region(s3, target) if target else None
        except ClientError as error:
            found.append(
                Finding(
                    check, bucket, UNVERIFIED, f"rule {name} to {destination}: location unreadable ({_code(error)})"
                )
            )
            continue
        status = PASS if region in allowed_regions else FAIL
        found.append(Finding(check, bucket, status, f"rule {name} copies to {destination or '?'} in {region}"))
    return found or [Finding(check, bucket, PASS, "every replication rule is disabled")]
