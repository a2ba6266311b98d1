"""Residency guardrails for the organisation: an optional service control policy (SCP) set.

    python -m kommunmoln.compliance.guardrails [--out build/residency-scp.json] [-c key=value ...]

The app's own templates can only show where *its* resources live. An account can still
copy an HSM backup to another region (`cloudhsm:CopyBackupToRegion`), replicate a
multi-Region key (`kms:ReplicateKey`), replicate a bucket (`s3:PutReplicationConfiguration`),
a secret, a backup, a container registry or a DynamoDB table (`CROSS_REGION_COPY_ACTIONS`),
all requested from an allowed region, or create anything in another region. Only an organisation policy, attached by the
management account to the account or its OU, prevents that for every principal of the
account; this module writes one from the configuration (`allowed_regions`), and
`gaps()` tells what a given policy document does not prevent (rule 8 uses it on any
`AWS::Organizations::Policy` in the app).

What an SCP does not restrict (AWS Organizations User Guide, "Service control policies (SCPs)",
orgs_manage_policies_scps.html; limits as secondary sources quote the page, not checked against its
text on 2 Dec 2026): users and roles of the management account, and service-linked roles. Deliveries
that a service makes to another region on the account's behalf (Firehose destinations, EventBridge
targets, CloudWatch Logs subscription destinations) are residual gaps. docs/compliance.md section 6.

Sources (checked Dec 2026):
- AWS Organizations User Guide, "General examples" of SCPs, "Deny access to AWS based on
  the requested AWS Region" (orgs_manage_policies_scps_examples_general.html), and the
  aws-samples/service-control-policy-examples file
  Region-controls/Deny-access-to-AWS-based-on-the-requested-AWS-region.json: a Deny with
  `NotAction` listing global services (their endpoints are in us-east-1) and
  `StringNotEquals aws:RequestedRegion`.
- IAM User Guide, "AWS: Denies access to AWS based on the requested Region": CloudFront, IAM,
  Route 53 and Support must not be denied because their single endpoint is in us-east-1.
AWS's example also exempts `kms:*`; this set does not (the municipality's keys are regional,
and an exemption would let keys be created in any region). A global service that needs a
KMS key in us-east-1 (e.g. ACM for CloudFront) then needs its own exception.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Operations that copy data or key material to another region even when called in an allowed one
# (aws:RequestedRegion is then the allowed source region, so the region denial does not stop them).
# Action names checked Dec 2026: Secrets Manager API reference, ReplicateSecretToRegions ("Required
# permissions: secretsmanager:ReplicateSecretToRegions"); AWS Backup StartCopyJob and the destination
# vault's backup:CopyIntoBackupVault (AWS re:Post knowledge center, "backup-resolve-access-denied-error");
# ECR API reference, PutReplicationConfiguration (registry replication to other regions); DynamoDB
# Developer Guide, "Using IAM with global tables": replicas need dynamodb:CreateTableReplica (current
# version 2019.11.21) and dynamodb:CreateGlobalTable (version 2017.11.29, legacy).
# Denying them unconditionally also blocks in-region copies of the same kind; an SCP cannot see the
# destination of a copy. Whether copies scheduled by a backup plan's CopyActions are stopped by this
# SCP (they run under the plan's IAM role) is not checked.
CROSS_REGION_COPY_ACTIONS: tuple[str, ...] = (
    "cloudhsm:CopyBackupToRegion",
    "kms:ReplicateKey",
    "s3:PutReplicationConfiguration",
    "secretsmanager:ReplicateSecretToRegions",
    "backup:StartCopyJob",
    "backup:CopyIntoBackupVault",
    "ecr:PutReplicationConfiguration",
    "dynamodb:CreateTableReplica",
    "dynamodb:CreateGlobalTable",
)

# Global services (single endpoint, mostly us-east-1) exempt from the region denial: the AWS
# Organizations example list without kms:* (see the module docstring).
GLOBAL_SERVICE_EXEMPTIONS: tuple[str, ...] = (
    "a4b:*",
    "acm:*",
    "aws-marketplace-management:*",
    "aws-marketplace:*",
    "aws-portal:*",
    "budgets:*",
    "ce:*",
    "chime:*",
    "cloudfront:*",
    "config:*",
    "cur:*",
    "directconnect:*",
    "ec2:DescribeRegions",
    "ec2:DescribeTransitGateways",
    "ec2:DescribeVpnGateways",
    "fms:*",
    "globalaccelerator:*",
    "health:*",
    "iam:*",
    "importexport:*",
    "mobileanalytics:*",
    "networkmanager:*",
    "organizations:*",
    "pricing:*",
    "route53:*",
    "route53domains:*",
    "route53-recovery-cluster:*",
    "route53-recovery-control-config:*",
    "route53-recovery-readiness:*",
    "s3:GetAccountPublic*",
    "s3:ListAllMyBuckets",
    "s3:ListMultiRegionAccessPoints",
    "s3:PutAccountPublic*",
    "shield:*",
    "sts:*",
    "support:*",
    "trustedadvisor:*",
    "waf-regional:*",
    "waf:*",
    "wafv2:*",
    "wellarchitected:*",
)

# AWS Organizations quota: an SCP (and an RCP) document is at most 5,120 characters (AWS Organizations
# User Guide, "Quotas for AWS Organizations", orgs_reference_limits.html; AWS::Organizations::Policy Content).
SCP_MAX_CHARACTERS = 5120


def residency_scp(allowed_regions: Sequence[str]) -> dict[str, Any]:
    """The SCP document: no cross-region copies, nothing outside `allowed_regions` but global services."""
    regions = list(allowed_regions)
    if not regions:
        raise ValueError("allowed_regions must name at least one region")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyCrossRegionCopiesOfDataAndKeys",
                "Effect": "Deny",
                "Action": list(CROSS_REGION_COPY_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "DenyOutsideAllowedRegions",
                "Effect": "Deny",
                "NotAction": list(GLOBAL_SERVICE_EXEMPTIONS),
                "Resource": "*",
                "Condition": {"StringNotEquals": {"aws:RequestedRegion": regions}},
            },
        ],
    }


def render(document: dict[str, Any]) -> str:
    """The document as the compact JSON Organizations stores (its size counts against the quota)."""
    return json.dumps(document, separators=(",", ":"))


def _lower(values: Any) -> list[str]:
    items = values if isinstance(values, list) else [values]
    return [v.lower() for v in items if isinstance(v, str)]


def gaps(document: Any, allowed_regions: Sequence[str]) -> list[str]:
    """What the policy document does not prevent (empty: it is a complete residency guardrail set).

    Fail closed: a statement counts only when it is an unconditional Deny of the copy action
    (or of `*`), or a Deny on `aws:RequestedRegion` whose allowed set is within `allowed_regions`.
    """
    statements = document.get("Statement") if isinstance(document, dict) else None
    statements = [s for s in (statements if isinstance(statements, list) else [statements]) if isinstance(s, dict)]
    denies = [s for s in statements if s.get("Effect") == "Deny" and s.get("Resource") in ("*", ["*"])]
    missing = []
    for action in CROSS_REGION_COPY_ACTIONS:
        service = action.split(":")[0] + ":*"
        if not any(
            "Condition" not in s and {action.lower(), service, "*"} & set(_lower(s.get("Action"))) for s in denies
        ):
            missing.append(f"{action} is not denied")
    allowed = {r.lower() for r in allowed_regions}
    region_denied = False
    for stmt in denies:
        condition = stmt.get("Condition")
        pairs = condition.get("StringNotEquals") if isinstance(condition, dict) else None
        if (
            not isinstance(pairs, dict)
            or set(condition) != {"StringNotEquals"}
            or set(pairs) != {"aws:RequestedRegion"}
        ):
            continue
        regions = set(_lower(pairs["aws:RequestedRegion"]))
        exempt = set(_lower(stmt.get("NotAction"))) if "NotAction" in stmt else set()
        covers_all = "Action" in stmt and "*" in _lower(stmt.get("Action"))
        if regions and regions <= allowed and (covers_all or ("NotAction" in stmt and "kms:*" not in exempt)):
            region_denied = True
    if not region_denied:
        missing.append(
            f"requests outside {', '.join(allowed_regions)} are not denied (a Deny with StringNotEquals "
            "aws:RequestedRegion, global services exempted, kms:* not exempted)"
        )
    return missing


def main(argv: list[str] | None = None) -> int:
    from kommunmoln.compliance.report import context_with_overrides
    from kommunmoln.config import REPO_ROOT, load_config

    parser = argparse.ArgumentParser(description="Write the residency SCP set for the organisation (JSON).")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "residency-scp.json")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    config = load_config(context_with_overrides(args.context))
    text = render(residency_scp(config.allowed_regions))
    if len(text) > SCP_MAX_CHARACTERS:
        print(f"kommunmoln: the SCP is {len(text)} characters, over the {SCP_MAX_CHARACTERS} quota", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(text)} characters; attach it to the OU or account with AWS Organizations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
