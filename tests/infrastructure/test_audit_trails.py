"""Audit logs: one multi-Region management trail, data-event-only tier trails, Object Lock trail buckets,
explicit log groups for CDK's own functions, one retention rule for every access-log bucket.

Each test states the AWS rule it encodes and the page it comes from. Policies are evaluated with
the project's offline evaluator (tests/infrastructure/policy/evaluator.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sns as sns
from aws_cdk import custom_resources as cr

from kommunmoln import names
from stacks.components.log_key import LogEncryption
from stacks.components.trail import AuditTrail
from tests.conftest import Synthesized, synthesize
from tests.infrastructure.policy.evaluator import (
    ACCOUNT,
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    REGION,
    Request,
    Resolver,
    evaluate,
)
from tests.infrastructure.policy.scenarios import ADMIN_POLICY

NETWORK, TIER_A, TIER_B = "-network", "-tier-a", "-tier-b"
LOCK_DAYS = 400  # a non-default retention, to show it comes from the config
RETENTION_DAYS = 731
GALLRING = "KS 2026/123 p 45"
# CDK's bootstrap execution role (default qualifier), written out rather than taken from the code.
DEPLOYMENT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"
MFA = {"aws:MultiFactorAuthPresent": True}


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Phase 2 under a gallring decision, with a non-default trail retention (gates run; synthesis raises on a finding)."""
    context = {
        "tier_b_keystore_enabled": True,
        "tier_b_existing_key_store_id": "cks-1234567890abcdef0",
        "gallring_decision": GALLRING,
        "log_retention_days": RETENTION_DAYS,
        "trail_object_lock_days": LOCK_DAYS,
    }
    return synthesize(tmp_path_factory.mktemp("cdk.out.trails"), context)


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    context = {
        "workshop_mode": True,
        "tier_b_keystore_enabled": True,
        "tier_b_existing_key_store_id": "cks-1234567890abcdef0",
    }
    return synthesize(tmp_path_factory.mktemp("cdk.out.trails.workshop"), context)


def _trails(synth: Synthesized) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for stack, template in synth.templates.items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::CloudTrail::Trail":
                yield stack, logical_id, resource["Properties"]


def _records_management_events(trail: dict[str, Any]) -> bool:
    # A trail without event selectors logs management events (the default); a selector does unless it says not.
    selectors = trail.get("EventSelectors")
    return not selectors or any(s.get("IncludeManagementEvents", True) for s in selectors)


def _trail_bucket(synth: Synthesized, suffix: str) -> tuple[str, dict[str, Any]]:
    template = synth.template(suffix)
    ((_, trail),) = [(k, r) for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudTrail::Trail"]
    logical_id = trail["Properties"]["S3BucketName"]["Ref"]
    return logical_id, template["Resources"][logical_id]


# --- one management trail, multi-Region ---------------------------------------------------
@pytest.mark.parametrize("variant", ["synthesized", "configured"])
def test_exactly_one_trail_records_management_events_and_it_is_multi_region(
    variant: str, request: pytest.FixtureRequest
) -> None:
    # AWS rules: "The first copy of management events is free. You are charged for additional copies of
    # management events that you are logging on any subsequent trail in the same Region" (CloudTrail API
    # reference, EventSelector.IncludeManagementEvents; https://aws.amazon.com/cloudtrail/pricing/).
    # "As of November 22, 2021 ... events created by ... IAM, and AWS STS are recorded in ... us-east-1 ...
    # convert single-Region trails ... into multi-Region trails" (CloudTrail user guide, "Using the
    # update-trail command to update a trail").
    # GIVEN the app with both tiers (phase 1 by default, phase 2 configured)
    synth: Synthesized = request.getfixturevalue(variant)
    # WHEN every trail of every stack is inspected
    management = [(stack, trail) for stack, _, trail in _trails(synth) if _records_management_events(trail)]
    # THEN exactly one records management events: the network stack's, multi-Region with global services
    ((stack, trail),) = management
    assert stack.endswith(NETWORK)
    assert trail["IsMultiRegionTrail"] is True and trail["IncludeGlobalServiceEvents"] is True
    assert trail["EventSelectors"] == [{"IncludeManagementEvents": True, "ReadWriteType": "All"}]
    assert trail["TrailName"] == names.trail_name("exempel", "management")
    # AND it delivers to a bucket of its own stack (the home Region), validated and KMS-encrypted
    assert trail["S3BucketName"]["Ref"] in synth.template(NETWORK)["Resources"]
    assert trail["EnableLogFileValidation"] is True and trail["IsLogging"] is True
    assert "KMSKeyId" in trail and "CloudWatchLogsLogGroupArn" in trail and "CloudWatchLogsRoleArn" in trail


def test_tier_trails_record_data_events_of_their_buckets_only(configured: Synthesized) -> None:
    # AWS rule: a second copy of management events is billed (EventSelector.IncludeManagementEvents, as above);
    # data events are billed per event, whichever trail records them.
    # GIVEN phase 2: the tier A and the tier B data buckets
    for suffix, trail_purpose, bucket_type in ((TIER_A, "tier-a-data", "A"), (TIER_B, "tier-b-data", "B")):
        template = configured.template(suffix)
        ((_, trail),) = [
            (k, r["Properties"]) for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudTrail::Trail"
        ]
        protected = [
            k for k, r in template["Resources"].items()
            if r["Type"] == "AWS::S3::Bucket"
            and {"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED} in r["Properties"].get("Tags", [])
        ]  # fmt: skip
        # THEN the tier's trail records reads and writes of every object of its protected bucket, no management events
        (selector,) = trail["EventSelectors"]
        assert selector["IncludeManagementEvents"] is False and selector["ReadWriteType"] == "All", bucket_type
        ((data_resource,),) = [selector["DataResources"]]
        assert data_resource["Type"] == "AWS::S3::Object"
        assert data_resource["Values"] == [{"Fn::Join": ["", [{"Fn::GetAtt": [protected[0], "Arn"]}, "/"]]}]
        # AND it is a single-Region trail without global service events (those are management events)
        assert trail["IsMultiRegionTrail"] is False and trail["IncludeGlobalServiceEvents"] is False
        assert trail["TrailName"] == names.trail_name("exempel", trail_purpose)
        assert trail["EnableLogFileValidation"] is True


def test_tier_b_phase_1_has_no_trail_of_its_own(synthesized: Synthesized) -> None:
    # GIVEN phase 1 (no data bucket yet, so no data events to record)
    # THEN tier B has no trail: its key use and CloudHSM calls are management events of the network stack's trail
    assert not synthesized.resources(TIER_B, "AWS::CloudTrail::Trail")
    assert [t for s, _, t in _trails(synthesized) if s.endswith(NETWORK) and _records_management_events(t)]


def test_a_trail_is_either_the_management_trail_or_a_data_trail() -> None:
    # GIVEN a stack WHEN a trail is asked for both management events and data events, or for neither
    stack = cdk.Stack(cdk.App(), "Probe", env=cdk.Environment(account=ACCOUNT, region=REGION))
    logs = LogEncryption(stack, "Logs", workshop_mode=True, retention_days=None)
    bucket = s3.Bucket(stack, "Data")
    for management, buckets in ((True, [bucket]), (False, [])):
        # THEN it is refused (one management trail; data trails record buckets)
        with pytest.raises(ValueError, match="management events or the data events"):
            AuditTrail(
                stack, f"Trail{management}", trail_name="probe", management_events=management, data_buckets=buckets,
                access_logs=bucket, log_encryption=logs, retention_days=None, object_lock_days=1, workshop_mode=True,
            )  # fmt: skip


# --- the trail buckets ----------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [NETWORK, TIER_A, TIER_B])
def test_trail_buckets_lock_every_file_in_compliance_mode_for_the_configured_days(
    suffix: str, configured: Synthesized
) -> None:
    # AWS rules: "In compliance mode, a protected object version can't be overwritten or deleted by any user,
    # including the root user in your AWS account" (S3 user guide, "Locking objects with Object Lock", retention
    # modes). "Before you lock any objects, you must enable S3 Versioning and Object Lock on a ... bucket ...
    # After you enable Object Lock on a bucket, you can't disable Object Lock or suspend versioning" (S3 user
    # guide, "Configuring S3 Object Lock"). A default retention needs a mode and Days or Years (CloudFormation,
    # AWS::S3::Bucket ObjectLockConfiguration / DefaultRetention).
    # GIVEN trail_object_lock_days=400
    _, bucket = _trail_bucket(configured, suffix)
    props = bucket["Properties"]
    # THEN the trail bucket is versioned, Object Lock is on from creation, and every new file is locked 400 days
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": LOCK_DAYS}},
    }
    # AND it is retained with the stack
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")


def test_workshop_trail_buckets_have_no_retention_so_destroy_can_empty_them(workshop: Synthesized) -> None:
    # AWS rule: compliance-mode versions cannot be deleted by anyone before their retention ends (as above),
    # so CDK's auto-delete handler could not empty the bucket and `make destroy` would fail.
    for suffix in (NETWORK, TIER_A, TIER_B):
        # GIVEN workshop mode
        _, bucket = _trail_bucket(workshop, suffix)
        # THEN Object Lock is enabled but no default retention locks the files, and the bucket is emptied and deleted
        assert bucket["Properties"]["ObjectLockEnabled"] is True
        assert "ObjectLockConfiguration" not in bucket["Properties"]
        assert bucket["DeletionPolicy"] == "Delete"


@pytest.mark.parametrize("suffix", [NETWORK, TIER_A, TIER_B])
def test_cloudtrail_writes_only_for_its_own_trail(suffix: str, configured: Synthesized) -> None:
    # AWS rule: "As a security best practice, add an aws:SourceArn condition key to the Amazon S3 bucket policy
    # ... The value of aws:SourceArn is always the ARN of the trail ... that is using the bucket to store logs"
    # (CloudTrail user guide, "Amazon S3 bucket policy for CloudTrail"); CloudTrail calls s3:GetBucketAcl on the
    # bucket and s3:PutObject under AWSLogs/<account>/ with the bucket-owner-full-control ACL.
    resolver = Resolver(configured.templates)
    template = configured.template(suffix)
    logical_id, _ = _trail_bucket(configured, suffix)
    ((_, trail),) = [(k, r) for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudTrail::Trail"]
    trail_arn = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{trail['Properties']['TrailName']}"
    other_trail = f"arn:aws:cloudtrail:{REGION}:222222222222:trail/someone-elses"
    policy = resolver.bucket_policy(suffix, logical_id)
    bucket_arn = f"arn:aws:s3:::{logical_id.lower()}"
    log_file = f"{bucket_arn}/AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/12/02/{ACCOUNT}_CloudTrail_{REGION}_x.json.gz"
    write = {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SecureTransport": True}
    cases = [
        # (what, request, expected)
        ("ACL check by this trail", Request("service:cloudtrail.amazonaws.com", "s3:GetBucketAcl", bucket_arn, {"aws:SourceArn": trail_arn, "aws:SecureTransport": True}), ALLOW),
        ("log file of this trail", Request("service:cloudtrail.amazonaws.com", "s3:PutObject", log_file, {**write, "aws:SourceArn": trail_arn}), ALLOW),
        ("another trail writes into the bucket", Request("service:cloudtrail.amazonaws.com", "s3:PutObject", log_file, {**write, "aws:SourceArn": other_trail}), IMPLICIT_DENY),
        ("another trail checks the ACL", Request("service:cloudtrail.amazonaws.com", "s3:GetBucketAcl", bucket_arn, {"aws:SourceArn": other_trail, "aws:SecureTransport": True}), IMPLICIT_DENY),
        ("a write without the owner ACL", Request("service:cloudtrail.amazonaws.com", "s3:PutObject", log_file, {"aws:SecureTransport": True, "aws:SourceArn": trail_arn}), IMPLICIT_DENY),
        ("a write outside AWSLogs/<account>/", Request("service:cloudtrail.amazonaws.com", "s3:PutObject", f"{bucket_arn}/other/x", {**write, "aws:SourceArn": trail_arn}), IMPLICIT_DENY),
    ]  # fmt: skip
    # WHEN each request is evaluated against the synthesized bucket policy THEN only this trail's own writes pass
    assert [(what, evaluate(req, resource_policy=policy)) for what, req, _ in cases] == [(w, e) for w, _, e in cases]


@pytest.mark.parametrize("suffix", [NETWORK, TIER_A, TIER_B])
def test_log_and_digest_files_and_the_bucket_configuration_are_break_glass_only(
    suffix: str, configured: Synthesized
) -> None:
    # AWS rule: digest files are delivered to "s3://amzn-s3-demo-bucket/optional-prefix/AWSLogs/aws-account-id/
    # CloudTrail-Digest/region/..." (CloudTrail user guide, "CloudTrail digest file structure", digest file
    # location): the same bucket as the log files, so the same statements must protect them. Evaluation: an
    # explicit Deny in the resource policy overrides any Allow (IAM user guide, "Policy evaluation logic").
    resolver = Resolver(configured.templates)
    template = configured.template(suffix)
    logical_id, _ = _trail_bucket(configured, suffix)
    policy = resolver.bucket_policy(suffix, logical_id)
    # a tier's break-glass role (of its data bucket) also guards its trail bucket; the network trail has its own
    output = names.OUTPUT_TRAIL_BREAK_GLASS_ROLE if suffix == NETWORK else names.OUTPUT_BREAK_GLASS_ROLE
    break_glass = template["Outputs"][output]["Value"]
    break_glass_arn = resolver.resolve(break_glass, template)
    admin = f"arn:aws:iam::{ACCOUNT}:role/Administrator"
    bucket_arn = f"arn:aws:s3:::{logical_id.lower()}"
    log_file = f"{bucket_arn}/AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/12/02/{ACCOUNT}_CloudTrail_{REGION}_x.json.gz"
    digest = (
        f"{bucket_arn}/AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/2026/12/02/"
        f"{ACCOUNT}_CloudTrail-Digest_{REGION}_trail_{REGION}_20261202T150131Z.json.gz"
    )
    tls = {"aws:SecureTransport": True}
    cases = [
        ("admin deletes a log file version", admin, "s3:DeleteObjectVersion", log_file, tls, EXPLICIT_DENY),
        ("admin deletes a digest file version", admin, "s3:DeleteObjectVersion", digest, tls, EXPLICIT_DENY),
        ("admin deletes a digest file", admin, "s3:DeleteObject", digest, tls, EXPLICIT_DENY),
        ("admin shortens a digest file's retention", admin, "s3:PutObjectRetention", digest, tls, EXPLICIT_DENY),
        ("admin bypasses governance retention", admin, "s3:BypassGovernanceRetention", log_file, tls, EXPLICIT_DENY),
        ("admin adds an expiring lifecycle rule", admin, "s3:PutLifecycleConfiguration", bucket_arn, tls, EXPLICIT_DENY),
        ("admin rewrites the bucket policy", admin, "s3:PutBucketPolicy", bucket_arn, tls, EXPLICIT_DENY),
        ("admin deletes the bucket policy", admin, "s3:DeleteBucketPolicy", bucket_arn, tls, EXPLICIT_DENY),
        ("admin changes Object Lock", admin, "s3:PutBucketObjectLockConfiguration", bucket_arn, tls, EXPLICIT_DENY),
        ("break-glass without MFA deletes", break_glass_arn, "s3:DeleteObjectVersion", digest, tls, EXPLICIT_DENY),
        ("break-glass without MFA changes the lifecycle", break_glass_arn, "s3:PutLifecycleConfiguration", bucket_arn, tls, EXPLICIT_DENY),
        ("break-glass with MFA changes the lifecycle", break_glass_arn, "s3:PutLifecycleConfiguration", bucket_arn, {**tls, **MFA}, ALLOW),
        ("break-glass with MFA removes an expired file", break_glass_arn, "s3:DeleteObjectVersion", log_file, {**tls, **MFA}, ALLOW),
        ("cdk deploy updates the bucket policy", DEPLOYMENT_ROLE, "s3:PutBucketPolicy", bucket_arn, tls, ALLOW),
        ("cdk deploy cannot delete log files", DEPLOYMENT_ROLE, "s3:DeleteObjectVersion", log_file, tls, EXPLICIT_DENY),
        ("admin reads a log file (auditors)", admin, "s3:GetObject", log_file, tls, ALLOW),
    ]  # fmt: skip
    # WHEN each request is evaluated with an identity policy that allows everything
    decided = [
        (what, evaluate(Request(who, action, resource, context), identity_policies=[ADMIN_POLICY], resource_policy=policy))
        for what, who, action, resource, context, _ in cases
    ]  # fmt: skip
    # THEN only the break-glass role with MFA removes files or reconfigures; CloudFormation only reconfigures
    assert decided == [(what, expected) for what, *_, expected in cases]


def test_trail_key_encrypts_only_for_its_trail(configured: Synthesized) -> None:
    # AWS rule: the key policy must let CloudTrail call kms:GenerateDataKey* for the trail's encryption context
    # "kms:EncryptionContext:aws:cloudtrail:arn", and "As a security best practice, add an aws:SourceArn condition
    # key to the KMS key policy ... The value of aws:SourceArn is always the ARN of the trail" (CloudTrail user
    # guide, "Configure AWS KMS key policies for CloudTrail").
    resolver = Resolver(configured.templates)
    template = configured.template(NETWORK)
    ((_, trail),) = [(k, r) for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudTrail::Trail"]
    key_id = trail["Properties"]["KMSKeyId"]["Fn::GetAtt"][0]
    policy = resolver.key_policy(NETWORK, key_id)
    trail_arn = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{trail['Properties']['TrailName']}"
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"

    def decide(source_arn: str) -> str:
        context = {"aws:SourceArn": source_arn, "kms:EncryptionContext:aws:cloudtrail:arn": source_arn}
        request = Request("service:cloudtrail.amazonaws.com", "kms:GenerateDataKey", key_arn, context)
        return evaluate(request, resource_policy=policy, key_policy=True)

    # WHEN CloudTrail asks for a data key for this trail, another trail of the account, another account's trail
    # THEN only this trail's request is allowed
    assert decide(trail_arn) == ALLOW
    assert decide(f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/another") == IMPLICIT_DENY
    assert decide(f"arn:aws:cloudtrail:{REGION}:222222222222:trail/{trail['Properties']['TrailName']}") == IMPLICIT_DENY


# --- log groups CDK creates implicitly --------------------------------------------------------
@pytest.mark.parametrize("variant", ["synthesized", "configured", "workshop"])
def test_every_function_logs_to_an_explicit_encrypted_log_group(variant: str, request: pytest.FixtureRequest) -> None:
    # AWS rule: "By default, CloudWatch automatically creates a log group named /aws/lambda/<function name> for
    # your function when it's first invoked"; LoggingConfig.LogGroup is "The name of the Amazon CloudWatch log
    # group the function sends logs to" (Lambda developer guide, "Configuring CloudWatch log groups";
    # CloudFormation, AWS::Lambda::Function LoggingConfig). An automatically created group has no KMS key and no
    # retention set by the template, so every function, CDK's own handlers included, must name one.
    synth: Synthesized = request.getfixturevalue(variant)
    config_retention = RETENTION_DAYS if variant == "configured" else None
    functions = 0
    for stack, template in synth.templates.items():
        resources = template["Resources"]
        # THEN no LogRetention custom resource (a log group it would create after the fact) exists
        assert not [k for k, r in resources.items() if r["Type"] == "Custom::LogRetention"], stack
        for logical_id, resource in resources.items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            functions += 1
            # AND every function, CDK's provider handlers included, names a log group of its template
            group_ref = resource["Properties"].get("LoggingConfig", {}).get("LogGroup")
            assert isinstance(group_ref, dict) and "Ref" in group_ref, f"{stack}/{logical_id}"
            group = resources[group_ref["Ref"]]
            assert group["Type"] == "AWS::Logs::LogGroup"
            # AND that group is encrypted with the stack's log key and keeps events as configured
            assert "Fn::GetAtt" in group["Properties"]["KmsKeyId"], f"{stack}/{logical_id}"
            assert group["Properties"].get("RetentionInDays") == config_retention, f"{stack}/{logical_id}"
    # (CDK's default-security-group handler is in every deployment; workshop adds the auto-delete handlers)
    assert functions >= 8


def test_cdk_handlers_added_later_get_an_explicit_log_group_too() -> None:
    # AWS rule: as above (an implicit /aws/lambda/<name> group has no key and keeps events forever).
    # GIVEN a stack with the project's LogEncryption and two CDK constructs that bring their own Lambda:
    # a bucket notification (CDK's BucketNotificationsHandler) and an AwsCustomResource
    app = cdk.App()
    stack = cdk.Stack(app, "Probe", env=cdk.Environment(account=ACCOUNT, region=REGION))
    LogEncryption(stack, "LogEncryption", workshop_mode=False, retention_days=365)
    bucket = s3.Bucket(stack, "Bucket")
    bucket.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.SnsDestination(sns.Topic(stack, "Topic")))
    cr.AwsCustomResource(
        stack, "Call", on_create=cr.AwsSdkCall(service="STS", action="GetCallerIdentity", physical_resource_id=cr.PhysicalResourceId.of("x")),
        policy=cr.AwsCustomResourcePolicy.from_sdk_calls(resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE),
        install_latest_aws_sdk=False,
    )  # fmt: skip
    # WHEN it is synthesized
    resources = app.synth().get_stack_by_name("Probe").template["Resources"]
    functions = {k: r for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    # THEN both handlers log to an encrypted group with the configured retention
    assert len(functions) == 2
    for logical_id, function in functions.items():
        group = resources[function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]]
        assert group["Properties"]["RetentionInDays"] == 365, logical_id
        assert "KmsKeyId" in group["Properties"], logical_id


# --- access-log buckets: one retention rule ---------------------------------------------------
def _access_log_rules(synth: Synthesized) -> dict[str, list[dict[str, Any]]]:
    """The lifecycle rules of every bucket that receives server access logs, by stack and logical id."""
    rules = {}
    for stack, template in synth.templates.items():
        resources = template["Resources"]
        targets = {
            r["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
            for r in resources.values()
            if r["Type"] == "AWS::S3::Bucket" and "LoggingConfiguration" in r["Properties"]
        }
        for logical_id in targets:
            rules[f"{stack}/{logical_id}"] = resources[logical_id]["Properties"]["LifecycleConfiguration"]["Rules"]
    return rules


def test_access_logs_of_every_stack_are_kept_without_a_gallring_decision(synthesized: Synthesized) -> None:
    # Rule (arkivlagen 1990:782, the project's gallring rule): records are destroyed only under a decision.
    # S3 lifecycle: a rule with no Expiration or NoncurrentVersionExpiration deletes nothing.
    # GIVEN no gallring decision (the default)
    rules = _access_log_rules(synthesized)
    # THEN the network stack's, tier A's and tier B's access-log buckets all keep everything
    assert {key.split("/")[0].rsplit("-", 1)[-1] for key in rules} >= {"network", "a", "b"}
    for key, bucket_rules in rules.items():
        assert bucket_rules == [
            {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}, "Id": "AbortIncompleteMultipartUploads", "Status": "Enabled"}
        ], key  # fmt: skip


def test_access_logs_of_every_stack_expire_alike_under_a_gallring_decision(configured: Synthesized) -> None:
    # GIVEN a gallring decision and log_retention_days=731
    rules = _access_log_rules(configured)
    # THEN every access-log bucket expires its logs after 731 days (noncurrent versions 30 days later), the same rule
    expected = [{
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        "ExpirationInDays": RETENTION_DAYS,
        "Id": "ExpireAccessLogs",
        "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
        "Status": "Enabled",
    }]  # fmt: skip
    assert len(rules) >= 3
    assert all(bucket_rules == expected for bucket_rules in rules.values()), rules
    # AND each such bucket names the decision it expires under
    for key in rules:
        stack, logical_id = key.split("/")
        tags = configured.templates[stack]["Resources"][logical_id]["Properties"]["Tags"]
        assert {"Key": names.TAG_GALLRING_DECISION, "Value": GALLRING} in tags, key


# --- alarms on the trails themselves -----------------------------------------------------------
def _rules(template: dict[str, Any], source: str) -> list[dict[str, Any]]:
    return [
        r["Properties"] for r in template["Resources"].values()
        if r["Type"] == "AWS::Events::Rule" and r["Properties"].get("EventPattern", {}).get("source") == [source]
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("variant", "suffix"), [("configured", TIER_A), ("configured", TIER_B), ("synthesized", TIER_B)]
)
def test_stopping_or_narrowing_a_trail_raises_an_alarm(
    variant: str, suffix: str, request: pytest.FixtureRequest
) -> None:
    # AWS rules: CloudTrail sends "AWS API Call via CloudTrail" events to the default event bus (EventBridge user
    # guide, "AWS service events delivered via AWS CloudTrail"); "For a trail enabled in all Regions, this operation
    # must be called from the Region in which the trail was created" (CloudTrail API reference, StopLogging), so the
    # deployment Region's bus sees every StopLogging of the app's multi-Region trail.
    # GIVEN a tier stack (tier B also in phase 1, when it has no trail of its own)
    template = request.getfixturevalue(variant).template(suffix)
    # THEN one rule sends StopLogging, DeleteTrail, UpdateTrail and PutEventSelectors of any trail to the alarm topic
    (rule,) = _rules(template, "aws.cloudtrail")
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["AWS API Call via CloudTrail"]
    assert pattern["detail"]["eventSource"] == ["cloudtrail.amazonaws.com"]
    assert {"StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors"} <= set(pattern["detail"]["eventName"])
    assert "requestParameters" not in pattern["detail"]  # any trail of the account, the network stack's included
    (target,) = rule["Targets"]
    assert template["Resources"][target["Arn"]["Ref"]]["Type"] == "AWS::SNS::Topic"


@pytest.mark.parametrize("suffix", [TIER_A, TIER_B])
def test_changing_a_tier_trail_bucket_raises_an_alarm(suffix: str, configured: Synthesized) -> None:
    # AWS rule: S3 bucket configuration calls are management events of s3.amazonaws.com with the bucket in
    # requestParameters.bucketName (as the data buckets' configuration alarms already match).
    template = configured.template(suffix)
    logical_id, _ = _trail_bucket(configured, suffix)
    # GIVEN phase 2 WHEN the S3 rules of the tier stack are read
    patterns = [r["EventPattern"]["detail"] for r in _rules(template, "aws.s3")]
    # THEN one matches the trail bucket and the calls that could expire, unlock or open it
    (trail_rule,) = [p for p in patterns if p.get("requestParameters", {}).get("bucketName") == [{"Ref": logical_id}]]
    assert {
        "PutBucketLifecycle",
        "PutBucketPolicy",
        "DeleteBucketPolicy",
        "PutObjectLockConfiguration",
        "PutBucketVersioning",
    } <= set(trail_rule["eventName"])
