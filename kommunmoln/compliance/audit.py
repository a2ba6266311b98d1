"""`make audit`: check a deployed account, read-only, against the pack's rules (live state, so drift shows).

    python -m kommunmoln.compliance.audit [--region eu-north-1]

Uses the caller's credentials and only Get/List/Describe calls. Per protected bucket
(tag kommunmoln:classification=osl-protected): Block Public Access, versioning, Object Lock
(a fact), default encryption and, for SSE-KMS, the key's Origin from DescribeKey
(AWS_CLOUDHSM or EXTERNAL_KEY_STORE), and the tier's verdict under "no disclosure to the
provider" (tier A pass when its PutObject deny is in the bucket policy; tier B/C `not met`).
On every bucket and log group: records expire only under a gallring decision named in the tag
kommunmoln:gallring-decision (rule 9). Per key of a protected bucket: the live key policy passes
rules 4 and 5 (kommunmoln/compliance/audit_live.py evaluates it with the same `Evaluator`).
Per protected bucket (rule 1): its region, its replication destinations' regions and its keys'
MultiRegion flag against allowed_regions (GetBucketLocation, GetBucketReplication, DescribeKey).
Account-wide: a CloudTrail trail that is logging S3 data events, Object Lock in compliance mode
on every trail's bucket, the residency SCP/RCP set present and attached, and the CloudWatch
alarms now in ALARM with the reporting deadlines their state change starts (a fact).
Fails closed: what it cannot read is `unverified`, which fails the run like `fail`.
Engineering evidence, not legal advice; the output may itself be secret (OSL 18 kap. 8 §).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from kommunmoln import names

PASS, FAIL, NOT_MET, UNVERIFIED, FACT = "pass", "fail", "not met", "unverified", "fact"
_HSM_ORIGINS = ("AWS_CLOUDHSM", "EXTERNAL_KEY_STORE")


@dataclass(frozen=True)
class Finding:
    """One check on one resource of the live account."""

    check: str
    resource: str
    status: str
    detail: str = ""


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _tags(s3: Any, bucket: str) -> dict[str, str]:
    try:
        tag_set = s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])
    except ClientError as error:
        if _code(error) == "NoSuchTagSet":
            return {}
        raise
    return {t["Key"]: t["Value"] for t in tag_set}


def audit_bucket(
    s3: Any, kms: Any, bucket: str, tags: dict[str, str], keys: dict[str, dict[str, Any]] | None = None
) -> list[Finding]:
    """The checks for one protected bucket; `keys` collects the KeyMetadata of its default keys (by ARN)."""
    found: list[Finding] = []
    try:
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        off = [
            k
            for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
            if not block.get(k)
        ]
        found.append(
            Finding("public access blocked", bucket, FAIL if off else PASS, ", ".join(off) and f"off: {', '.join(off)}")
        )
    except ClientError as error:
        found.append(
            Finding("public access blocked", bucket, FAIL, f"no Block Public Access configuration ({_code(error)})")
        )
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
    found.append(Finding("versioning", bucket, PASS if status == "Enabled" else FAIL, f"status {status}"))
    try:
        lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        found.append(Finding("Object Lock", bucket, FACT, json.dumps(lock, sort_keys=True)))
    except ClientError as error:
        found.append(Finding("Object Lock", bucket, FACT, f"not enabled ({_code(error)})"))
    found.extend(_encryption(s3, kms, bucket, tags, {} if keys is None else keys))
    return found


def _encryption(s3: Any, kms: Any, bucket: str, tags: dict[str, str], keys: dict[str, dict[str, Any]]) -> list[Finding]:
    tier = tags.get(names.TAG_TIER, "")
    if tier == names.TIER_A:
        return [_tier_a_verdict(s3, bucket)]
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as error:
        return [Finding("key origin", bucket, FAIL, f"no default encryption readable ({_code(error)})")]
    found = []
    for rule in rules:
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        key_id = default.get("KMSMasterKeyID")
        if default.get("SSEAlgorithm") not in ("aws:kms", "aws:kms:dsse") or not key_id:
            found.append(Finding("key origin", bucket, FAIL, f"{default.get('SSEAlgorithm')}: AWS alone holds the key"))
            continue
        try:
            metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        except ClientError as error:
            found.append(Finding("key origin", bucket, UNVERIFIED, f"DescribeKey {key_id} failed ({_code(error)})"))
            continue
        origin = metadata.get("Origin", "")
        keys[metadata.get("Arn", key_id)] = metadata
        found.append(
            Finding(
                "key origin",
                bucket,
                PASS if origin in _HSM_ORIGINS else FAIL,
                f"{metadata.get('Arn', key_id)}: {origin}",
            )
        )
    label = "tier C" if any("EXTERNAL_KEY_STORE" in f.detail for f in found) else "tier B"
    found.append(
        Finding(
            "no disclosure to the provider / EDPB Use Case 1",
            bucket,
            NOT_MET,
            f"{label}: S3 receives the plaintext object and data key (never pass; see docs/compliance.md)",
        )
    )
    return found


def _tier_a_verdict(s3: Any, bucket: str) -> Finding:
    check = "no disclosure to the provider / EDPB Use Case 1"
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as error:
        return Finding(check, bucket, FAIL, f"tier A without a readable bucket policy ({_code(error)})")
    tag_key = f"s3:RequestObjectTag/{names.OBJECT_TAG_ENCRYPTION}".lower()
    statements = policy.get("Statement", [])
    for stmt in statements if isinstance(statements, list) else [statements]:
        conditions = json.dumps(stmt.get("Condition", {})).lower()
        if (
            stmt.get("Effect") == "Deny"
            and tag_key in conditions
            and "putobject" in json.dumps(stmt.get("Action")).lower()
        ):
            return Finding(
                check,
                bucket,
                PASS,
                "tier A: uploads without the encryption tag are denied (validator not checked live)",
            )
    return Finding(check, bucket, FAIL, "tier A tag, but no Deny of untagged s3:PutObject in the bucket policy")


def audit_buckets(
    s3: Any, kms: Any, keys: dict[str, dict[str, Any]] | None = None, protected: list[str] | None = None
) -> list[Finding]:
    """Every protected bucket of the account, and on every bucket: expiry only under a gallring decision.

    `keys` collects the KeyMetadata of the protected buckets' default keys, for `audit_key_policies`;
    `protected` collects the protected buckets' names, for `audit_residency`.
    """
    found: list[Finding] = []
    for bucket in (b["Name"] for b in s3.list_buckets().get("Buckets", [])):
        try:
            tags = _tags(s3, bucket)
        except ClientError as error:
            found.append(Finding("classification", bucket, UNVERIFIED, f"tags unreadable ({_code(error)})"))
            continue
        if tags.get(names.TAG_CLASSIFICATION) == names.CLASSIFICATION_PROTECTED:
            found.extend(audit_bucket(s3, kms, bucket, tags, keys))
            if protected is not None:
                protected.append(bucket)
        found.append(_bucket_gallring(s3, bucket, tags))
    return found


def live_expiry(rules: Sequence[dict[str, Any]]) -> str:
    """What enabled lifecycle rules (GetBucketLifecycleConfiguration shape) destroy: "" for nothing.

    Expiration (Days or Date) expires current objects, NoncurrentVersionExpiration old versions; an
    ExpiredObjectDeleteMarker-only rule or AbortIncompleteMultipartUpload removes no record.
    """
    found = []
    for rule in rules:
        if rule.get("Status") != "Enabled":
            continue
        expiration = rule.get("Expiration") or {}
        if (expiration.get("Days") or expiration.get("Date")) and "objects" not in found:
            found.append("objects")
        if (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays") and "noncurrent versions" not in found:
            found.append("noncurrent versions")
    return f"a lifecycle rule expires {' and '.join(found)}" if found else ""


def _bucket_gallring(s3: Any, bucket: str, tags: dict[str, str]) -> Finding:
    """Rule 9 live: a bucket whose lifecycle destroys records must carry the gallring decision tag."""
    check = "expiry only under a gallring decision"
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except ClientError as error:
        if _code(error) == "NoSuchLifecycleConfiguration":
            return Finding(check, bucket, PASS, "no lifecycle configuration: records are kept")
        return Finding(check, bucket, UNVERIFIED, f"lifecycle unreadable ({_code(error)})")
    expiry = live_expiry(rules)
    decision = tags.get(names.TAG_GALLRING_DECISION, "").strip()
    if not expiry:
        return Finding(check, bucket, PASS, "no lifecycle rule expires records")
    if not decision:
        return Finding(check, bucket, FAIL, f"{expiry} without a gallring decision (tag {names.TAG_GALLRING_DECISION})")
    return Finding(check, bucket, PASS, f"{expiry} under gallring decision {decision!r}")


def audit_trails(cloudtrail: Any) -> list[Finding]:
    """A trail that is logging and records S3 data events (classic or advanced selectors)."""
    trails = cloudtrail.describe_trails().get("trailList", [])
    for trail in trails:
        arn = trail["TrailARN"]
        if not cloudtrail.get_trail_status(Name=arn).get("IsLogging"):
            continue
        selectors = cloudtrail.get_event_selectors(TrailName=arn)
        text = json.dumps(selectors.get("EventSelectors", []) + selectors.get("AdvancedEventSelectors", []))
        if "AWS::S3::Object" in text:
            return [Finding("object access logged", arn, PASS, "logging, with S3 data events")]
    return [Finding("object access logged", "account", FAIL, f"none of {len(trails)} trails is logging S3 data events")]


_GUARDRAIL_TYPES = ("SERVICE_CONTROL_POLICY", "RESOURCE_CONTROL_POLICY")


def audit_guardrails(organizations: Any, allowed_regions: Sequence[str]) -> list[Finding]:
    """The residency set (`make guardrails`) is present as an SCP or RCP of the organisation, and attached.

    An SCP listing fails closed (`unverified`: only the management account or a delegated administrator
    may list policies); an RCP listing that fails (RCPs not enabled) only means no RCP can count.
    """
    from kommunmoln.compliance.guardrails import gaps

    check = "residency SCP/RCP present and attached"
    complete: list[dict[str, Any]] = []
    listed = 0
    for policy_type in _GUARDRAIL_TYPES:
        try:
            policies = organizations.list_policies(Filter=policy_type).get("Policies", [])
        except ClientError as error:
            if policy_type == "RESOURCE_CONTROL_POLICY":
                continue
            reason = f"cannot list SCPs from this account ({_code(error)}): run the audit from the management account"
            return [Finding(check, "organisation", UNVERIFIED, reason)]
        listed += len(policies)
        for summary in policies:
            content = organizations.describe_policy(PolicyId=summary["Id"])["Policy"]["Content"]
            if not gaps(json.loads(content), allowed_regions):
                complete.append(summary)
    for summary in complete:
        targets = organizations.list_targets_for_policy(PolicyId=summary["Id"]).get("Targets", [])
        if targets:
            where = ", ".join(t.get("TargetId", "?") for t in targets)
            return [Finding(check, summary["Id"], PASS, f"{summary.get('Name', '')} attached to {where}")]
    if complete:
        ids = ", ".join(s["Id"] for s in complete)
        return [Finding(check, ids, FAIL, "the residency policy exists but is attached to no root, OU or account")]
    return [Finding(check, "organisation", FAIL, f"none of {listed} SCPs/RCPs denies all of rule 8")]


def run_audit(session: Any, allowed_regions: Sequence[str]) -> list[Finding]:
    """All checks with clients from one boto3 session."""
    from kommunmoln.compliance.audit_live import (
        audit_alarms,
        audit_key_policies,
        audit_log_groups,
        audit_residency,
        audit_trail_object_lock,
    )

    keys: dict[str, dict[str, Any]] = {}
    protected: list[str] = []
    s3, kms, cloudtrail = session.client("s3"), session.client("kms"), session.client("cloudtrail")
    return [
        *audit_buckets(s3, kms, keys, protected),
        *audit_residency(s3, protected, keys, allowed_regions),
        *audit_key_policies(kms, keys),
        *audit_log_groups(session.client("logs")),
        *audit_trails(cloudtrail),
        *audit_trail_object_lock(s3, cloudtrail),
        *audit_guardrails(session.client("organizations"), allowed_regions),
        *audit_alarms(session.client("cloudwatch")),
    ]


def failed(findings: Sequence[Finding]) -> bool:
    """`not met` is the tier's documented verdict, not drift; `fail` and `unverified` are."""
    return any(f.status in (FAIL, UNVERIFIED) for f in findings)


def main(argv: list[str] | None = None) -> int:
    import boto3

    from kommunmoln.config import REPO_ROOT, load_config

    config = load_config(json.loads((REPO_ROOT / "cdk.json").read_text())["context"])
    parser = argparse.ArgumentParser(description="Read-only audit of a deployed account against the OSL pack.")
    parser.add_argument("--region", default=config.region)
    args = parser.parse_args(argv)
    findings = run_audit(boto3.Session(region_name=args.region), config.allowed_regions)
    for f in findings:
        print(f"{f.status:10} {f.check}: {f.resource} {f.detail}")
    print("Handling: this output describes a live account's security measures and may be secret (OSL 18 kap. 8 §).")
    return 1 if failed(findings) else 0


if __name__ == "__main__":
    sys.exit(main())
