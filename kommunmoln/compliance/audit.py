"""`make audit`: check a deployed account, read-only, against the pack's rules (live state, so drift shows).

    python -m kommunmoln.compliance.audit [--region eu-north-1]

Uses the caller's credentials and only Get/List/Describe calls. Per protected bucket
(tag kommunmoln:classification=osl-protected): Block Public Access, versioning, Object Lock
(a fact), default encryption and, for SSE-KMS, the key's Origin from DescribeKey
(AWS_CLOUDHSM or EXTERNAL_KEY_STORE), and the tier's verdict under "no disclosure to the
provider" (tier A pass when its PutObject deny is in the bucket policy; tier B/C `not met`).
Account-wide: a CloudTrail trail that is logging S3 data events, and the residency SCP set.
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


def audit_bucket(s3: Any, kms: Any, bucket: str, tags: dict[str, str]) -> list[Finding]:
    """The checks for one protected bucket."""
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
    found.extend(_encryption(s3, kms, bucket, tags))
    return found


def _encryption(s3: Any, kms: Any, bucket: str, tags: dict[str, str]) -> list[Finding]:
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


def audit_buckets(s3: Any, kms: Any) -> list[Finding]:
    """Every protected bucket of the account (other buckets are listed as facts, not checked)."""
    found: list[Finding] = []
    for bucket in (b["Name"] for b in s3.list_buckets().get("Buckets", [])):
        try:
            tags = _tags(s3, bucket)
        except ClientError as error:
            found.append(Finding("classification", bucket, UNVERIFIED, f"tags unreadable ({_code(error)})"))
            continue
        if tags.get(names.TAG_CLASSIFICATION) == names.CLASSIFICATION_PROTECTED:
            found.extend(audit_bucket(s3, kms, bucket, tags))
    return found


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


def audit_guardrails(organizations: Any, allowed_regions: Sequence[str]) -> list[Finding]:
    """The residency SCP set (`make guardrails`) is present in the organisation."""
    from kommunmoln.compliance.guardrails import gaps

    try:
        policies = organizations.list_policies(Filter="SERVICE_CONTROL_POLICY").get("Policies", [])
    except ClientError as error:
        return [
            Finding(
                "residency SCP present",
                "organisation",
                UNVERIFIED,
                f"cannot list SCPs from this account ({_code(error)}): run the audit from the management account",
            )
        ]
    for summary in policies:
        content = organizations.describe_policy(PolicyId=summary["Id"])["Policy"]["Content"]
        if not gaps(json.loads(content), allowed_regions):
            return [Finding("residency SCP present", summary["Id"], PASS, summary.get("Name", ""))]
    return [
        Finding("residency SCP present", "organisation", FAIL, f"none of {len(policies)} SCPs denies all of rule 8")
    ]


def run_audit(session: Any, allowed_regions: Sequence[str]) -> list[Finding]:
    """All checks with clients from one boto3 session."""
    return [
        *audit_buckets(session.client("s3"), session.client("kms")),
        *audit_trails(session.client("cloudtrail")),
        *audit_guardrails(session.client("organizations"), allowed_regions),
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
