"""The test evaluator against AWS's own documented evaluation examples (each test cites its page).

If the evaluator got one of these wrong, every scenario built on it would be worthless.
"""

from __future__ import annotations

import pytest

from tests.infrastructure.policy.evaluator import (
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    Request,
    UnsupportedPolicy,
    condition_holds,
    evaluate,
)

USER = "arn:aws:iam::111111111111:role/someone"
OTHER_ACCOUNT_USER = "arn:aws:iam::222222222222:role/someone"


# IAM User Guide, "Multivalued context key examples", Example "Deny a single policy condition
# value for a multivalued context key": its table of request contexts and results.
@pytest.mark.parametrize(
    ("tag_keys", "matches"),
    [(["key1:legal"], False), (["key1:hr", "key1:personnel"], False), (["key2:audit"], True), (None, True)],
)
def test_for_all_values_string_not_like_table(tag_keys: list[str] | None, matches: bool) -> None:
    block = {"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}}
    assert condition_holds(block, {"aws:TagKeys": tag_keys}) is matches


# IAM User Guide, "Condition operators", Important note: a key absent from the request makes
# the condition false, except negated operators (true), ...IfExists and Null.
def test_absent_key_is_false_for_positive_and_true_for_negated_operators() -> None:
    assert condition_holds({"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}}, {}) is False
    assert condition_holds({"StringNotLike": {"aws:PrincipalTag/job-category": "iamuser-*"}}, {}) is True
    assert condition_holds({"ArnNotLike": {"aws:SourceArn": "arn:aws:sns:*"}}, {}) is True
    assert condition_holds({"StringEqualsIfExists": {"ec2:InstanceType": ["t1.*"]}}, {}) is True
    assert condition_holds({"Null": {"aws:TokenIssueTime": "true"}}, {}) is True
    assert condition_holds({"Null": {"aws:TokenIssueTime": "false"}}, {}) is False
    assert condition_holds({"Null": {"aws:TokenIssueTime": "false"}}, {"aws:TokenIssueTime": "2026-01-01"}) is True


# IAM User Guide, "Conditions with multiple context keys or values": operators AND, keys AND,
# values OR, and the values of a negated operator NOR.
def test_multiple_values_or_and_negated_values_nor() -> None:
    equals = {"StringEquals": {"aws:PrincipalTag/role": ["audit", "security"]}}
    not_equals = {"StringNotEquals": {"aws:PrincipalTag/role": ["audit", "security"]}}
    assert condition_holds(equals, {"aws:PrincipalTag/role": "audit"}) is True
    assert condition_holds(not_equals, {"aws:PrincipalTag/role": "audit"}) is False
    assert condition_holds(not_equals, {"aws:PrincipalTag/role": "dev"}) is True
    both = {"StringEquals": {"aws:PrincipalTag/role": "audit", "aws:PrincipalTag/team": "x"}}
    assert condition_holds(both, {"aws:PrincipalTag/role": "audit"}) is False


# IAM User Guide, "Single-valued vs. multivalued context keys": ForAnyValue is false when the
# key is absent, ForAllValues true; ForAnyValue holds when at least one value matches.
def test_set_operators_over_absent_and_present_keys() -> None:
    any_of = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}}
    assert condition_holds(any_of, {}) is False
    assert condition_holds(any_of, {"aws:TagKeys": ["c", "b"]}) is True
    assert condition_holds({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {}) is True
    outside = {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["a", "b"]}}
    assert condition_holds(outside, {"aws:TagKeys": ["a", "b"]}) is False
    assert condition_holds(outside, {"aws:TagKeys": ["a", "z"]}) is True


def test_condition_key_names_are_case_insensitive_and_values_case_sensitive() -> None:
    # IAM User Guide, "IAM JSON policy elements: Condition": key names are not case-sensitive.
    assert condition_holds({"StringEquals": {"AWS:SourceVpce": "vpce-1"}}, {"aws:sourcevpce": "vpce-1"}) is True
    assert condition_holds({"StringEquals": {"aws:SourceVpce": "vpce-1"}}, {"aws:SourceVpce": "VPCE-1"}) is False


# IAM User Guide, "Policy evaluation logic": explicit deny wins; an allow in either policy
# allows within one account; across accounts both must allow; otherwise implicit deny.
def test_evaluation_logic() -> None:
    allow_all = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    deny_get = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}]}
    grant = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": USER}, "Action": "s3:GetObject", "Resource": "*"}]}
    get = Request(USER, "s3:GetObject", "arn:aws:s3:::b/k")
    assert evaluate(get, identity_policies=[allow_all], resource_policy=deny_get) == EXPLICIT_DENY
    assert evaluate(get, identity_policies=[allow_all]) == ALLOW
    assert evaluate(get, resource_policy=grant) == ALLOW
    assert evaluate(get) == IMPLICIT_DENY
    foreign = Request(OTHER_ACCOUNT_USER, "s3:GetObject", "arn:aws:s3:::b/k")
    assert evaluate(foreign, identity_policies=[allow_all]) == IMPLICIT_DENY
    grant_any = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}]}
    assert evaluate(foreign, identity_policies=[allow_all], resource_policy=grant_any) == ALLOW


# KMS Developer Guide, "Key policies in AWS KMS" / "Default key policy": IAM policies count
# only when the key policy's root statement delegates to the account.
def test_key_policy_must_allow_or_delegate_to_the_account() -> None:
    allow_iam = {"Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]}
    request = Request(USER, "kms:Decrypt", "arn:aws:kms:eu-north-1:111111111111:key/k")
    no_delegation = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111111111111:role/x"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ]
    }
    delegation = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ]
    }
    assert (
        evaluate(request, identity_policies=[allow_iam], resource_policy=no_delegation, key_policy=True)
        == IMPLICIT_DENY
    )
    assert evaluate(request, identity_policies=[allow_iam], resource_policy=delegation, key_policy=True) == ALLOW
    # the delegation enables IAM policies; it does not allow by itself
    assert evaluate(request, resource_policy=delegation, key_policy=True) == IMPLICIT_DENY
    # and only for what the delegating statement covers (its actions and conditions)
    narrowed = {"Statement": [{**delegation["Statement"][0], "Action": "kms:DescribeKey"}]}
    assert evaluate(request, identity_policies=[allow_iam], resource_policy=narrowed, key_policy=True) == IMPLICIT_DENY


def test_not_action_not_principal_and_wildcards() -> None:
    policy = {
        "Statement": [
            {"Effect": "Deny", "NotPrincipal": {"AWS": USER}, "NotAction": "s3:List*", "Resource": "arn:aws:s3:::b/*"}
        ]
    }
    other = "arn:aws:iam::111111111111:role/other"
    assert evaluate(Request(other, "s3:GetObject", "arn:aws:s3:::b/k"), resource_policy=policy) == EXPLICIT_DENY
    assert evaluate(Request(other, "s3:ListBucket", "arn:aws:s3:::b/k"), resource_policy=policy) == IMPLICIT_DENY
    assert evaluate(Request(USER, "s3:GetObject", "arn:aws:s3:::b/k"), resource_policy=policy) == IMPLICIT_DENY
    # A deny on the bucket ARN never matches an object request (the mutation the matrix must catch).
    bucket_only = {
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b"}]
    }
    assert evaluate(Request(other, "s3:GetObject", "arn:aws:s3:::b/k"), resource_policy=bucket_only) == IMPLICIT_DENY


def test_unknown_operators_fail_loudly() -> None:
    with pytest.raises(UnsupportedPolicy):
        condition_holds({"DateLessThan": {"aws:CurrentTime": "2026-01-01"}}, {})
    with pytest.raises(UnsupportedPolicy):
        condition_holds({"ForSomeValues:StringEquals": {"aws:TagKeys": "a"}}, {})


def test_numeric_operators_compare_numbers() -> None:
    # IAM User Guide, "Condition operators", numeric condition operators.
    assert condition_holds({"NumericLessThan": {"s3:TlsVersion": 1.2}}, {"s3:TlsVersion": "1.1"}) is True
    assert condition_holds({"NumericLessThan": {"s3:TlsVersion": 1.2}}, {"s3:TlsVersion": "1.3"}) is False


# IAM User Guide, "IP address condition operators" (IpAddress / NotIpAddress, CIDR ranges) and the
# example "AWS: Denies access to AWS based on the source IP": a request from outside the listed ranges
# matches NotIpAddress; aws:SourceIp is absent through a VPC endpoint, so a negated operator holds then.
def test_ip_address_operators_match_cidr_ranges() -> None:
    ranges = {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]}
    assert condition_holds({"IpAddress": ranges}, {"aws:SourceIp": "203.0.113.7"}) is True
    assert condition_holds({"NotIpAddress": ranges}, {"aws:SourceIp": "203.0.113.7"}) is False
    assert condition_holds({"NotIpAddress": ranges}, {"aws:SourceIp": "198.51.100.1"}) is True
    assert condition_holds({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, {"aws:SourceIp": "2001:db8::1"}) is True
    assert condition_holds({"IpAddress": ranges}, {}) is False
    assert condition_holds({"NotIpAddress": ranges}, {}) is True
