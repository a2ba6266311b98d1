"""The template model and evaluator on hand-written templates (no synthesis: fast)."""

from __future__ import annotations

import json
from typing import Any

from kommunmoln import names
from kommunmoln.compliance.catalog import RULES_BY_NUMBER
from kommunmoln.compliance.checks import COMPLIANT, NON_COMPLIANT, Evaluator
from kommunmoln.compliance.model import AppModel, ResourceRef, StackModel, flatten, policy_document

ACCOUNT = {"Ref": "AWS::AccountId"}
PROTECTED_TAGS = [
    {"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED},
    {"Key": names.TAG_TIER, "Value": names.TIER_B},
]


def _app(**stacks: dict[str, Any]) -> AppModel:
    model = AppModel()
    for name, template in stacks.items():
        model.add(StackModel(name, template, "eu-north-1", None, name))
    return model


def _tier_b_bucket(key_id: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::S3::Bucket",
        "Properties": {
            "Tags": PROTECTED_TAGS,
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_id}}
                ]
            },
        },
    }


def test_flatten_joins_and_references() -> None:
    value = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::", ACCOUNT, ":root"]]}
    assert flatten(value) == "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
    assert flatten({"Fn::GetAtt": ["Role", "Arn"]}) == "${Role.Arn}"
    assert flatten([1, 2]) is None


def test_key_policy_json_string_with_tokens_is_read() -> None:
    # GIVEN a key policy as CDK's to_json_string renders it (a Join around JSON text)
    policy = {
        "Fn::Join": [
            "",
            ['{"Statement":[{"Effect":"Allow","Principal":{"AWS":"', ACCOUNT, '"},"Action":"kms:Decrypt"}]}'],
        ]
    }
    document = policy_document(policy)
    assert document is not None
    assert document["Statement"][0]["Principal"]["AWS"] == "${AWS::AccountId}"


def test_hsm_key_in_another_stack_is_followed_through_the_export() -> None:
    # GIVEN the HSM key in a key stack, exported, and the tier B bucket importing its ARN
    keys = {
        "Resources": {
            "Key": {"Type": names.RESOURCE_KMS_HSM_KEY, "Properties": {"CustomKeyStoreId": "cks-1234567890abcdef0"}}
        },
        "Outputs": {"KeyArn": {"Value": {"Fn::GetAtt": ["Key", "KeyArn"]}, "Export": {"Name": "keys:KeyArn"}}},
    }
    data = {"Resources": {"Bucket": _tier_b_bucket({"Fn::ImportValue": "keys:KeyArn"})}}
    evaluator = Evaluator(_app(keys=keys, data=data))
    # WHEN rule 2 evaluates the bucket THEN the key is found and accepted
    outcome = evaluator.evaluate(RULES_BY_NUMBER[2], ResourceRef("data", "Bucket"))
    assert outcome.status == COMPLIANT, outcome
    # AND the key counts as a key of protected data (strict policy rules apply to it)
    assert ResourceRef("keys", "Key") in evaluator.strict_keys


def test_hsm_key_without_key_store_fails() -> None:
    template = {
        "Resources": {
            "Key": {"Type": names.RESOURCE_KMS_HSM_KEY, "Properties": {"CustomKeyStoreId": ""}},
            "Bucket": _tier_b_bucket({"Fn::GetAtt": ["Key", "KeyArn"]}),
        }
    }
    outcome = Evaluator(_app(s=template)).evaluate(RULES_BY_NUMBER[2], ResourceRef("s", "Bucket"))
    assert outcome.status == NON_COMPLIANT
    assert "CustomKeyStoreId" in outcome.reasons[0]


def test_advanced_event_selectors_cover_the_bucket() -> None:
    bucket_arn = {"Fn::GetAtt": ["Bucket", "Arn"]}
    trail = {
        "Type": "AWS::CloudTrail::Trail",
        "Properties": {
            "IsLogging": True,
            "AdvancedEventSelectors": [
                {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]},
                {
                    "FieldSelectors": [
                        {"Field": "eventCategory", "Equals": ["Data"]},
                        {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                        {"Field": "resources.ARN", "StartsWith": [{"Fn::Join": ["", [bucket_arn, "/"]]}]},
                    ]
                },
            ],
        },
    }
    template = {
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"Tags": PROTECTED_TAGS}}, "Trail": trail}
    }
    outcome = Evaluator(_app(s=template)).evaluate(RULES_BY_NUMBER[7], ResourceRef("s", "Bucket"))
    assert outcome.status == COMPLIANT, outcome


def test_write_only_data_events_do_not_count() -> None:
    trail = {
        "Type": "AWS::CloudTrail::Trail",
        "Properties": {
            "IsLogging": True,
            "EventSelectors": [
                {"ReadWriteType": "WriteOnly", "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}
            ],
        },
    }
    template = {
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"Tags": PROTECTED_TAGS}}, "Trail": trail}
    }
    outcome = Evaluator(_app(s=template)).evaluate(RULES_BY_NUMBER[7], ResourceRef("s", "Bucket"))
    assert outcome.status == NON_COMPLIANT


def test_unexpected_shapes_fail_with_a_reason_instead_of_raising() -> None:
    # GIVEN a protected bucket whose policy is garbage and whose encryption is a bare string
    template = {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"Tags": PROTECTED_TAGS, "BucketEncryption": "oops"}},
            "Policy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {"Bucket": {"Ref": "Bucket"}, "PolicyDocument": json.dumps([1, 2])},
            },
        }
    }
    evaluator = Evaluator(_app(s=template))
    for number in range(1, 8):
        for ref in (ResourceRef("s", "Bucket"), ResourceRef("s", "Policy")):
            outcome = evaluator.evaluate(RULES_BY_NUMBER[number], ref)  # THEN no exception escapes
            if outcome.status == NON_COMPLIANT:
                assert outcome.reasons
