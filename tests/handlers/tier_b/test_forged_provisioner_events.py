"""Invoking the key provisioner is key administration: a forged event cannot rewrite or delete the key.

Whoever may call lambda:InvokeFunction on the provisioner's onEvent function can hand it any
event. The handler therefore applies only the key policy it was deployed with (its own
environment, set at synthesis) and schedules deletion only if it was deployed in workshop mode.
Against botocore's Stubber: a test that queues no KMS response fails on any KMS call
("Unexpected API call"), so "no call was made" is checked by the stubber itself.
"""

from __future__ import annotations

import json

import pytest

from kommunmoln import names
from kommunmoln.tier_b import recorded
from lambdas.cloudhsm_provisioner import logic
from tests.controlplane import test_cloudhsm_provisioner as provisioner_tests
from tests.controlplane.test_cloudhsm_provisioner import POLICY, Stubs, key_event

stubs = provisioner_tests.stubs

ATTACKER_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*",
    "Principal": {"AWS": "arn:aws:iam::111122223333:role/attacker"}, "Resource": "*"}]})  # fmt: skip


def test_a_forged_update_with_another_key_policy_is_refused_without_any_kms_call(stubs: Stubs) -> None:
    # GIVEN the provisioner deployed with POLICY (its environment) and a forged Update carrying another policy
    old = key_event()["ResourceProperties"]
    event = key_event("Update", ResourceProperties={**old, "KeyPolicy": ATTACKER_POLICY}, OldResourceProperties=old)
    # WHEN it is invoked THEN it refuses, and no PutKeyPolicy (no KMS call at all) was made
    with pytest.raises(logic.ProvisioningError, match="differs from the key policy this provisioner was deployed"):
        stubs.on_event(event)


def test_a_forged_create_with_another_key_policy_is_refused(stubs: Stubs) -> None:
    # GIVEN a forged Create whose policy is not the deployed one WHEN invoked THEN refused before CreateKey
    event = key_event()
    event["ResourceProperties"]["KeyPolicy"] = ATTACKER_POLICY
    with pytest.raises(logic.ProvisioningError, match="refused"):
        stubs.on_event(event)


def test_without_a_deployed_policy_the_provisioner_applies_none(stubs: Stubs, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a provisioner whose environment lacks the deployed policy (fail closed)
    monkeypatch.delenv(names.ENV_EXPECTED_KEY_POLICY)
    # WHEN a Create arrives THEN nothing is applied
    with pytest.raises(logic.ProvisioningError, match=names.ENV_EXPECTED_KEY_POLICY):
        stubs.on_event(key_event())


def test_a_forged_delete_claiming_workshop_mode_keeps_the_key(stubs: Stubs, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a provisioner deployed outside workshop mode and a forged Delete saying WorkshopMode=true
    monkeypatch.setenv(names.ENV_WORKSHOP_MODE, "false")
    # WHEN invoked THEN the key is retained: no DescribeKey, DeleteAlias or ScheduleKeyDeletion
    assert stubs.on_event(key_event("Delete", workshop=True)) == {"PhysicalResourceId": recorded.KEY_ID}


def test_the_deployed_policy_is_still_applied(stubs: Stubs) -> None:
    # GIVEN an Update whose policy equals the deployed one (the legitimate deployment) and a changed description
    old = {**key_event()["ResourceProperties"], "Description": "old"}
    event = key_event("Update", OldResourceProperties=old)
    assert event["ResourceProperties"]["KeyPolicy"] == POLICY
    stubs.kms.add_response("describe_key", recorded.key_metadata(), {"KeyId": recorded.KEY_ID})
    stubs.kms.add_response("update_key_description", {}, {"KeyId": recorded.KEY_ID, "Description": "tier B key"})
    # WHEN invoked THEN it proceeds
    assert stubs.on_event(event)["PhysicalResourceId"] == recorded.KEY_ID
