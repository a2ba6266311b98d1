"""Every AWS call the tier B provisioner makes is allowed by its synthesized role policy.

The provisioner runs its whole life against the behaviour model (phase 1, activation, phase 2, key
store, key, every update path it has, workshop teardown) with a botocore hook recording each call; each
(action, resource) must be allowed by the policies attached to the provisioner's role in the phase-2
workshop template. This is the class behind "kms:ListAliases / kms:UpdateKeyDescription missing:
workshop teardown fails with AccessDenied".
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from kommunmoln import names
from tests.conftest import Synthesized, synthesize
from tests.controlplane import iam_check
from tests.controlplane.test_behaviour_model import (
    POLICY,  # noqa: F401  (the deployed key policy, conftest)
    REGION,
    World,
    hsms_event,
    initialize_and_activate,
    key_event,
    store_event,
)
from tests.infrastructure.test_tier_b_stack import _write_trust_anchor

ACCOUNT = "111122223333"


@pytest.fixture(scope="module")
def workshop_phase2(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    anchor = _write_trust_anchor(tmp_path_factory.mktemp("pki") / "trust-anchor.pem")
    context = {"workshop_mode": True, "tier_b_keystore_enabled": True, "tier_b_trust_anchor_path": str(anchor),
               "account": ACCOUNT, "region": REGION, "allowed_regions": [REGION]}  # fmt: skip
    return synthesize(tmp_path_factory.mktemp("cdk.out.iam"), context)


def _lifecycle(world: World, recorder: iam_check.Recorder) -> None:
    for client in (world.clients.cloudhsm, world.clients.kms, world.clients.secrets):
        recorder.attach(client)
    cluster_id = world.aws.add_cluster(
        {"eu-north-1a": "subnet-0aaaaaaaaaaaaaaaa", "eu-north-1b": "subnet-0bbbbbbbbbbbbbbbb"}
    )
    world.run(hsms_event(cluster_id, 1))
    # The operator's InitializeCluster runs with the operator's credentials, not the provisioner's role.
    initialize_and_activate(world, cluster_id)
    recorder.calls = [c for c in recorder.calls if c.action != "cloudhsm:InitializeCluster"]
    world.run(hsms_event(cluster_id, 2, request="Update"))
    store_id = world.run(store_event(cluster_id))["PhysicalResourceId"]
    created = world.run(key_event(store_id))
    key_id = created["PhysicalResourceId"]
    # A retried create finds the key behind the alias and adopts it: PutKeyPolicy, ListGrants.
    assert world.run(key_event(store_id))["PhysicalResourceId"] == key_id
    props = key_event(store_id)["ResourceProperties"]
    # Updates: description and policy change in place (the alias is fixed by the config and in the policy).
    new_props = {**props, "Description": "tier B key (renamed)",
                 "KeyPolicy": json.dumps({**json.loads(props["KeyPolicy"]), "Id": "v2"})}  # fmt: skip
    update = {"RequestType": "Update", "ResourceType": props and key_event(store_id)["ResourceType"],
              "PhysicalResourceId": key_id, "ResourceProperties": new_props, "OldResourceProperties": props}  # fmt: skip
    os.environ[names.ENV_EXPECTED_KEY_POLICY] = new_props["KeyPolicy"]  # the deployment brings the new policy
    world.run(update)
    # Workshop teardown, in CloudFormation's order: key, key store, HSMs.
    workshop = {**new_props, "WorkshopMode": "true"}
    world.run({**update, "RequestType": "Delete", "ResourceProperties": workshop})
    store_props = {**store_event(cluster_id)["ResourceProperties"], "WorkshopMode": "true"}
    world.run({**store_event(cluster_id, "Delete", store_id), "ResourceProperties": store_props})
    world.run(hsms_event(cluster_id, 2, request="Delete"))
    assert world.aws.billed_hsms() == []


def test_every_call_of_the_provisioner_is_allowed_by_its_role(workshop_phase2: Synthesized) -> None:
    # GIVEN the provisioner's whole lifecycle against the behaviour model, with every call recorded
    world, recorder = World(), iam_check.Recorder()
    _lifecycle(world, recorder)
    actions = {c.action for c in recorder.calls}
    assert {
        "cloudhsm:CreateHsm",
        "kms:CreateCustomKeyStore",
        "kms:CreateKey",
        "kms:DisconnectCustomKeyStore",
        "kms:PutKeyPolicy",
        "kms:ListGrants",
    } <= actions
    # AND the role policy of each provisioner function (on_event and is_complete share one managed policy)
    template = workshop_phase2.template("-tier-b")
    functions = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
                 and "lambdas.cloudhsm_provisioner.handler" in str(r["Properties"].get("Handler", ""))]  # fmt: skip
    assert len(functions) == 2
    arns = iam_check.Arns("aws", REGION, ACCOUNT, resolve_key=lambda k: world.aws._key(k).key_id if k in
                          world.aws.aliases or k in world.aws.keys else k.rsplit("/", 1)[-1])  # fmt: skip
    for function in functions:
        statements = iam_check.role_statements(template, function)
        # THEN no recorded call would be denied
        missing = iam_check.denied(recorder.calls, statements, arns)
        assert missing == [], f"{function}: {missing}"


def test_checker_finds_a_missing_permission() -> None:
    # GIVEN a policy without kms:ListAliases WHEN a ListAliases call is checked THEN it is reported
    arns = iam_check.Arns("aws", REGION, ACCOUNT, resolve_key=lambda k: k)
    statements: list[dict[str, Any]] = [{"Effect": "Allow", "Action": ["kms:DescribeKey"], "Resource": "*"}]
    calls = [iam_check.Call("kms:ListAliases", {"KeyId": "k"}), iam_check.Call("kms:DescribeKey", {"KeyId": "k"})]
    assert iam_check.denied(calls, statements, arns) == ["kms:ListAliases on *"]
    # AND a resource outside the statement's ARN pattern is reported too
    scoped = [{"Effect": "Allow", "Action": "kms:CreateAlias",
               "Resource": [f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/a", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/*"]}]  # fmt: skip
    bad = iam_check.Call("kms:CreateAlias", {"AliasName": "alias/b", "TargetKeyId": "k"})
    assert iam_check.denied([bad], scoped, arns) == [f"kms:CreateAlias on arn:aws:kms:{REGION}:{ACCOUNT}:alias/b"]


def test_every_call_of_the_key_store_monitor_is_allowed_by_its_role(workshop_phase2: Synthesized) -> None:
    # GIVEN the monitor run in phase 2 against the model, healthy and then alarming, every call recorded
    from tests.controlplane.test_behaviour_model import _monitor

    world, recorder = World(), iam_check.Recorder()
    for client in (world.clients.cloudhsm, world.clients.kms):
        recorder.attach(client)
    cluster_id = world.aws.add_cluster(
        {"eu-north-1a": "subnet-0aaaaaaaaaaaaaaaa", "eu-north-1b": "subnet-0bbbbbbbbbbbbbbbb"}
    )
    world.run(hsms_event(cluster_id, 1))
    initialize_and_activate(world, cluster_id)
    world.run(hsms_event(cluster_id, 2, request="Update"))
    store_id = world.run(store_event(cluster_id))["PhysicalResourceId"]
    created = key_event(store_id)
    key_arn = world.aws._arn(world.run(created)["PhysicalResourceId"])
    policy = created["ResourceProperties"]["KeyPolicy"]
    recorder.calls.clear()  # only the monitor's own calls from here on
    _monitor(world, cluster_id, key_store_id=store_id, key_arn=key_arn, min_hsms=2, key_policy=policy)
    world.clients.kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    recorder.calls = [c for c in recorder.calls if c.action != "kms:DisconnectCustomKeyStore"]
    world.aws.advance(120)
    _monitor(world, cluster_id, key_store_id=store_id, key_arn=key_arn, min_hsms=2, key_policy=policy)
    calls = [*recorder.calls, *(iam_check.Call("sns:Publish", p) for p in world.aws.published)]
    assert {"cloudhsm:DescribeClusters", "kms:DescribeCustomKeyStores", "kms:DescribeKey", "kms:GetKeyPolicy",
            "sns:Publish"} <= {c.action for c in calls}  # fmt: skip
    # AND the monitor function's role in the template
    template = workshop_phase2.template("-tier-b")
    (function,) = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
                   and "lambdas.keystore_monitor.handler" in str(r["Properties"].get("Handler", ""))]  # fmt: skip
    arns = iam_check.Arns("aws", REGION, ACCOUNT, resolve_key=lambda k: k.rsplit("/", 1)[-1])
    # THEN no recorded call would be denied
    missing = iam_check.denied(calls, iam_check.role_statements(template, function), arns)
    assert missing == [], missing
