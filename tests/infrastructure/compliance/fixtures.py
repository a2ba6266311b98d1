"""Fixture stacks for the OSL pack: one compliant and one non-compliant construct per rule.

Everything lives in a few apps so that each test module synthesizes once: `build_main_app`
holds a `Good` stack (nothing in it may be flagged), a `Bad` stack (each resource breaks
the rules its name says) and two stacks that break residency.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct

from kommunmoln import names
from kommunmoln.compliance import SwedishPublicSectorChecks
from kommunmoln.compliance.model import AppModel, StackModel
from kommunmoln.compliance.results import FORMAT as RESULTS_FORMAT

REGION = "eu-north-1"
OTHER_ACCOUNT = "111122223333"
KEY_STORE_ID = "cks-1234567890abcdef0"
SERVICE_TOKEN = "arn:aws:lambda:eu-north-1:123456789012:function:kommunmoln-provisioner"
IMPORTED_KEY_ARN = "arn:aws:kms:eu-north-1:123456789012:key/11111111-2222-3333-4444-555555555555"
RETAIN = cdk.RemovalPolicy.RETAIN


GALLRING_DECISION = "KS 2026/123 p 45"


def protect(bucket: s3.IBucket | Construct, tier: str | None) -> None:
    cdk.Tags.of(bucket).add(names.TAG_CLASSIFICATION, names.CLASSIFICATION_PROTECTED)
    if tier:
        cdk.Tags.of(bucket).add(names.TAG_TIER, tier)


def hardened_bucket(scope: Construct, construct_id: str, *, logs_bucket: s3.IBucket, **kwargs: Any) -> s3.Bucket:
    """A bucket that meets rule 3 (TLS, BPA, versioning, retention, access logs), rule 6 and rule 9.

    Its noncurrent versions expire under the (fixture) gallring decision it names.
    """
    bucket = s3.Bucket(
        scope,
        construct_id,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        versioned=True,
        lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=cdk.Duration.days(365))],
        server_access_logs_bucket=logs_bucket,
        server_access_logs_prefix=f"{construct_id}/",
        removal_policy=RETAIN,
        **kwargs,
    )
    cdk.Tags.of(bucket).add(names.TAG_GALLRING_DECISION, GALLRING_DECISION)
    return bucket


def deny_untagged_uploads(bucket: s3.Bucket) -> None:
    bucket.add_to_resource_policy(
        iam.PolicyStatement(
            sid="DenyUploadsWithoutEncryptionTag",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects("*")],
            conditions={
                "StringNotEquals": {
                    f"s3:RequestObjectTag/{names.OBJECT_TAG_ENCRYPTION}": names.OBJECT_TAG_ENCRYPTION_VALUE
                }
            },
        )
    )


def validator_function(scope: Construct) -> lambda_.Function:
    return lambda_.Function(
        scope,
        "Validator",
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
    )


def hsm_key(scope: Construct, construct_id: str, statements: list[iam.PolicyStatement]) -> cdk.CustomResource:
    """Our `Custom::KmsHsmKey` custom resource, with the key policy as a JSON string."""
    stack = cdk.Stack.of(scope)
    policy = iam.PolicyDocument(statements=statements)
    return cdk.CustomResource(
        scope,
        construct_id,
        service_token=SERVICE_TOKEN,
        resource_type=names.RESOURCE_KMS_HSM_KEY,
        properties={"CustomKeyStoreId": KEY_STORE_ID, "KeyPolicy": stack.to_json_string(policy.to_json())},
        removal_policy=RETAIN,
    )


def strict_key_statements(scope: Construct) -> list[iam.PolicyStatement]:
    """Administration for the account root, use for one role: no wildcard actions."""
    user = iam.Role(scope, "KeyUser", assumed_by=iam.AccountRootPrincipal())
    return [
        iam.PolicyStatement(
            sid="AccountAdministers",
            principals=[iam.AccountRootPrincipal()],
            actions=["kms:DescribeKey", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid="UseThroughS3",
            principals=[iam.ArnPrincipal(user.role_arn)],
            actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],
            conditions={"StringEquals": {"kms:CallerAccount": cdk.Aws.ACCOUNT_ID}},
        ),
    ]


def imported_key_bucket(scope: Construct, construct_id: str, logs_bucket: s3.IBucket) -> s3.Bucket:
    bucket = hardened_bucket(
        scope,
        construct_id,
        logs_bucket=logs_bucket,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=kms.Key.from_key_arn(scope, f"{construct_id}Key", IMPORTED_KEY_ARN),
    )
    protect(bucket, names.TIER_B)
    return bucket


class GoodStack(cdk.Stack):
    """Every resource here meets every rule: the pack must report nothing."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, env=cdk.Environment(region=REGION), **kwargs)
        access_logs = s3.Bucket(self, "AccessLogs", enforce_ssl=True, versioned=True, removal_policy=RETAIN)

        # Tier A: client-side encryption tag required, validator attached.
        self.tier_a = hardened_bucket(self, "TierA", logs_bucket=access_logs)
        protect(self.tier_a, names.TIER_A)
        deny_untagged_uploads(self.tier_a)
        self.tier_a.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(validator_function(self)))

        # Tier B: SSE-KMS with the HSM-backed key (strict policy).
        key = hsm_key(self, "HsmKey", strict_key_statements(self))
        self.tier_b = hardened_bucket(
            self,
            "TierB",
            logs_bucket=access_logs,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=kms.Key.from_key_arn(self, "HsmKeyRef", key.get_att_string("KeyArn")),
            bucket_key_enabled=True,
        )
        protect(self.tier_b, names.TIER_B)

        # A tier A bucket whose data events an organization trail logs (rule 7 by tag).
        self.org_trail = hardened_bucket(self, "OrgTrailLogged", logs_bucket=access_logs)
        protect(self.org_trail, names.TIER_A)
        deny_untagged_uploads(self.org_trail)
        self.org_trail.add_event_notification(
            s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(self.node.find_child("Validator"))
        )
        cdk.Tags.of(self.org_trail).add(names.TAG_ORGANIZATION_TRAIL, names.ORGANIZATION_TRAIL_TRUE)

        trail = cloudtrail.Trail(self, "Trail")
        trail.add_s3_event_selector(
            [cloudtrail.S3EventSelector(bucket=self.tier_a), cloudtrail.S3EventSelector(bucket=self.tier_b)],
            read_write_type=cloudtrail.ReadWriteType.ALL,
        )

        # An ordinary key with the CDK default policy (kms:* for the account root only).
        kms.Key(self, "OrdinaryKey", enable_key_rotation=True, removal_policy=RETAIN)
        logs.LogGroup(self, "Logs", retention=logs.RetentionDays.INFINITE, removal_policy=RETAIN)  # kept
        expiring = logs.LogGroup(self, "ExpiringLogs", retention=logs.RetentionDays.ONE_YEAR, removal_policy=RETAIN)
        cdk.Tags.of(expiring).add(names.TAG_GALLRING_DECISION, GALLRING_DECISION)


class BadStack(cdk.Stack):
    """Each construct breaks the rules its id names."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, env=cdk.Environment(region=REGION), **kwargs)
        access_logs = s3.Bucket(self, "AccessLogs", enforce_ssl=True, versioned=True, removal_policy=RETAIN)
        validator = validator_function(self)

        # Rule 2 + 3 + 6 + 7: a bare SSE-S3 bucket tagged protected.
        bare = s3.CfnBucket(
            self,
            "SseS3",
            bucket_encryption=s3.CfnBucket.BucketEncryptionProperty(
                server_side_encryption_configuration=[
                    s3.CfnBucket.ServerSideEncryptionRuleProperty(
                        server_side_encryption_by_default=s3.CfnBucket.ServerSideEncryptionByDefaultProperty(
                            sse_algorithm="AES256"
                        )
                    )
                ]
            ),
        )
        protect(bare, None)

        # Rule 2 (tier B with an AWS_KMS-origin key) + rule 5 (its key keeps kms:* for root).
        aws_kms_key = kms.Key(self, "AwsKmsOriginKey", enable_key_rotation=True, removal_policy=RETAIN)
        tier_b = hardened_bucket(
            self, "TierBAwsKms", logs_bucket=access_logs, encryption=s3.BucketEncryption.KMS, encryption_key=aws_kms_key
        )
        protect(tier_b, names.TIER_B)

        # Rule 2: tier A without the validator notification.
        no_validator = hardened_bucket(self, "TierANoValidator", logs_bucket=access_logs)
        protect(no_validator, names.TIER_A)
        deny_untagged_uploads(no_validator)

        # Rule 2: a key the template cannot show (imported ARN): fails unless acknowledged.
        imported_key_bucket(self, "ImportedKey", access_logs)
        acknowledged = imported_key_bucket(self, "ImportedKeyAcknowledged", access_logs)
        cdk.Validations.of(acknowledged.node.default_child).acknowledge(
            cdk.Acknowledgment(
                id="KommunmolnOSL::KommunmolnOSL-2",
                reason="aws kms describe-key on 2026-01-15 showed Origin AWS_CLOUDHSM, CustomKeyStoreId cks-1234567890abcdef0",
            )
        )

        # Rule 4: another account in the bucket policy of a protected bucket.
        shared = hardened_bucket(self, "SharedWithOtherAccount", logs_bucket=access_logs)
        protect(shared, names.TIER_A)
        deny_untagged_uploads(shared)
        shared.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(validator))
        shared.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.AccountPrincipal(OTHER_ACCOUNT)],
                actions=["s3:GetObject"],
                resources=[shared.arn_for_objects("*")],
            )
        )

        # Rule 4: an HSM key of a protected bucket that lets anyone decrypt.
        public_key = hsm_key(
            self,
            "PublicHsmKey",
            [iam.PolicyStatement(principals=[iam.AnyPrincipal()], actions=["kms:Decrypt"], resources=["*"])],
        )
        public = hardened_bucket(
            self,
            "PublicKeyBucket",
            logs_bucket=access_logs,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=kms.Key.from_key_arn(self, "PublicHsmKeyRef", public_key.get_att_string("KeyArn")),
        )
        protect(public, names.TIER_B)

        # Rule 5: an ordinary key that gives a role kms:*.
        role = iam.Role(self, "Operator", assumed_by=iam.AccountRootPrincipal())
        wide = kms.Key(self, "RoleKmsStarKey", enable_key_rotation=True, removal_policy=RETAIN)
        wide.add_to_resource_policy(
            iam.PolicyStatement(principals=[iam.ArnPrincipal(role.role_arn)], actions=["kms:*"], resources=["*"])
        )

        # Rule 6: destroyable state and a short pending window.
        s3.Bucket(self, "Destroyable", removal_policy=cdk.RemovalPolicy.DESTROY)
        kms.Key(
            self,
            "ShortWindowKey",
            enable_key_rotation=True,
            pending_window=cdk.Duration.days(7),
            removal_policy=RETAIN,
        )
        logs.LogGroup(self, "DestroyableLogs", removal_policy=cdk.RemovalPolicy.DESTROY)

        # Rule 9: records expire without a gallring decision.
        s3.Bucket(
            self,
            "ExpiringBucket",
            versioned=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(90))],
            removal_policy=RETAIN,
        )
        logs.LogGroup(self, "ExpiringLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RETAIN)

        # Rule 1: a multi-Region key.
        multi = kms.Key(self, "MultiRegionKey", enable_key_rotation=True, removal_policy=RETAIN)
        multi.node.default_child.add_property_override("MultiRegion", True)


def build_main_app(outdir: Path) -> cdk.App:
    app = cdk.App(outdir=str(outdir))
    GoodStack(app, "Good")
    BadStack(app, "Bad")
    wrong_region = cdk.Stack(app, "WrongRegion", env=cdk.Environment(region="us-east-1"))
    s3.Bucket(wrong_region, "Data", removal_policy=RETAIN)
    agnostic = cdk.Stack(app, "Agnostic")
    kms.Key(agnostic, "Key", enable_key_rotation=True, removal_policy=RETAIN)
    cdk.Validations.of(app).add_plugins(SwedishPublicSectorChecks(allowed_regions=(REGION,)))
    return app


@dataclass(frozen=True)
class Findings:
    """The pack's findings of one synthesis, read from validation-report.json."""

    failed: dict[str, set[str]]  # construct path -> rule names
    acknowledged: dict[str, set[str]]
    descriptions: dict[str, str]  # rule name -> description
    error: str  # the synthesis exception text ("" when synthesis passed)

    def rules(self, path: str) -> set[str]:
        return self.failed.get(path, set())

    def under(self, prefix: str) -> set[str]:
        return {rule for path, rules in self.failed.items() if path.startswith(prefix) for rule in rules}


def synth_findings(app: cdk.App, outdir: Path) -> Findings:
    error = ""
    try:
        app.synth()
    except RuntimeError as exc:
        error = str(exc)
    report = (
        json.loads((outdir / "validation-report.json").read_text())
        if (outdir / "validation-report.json").exists()
        else {"pluginReports": []}
    )
    failed: dict[str, set[str]] = {}
    acknowledged: dict[str, set[str]] = {}
    descriptions: dict[str, str] = {}
    for plugin in report["pluginReports"]:
        if plugin["pluginName"] != names.COMPLIANCE_PACK:
            continue
        for target, key in ((failed, "violations"), (acknowledged, "suppressedViolations")):
            for violation in plugin.get(key, []):
                descriptions.setdefault(violation["ruleName"], violation["description"])
                for construct in violation["violatingConstructs"]:
                    target.setdefault(construct["constructPath"], set()).add(violation["ruleName"])
    return Findings(failed, acknowledged, descriptions, error)


def protected_bucket_model(encryption: dict[str, Any] | None, key: dict[str, Any] | None) -> AppModel:
    """Stack `C` with a protected bucket `Data` tagged tier B, its default encryption `encryption`
    (a ServerSideEncryptionByDefault, or None for none) and, if given, the key resource `Key`."""
    bucket: dict[str, Any] = {
        "Type": "AWS::S3::Bucket",
        "Properties": {
            "Tags": [
                {"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED},
                {"Key": names.TAG_TIER, "Value": names.TIER_B},
            ]
        },
    }
    if encryption:
        bucket["Properties"]["BucketEncryption"] = {
            "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": encryption}]
        }
    model = AppModel()
    model.add(StackModel("C", {"Resources": {"Data": bucket, **({"Key": key} if key else {})}}, REGION, None))
    return model


def write_results(path: Path, commit: str, tests: dict[str, tuple[str, str]], run: tuple[str, str]) -> Path:
    """A results file as the pytest plugin writes it: test id -> (outcome, finished), run = (started, finished)."""
    path.write_text(
        json.dumps(
            {
                "format": RESULTS_FORMAT,
                "commit": commit,
                "started": run[0],
                "finished": run[1],
                "tests": {test: {"outcome": o, "finished": f} for test, (o, f) in tests.items()},
            }
        )
    )
    return path
