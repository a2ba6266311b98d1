"""Tier A stack: the security properties themselves, read from the synthesized templates.

The default app (the session `synthesized` fixture) has passed the compliance gates to
exist at all; the variants below are synthesized with the gates too.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from kommunmoln import names
from stacks.components.secure_bucket import DATA_ACTIONS
from stacks.components.tier_a_guards import (
    SID_ENCRYPTION_TAG,
    SID_FORGED_STATUS,
    SID_KEEP_QUARANTINE,
    SID_NO_DELETION,
    SID_PERIMETER,
    SID_READ_UNVALIDATED,
)
from tests.conftest import Synthesized, synthesize

TIER_A = "-tier-a"
PRINCIPAL = "arn:aws:iam::123456789012:role/kommun-onprem-uploader"


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Workshop mode with Object Lock, an e-mail subscription and an on-premises principal."""
    return synthesize(
        tmp_path_factory.mktemp("tier-a-workshop"),
        {
            "use_cases": [names.USE_CASE_CLIENT_SIDE],
            "workshop_mode": True,
            "tier_a_object_lock_days": 30,
            "alarm_email": "sakerhet@exempel.se",
            "tier_a_data_access_principals": [PRINCIPAL],
            "tier_a_validator_concurrency": 7,
        },
    )


def _template(synth: Synthesized) -> dict[str, Any]:
    return synth.template(TIER_A)


def _data_bucket(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    buckets = [
        (k, v)
        for k, v in template["Resources"].items()
        if v["Type"] == "AWS::S3::Bucket"
        and {"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED}
        in v["Properties"].get("Tags", [])
    ]
    assert len(buckets) == 1
    return buckets[0]


def _statements(template: dict[str, Any], bucket_id: str) -> dict[str, dict[str, Any]]:
    policies = [
        v for v in template["Resources"].values()
        if v["Type"] == "AWS::S3::BucketPolicy" and v["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]  # fmt: skip
    assert len(policies) == 1
    return {s.get("Sid", f"#{i}"): s for i, s in enumerate(policies[0]["Properties"]["PolicyDocument"]["Statement"])}


def _logical_id(template: dict[str, Any], resource_type: str, path_part: str) -> str:
    """The one resource of a type whose construct path contains `path_part` (logical ids derive from paths)."""
    prefix = "".join(ch for ch in path_part if ch.isalnum())
    found = [k for k, v in template["Resources"].items() if v["Type"] == resource_type and prefix in k]
    assert len(found) == 1, found
    return found[0]


def _arn(template: dict[str, Any], path_part: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [_logical_id(template, "AWS::IAM::Role", path_part), "Arn"]}


# --- the data bucket --------------------------------------------------------------------------
def test_data_bucket_is_private_versioned_logged_and_owner_enforced(synthesized: Synthesized) -> None:
    _, bucket = _data_bucket(_template(synthesized))
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }  # fmt: skip
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": _logical_id(_template(synthesized), "AWS::S3::Bucket", "/Data/AccessLogs/")
    }
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    assert {"Key": names.TAG_TIER, "Value": names.TIER_A} in props["Tags"]
    assert "ObjectLockEnabled" not in props  # tier_a_object_lock_days = 0 by default


def test_lifecycle_aborts_uploads_and_keeps_noncurrent_versions(synthesized: Synthesized) -> None:
    # GIVEN no gallring decision in cdk.json THEN noncurrent versions never expire (tests/infrastructure/
    # compliance/test_gallring.py covers the configured decision)
    rules = {
        r["Id"]: r for r in _data_bucket(_template(synthesized))[1]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert rules["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert "ExpireNoncurrentVersions" not in rules
    assert all("NoncurrentVersionExpiration" not in r for r in rules.values())
    assert all(r["Status"] == "Enabled" for r in rules.values())


def test_stateful_resources_are_retained_by_default(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    for resource_type in ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Logs::LogGroup", "AWS::SQS::Queue"):
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == resource_type:
                assert resource.get("DeletionPolicy") == "RetainExceptOnCreate", logical_id
    assert not [r for r in template["Resources"].values() if r["Type"] == "Custom::S3AutoDeleteObjects"]


def test_workshop_mode_destroys_and_empties_the_buckets(workshop: Synthesized) -> None:
    template = _template(workshop)
    ids = [_logical_id(template, "AWS::S3::Bucket", path) for path in ("/Data/Bucket/", "/Data/AccessLogs/")]
    assert all(template["Resources"][i]["DeletionPolicy"] == "Delete" for i in ids)
    emptied = [
        r["Properties"]["BucketName"]
        for r in template["Resources"].values()
        if r["Type"] == "Custom::S3AutoDeleteObjects"
    ]
    assert all({"Ref": i} in emptied for i in ids)


def test_object_lock_is_governance_with_the_configured_retention(workshop: Synthesized) -> None:
    props = _data_bucket(_template(workshop))[1]["Properties"]
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}},
    }


def test_access_log_bucket_is_hardened_but_not_tagged_protected(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    log_id = _logical_id(template, "AWS::S3::Bucket", "/Data/AccessLogs/")
    props = template["Resources"][log_id]["Properties"]
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "AccessControl" not in props  # log delivery by bucket policy, no ACL
    assert {"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED} not in props.get("Tags", [])
    statements = _statements(template, log_id)
    assert any(
        s["Principal"] == {"Service": "logging.s3.amazonaws.com"} and s["Effect"] == "Allow"
        for s in statements.values()
    )


# --- the bucket policy ------------------------------------------------------------------------
def test_policy_denies_insecure_transport(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    statements = _statements(template, _data_bucket(template)[0]).values()
    tls = [s for s in statements if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
    assert (
        len(tls) == 1
        and tls[0]["Effect"] == "Deny"
        and tls[0]["Action"] == "s3:*"
        and tls[0]["Principal"] == {"AWS": "*"}
    )


def test_policy_denies_uploads_tagged_without_the_encryption_tag(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    statement = _statements(template, _data_bucket(template)[0])[SID_ENCRYPTION_TAG]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", {"AWS": "*"}, "s3:PutObject")
    assert statement["Condition"] == {
        "StringNotEquals": {f"s3:RequestObjectTag/{names.OBJECT_TAG_ENCRYPTION}": names.OBJECT_TAG_ENCRYPTION_VALUE},
        # Requests without tags are UploadPart/CompleteMultipartUpload (or caught by the validator).
        "Null": {"s3:RequestObjectTagKeys": "false"},
    }


def test_only_validator_and_security_role_may_set_status_tags(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    statement = _statements(template, _data_bucket(template)[0])[SID_FORGED_STATUS]
    assert statement["Effect"] == "Deny"
    assert set(statement["Action"]) == {"s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"}
    assert statement["Condition"]["ForAnyValue:StringEquals"] == {
        "s3:RequestObjectTagKeys": [names.OBJECT_TAG_STATUS, names.OBJECT_TAG_REASON, names.OBJECT_TAG_CHECKED_VERSION]
    }
    assert statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == [
        _arn(template, "/Validator/Function/Role/"),
        _arn(template, "/SecurityRole/"),
    ]


def test_quarantine_is_releasable_only_by_the_security_role(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    statement = _statements(template, _data_bucket(template)[0])[SID_KEEP_QUARANTINE]
    assert statement["Effect"] == "Deny"
    assert set(statement["Action"]) == {
        "s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"
    }  # fmt: skip
    assert statement["Condition"] == {
        "StringEquals": {f"s3:ExistingObjectTag/{names.OBJECT_TAG_STATUS}": names.STATUS_QUARANTINED},
        "ArnNotEquals": {"aws:PrincipalArn": [_arn(template, "/SecurityRole/")]},
    }


def test_only_validated_versions_are_readable_except_by_validator_and_security_role(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    statement = _statements(template, _data_bucket(template)[0])[SID_READ_UNVALIDATED]
    assert statement["Effect"] == "Deny"
    assert {"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectVersionForReplication"} <= set(statement["Action"])
    assert statement["Condition"] == {
        "StringNotEquals": {f"s3:ExistingObjectTag/{names.OBJECT_TAG_STATUS}": names.STATUS_VALIDATED},
        "ArnNotEquals": {
            "aws:PrincipalArn": [_arn(template, "/Validator/Function/Role/"), _arn(template, "/SecurityRole/")]
        },
    }


def test_only_the_security_role_deletes_versions(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    statement = _statements(template, _data_bucket(template)[0])[SID_NO_DELETION]
    assert statement["Effect"] == "Deny"
    assert set(statement["Action"]) == {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"}
    assert statement["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [_arn(template, "/SecurityRole/")]}}


def test_data_access_only_through_the_vpc_endpoint_or_named_principals(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    bucket_id = _data_bucket(template)[0]
    statement = _statements(template, bucket_id)[SID_PERIMETER]
    assert statement["Effect"] == "Deny" and set(statement["Action"]) == set(DATA_ACTIONS)
    assert len(statement["Resource"]) == 2  # the bucket and its objects
    endpoint = statement["Condition"]["StringNotEquals"]["aws:SourceVpce"]
    assert "Fn::ImportValue" in endpoint  # the network stack's S3 gateway endpoint
    # The S3 Batch Operations role lists the bucket for a generated manifest from outside the
    # endpoint; its own policy allows only the listing (test_batch_verification.py).
    assert statement["Condition"]["ArnNotEquals"] == {
        "aws:PrincipalArn": [_arn(template, "/SecurityRole/"), _arn(template, "/BatchVerify/")]
    }


def test_configured_principals_and_workshop_cleanup_are_exempt_from_the_perimeter(workshop: Synthesized) -> None:
    template = _template(workshop)
    statements = _statements(template, _data_bucket(template)[0])
    exempt = statements[SID_PERIMETER]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert PRINCIPAL in exempt and _arn(template, "/SecurityRole/") in exempt
    cleanup = {"Fn::GetAtt": ["CustomS3AutoDeleteObjectsCustomResourceProviderRole3B1BD092", "Arn"]}
    assert cleanup in exempt
    assert cleanup in statements[SID_NO_DELETION]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]


# --- security role ------------------------------------------------------------------------------
def test_security_role_requires_mfa_and_is_an_output(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    role = template["Resources"][_logical_id(template, "AWS::IAM::Role", "/SecurityRole/")]
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    assert "Fn::Join" in str(statement["Principal"]["AWS"]) and ":root" in str(statement["Principal"]["AWS"])
    assert template["Outputs"][names.OUTPUT_SECURITY_ROLE]["Value"] == _arn(template, "/SecurityRole/")


# --- validator ----------------------------------------------------------------------------------
def test_validator_function_is_hardened_and_configured(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    Template.from_json(template).has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.tier_a_validator.handler.lambda_handler",
            "ReservedConcurrentExecutions": 5,
            "DeadLetterConfig": {"TargetArn": Match.any_value()},
            "VpcConfig": Match.object_like({"SubnetIds": Match.any_value()}),
            "Environment": {
                "Variables": Match.object_like(
                    {
                        names.ENV_ALLOWED_NAMESPACES: "kommunmoln",
                        names.ENV_REQUIRED_CONTEXT_KEYS: ",".join(names.REQUIRED_CONTEXT_KEYS),
                        names.ENV_HEADER_READ_BYTES: "65536",
                        names.ENV_ALARM_TOPIC_ARN: {"Ref": _logical_id(template, "AWS::SNS::Topic", "/Alarms/")},
                        names.ENV_SERVICE_NAME: names.SERVICE_TIER_A_VALIDATOR,
                    }
                )
            },
        },
    )


def test_reserved_concurrency_follows_the_config(workshop: Synthesized) -> None:
    Template.from_json(_template(workshop)).has_resource_properties(
        "AWS::Lambda::Function",
        {"Handler": "lambdas.tier_a_validator.handler.lambda_handler", "ReservedConcurrentExecutions": 7},
    )


def test_validator_permissions_are_exactly_read_tag_publish(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    policy = template["Resources"][_logical_id(template, "AWS::IAM::ManagedPolicy", "/Validator/Function/Role/")]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert set(statements["ReadObjectHeads"]["Action"]) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert set(statements["TagObjectVersions"]["Action"]) == {
        "s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging",
    }  # fmt: skip
    assert statements["PublishAlarms"]["Action"] == "sns:Publish"
    every_action = [
        a for s in statements.values() if s["Effect"] == "Allow"
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]  # fmt: skip
    assert not [a for a in every_action if a.startswith("s3:") and "Delete" in a]
    # AND the role's use of the bucket is bound to the validator function's own code: lambda:SourceFunctionArn
    # (identity policies only; https://docs.aws.amazon.com/lambda/latest/dg/permissions-source-function-arn.html)
    bound = statements["DenyDataBucketOutsideTheValidatorFunction"]
    assert bound["Effect"] == "Deny" and {"s3:GetObjectVersion", "s3:PutObjectVersionTagging"} <= set(bound["Action"])
    function_arn = bound["Condition"]["ArnNotEquals"]["lambda:SourceFunctionArn"]
    assert ":function:kommunmoln-exempel-tier-a-validator" in repr(function_arn)


def test_object_created_events_go_to_the_validator(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    _bucket_id, bucket = _data_bucket(template)
    function_id = _logical_id(template, "AWS::Lambda::Function", "/Validator/Function/")
    assert bucket["Properties"]["NotificationConfiguration"] == {
        "LambdaConfigurations": [{"Event": "s3:ObjectCreated:*", "Function": {"Fn::GetAtt": [function_id, "Arn"]}}]
    }
    permission_id = _logical_id(template, "AWS::Lambda::Permission", "/Validator/Function/InvokeByS3")
    permission = template["Resources"][permission_id]
    assert permission["Properties"]["Principal"] == "s3.amazonaws.com"
    assert "SourceAccount" in permission["Properties"] and "SourceArn" in permission["Properties"]
    assert permission_id in bucket["DependsOn"]


def test_alarms_on_quarantine_errors_and_dead_letters_notify_the_topic(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    topic = {"Ref": _logical_id(template, "AWS::SNS::Topic", "/Alarms/")}
    alarms = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert all(a["AlarmActions"] == [topic] and a["Threshold"] == 0 for a in alarms)
    by_metric = {a["MetricName"]: a for a in alarms}
    assert set(by_metric) == {names.METRIC_OBJECTS_QUARANTINED, "Errors", "ApproximateNumberOfMessagesVisible"}
    quarantine = by_metric[names.METRIC_OBJECTS_QUARANTINED]
    assert quarantine["Namespace"] == names.METRIC_NAMESPACE
    assert quarantine["Dimensions"] == [
        {"Name": names.METRIC_DIMENSION_SERVICE, "Value": names.SERVICE_TIER_A_VALIDATOR}
    ]


def test_alarm_topic_is_kms_encrypted_tls_only_and_subscribes_the_email(
    synthesized: Synthesized, workshop: Synthesized
) -> None:
    template = Template.from_json(_template(synthesized))
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {"PolicyDocument": {"Statement": Match.array_with([Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}},
    )  # fmt: skip
    template.resource_count_is("AWS::SNS::Subscription", 0)
    Template.from_json(_template(workshop)).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "sakerhet@exempel.se"}
    )


def test_object_events_are_logged_by_a_trail(synthesized: Synthesized) -> None:
    template = _template(synthesized)
    bucket_id = _data_bucket(template)[0]
    trail = next(r for r in template["Resources"].values() if r["Type"] == "AWS::CloudTrail::Trail")["Properties"]
    selectors = trail["EventSelectors"]
    assert any(
        s.get("ReadWriteType") == "All" and any(bucket_id in str(d["Values"]) for d in s.get("DataResources", []))
        for s in selectors
    )
    assert trail["EnableLogFileValidation"] is True


def test_outputs_are_named_from_names(synthesized: Synthesized) -> None:
    outputs = _template(synthesized)["Outputs"]
    for output in (
        names.OUTPUT_DATA_BUCKET, names.OUTPUT_ACCESS_LOG_BUCKET, names.OUTPUT_ALARM_TOPIC,
        names.OUTPUT_VALIDATOR_FUNCTION, names.OUTPUT_SECURITY_ROLE,
    ):  # fmt: skip
        assert output in outputs
