"""Custom::KmsCustomKeyStore: create (or adopt) the CloudHSM key store and connect it. A FAILED
connection fails the deployment at once with its ConnectionErrorCode and remedy.

No wait lives inside one invocation: on_event only asks (create, disconnect, connect) and
is_complete, polled by the Provider, acts on the state it finds. KMS accepts UpdateCustomKeyStore
only on a DISCONNECTED key store and ConnectCustomKeyStore not on a DISCONNECTING or FAILED one
(CustomKeyStoreInvalidStateException, https://docs.aws.amazon.com/kms/latest/APIReference/API_UpdateCustomKeyStore.html);
a disconnect returns at once and the store passes through DISCONNECTING. So an update that needs
the store disconnected is: on_event disconnects; is_complete waits while DISCONNECTING, then, seeing
DISCONNECTED, applies the update and connects; later polls wait for CONNECTED (or fail on FAILED).
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

RECHECK_SECONDS = 5.0  # the only wait inside one invocation: one look after a (re)connect request


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


def _start_disconnect(kms: Any, store: Mapping[str, Any], *, sleep: Sleep) -> None:
    """Ask KMS to disconnect (returns at once; is_complete waits for DISCONNECTED)."""
    if store["ConnectionState"] not in ("DISCONNECTED", "DISCONNECTING"):
        call(kms.disconnect_custom_key_store, sleep=sleep, CustomKeyStoreId=store["CustomKeyStoreId"])


def _start_connect(kms: Any, store: Mapping[str, Any], *, sleep: Sleep) -> None:
    """Ask KMS to connect; a FAILED store is only disconnected here (Connect refuses FAILED), and is_complete
    connects it once it is DISCONNECTED."""
    state = store["ConnectionState"]
    if state in ("CONNECTED", "CONNECTING"):
        return
    if state in ("FAILED", "DISCONNECTING"):
        LOG.info("key store %s is %s; disconnecting before connecting again", store["CustomKeyStoreId"], state)
        _start_disconnect(kms, store, sleep=sleep)
        return
    call(kms.connect_custom_key_store, sleep=sleep, CustomKeyStoreId=store["CustomKeyStoreId"])


def _pending_changes(store: Mapping[str, Any], props: KeyStoreProps, *, rename: bool) -> dict[str, str]:
    """What UpdateCustomKeyStore must still change on the live store to match the properties."""
    changes: dict[str, str] = {}
    if store.get("CloudHsmClusterId") != props.cluster_id:
        changes["CloudHsmClusterId"] = props.cluster_id
    if rename and store.get("CustomKeyStoreName") and store["CustomKeyStoreName"] != props.name:
        changes["NewCustomKeyStoreName"] = props.name
    return changes


def _adopt_existing(kms: Any, props: KeyStoreProps, *, sleep: Sleep) -> dict[str, Any]:
    store = describe_key_store(kms, props.existing_id, sleep=sleep)
    if store is None:
        raise ProvisioningError(f"ExistingKeyStoreId {props.existing_id} not found in this account and Region")
    if store.get("CustomKeyStoreType", "AWS_CLOUDHSM") != "AWS_CLOUDHSM":
        raise ProvisioningError(f"custom key store {props.existing_id} is not a CloudHSM key store")
    if store.get("CloudHsmClusterId") != props.cluster_id:
        # Restore from backup: the key store moves to the cluster restored from its old cluster's backup
        # (is_complete does it once the store is DISCONNECTED).
        LOG.info(
            "moving key store %s from %s to %s", props.existing_id, store.get("CloudHsmClusterId"), props.cluster_id
        )
        if store["ConnectionState"] == "CONNECTED":
            raise ProvisioningError(
                f"custom key store {props.existing_id} is CONNECTED to cluster {store.get('CloudHsmClusterId')}; "
                f"disconnect it yourself before moving it to {props.cluster_id} (its keys are unusable meanwhile)"
            )
        _start_disconnect(kms, store, sleep=sleep)
        return {**store, "ConnectionState": "DISCONNECTING"}
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
            store = _adopt_existing(kms, props, sleep=sleep)
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
    """Start an update: disconnect if the store must change (is_complete applies it once DISCONNECTED)."""
    kms = clients.kms
    store = describe_key_store(kms, store_id, sleep=sleep)
    if store is None:
        raise ProvisioningError(f"custom key store {store_id} not found; it was deleted outside CloudFormation")
    if props.trust_anchor and old.trust_anchor and props.trust_anchor != old.trust_anchor:
        LOG.warning("TrustAnchorCertificate changed: KMS cannot change it on an existing key store; ignored")
    changes = _pending_changes(store, props, rename=True)
    if changes or props.password_secret_arn != old.password_secret_arn:
        if store["ConnectionState"] == "CONNECTED" and "CloudHsmClusterId" in changes:
            raise ProvisioningError(
                f"custom key store {store_id} is CONNECTED; disconnect it yourself before moving it to "
                f"{props.cluster_id} (its keys are unusable meanwhile)"
            )
        _start_disconnect(kms, store, sleep=sleep)
        LOG.info("key store %s: disconnecting to update it (%s)", store_id, ", ".join(sorted(changes)) or "password")
        return {**store, "ConnectionState": "DISCONNECTING"}
    return store


def _apply_pending_update(
    store: Mapping[str, Any], props: KeyStoreProps, changes: Mapping[str, str], new_password: bool, clients: Clients,
    *, sleep: Sleep,
) -> None:  # fmt: skip
    """On a DISCONNECTED store: UpdateCustomKeyStore with what is still pending, then connect."""
    store_id = store["CustomKeyStoreId"]
    request = dict(changes)
    if new_password:  # the operator set a new kmsuser password; read it now, never pass it through events
        request["KeyStorePassword"] = read_kmsuser_password(clients.secrets, props.password_secret_arn, sleep=sleep)
    if request:
        # No password on a cluster move: KMS keeps the kmsuser password it last set, which the backup holds
        # too. If they differ, the connect fails with INVALID_CREDENTIALS and its remedy.
        call(clients.kms.update_custom_key_store, sleep=sleep, CustomKeyStoreId=store_id, **request)
        LOG.info("updated key store %s: %s", store_id, ", ".join(sorted(request)))
    call(clients.kms.connect_custom_key_store, sleep=sleep, CustomKeyStoreId=store_id)


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
    request = event["RequestType"]
    if request == "Delete":
        return _key_store_delete_complete(store_id, props, kms, sleep=sleep)
    store = describe_key_store(kms, store_id, sleep=sleep)
    if store is None:
        raise ProvisioningError(f"custom key store {store_id} not found")
    # An update on_event started (disconnect first): the properties say what must change, the live store
    # what still does. A new password cannot be read back, so it is applied whenever the store is found
    # DISCONNECTED during such an update (setting the same password again is harmless).
    old_props = event.get("OldResourceProperties") if request == "Update" else None
    old = KeyStoreProps.parse(old_props) if old_props else None
    renaming = old is not None and not (props.existing_id and props.existing_id != old.existing_id)
    changes = _pending_changes(store, props, rename=renaming)
    new_password = old is not None and renaming and props.password_secret_arn != old.password_secret_arn
    state = store["ConnectionState"]
    if changes or new_password:
        if state == "DISCONNECTING":
            return {"IsComplete": False}
        if state == "DISCONNECTED":
            _apply_pending_update(store, props, changes, new_password, clients, sleep=sleep)
            return {"IsComplete": False}
        if state == "CONNECTED" and changes:  # reconnected by someone meanwhile: disconnect again
            _start_disconnect(kms, store, sleep=sleep)
            return {"IsComplete": False}
    verdict = _connection_verdict(store_id, store)
    if verdict is None:
        # DISCONNECTED after a connect request (or after on_event disconnected a FAILED store): connect once,
        # look again, then fail.
        LOG.warning("key store %s is DISCONNECTED; connecting (once)", store_id)
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
