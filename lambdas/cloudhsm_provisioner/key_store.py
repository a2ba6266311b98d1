"""Custom::KmsCustomKeyStore: create (or adopt) the CloudHSM key store and connect it. A FAILED
connection fails the deployment at once with its ConnectionErrorCode and remedy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambdas.cloudhsm_provisioner.common import (
    CLUSTER_ID,
    KEY_STORE_ID,
    LOG,
    Clients,
    ProvisioningError,
    Sleep,
    call,
    error_code,
    flag,
    prop,
)
from lambdas.cloudhsm_provisioner.connection_errors import KeyStoreConnectionFailed

WAIT_POLL_SECONDS = 5.0
WAIT_POLLS = 24  # bounded wait inside one invocation: 2 minutes (the function has 10; longer waits: is_complete)
RECHECK_SECONDS = 5.0


@dataclass(frozen=True)
class KeyStoreProps:
    cluster_id: str
    name: str
    trust_anchor: str
    password_secret_arn: str
    existing_id: str
    workshop_mode: bool

    @staticmethod
    def parse(props: Mapping[str, Any]) -> KeyStoreProps:
        existing = prop(props, "ExistingKeyStoreId", pattern=KEY_STORE_ID, allow_empty=True)
        trust_anchor = prop(props, "TrustAnchorCertificate", allow_empty=bool(existing))
        if trust_anchor and "-----BEGIN CERTIFICATE-----" not in trust_anchor:
            raise ProvisioningError("property TrustAnchorCertificate must be a PEM certificate")
        return KeyStoreProps(
            cluster_id=prop(props, "ClusterId", pattern=CLUSTER_ID),
            name=prop(props, "KeyStoreName", pattern=r"[\w.:/=+@-]{1,256}"),
            trust_anchor=trust_anchor,
            password_secret_arn=prop(props, "KeyStorePasswordSecretArn", pattern=r"arn:aws[\w-]*:secretsmanager:.+"),
            existing_id=existing,
            workshop_mode=flag(props, "WorkshopMode"),
        )


def read_kmsuser_password(secrets_client: Any, secret_arn: str, *, sleep: Sleep) -> str:
    """The kmsuser password from Secrets Manager: the plain SecretString or its "password" field."""
    value = call(secrets_client.get_secret_value, sleep=sleep, SecretId=secret_arn).get("SecretString", "")
    if value.startswith("{"):
        try:
            value = json.loads(value).get("password", "")
        except (ValueError, AttributeError):
            value = ""
    if not isinstance(value, str) or not 7 <= len(value) <= 32:
        # Never echo the value: say only what is wrong with it.
        raise ProvisioningError(
            f"secret {secret_arn} must hold the kmsuser password (7 to 32 characters) as plain text or as "
            'JSON {"password": ...}'
        )
    return value


def _one_store(kms: Any, sleep: Sleep, **selector: str) -> dict[str, Any] | None:
    """The one key store DescribeCustomKeyStores finds by id or by name, or None."""
    try:
        stores = call(kms.describe_custom_key_stores, sleep=sleep, **selector)
    except ClientError as err:
        if error_code(err) == "CustomKeyStoreNotFoundException":
            return None
        raise
    entries = stores.get("CustomKeyStores", [])
    return entries[0] if entries else None


def describe_key_store(kms: Any, key_store_id: str, *, sleep: Sleep) -> dict[str, Any] | None:
    """The key store with this id, or None when it does not exist."""
    return _one_store(kms, sleep, CustomKeyStoreId=key_store_id)


def _find_key_store_by_name(kms: Any, name: str, *, sleep: Sleep) -> dict[str, Any] | None:
    return _one_store(kms, sleep, CustomKeyStoreName=name)


def _wait_for_connection_state(kms: Any, key_store_id: str, wanted: str, *, sleep: Sleep) -> dict[str, Any]:
    for _ in range(WAIT_POLLS):
        store = describe_key_store(kms, key_store_id, sleep=sleep)
        if store is None:
            raise ProvisioningError(f"custom key store {key_store_id} disappeared")
        if store["ConnectionState"] == wanted:
            return store
        sleep(WAIT_POLL_SECONDS)
    raise ProvisioningError(
        f"custom key store {key_store_id} did not reach {wanted} within {int(WAIT_POLLS * WAIT_POLL_SECONDS)} s"
    )


def _disconnect_and_wait(kms: Any, store: Mapping[str, Any], *, sleep: Sleep) -> None:
    store_id = store["CustomKeyStoreId"]
    if store["ConnectionState"] == "DISCONNECTED":
        return
    if store["ConnectionState"] != "DISCONNECTING":
        call(kms.disconnect_custom_key_store, sleep=sleep, CustomKeyStoreId=store_id)
    _wait_for_connection_state(kms, store_id, "DISCONNECTED", sleep=sleep)


def _start_connect(kms: Any, store: Mapping[str, Any], *, sleep: Sleep) -> None:
    """Ask KMS to connect; a FAILED store is disconnected first (Connect refuses FAILED)."""
    state = store["ConnectionState"]
    if state in ("CONNECTED", "CONNECTING"):
        return
    if state in ("FAILED", "DISCONNECTING"):
        LOG.info("key store %s is %s; disconnecting before connecting again", store["CustomKeyStoreId"], state)
        _disconnect_and_wait(kms, store, sleep=sleep)
    call(kms.connect_custom_key_store, sleep=sleep, CustomKeyStoreId=store["CustomKeyStoreId"])


def _adopt_existing(kms: Any, props: KeyStoreProps, clients: Clients, *, sleep: Sleep) -> dict[str, Any]:
    store = describe_key_store(kms, props.existing_id, sleep=sleep)
    if store is None:
        raise ProvisioningError(f"ExistingKeyStoreId {props.existing_id} not found in this account and Region")
    if store.get("CustomKeyStoreType", "AWS_CLOUDHSM") != "AWS_CLOUDHSM":
        raise ProvisioningError(f"custom key store {props.existing_id} is not a CloudHSM key store")
    if store.get("CloudHsmClusterId") != props.cluster_id:
        # Restore from backup: the key store moves to the cluster restored from its old cluster's backup.
        LOG.info(
            "moving key store %s from %s to %s", props.existing_id, store.get("CloudHsmClusterId"), props.cluster_id
        )
        if store["ConnectionState"] == "CONNECTED":
            raise ProvisioningError(
                f"custom key store {props.existing_id} is CONNECTED to cluster {store.get('CloudHsmClusterId')}; "
                f"disconnect it yourself before moving it to {props.cluster_id} (its keys are unusable meanwhile)"
            )
        _disconnect_and_wait(kms, store, sleep=sleep)
        # No password: KMS keeps the kmsuser password it last set, which the backup holds too. If they
        # differ, the connect fails with INVALID_CREDENTIALS and its remedy.
        call(
            kms.update_custom_key_store,
            sleep=sleep,
            CustomKeyStoreId=props.existing_id,
            CloudHsmClusterId=props.cluster_id,
        )
        store = {**store, "CloudHsmClusterId": props.cluster_id, "ConnectionState": "DISCONNECTED"}
    return store


def key_store_on_event(event: Mapping[str, Any], clients: Clients, sleep: Sleep) -> dict[str, Any]:
    request = event["RequestType"]
    props = KeyStoreProps.parse(event["ResourceProperties"])
    kms = clients.kms
    if request == "Delete":
        return _key_store_delete(event["PhysicalResourceId"], props, kms, sleep=sleep)

    if request == "Update":
        old = KeyStoreProps.parse(event.get("OldResourceProperties", {}))
        store_id = event["PhysicalResourceId"]
        if props.existing_id and props.existing_id != store_id:
            request = "Create"  # adopt another key store: a new physical resource
        else:
            store = _key_store_update(store_id, props, old, clients, sleep=sleep)
    if request == "Create":
        if props.existing_id:
            store = _adopt_existing(kms, props, clients, sleep=sleep)
        else:
            store = _find_key_store_by_name(kms, props.name, sleep=sleep)
            if store is not None and store.get("CloudHsmClusterId") != props.cluster_id:
                raise ProvisioningError(
                    f"a custom key store named {props.name!r} already exists for cluster {store.get('CloudHsmClusterId')}"
                )
            if store is None:
                password = read_kmsuser_password(clients.secrets, props.password_secret_arn, sleep=sleep)
                created = call(
                    kms.create_custom_key_store,
                    sleep=sleep,
                    CustomKeyStoreName=props.name,
                    CloudHsmClusterId=props.cluster_id,
                    TrustAnchorCertificate=props.trust_anchor,
                    KeyStorePassword=password,
                    CustomKeyStoreType="AWS_CLOUDHSM",
                )
                store = {"CustomKeyStoreId": created["CustomKeyStoreId"], "ConnectionState": "DISCONNECTED"}
                LOG.info("created custom key store %s", store["CustomKeyStoreId"])
            else:
                LOG.info("adopting custom key store %s of the same name (a retried create)", store["CustomKeyStoreId"])
    _start_connect(kms, store, sleep=sleep)
    store_id = store["CustomKeyStoreId"]
    return {"PhysicalResourceId": store_id, "Data": {"CustomKeyStoreId": store_id}}


def _key_store_update(
    store_id: str, props: KeyStoreProps, old: KeyStoreProps, clients: Clients, *, sleep: Sleep
) -> dict[str, Any]:
    kms = clients.kms
    store = describe_key_store(kms, store_id, sleep=sleep)
    if store is None:
        raise ProvisioningError(f"custom key store {store_id} not found; it was deleted outside CloudFormation")
    if props.trust_anchor and old.trust_anchor and props.trust_anchor != old.trust_anchor:
        LOG.warning("TrustAnchorCertificate changed: KMS cannot change it on an existing key store; ignored")
    changes: dict[str, str] = {}
    if store.get("CloudHsmClusterId") != props.cluster_id:
        changes["CloudHsmClusterId"] = props.cluster_id
    if store.get("CustomKeyStoreName") and store["CustomKeyStoreName"] != props.name:
        changes["NewCustomKeyStoreName"] = props.name
    if changes or props.password_secret_arn != old.password_secret_arn:
        if store["ConnectionState"] == "CONNECTED" and "CloudHsmClusterId" in changes:
            raise ProvisioningError(
                f"custom key store {store_id} is CONNECTED; disconnect it yourself before moving it to "
                f"{props.cluster_id} (its keys are unusable meanwhile)"
            )
        _disconnect_and_wait(kms, store, sleep=sleep)
        if props.password_secret_arn != old.password_secret_arn:  # the operator set a new kmsuser password
            changes["KeyStorePassword"] = read_kmsuser_password(clients.secrets, props.password_secret_arn, sleep=sleep)
        call(kms.update_custom_key_store, sleep=sleep, CustomKeyStoreId=store_id, **changes)
        store = {**store, "ConnectionState": "DISCONNECTED"}
        LOG.info("updated key store %s: %s", store_id, ", ".join(sorted(changes)))
    return store


def keys_in_key_store(kms: Any, key_store_id: str, *, sleep: Sleep) -> list[dict[str, Any]]:
    """KeyMetadata of every KMS key in the key store (ListKeys + DescribeKey)."""
    found: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        page = call(kms.list_keys, sleep=sleep, **({"Marker": marker} if marker else {}))
        for entry in page.get("Keys", []):
            meta = call(kms.describe_key, sleep=sleep, KeyId=entry["KeyId"])["KeyMetadata"]
            if meta.get("CustomKeyStoreId") == key_store_id:
                found.append(meta)
        if not page.get("Truncated"):
            return found
        marker = page["NextMarker"]


def _refuse_active_keys(key_store_id: str, keys: Sequence[Mapping[str, Any]]) -> None:
    active = [k["KeyId"] for k in keys if k.get("KeyState") != "PendingDeletion"]
    if active:
        raise ProvisioningError(
            f"workshop teardown refused: custom key store {key_store_id} still holds {len(active)} KMS key(s) that "
            f"are not scheduled for deletion ({', '.join(active)}). Schedule their deletion "
            "(aws kms schedule-key-deletion --pending-window-in-days 30) and delete the stack again"
        )


def _key_store_delete(key_store_id: str, props: KeyStoreProps, kms: Any, *, sleep: Sleep) -> dict[str, Any]:
    if not props.workshop_mode:
        LOG.info("custom key store %s is retained (not workshop mode); it stays connected", key_store_id)
        return {"PhysicalResourceId": key_store_id}
    store = describe_key_store(kms, key_store_id, sleep=sleep)
    if store is None:
        return {"PhysicalResourceId": key_store_id}
    _refuse_active_keys(key_store_id, keys_in_key_store(kms, key_store_id, sleep=sleep))
    if store["ConnectionState"] not in ("DISCONNECTED", "DISCONNECTING"):
        call(kms.disconnect_custom_key_store, sleep=sleep, CustomKeyStoreId=key_store_id)
    return {"PhysicalResourceId": key_store_id}


def _key_store_delete_complete(key_store_id: str, props: KeyStoreProps, kms: Any, *, sleep: Sleep) -> dict[str, Any]:
    if not props.workshop_mode:
        return {"IsComplete": True}
    store = describe_key_store(kms, key_store_id, sleep=sleep)
    if store is None:
        return {"IsComplete": True}
    state = store["ConnectionState"]
    if state == "DISCONNECTING":
        return {"IsComplete": False}
    if state != "DISCONNECTED":
        call(kms.disconnect_custom_key_store, sleep=sleep, CustomKeyStoreId=key_store_id)
        return {"IsComplete": False}
    keys = keys_in_key_store(kms, key_store_id, sleep=sleep)
    _refuse_active_keys(key_store_id, keys)
    if keys:
        LOG.warning(
            "custom key store %s is left DISCONNECTED: it holds %d key(s) pending deletion; delete it with "
            "`aws kms delete-custom-key-store --custom-key-store-id %s` after their waiting period",
            key_store_id,
            len(keys),
            key_store_id,
        )
        return {"IsComplete": True}
    try:
        call(kms.delete_custom_key_store, sleep=sleep, CustomKeyStoreId=key_store_id)
    except ClientError as err:
        if error_code(err) == "CustomKeyStoreHasCMKsException":
            raise ProvisioningError(
                f"workshop teardown refused: custom key store {key_store_id} still holds KMS keys; schedule their "
                "deletion and delete the key store after the waiting period"
            ) from err
        raise
    LOG.info("deleted custom key store %s", key_store_id)
    return {"IsComplete": True}


def _connection_verdict(store_id: str, store: Mapping[str, Any] | None) -> bool | None:
    """True = connected, False = still connecting, None = disconnected; raises on FAILED."""
    if store is None:
        raise ProvisioningError(f"custom key store {store_id} not found")
    state = store["ConnectionState"]
    if state == "CONNECTED":
        return True
    if state == "FAILED":
        raise KeyStoreConnectionFailed(store_id, store.get("ConnectionErrorCode", "UNKNOWN"))
    if state in ("CONNECTING", "DISCONNECTING"):
        return False
    return None


def key_store_is_complete(event: Mapping[str, Any], clients: Clients, sleep: Sleep) -> dict[str, Any]:
    props = KeyStoreProps.parse(event["ResourceProperties"])
    store_id = event["PhysicalResourceId"]
    kms = clients.kms
    if event["RequestType"] == "Delete":
        return _key_store_delete_complete(store_id, props, kms, sleep=sleep)
    verdict = _connection_verdict(store_id, describe_key_store(kms, store_id, sleep=sleep))
    if verdict is None:
        # DISCONNECTED after a connect request: reconnect once, look again, then fail.
        LOG.warning("key store %s is DISCONNECTED after a connect request; reconnecting once", store_id)
        try:
            call(kms.connect_custom_key_store, sleep=sleep, CustomKeyStoreId=store_id)
        except ClientError as err:
            if error_code(err) != "CustomKeyStoreInvalidStateException":
                raise
        sleep(RECHECK_SECONDS)
        verdict = _connection_verdict(store_id, describe_key_store(kms, store_id, sleep=sleep))
        if verdict is None:
            raise ProvisioningError(
                f"custom key store {store_id} stayed DISCONNECTED after a reconnect attempt; check that the cluster "
                "is ACTIVE with an ACTIVE HSM, then connect it (aws kms connect-custom-key-store)"
            )
    if verdict:
        return {"IsComplete": True, "Data": {"CustomKeyStoreId": store_id}}
    return {"IsComplete": False}
