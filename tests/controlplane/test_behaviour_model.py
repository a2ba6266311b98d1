"""The tier B provisioner against the CloudHSM + KMS behaviour model (tests/controlplane/aws_model.py).

Where the Stubber tests script one response after another, these let the model answer with AWS's
documented behaviour: states that advance with time, and refusals per state (each rule cites its
AWS page in the model). The first test shows the defect the model found in the old plan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from kommunmoln import names
from lambdas.cloudhsm_provisioner import logic
from tests.controlplane.aws_model import CONNECT_SECONDS, HSM_CREATE_SECONDS, ControlPlane

REGION = "eu-north-1"
ZONES = {"eu-north-1a": "subnet-0aaaaaaaaaaaaaaaa", "eu-north-1b": "subnet-0bbbbbbbbbbbbbbbb"}
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:111122223333:secret:kommunmoln-exempel-kmsuser-AbCdEf"
PASSWORD = "kmsuser-Pw-0123456789"
TRUST_ANCHOR = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                     "Action": "kms:Describe*", "Resource": "*"}]})  # fmt: skip


class World:
    """The model, real boto3 clients answered by it, and the provisioner's entry points."""

    def __init__(self) -> None:
        self.aws = ControlPlane(region=REGION)
        session = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")

        def client(service: str) -> Any:
            return self.aws.attach(session.client(service, endpoint_url=f"https://{service}.{REGION}.amazonaws.com"))

        self.clients = logic.Clients(cloudhsm=client("cloudhsmv2"), kms=client("kms"), secrets=client("secretsmanager"))
        self.aws.secrets[SECRET_ARN] = PASSWORD

    def run(self, event: dict[str, Any], *, poll_seconds: float = 30, max_polls: int = 110) -> dict[str, Any]:
        """What the Provider framework does: onEvent, then isComplete every poll until done (or raise)."""
        started = logic.on_event(event, self.clients, sleep=self.aws.sleep)
        event = {**event, "PhysicalResourceId": started["PhysicalResourceId"]}
        for _ in range(max_polls):
            done = logic.is_complete(event, self.clients, sleep=self.aws.sleep)
            if done["IsComplete"]:
                return {**started, **done}
            self.aws.advance(poll_seconds)
        raise AssertionError("did not complete within the Provider's total timeout")


@pytest.fixture
def world() -> Iterator[World]:
    yield World()


def hsms_event(cluster_id: str, count: int, request: str = "Create") -> dict[str, Any]:
    return {
        "RequestType": request,
        "ResourceType": names.RESOURCE_CLOUDHSM_HSMS,
        "PhysicalResourceId": f"{cluster_id}/hsms",
        "ResourceProperties": {"ClusterId": cluster_id, "AvailabilityZones": list(ZONES), "HsmCount": str(count)},
    }


def store_event(cluster_id: str, request: str = "Create", store_id: str = "") -> dict[str, Any]:
    event = {
        "RequestType": request,
        "ResourceType": names.RESOURCE_KMS_CUSTOM_KEY_STORE,
        "ResourceProperties": {
            "ClusterId": cluster_id, "KeyStoreName": "kommunmoln-exempel-tier-b", "TrustAnchorCertificate": TRUST_ANCHOR,
            "KeyStorePasswordSecretArn": SECRET_ARN, "ExistingKeyStoreId": "", "WorkshopMode": "false",
        },
    }  # fmt: skip
    if store_id:
        event["PhysicalResourceId"] = store_id
    return event


def key_event(store_id: str) -> dict[str, Any]:
    return {
        "RequestType": "Create",
        "ResourceType": names.RESOURCE_KMS_HSM_KEY,
        "ResourceProperties": {"CustomKeyStoreId": store_id, "Description": "tier B key", "KeyPolicy": POLICY,
                               "AliasName": "alias/kommunmoln-exempel-tier-b", "WorkshopMode": "false"},
    }  # fmt: skip


def initialize_and_activate(world: World, cluster_id: str) -> None:
    """The operator's ceremony: InitializeCluster (an API), then `cluster activate` + kmsuser (CloudHSM CLI)."""
    world.clients.cloudhsm.initialize_cluster(ClusterId=cluster_id, SignedCert="-----BEGIN CERTIFICATE-----\nX\n"
                                              "-----END CERTIFICATE-----\n", TrustAnchor=TRUST_ANCHOR)  # fmt: skip
    world.aws.advance(600)
    world.aws.activate(cluster_id, kmsuser_password=PASSWORD)


def test_model_confirms_the_old_plan_fails_on_an_uninitialized_cluster(world: World) -> None:
    # GIVEN a new (UNINITIALIZED) cluster and the model's CreateHsm rule [HSM-2ND]
    cluster_id = world.aws.add_cluster(ZONES)
    # WHEN two HSMs are created one after the other, as the old phase 1 did (HsmCount 2)
    world.clients.cloudhsm.create_hsm(ClusterId=cluster_id, AvailabilityZone="eu-north-1a")
    # THEN CloudHSM refuses the second, after the first is already billed
    with pytest.raises(world.clients.cloudhsm.exceptions.CloudHsmInvalidRequestException, match="not yet been fully"):
        world.clients.cloudhsm.create_hsm(ClusterId=cluster_id, AvailabilityZone="eu-north-1b")
    assert len(world.aws.billed_hsms()) == 1


def test_provisioner_refuses_more_than_one_hsm_before_activation_without_creating_any(world: World) -> None:
    # GIVEN an UNINITIALIZED cluster WHEN the HSMs resource asks for 2
    cluster_id = world.aws.add_cluster(ZONES)
    # THEN it fails before any CreateHsm, naming the phases, and nothing is billed
    with pytest.raises(logic.ProvisioningError, match=r"accepts exactly one HSM.*phase 2"):
        world.run(hsms_event(cluster_id, 2))
    assert world.aws.billed_hsms() == []
    assert ("cloudhsmv2", "CreateHsm") not in world.aws.calls


def test_whole_tier_b_flow_phase_1_then_activation_then_phase_2(world: World) -> None:
    # GIVEN phase 1: one HSM on the new cluster
    cluster_id = world.aws.add_cluster(ZONES)
    phase_1 = world.run(hsms_event(cluster_id, 1))
    # THEN it waits the documented creation time and reports one ACTIVE HSM
    assert phase_1["Data"]["HsmCount"] == "1"
    assert world.aws.now >= HSM_CREATE_SECONDS
    # WHEN the operator initializes and activates, and phase 2 raises HsmCount to 2
    initialize_and_activate(world, cluster_id)
    phase_2 = world.run(hsms_event(cluster_id, 2, request="Update"))
    # THEN the second HSM lands in the other zone (the 2-HSMs-in-2-zones rule [KMS-CFG])
    assert phase_2["Data"]["HsmCount"] == "2"
    assert {h.zone for h in world.aws.live_hsms(cluster_id)} == set(ZONES)
    # AND the key store is created and connected (the connect takes minutes [KMS-CONN]; is_complete waits)
    before = world.aws.now
    store = world.run(store_event(cluster_id))
    store_id = store["PhysicalResourceId"]
    assert world.aws.stores[store_id].state == "CONNECTED"
    assert world.aws.now - before >= CONNECT_SECONDS
    # AND the HSM-backed key is created in it, with its alias
    key = world.run(key_event(store_id))
    assert world.aws.keys[key["PhysicalResourceId"]].state == "Enabled"
    assert world.aws.aliases["alias/kommunmoln-exempel-tier-b"] == key["PhysicalResourceId"]


def test_key_store_on_a_cluster_with_one_hsm_is_refused_with_the_rule(world: World) -> None:
    # GIVEN an activated cluster with one HSM (phase 1 done, phase 2's second HSM missing)
    cluster_id = world.aws.add_cluster(ZONES)
    world.run(hsms_event(cluster_id, 1))
    initialize_and_activate(world, cluster_id)
    # WHEN / THEN CreateCustomKeyStore is refused and the message says what the cluster needs
    with pytest.raises(logic.ProvisioningError, match=r"CloudHsmClusterInvalidConfigurationException.*two ACTIVE HSMs"):
        world.run(store_event(cluster_id))


def test_connect_without_kmsuser_fails_fast_with_its_connection_error_code(world: World) -> None:
    # GIVEN two HSMs in two zones on an activated cluster, but no kmsuser created yet
    cluster_id = world.aws.add_cluster(ZONES)
    world.run(hsms_event(cluster_id, 1))
    world.clients.cloudhsm.initialize_cluster(ClusterId=cluster_id, SignedCert="-----BEGIN CERTIFICATE-----\nX\n"
                                              "-----END CERTIFICATE-----\n", TrustAnchor=TRUST_ANCHOR)  # fmt: skip
    world.aws.advance(600)
    world.aws.activate(cluster_id)
    world.run(hsms_event(cluster_id, 2, request="Update"))
    # WHEN the key store is created and connected
    # THEN the connect ends FAILED with USER_NOT_FOUND and the deployment fails with its remedy
    with pytest.raises(logic.KeyStoreConnectionFailed, match="USER_NOT_FOUND") as failure:
        world.run(store_event(cluster_id))
    assert "user create --username kmsuser" in failure.value.remedy


def test_failed_create_rolled_back_leaves_no_billed_hsm(world: World) -> None:
    # GIVEN phase 1 created its HSM, and the stack create then fails elsewhere and rolls back
    cluster_id = world.aws.add_cluster(ZONES)
    created = world.run(hsms_event(cluster_id, 1))
    assert len(world.aws.billed_hsms()) == 1
    # WHEN CloudFormation deletes the HSMs resource (RetainExceptOnCreate: a rolled-back create is deleted)
    delete = {**hsms_event(cluster_id, 1, request="Delete"), "PhysicalResourceId": created["PhysicalResourceId"]}
    world.run(delete)
    # THEN no HSM is left that bills
    assert world.aws.billed_hsms() == []


def test_create_hsm_refused_half_way_deletes_what_it_created(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an ACTIVE cluster and a second CreateHsm that fails (quota) after the first succeeded
    cluster_id = world.aws.add_cluster(ZONES, state="ACTIVE")
    original = world.aws._cloudhsmv2_CreateHsm
    calls = {"n": 0}

    def quota_on_second(request: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:
            from tests.controlplane.aws_model import Refused

            raise Refused("CloudHsmResourceLimitExceededException", "HSM quota reached")
        return original(request)

    monkeypatch.setattr(world.aws, "_cloudhsmv2_CreateHsm", quota_on_second)
    # WHEN onEvent fails on Create (the CDK Provider then sends no Delete for it)
    with pytest.raises(logic.ProvisioningError, match="CloudHsmResourceLimitExceededException"):
        logic.on_event(hsms_event(cluster_id, 2), world.clients, sleep=world.aws.sleep)
    # THEN the HSM it had created is being deleted, so nothing stays billed
    world.aws.advance(600)
    assert world.aws.billed_hsms() == []


def test_model_rejects_a_request_botocore_would_not_send(world: World) -> None:
    # GIVEN the model behind a real client WHEN a request breaks the API's input shape
    # THEN botocore refuses it before the model sees it (shapes stay AWS's)
    from botocore.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        world.clients.cloudhsm.create_hsm(ClusterId="cluster-x")


def _monitor(
    world: World, cluster_id: str, *, key_store_id: str = "", key_arn: str = "", min_hsms: int = 1, key_policy: str = ""
):
    from lambdas.keystore_monitor import handler as monitor_handler
    from lambdas.keystore_monitor import logic as monitor_logic

    session = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    sns = world.aws.attach(session.client("sns", endpoint_url=f"https://sns.{REGION}.amazonaws.com"))
    settings = monitor_handler.Settings(
        checks=monitor_logic.MonitorSettings(key_store_id, cluster_id, key_arn, min_hsms, key_policy),
        topic_arn=f"arn:aws:sns:{REGION}:111122223333:alarms",
    )
    return monitor_handler.run(settings, kms=world.clients.kms, cloudhsm=world.clients.cloudhsm, sns=sns)


def test_monitor_in_phase_1_expects_the_uninitialized_cluster_and_does_not_alarm(world: World) -> None:
    # GIVEN phase 1 as deployed: an UNINITIALIZED cluster with its one ACTIVE HSM, no key store yet
    cluster_id = world.aws.add_cluster(ZONES)
    world.run(hsms_event(cluster_id, 1))
    # WHEN the monitor runs (phase 1 settings: no key store id, one HSM)
    report, result = _monitor(world, cluster_id)
    # THEN the expected state is reported, not alarmed
    assert result["healthy"] and world.aws.published == []
    assert any("awaiting initialization" in c.detail for c in report.checks)


def test_monitor_in_phase_2_alarms_on_a_disconnected_key_store(world: World) -> None:
    # GIVEN the whole flow done, then the key store disconnected
    cluster_id = world.aws.add_cluster(ZONES)
    world.run(hsms_event(cluster_id, 1))
    initialize_and_activate(world, cluster_id)
    world.run(hsms_event(cluster_id, 2, request="Update"))
    store_id = world.run(store_event(cluster_id))["PhysicalResourceId"]
    key_id = world.run(key_event(store_id))["PhysicalResourceId"]
    world.clients.kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    world.aws.advance(120)
    # WHEN the monitor runs THEN it alarms once, naming the state
    _, result = _monitor(world, cluster_id, key_store_id=store_id, key_arn=world.aws._arn(key_id), min_hsms=2)
    assert not result["healthy"] and len(world.aws.published) == 1
    assert "DISCONNECTED" in world.aws.published[0]["Message"]


def _connected_store(world: World) -> tuple[str, str]:
    cluster_id = world.aws.add_cluster(ZONES)
    world.run(hsms_event(cluster_id, 1))
    initialize_and_activate(world, cluster_id)
    world.run(hsms_event(cluster_id, 2, request="Update"))
    return cluster_id, world.run(store_event(cluster_id))["PhysicalResourceId"]


def _timed_on_event(world: World, event: dict[str, Any]) -> float:
    """Model seconds one on_event invocation spends (the model's clock moves only through sleeps)."""
    before = world.aws.now
    logic.on_event(event, world.clients, sleep=world.aws.sleep)
    return world.aws.now - before


def test_key_store_password_update_waits_for_the_disconnect_in_is_complete(world: World) -> None:
    # Rules [KMS-STATE]: UpdateCustomKeyStore only on a DISCONNECTED store; a disconnect passes through
    # DISCONNECTING (the model: DISCONNECT_SECONDS) and a connect through CONNECTING [KMS-CONN].
    # GIVEN a CONNECTED key store, and the operator's new kmsuser password in a new secret and on the cluster
    cluster_id, store_id = _connected_store(world)
    new_secret = SECRET_ARN.replace("AbCdEf", "GhIjKl")
    world.aws.secrets[new_secret] = "kmsuser-Pw-rotated-42"
    world.aws.create_kmsuser(cluster_id, "kmsuser-Pw-rotated-42")
    old = store_event(cluster_id, "Update", store_id)["ResourceProperties"]
    update = {**store_event(cluster_id, "Update", store_id), "OldResourceProperties": old,
              "ResourceProperties": {**old, "KeyStorePasswordSecretArn": new_secret}}  # fmt: skip
    # WHEN on_event runs alone THEN it returns at once (no wait inside the invocation) and the store is DISCONNECTING
    assert _timed_on_event(world, update) == 0
    assert world.aws.stores[store_id].state == "DISCONNECTING"
    # AND the Provider's polls finish the update: KMS has the new password and the store is CONNECTED again
    # (an UpdateCustomKeyStore before DISCONNECTED would have been refused by the model)
    world.run(update)
    store = world.aws.stores[store_id]
    assert (store.state, store.password) == ("CONNECTED", "kmsuser-Pw-rotated-42")
    assert ("kms", "UpdateCustomKeyStore") in world.aws.calls


def test_key_store_rename_runs_through_the_same_disconnect_and_reconnect(world: World) -> None:
    # GIVEN a CONNECTED key store WHEN its name changes in the template
    cluster_id, store_id = _connected_store(world)
    old = store_event(cluster_id, "Update", store_id)["ResourceProperties"]
    update = {**store_event(cluster_id, "Update", store_id), "OldResourceProperties": old,
              "ResourceProperties": {**old, "KeyStoreName": "kommunmoln-exempel-tier-b-2"}}  # fmt: skip
    done = world.run(update)
    # THEN the store carries the new name, is CONNECTED, and keeps its id
    store = world.aws.stores[store_id]
    assert (store.name, store.state, done["PhysicalResourceId"]) == (
        "kommunmoln-exempel-tier-b-2",
        "CONNECTED",
        store_id,
    )


def test_an_unchanged_update_leaves_a_connected_store_alone(world: World) -> None:
    # GIVEN a CONNECTED key store WHEN CloudFormation sends an Update with the same properties (another resource changed)
    cluster_id, store_id = _connected_store(world)
    calls = len(world.aws.calls)
    props = store_event(cluster_id, "Update", store_id)["ResourceProperties"]
    world.run({**store_event(cluster_id, "Update", store_id), "OldResourceProperties": props})
    # THEN no disconnect, no update, still CONNECTED
    later = world.aws.calls[calls:]
    assert ("kms", "DisconnectCustomKeyStore") not in later and ("kms", "UpdateCustomKeyStore") not in later
    assert world.aws.stores[store_id].state == "CONNECTED"
