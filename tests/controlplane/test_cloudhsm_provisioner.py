"""Tier B custom resources against botocore's Stubber (real CloudHSMv2, KMS and Secrets Manager models)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber

from kommunmoln import names
from kommunmoln.tier_b import recorded
from lambdas.cloudhsm_provisioner import logic

REGION = recorded.REGION
CLUSTER = recorded.CLUSTER_ID
STORE = recorded.KEY_STORE_ID
FILTER = {"Filters": {"clusterIds": [CLUSTER]}}
ZONE_A, ZONE_B = recorded.ZONES
PASSWORD = "kmsuser-Pw-0123456789"
TRUST_ANCHOR = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/admin"},
             "Action": ["kms:Describe*", "kms:PutKeyPolicy"], "Resource": "*"},
        ],
    }
)  # fmt: skip


@functools.cache
def _clients() -> logic.Clients:
    """One set of real clients (creating clients is the slow part); each test stubs them afresh."""
    session = boto3.Session(region_name=REGION)

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=f"https://{service}.{REGION}.amazonaws.com")

    return logic.Clients(cloudhsm=client("cloudhsmv2"), kms=client("kms"), secrets=client("secretsmanager"))


class Stubs:
    def __init__(self) -> None:
        self.clients = _clients()
        self.hsm = Stubber(self.clients.cloudhsm)
        self.kms = Stubber(self.clients.kms)
        self.sm = Stubber(self.clients.secrets)
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def on_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return logic.on_event(event, self.clients, sleep=self.sleep)

    def is_complete(self, event: dict[str, Any]) -> dict[str, Any]:
        return logic.is_complete(event, self.clients, sleep=self.sleep)


@pytest.fixture
def stubs() -> Iterator[Stubs]:
    s = Stubs()
    with s.hsm, s.kms, s.sm:
        yield s
        s.hsm.assert_no_pending_responses()
        s.kms.assert_no_pending_responses()
        s.sm.assert_no_pending_responses()


def hsm_event(request: str = "Create", count: str = "2", **extra: Any) -> dict[str, Any]:
    event = {
        "RequestType": request,
        "ResourceType": names.RESOURCE_CLOUDHSM_HSMS,
        "ResourceProperties": {"ClusterId": CLUSTER, "AvailabilityZones": [ZONE_A, ZONE_B], "HsmCount": count},
    }
    # is_complete always sees the physical id (the Provider merges onEvent's result into its event)
    event["PhysicalResourceId"] = f"{CLUSTER}/hsms"
    event.update(extra)
    return event


def store_event(request: str = "Create", *, workshop: bool = False, existing: str = "", **extra: Any) -> dict[str, Any]:
    event = {
        "RequestType": request,
        "ResourceType": names.RESOURCE_KMS_CUSTOM_KEY_STORE,
        "ResourceProperties": {
            "ClusterId": CLUSTER,
            "KeyStoreName": "kommunmoln-exempel",
            "TrustAnchorCertificate": TRUST_ANCHOR,
            "KeyStorePasswordSecretArn": recorded.SECRET_ARN,
            "ExistingKeyStoreId": existing,
            "WorkshopMode": "true" if workshop else "false",
        },
    }
    # is_complete always sees the physical id (the Provider merges onEvent's result into its event)
    event["PhysicalResourceId"] = STORE
    event.update(extra)
    return event


def key_event(request: str = "Create", *, workshop: bool = False, **extra: Any) -> dict[str, Any]:
    event = {
        "RequestType": request,
        "ResourceType": names.RESOURCE_KMS_HSM_KEY,
        "ResourceProperties": {
            "CustomKeyStoreId": STORE,
            "Description": "tier B key",
            "KeyPolicy": POLICY,
            "AliasName": "alias/kommunmoln-exempel-tier-b",
            "WorkshopMode": "true" if workshop else "false",
        },
    }
    # is_complete always sees the physical id (the Provider merges onEvent's result into its event)
    event["PhysicalResourceId"] = recorded.KEY_ID
    event.update(extra)
    return event


def hsms(*specs: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [recorded.hsm(hsm_id, zone, state) for hsm_id, zone, state in specs]


# --- HSMs ------------------------------------------------------------------------------------
def test_create_spreads_hsms_round_robin_across_zones(stubs: Stubs) -> None:
    # GIVEN an ACTIVE cluster (only an activated cluster takes more than one HSM: CloudHSM User Guide,
    # Getting started, https://docs.aws.amazon.com/cloudhsm/latest/userguide/getting-started.html; the
    # behaviour model in tests/controlplane/aws_model.py encodes the refusal) and three HSMs in two zones
    stubs.hsm.add_response("describe_clusters", recorded.cluster("ACTIVE"), FILTER)
    for hsm_id, zone in (("hsm-aaaaaaaaaaa", ZONE_A), ("hsm-bbbbbbbbbbb", ZONE_B), ("hsm-ccccccccccc", ZONE_A)):
        stubs.hsm.add_response(
            "create_hsm",
            {"Hsm": recorded.hsm(hsm_id, zone, "CREATE_IN_PROGRESS")},
            {"ClusterId": CLUSTER, "AvailabilityZone": zone},
        )
    # WHEN the resource is created
    result = stubs.on_event(hsm_event(count="3"))
    # THEN the HSMs alternate zones and the physical id names the cluster
    assert result["PhysicalResourceId"] == f"{CLUSTER}/hsms"
    assert result["Data"] == {"HsmIds": "hsm-aaaaaaaaaaa,hsm-bbbbbbbbbbb,hsm-ccccccccccc", "HsmCount": "3"}


def test_create_counts_existing_hsms_toward_the_target(stubs: Stubs) -> None:
    # GIVEN phase 2 on an activated cluster: the one HSM of phase 1 already exists in zone a
    stubs.hsm.add_response(
        "describe_clusters", recorded.cluster("ACTIVE", hsms(("hsm-aaaaaaaaaaa", ZONE_A, "ACTIVE"))), FILTER
    )
    stubs.hsm.add_response(
        "create_hsm",
        {"Hsm": recorded.hsm("hsm-bbbbbbbbbbb", ZONE_B, "CREATE_IN_PROGRESS")},
        {"ClusterId": CLUSTER, "AvailabilityZone": ZONE_B},
    )
    # WHEN / THEN only the missing HSM is created, in the empty zone
    assert stubs.on_event(hsm_event())["Data"]["HsmCount"] == "2"


def test_is_complete_waits_while_hsms_are_being_created_then_completes(stubs: Stubs) -> None:
    # GIVEN HSMs being created, then active
    creating = hsms(("hsm-aaaaaaaaaaa", ZONE_A, "CREATE_IN_PROGRESS"), ("hsm-bbbbbbbbbbb", ZONE_B, "ACTIVE"))
    active = hsms(("hsm-aaaaaaaaaaa", ZONE_A, "ACTIVE"), ("hsm-bbbbbbbbbbb", ZONE_B, "ACTIVE"))
    stubs.hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", creating), FILTER)
    stubs.hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", active), FILTER)
    # WHEN polled twice / THEN not complete, then complete with the ids
    assert stubs.is_complete(hsm_event("Update")) == {"IsComplete": False}
    done = stubs.is_complete(hsm_event("Update"))
    assert done["IsComplete"] is True
    assert done["Data"]["HsmIds"] == "hsm-aaaaaaaaaaa,hsm-bbbbbbbbbbb"


def test_hsm_creation_failure_fails_fast_with_the_state_message(stubs: Stubs) -> None:
    # GIVEN an HSM that went DEGRADED while being created
    failed = [
        recorded.hsm("hsm-aaaaaaaaaaa", ZONE_A, "DEGRADED", message="HSM creation failed: insufficient capacity"),
        recorded.hsm("hsm-bbbbbbbbbbb", ZONE_B, "ACTIVE"),
    ]
    stubs.hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", failed), FILTER)
    # WHEN / THEN is_complete raises at once, naming the HSM and the reason
    with pytest.raises(logic.ProvisioningError, match=r"HSM creation failed .*hsm-aaaaaaaaaaa.*insufficient capacity"):
        stubs.is_complete(hsm_event())


def test_vanished_hsm_fails_instead_of_waiting(stubs: Stubs) -> None:
    # GIVEN one of two requested HSMs was deleted (creation failed and AWS removed it)
    remaining = hsms(("hsm-aaaaaaaaaaa", ZONE_A, "ACTIVE"), ("hsm-bbbbbbbbbbb", ZONE_B, "DELETED"))
    stubs.hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", remaining), FILTER)
    # WHEN / THEN
    with pytest.raises(logic.ProvisioningError, match="has 1 HSMs but 2 were requested"):
        stubs.is_complete(hsm_event())


@pytest.mark.parametrize("state", ["DEGRADED", "DELETE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS"])
def test_cluster_in_a_failure_state_fails_fast(stubs: Stubs, state: str) -> None:
    # GIVEN a cluster in a failure state
    stubs.hsm.add_response("describe_clusters", recorded.cluster(state, message="an HSM is unreachable"), FILTER)
    # WHEN / THEN the create refuses with the state and its message
    with pytest.raises(logic.ProvisioningError, match=f"is {state} \\(an HSM is unreachable\\)"):
        stubs.on_event(hsm_event())


def test_create_hsm_api_error_becomes_a_clear_message(stubs: Stubs) -> None:
    # GIVEN the HSM quota is reached
    stubs.hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED"), FILTER)
    stubs.hsm.add_client_error(
        "create_hsm", "CloudHsmResourceLimitExceededException", "HSM limit exceeded", expected_params=None
    )
    # WHEN / THEN the error names the call, the code and what to do
    with pytest.raises(
        logic.ProvisioningError, match=r"CreateHsm failed with CloudHsmResourceLimitExceededException.*quota"
    ):
        stubs.on_event(hsm_event(count="1"))


def test_missing_cluster_is_reported(stubs: Stubs) -> None:
    stubs.hsm.add_response("describe_clusters", {"Clusters": []}, FILTER)
    with pytest.raises(logic.ProvisioningError, match=f"cluster {CLUSTER} not found"):
        stubs.on_event(hsm_event())


def test_update_lowering_the_count_removes_from_the_zone_with_most_hsms(stubs: Stubs) -> None:
    # GIVEN three HSMs, two of them in zone a
    three = hsms(
        ("hsm-aaaaaaaaaaa", ZONE_A, "ACTIVE"),
        ("hsm-bbbbbbbbbbb", ZONE_B, "ACTIVE"),
        ("hsm-ccccccccccc", ZONE_A, "ACTIVE"),
    )
    stubs.hsm.add_response("describe_clusters", recorded.cluster("ACTIVE", three), FILTER)
    stubs.hsm.add_response(
        "delete_hsm", {"HsmId": "hsm-aaaaaaaaaaa"}, {"ClusterId": CLUSTER, "HsmId": "hsm-aaaaaaaaaaa"}
    )
    # WHEN the count goes to 2
    result = stubs.on_event(hsm_event("Update", count="2"))
    # THEN one HSM of zone a goes, leaving one per zone
    assert result["Data"]["HsmIds"] == "hsm-bbbbbbbbbbb,hsm-ccccccccccc"


def test_is_complete_waits_for_removed_hsms_to_be_deleted(stubs: Stubs) -> None:
    state = hsms(
        ("hsm-aaaaaaaaaaa", ZONE_A, "DELETE_IN_PROGRESS"),
        ("hsm-bbbbbbbbbbb", ZONE_B, "ACTIVE"),
        ("hsm-ccccccccccc", ZONE_A, "ACTIVE"),
    )
    stubs.hsm.add_response("describe_clusters", recorded.cluster("ACTIVE", state), FILTER)
    assert stubs.is_complete(hsm_event("Update")) == {"IsComplete": False}


@pytest.mark.parametrize("count", ["0", "-1", "two", "29"])
def test_invalid_hsm_count_is_refused_before_any_call(stubs: Stubs, count: str) -> None:
    with pytest.raises(logic.ProvisioningError, match="HsmCount must be a whole number from 1 to 28"):
        stubs.on_event(hsm_event("Update", count=count))


def test_delete_removes_every_hsm_and_waits_until_they_are_gone(stubs: Stubs) -> None:
    two = hsms(("hsm-aaaaaaaaaaa", ZONE_A, "ACTIVE"), ("hsm-bbbbbbbbbbb", ZONE_B, "ACTIVE"))
    stubs.hsm.add_response("describe_clusters", recorded.cluster("ACTIVE", two), FILTER)
    for hsm_id in ("hsm-aaaaaaaaaaa", "hsm-bbbbbbbbbbb"):
        stubs.hsm.add_response("delete_hsm", {"HsmId": hsm_id}, {"ClusterId": CLUSTER, "HsmId": hsm_id})
    assert stubs.on_event(hsm_event("Delete"))["PhysicalResourceId"] == f"{CLUSTER}/hsms"
    deleting = hsms(("hsm-aaaaaaaaaaa", ZONE_A, "DELETE_IN_PROGRESS"), ("hsm-bbbbbbbbbbb", ZONE_B, "DELETED"))
    stubs.hsm.add_response("describe_clusters", recorded.cluster("ACTIVE", deleting), FILTER)
    stubs.hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", []), FILTER)
    assert stubs.is_complete(hsm_event("Delete")) == {"IsComplete": False}
    assert stubs.is_complete(hsm_event("Delete")) == {"IsComplete": True}


def test_delete_of_a_vanished_cluster_succeeds(stubs: Stubs) -> None:
    stubs.hsm.add_client_error("describe_clusters", "CloudHsmResourceNotFoundException", expected_params=FILTER)
    assert stubs.on_event(hsm_event("Delete"))["PhysicalResourceId"] == f"{CLUSTER}/hsms"


def test_throttling_is_retried_with_backoff_then_succeeds(stubs: Stubs) -> None:
    # GIVEN DescribeClusters is throttled twice
    for _ in range(2):
        stubs.hsm.add_client_error("describe_clusters", "ThrottlingException", "Rate exceeded", expected_params=FILTER)
    stubs.hsm.add_response(
        "describe_clusters",
        recorded.cluster("ACTIVE", hsms(("hsm-aaaaaaaaaaa", ZONE_A, "ACTIVE"), ("hsm-bbbbbbbbbbb", ZONE_B, "ACTIVE"))),
        FILTER,
    )
    # WHEN / THEN the call succeeds after two backoff sleeps that grow
    assert stubs.is_complete(hsm_event())["IsComplete"] is True
    assert len(stubs.sleeps) == 2
    assert stubs.sleeps[1] > stubs.sleeps[0] * 0.9 or stubs.sleeps[1] >= logic.BASE_DELAY_SECONDS


def test_throttling_that_never_stops_fails_after_a_bounded_number_of_attempts(stubs: Stubs) -> None:
    # GIVEN a DISCONNECTED key store whose reconnect is throttled on every attempt
    stubs.kms.add_response(
        "describe_custom_key_stores", recorded.key_store("DISCONNECTED"), {"CustomKeyStoreId": STORE}
    )
    for _ in range(logic.MAX_ATTEMPTS):
        stubs.kms.add_client_error("connect_custom_key_store", "ThrottlingException", expected_params=None)
    # WHEN / THEN it gives up after MAX_ATTEMPTS with a clear message
    with pytest.raises(
        logic.ProvisioningError, match=f"still failed with ThrottlingException after {logic.MAX_ATTEMPTS}"
    ):
        stubs.is_complete(store_event("Update"))
    assert len(stubs.sleeps) == logic.MAX_ATTEMPTS - 1


def test_plan_functions_keep_the_spread() -> None:
    existing = [{"HsmId": "hsm-a", "AvailabilityZone": "z1", "State": "ACTIVE"}]
    assert logic.plan_additions(existing, ["z1", "z2", "z3"], 4) == ["z2", "z3", "z1"]
    many = [
        {"HsmId": "hsm-1", "AvailabilityZone": "z1", "State": "ACTIVE"},
        {"HsmId": "hsm-2", "AvailabilityZone": "z1", "State": "CREATE_IN_PROGRESS"},
        {"HsmId": "hsm-3", "AvailabilityZone": "z2", "State": "ACTIVE"},
    ]
    assert logic.plan_removals(many, 2) == ["hsm-2"]  # the zone with most, non-active first
    with pytest.raises(logic.ProvisioningError, match="at least 1"):
        logic.plan_removals(many, 0)


# --- Key store ----------------------------------------------------------------------------------
def _cloudhsm_connection_codes() -> list[str]:
    model = botocore.session.get_session().get_service_model("kms")
    return [code for code in model.shape_for("ConnectionErrorCodeType").enum if not code.startswith("XKS_")]


def test_every_connection_error_code_of_the_kms_model_has_a_remedy() -> None:
    model = botocore.session.get_session().get_service_model("kms")
    assert set(model.shape_for("ConnectionErrorCodeType").enum) <= set(logic.CONNECTION_ERROR_REMEDIES)
    reference_codes = {
        "CLUSTER_NOT_FOUND", "INSUFFICIENT_CLOUDHSM_HSMS", "INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET", "INTERNAL_ERROR",
        "INVALID_CREDENTIALS", "NETWORK_ERRORS", "SUBNET_NOT_FOUND", "USER_LOCKED_OUT", "USER_LOGGED_IN", "USER_NOT_FOUND",
    }  # fmt: skip
    assert reference_codes == set(_cloudhsm_connection_codes())
    assert len({logic.CONNECTION_ERROR_REMEDIES[c] for c in reference_codes}) == len(reference_codes)


@pytest.mark.parametrize("code", _cloudhsm_connection_codes())
def test_failed_connection_fails_fast_with_its_code_and_remedy(stubs: Stubs, code: str) -> None:
    # GIVEN the key store connection FAILED with this code
    stubs.kms.add_response(
        "describe_custom_key_stores", recorded.key_store("FAILED", code=code), {"CustomKeyStoreId": STORE}
    )
    # WHEN polled / THEN it raises at once (no reconnect, no waiting) with the code and its specific remedy
    with pytest.raises(logic.KeyStoreConnectionFailed) as raised:
        stubs.is_complete(store_event())
    assert raised.value.code == code
    assert f"ConnectionErrorCode {code}" in str(raised.value)
    assert logic.CONNECTION_ERROR_REMEDIES[code] in str(raised.value)
    assert stubs.sleeps == []


def test_connecting_is_not_complete_and_connected_is(stubs: Stubs) -> None:
    stubs.kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTING"), {"CustomKeyStoreId": STORE})
    stubs.kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTED"), {"CustomKeyStoreId": STORE})
    assert stubs.is_complete(store_event()) == {"IsComplete": False}
    assert stubs.is_complete(store_event()) == {"IsComplete": True, "Data": {"CustomKeyStoreId": STORE}}


def test_create_reads_the_password_at_run_time_creates_and_connects(stubs: Stubs) -> None:
    # GIVEN no key store of that name, and the password stored as JSON
    stubs.kms.add_client_error(
        "describe_custom_key_stores",
        "CustomKeyStoreNotFoundException",
        expected_params={"CustomKeyStoreName": "kommunmoln-exempel"},
    )
    stubs.sm.add_response(
        "get_secret_value",
        {"ARN": recorded.SECRET_ARN, "SecretString": json.dumps({"password": PASSWORD})},
        {"SecretId": recorded.SECRET_ARN},
    )
    stubs.kms.add_response(
        "create_custom_key_store",
        {"CustomKeyStoreId": STORE},
        {
            "CustomKeyStoreName": "kommunmoln-exempel",
            "CloudHsmClusterId": CLUSTER,
            "TrustAnchorCertificate": TRUST_ANCHOR,
            "KeyStorePassword": PASSWORD,
            "CustomKeyStoreType": "AWS_CLOUDHSM",
        },
    )
    stubs.kms.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    # WHEN / THEN
    assert stubs.on_event(store_event()) == {"PhysicalResourceId": STORE, "Data": {"CustomKeyStoreId": STORE}}


def test_a_bad_secret_is_refused_without_echoing_its_value(stubs: Stubs) -> None:
    stubs.kms.add_client_error("describe_custom_key_stores", "CustomKeyStoreNotFoundException", expected_params=None)
    stubs.sm.add_response("get_secret_value", {"SecretString": "short"}, {"SecretId": recorded.SECRET_ARN})
    with pytest.raises(logic.ProvisioningError, match="7 to 32 characters") as raised:
        stubs.on_event(store_event())
    assert "short" not in str(raised.value)


def test_create_with_an_incorrect_trust_anchor_gives_the_hint(stubs: Stubs) -> None:
    stubs.kms.add_client_error("describe_custom_key_stores", "CustomKeyStoreNotFoundException", expected_params=None)
    stubs.sm.add_response("get_secret_value", {"SecretString": PASSWORD}, {"SecretId": recorded.SECRET_ARN})
    stubs.kms.add_client_error(
        "create_custom_key_store", "IncorrectTrustAnchorException", "bad anchor", expected_params=None
    )
    with pytest.raises(logic.ProvisioningError, match=r"IncorrectTrustAnchorException.*customerCA.crt") as raised:
        stubs.on_event(store_event())
    assert PASSWORD not in str(raised.value)


def test_adopting_an_existing_key_store_after_a_restore_moves_it_to_the_new_cluster(stubs: Stubs) -> None:
    # Rule: UpdateCustomKeyStore only on a DISCONNECTED store; DisconnectCustomKeyStore returns at once and the
    # store passes through DISCONNECTING (CustomKeyStoreInvalidStateException, UpdateCustomKeyStore API reference).
    # GIVEN an existing key store still pointing at the old (deleted) cluster, FAILED
    old = recorded.key_store("FAILED", code="CLUSTER_NOT_FOUND")
    old["CustomKeyStores"][0]["CloudHsmClusterId"] = "cluster-oldoldoldold"
    stubs.kms.add_response("describe_custom_key_stores", old, {"CustomKeyStoreId": STORE})
    stubs.kms.add_response("disconnect_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    # WHEN the resource adopts it / THEN on_event only asks for the disconnect, without waiting
    assert stubs.on_event(store_event(existing=STORE))["PhysicalResourceId"] == STORE
    assert stubs.sleeps == []
    # AND is_complete waits while DISCONNECTING, then moves it to the restored cluster and connects it
    event = {**store_event(existing=STORE), "PhysicalResourceId": STORE}
    disconnecting = recorded.key_store("DISCONNECTING")
    disconnecting["CustomKeyStores"][0]["CloudHsmClusterId"] = "cluster-oldoldoldold"
    stubs.kms.add_response("describe_custom_key_stores", disconnecting, {"CustomKeyStoreId": STORE})
    assert stubs.is_complete(event) == {"IsComplete": False}
    disconnected = recorded.key_store("DISCONNECTED")
    disconnected["CustomKeyStores"][0]["CloudHsmClusterId"] = "cluster-oldoldoldold"
    stubs.kms.add_response("describe_custom_key_stores", disconnected, {"CustomKeyStoreId": STORE})
    stubs.kms.add_response("update_custom_key_store", {}, {"CustomKeyStoreId": STORE, "CloudHsmClusterId": CLUSTER})
    stubs.kms.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    assert stubs.is_complete(event) == {"IsComplete": False}
    stubs.kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTED"), {"CustomKeyStoreId": STORE})
    assert stubs.is_complete(event)["IsComplete"] is True


def test_adopting_a_key_store_connected_to_another_cluster_is_refused(stubs: Stubs) -> None:
    other = recorded.key_store("CONNECTED")
    other["CustomKeyStores"][0]["CloudHsmClusterId"] = "cluster-oldoldoldold"
    stubs.kms.add_response("describe_custom_key_stores", other, {"CustomKeyStoreId": STORE})
    with pytest.raises(logic.ProvisioningError, match="is CONNECTED to cluster cluster-oldoldoldold"):
        stubs.on_event(store_event(existing=STORE))


def test_disconnected_after_connect_reconnects_once(stubs: Stubs) -> None:
    stubs.kms.add_response(
        "describe_custom_key_stores", recorded.key_store("DISCONNECTED"), {"CustomKeyStoreId": STORE}
    )
    stubs.kms.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    stubs.kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTING"), {"CustomKeyStoreId": STORE})
    assert stubs.is_complete(store_event()) == {"IsComplete": False}


def test_disconnected_again_after_the_reconnect_fails(stubs: Stubs) -> None:
    # GIVEN a key store that stays DISCONNECTED although a connect was requested
    stubs.kms.add_response(
        "describe_custom_key_stores", recorded.key_store("DISCONNECTED"), {"CustomKeyStoreId": STORE}
    )
    stubs.kms.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    stubs.kms.add_response(
        "describe_custom_key_stores", recorded.key_store("DISCONNECTED"), {"CustomKeyStoreId": STORE}
    )
    # WHEN polled / THEN exactly one reconnect, then a clear failure
    with pytest.raises(logic.ProvisioningError, match="stayed DISCONNECTED after a reconnect attempt"):
        stubs.is_complete(store_event())


def test_an_update_hands_the_disconnect_wait_to_is_complete(stubs: Stubs) -> None:
    # GIVEN a CONNECTED key store and an update to a new kmsuser password secret (UpdateCustomKeyStore needs
    # the store DISCONNECTED; a disconnect takes a while, shown as DISCONNECTING)
    stubs.kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTED"), {"CustomKeyStoreId": STORE})
    stubs.kms.add_response("disconnect_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    old = store_event()["ResourceProperties"]
    new_props = {**old, "KeyStorePasswordSecretArn": recorded.SECRET_ARN + "2"}
    event = store_event("Update", ResourceProperties=new_props, OldResourceProperties=old)
    # WHEN on_event runs THEN it only asks for the disconnect: no polling, no sleep inside the invocation
    assert stubs.on_event(event)["PhysicalResourceId"] == STORE
    assert stubs.sleeps == []
    # AND is_complete reports not-complete while DISCONNECTING, with no update attempted (KMS would refuse it)
    for _ in range(3):
        stubs.kms.add_response(
            "describe_custom_key_stores", recorded.key_store("DISCONNECTING"), {"CustomKeyStoreId": STORE}
        )
        assert stubs.is_complete(event) == {"IsComplete": False}
    # AND once DISCONNECTED it reads the new password, updates and connects
    stubs.kms.add_response(
        "describe_custom_key_stores", recorded.key_store("DISCONNECTED"), {"CustomKeyStoreId": STORE}
    )
    stubs.sm.add_response("get_secret_value", {"SecretString": PASSWORD}, {"SecretId": recorded.SECRET_ARN + "2"})
    stubs.kms.add_response("update_custom_key_store", {}, {"CustomKeyStoreId": STORE, "KeyStorePassword": PASSWORD})
    stubs.kms.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    assert stubs.is_complete(event) == {"IsComplete": False}
    assert stubs.sleeps == []


def test_delete_retains_the_key_store_by_default(stubs: Stubs) -> None:
    # GIVEN not workshop mode / WHEN deleted / THEN no AWS call at all (it stays connected)
    assert stubs.on_event(store_event("Delete")) == {"PhysicalResourceId": STORE}
    assert stubs.is_complete(store_event("Delete")) == {"IsComplete": True}


def _keys_in_store(stubs: Stubs, states: list[str]) -> None:
    ids = [f"1234abcd-12ab-34cd-56ef-12345678900{i}" for i in range(len(states))]
    stubs.kms.add_response(
        "list_keys", {"Keys": [{"KeyId": k} for k in ids] + [{"KeyId": "other-key"}], "Truncated": False}, {}
    )
    for key_id, state in zip(ids, states, strict=True):
        stubs.kms.add_response("describe_key", recorded.key_metadata(state, key_id=key_id), {"KeyId": key_id})
    stubs.kms.add_response(
        "describe_key", recorded.key_metadata(origin="AWS_KMS", key_id="other-key"), {"KeyId": "other-key"}
    )


def test_workshop_delete_with_keys_present_is_refused(stubs: Stubs) -> None:
    stubs.kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTED"), {"CustomKeyStoreId": STORE})
    _keys_in_store(stubs, ["Enabled"])
    with pytest.raises(logic.ProvisioningError, match=r"workshop teardown refused: .* holds 1 KMS key\(s\)"):
        stubs.on_event(store_event("Delete", workshop=True))


def test_workshop_delete_without_keys_disconnects_then_deletes(stubs: Stubs) -> None:
    stubs.kms.add_response("describe_custom_key_stores", recorded.key_store("CONNECTED"), {"CustomKeyStoreId": STORE})
    _keys_in_store(stubs, [])
    stubs.kms.add_response("disconnect_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    stubs.on_event(store_event("Delete", workshop=True))
    stubs.kms.add_response(
        "describe_custom_key_stores", recorded.key_store("DISCONNECTING"), {"CustomKeyStoreId": STORE}
    )
    assert stubs.is_complete(store_event("Delete", workshop=True)) == {"IsComplete": False}
    stubs.kms.add_response(
        "describe_custom_key_stores", recorded.key_store("DISCONNECTED"), {"CustomKeyStoreId": STORE}
    )
    _keys_in_store(stubs, [])
    stubs.kms.add_response("delete_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    assert stubs.is_complete(store_event("Delete", workshop=True)) == {"IsComplete": True}


def test_workshop_delete_with_keys_pending_deletion_leaves_it_disconnected(stubs: Stubs) -> None:
    stubs.kms.add_response(
        "describe_custom_key_stores", recorded.key_store("DISCONNECTED"), {"CustomKeyStoreId": STORE}
    )
    _keys_in_store(stubs, ["PendingDeletion"])
    assert stubs.is_complete(store_event("Delete", workshop=True)) == {"IsComplete": True}


def test_delete_refused_by_kms_because_of_keys_is_explained(stubs: Stubs) -> None:
    stubs.kms.add_response(
        "describe_custom_key_stores", recorded.key_store("DISCONNECTED"), {"CustomKeyStoreId": STORE}
    )
    _keys_in_store(stubs, [])
    stubs.kms.add_client_error("delete_custom_key_store", "CustomKeyStoreHasCMKsException", expected_params=None)
    with pytest.raises(logic.ProvisioningError, match="workshop teardown refused"):
        stubs.is_complete(store_event("Delete", workshop=True))


# --- Key ----------------------------------------------------------------------------------------
def test_create_key_in_the_key_store_with_the_lockout_guard_on(stubs: Stubs) -> None:
    stubs.kms.add_client_error(
        "describe_key", "NotFoundException", expected_params={"KeyId": "alias/kommunmoln-exempel-tier-b"}
    )
    stubs.kms.add_response(
        "create_key",
        recorded.key_metadata("Enabled"),
        {
            "Policy": POLICY,
            "Description": "tier B key",
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeySpec": "SYMMETRIC_DEFAULT",
            "Origin": "AWS_CLOUDHSM",
            "CustomKeyStoreId": STORE,
            "BypassPolicyLockoutSafetyCheck": False,
        },
    )
    stubs.kms.add_response(
        "create_alias", {}, {"AliasName": "alias/kommunmoln-exempel-tier-b", "TargetKeyId": recorded.KEY_ID}
    )
    result = stubs.on_event(key_event())
    assert result == {
        "PhysicalResourceId": recorded.KEY_ID,
        "Data": {"KeyId": recorded.KEY_ID, "KeyArn": recorded.KEY_ARN},
    }
    stubs.kms.add_response("describe_key", recorded.key_metadata("Enabled"), {"KeyId": recorded.KEY_ID})
    assert stubs.is_complete(key_event("Update"))["IsComplete"] is True


def test_create_key_while_the_key_store_is_not_connected_is_explained(stubs: Stubs) -> None:
    stubs.kms.add_client_error("describe_key", "NotFoundException", expected_params=None)
    stubs.kms.add_client_error(
        "create_key", "CustomKeyStoreInvalidStateException", "not connected", expected_params=None
    )
    with pytest.raises(logic.ProvisioningError, match="must be CONNECTED to create keys"):
        stubs.on_event(key_event())


def test_key_unavailable_fails_with_the_reason(stubs: Stubs) -> None:
    stubs.kms.add_response("describe_key", recorded.key_metadata("Unavailable"), {"KeyId": recorded.KEY_ID})
    with pytest.raises(logic.ProvisioningError, match="is Unavailable: its custom key store is not connected"):
        stubs.is_complete(key_event("Update"))


def test_update_changes_the_key_policy_with_the_lockout_guard(stubs: Stubs, monkeypatch: pytest.MonkeyPatch) -> None:
    old = key_event()["ResourceProperties"]
    new_policy = POLICY.replace("kms:PutKeyPolicy", "kms:GetKeyPolicy")
    monkeypatch.setenv(names.ENV_EXPECTED_KEY_POLICY, new_policy)  # the deployment brought the new policy
    event = key_event("Update", ResourceProperties={**old, "KeyPolicy": new_policy}, OldResourceProperties=old)
    stubs.kms.add_response("describe_key", recorded.key_metadata(), {"KeyId": recorded.KEY_ID})
    stubs.kms.add_response(
        "put_key_policy",
        {},
        {
            "KeyId": recorded.KEY_ID,
            "PolicyName": "default",
            "Policy": new_policy,
            "BypassPolicyLockoutSafetyCheck": False,
        },
    )
    assert stubs.on_event(event)["PhysicalResourceId"] == recorded.KEY_ID


def test_key_delete_is_retained_by_default(stubs: Stubs) -> None:
    assert stubs.on_event(key_event("Delete")) == {"PhysicalResourceId": recorded.KEY_ID}


def test_workshop_key_delete_schedules_deletion_in_30_days_and_removes_the_alias(stubs: Stubs) -> None:
    stubs.kms.add_response("describe_key", recorded.key_metadata(), {"KeyId": recorded.KEY_ID})
    stubs.kms.add_response(
        "list_aliases",
        {"Aliases": [{"AliasName": "alias/kommunmoln-exempel-tier-b", "TargetKeyId": recorded.KEY_ID}]},
        {"KeyId": recorded.KEY_ID},
    )
    stubs.kms.add_response("delete_alias", {}, {"AliasName": "alias/kommunmoln-exempel-tier-b"})
    stubs.kms.add_response(
        "schedule_key_deletion",
        {"KeyId": recorded.KEY_ARN, "PendingWindowInDays": 30},
        {"KeyId": recorded.KEY_ID, "PendingWindowInDays": 30},
    )
    stubs.on_event(key_event("Delete", workshop=True))


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"KeyPolicy": "{not json"}, "KeyPolicy is not JSON"),
        ({"AliasName": "alias/aws/s3"}, "reserved by AWS"),
        ({"AliasName": "kommunmoln"}, "AliasName"),
        ({"CustomKeyStoreId": "store-1"}, "CustomKeyStoreId"),
    ],
)
def test_invalid_key_properties_are_refused(stubs: Stubs, props: dict[str, str], message: str) -> None:
    event = key_event()
    event["ResourceProperties"].update(props)
    with pytest.raises(logic.ProvisioningError, match=message):
        stubs.on_event(event)


def test_unknown_resource_type_is_refused(stubs: Stubs) -> None:
    with pytest.raises(logic.ProvisioningError, match="unknown custom resource type 'Custom::Nope'"):
        stubs.on_event({"RequestType": "Create", "ResourceType": "Custom::Nope", "ResourceProperties": {}})


def test_handler_builds_clients_lazily_and_reports_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the Lambda module imported (no client made at import)
    from lambdas.cloudhsm_provisioner import handler

    handler._clients.cache_clear()
    assert handler._clients.cache_info().currsize == 0
    # WHEN an event with an unknown type arrives / THEN the ProvisioningError reaches the Provider
    with pytest.raises(logic.ProvisioningError):
        handler.on_event({"RequestType": "Create", "ResourceType": "Custom::Nope", "ResourceProperties": {}}, None)
    handler._clients.cache_clear()
