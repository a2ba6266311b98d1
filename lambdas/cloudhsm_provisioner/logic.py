"""Custom resources for what CloudFormation cannot create: HSMs, the KMS custom key store, the key.

Served by one `aws_cdk.custom_resources.Provider` (on_event + is_complete); `on_event` and
`is_complete` here dispatch on `event["ResourceType"]` to one module per resource type:

- `Custom::CloudHsmCluster` (`cluster`): a cluster restored from a backup.
- `Custom::CloudHsmHsms` (`hsms`): the cluster's HSMs, one before activation, the rest after.
- `Custom::KmsCustomKeyStore` (`key_store`): create (or adopt) the key store and connect it.
- `Custom::KmsHsmKey` (`key`): a symmetric KMS key in the key store (Origin AWS_CLOUDHSM) + alias.

`common` holds what they share (errors, the retrying call, property parsing, describe helpers);
`connection_errors` the ConnectionErrorCode remedies the key store monitor uses too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from kommunmoln import names
from lambdas.cloudhsm_provisioner import cluster, hsms, key, key_store
from lambdas.cloudhsm_provisioner.common import (
    BASE_DELAY_SECONDS,
    MAX_ATTEMPTS,
    MAX_DELAY_SECONDS,
    Clients,
    ProvisioningError,
    Sleep,
    explain,
)
from lambdas.cloudhsm_provisioner.connection_errors import (
    CONNECTION_ERROR_REMEDIES,
    DISCONNECTED_REMEDY,
    KeyStoreConnectionFailed,
    remedy_for,
)
from lambdas.cloudhsm_provisioner.hsms import plan_additions, plan_removals

__all__ = [
    "BASE_DELAY_SECONDS",
    "CONNECTION_ERROR_REMEDIES",
    "DISCONNECTED_REMEDY",
    "MAX_ATTEMPTS",
    "MAX_DELAY_SECONDS",
    "Clients",
    "KeyStoreConnectionFailed",
    "ProvisioningError",
    "is_complete",
    "on_event",
    "plan_additions",
    "plan_removals",
    "remedy_for",
]

_ON_EVENT = {
    names.RESOURCE_CLOUDHSM_CLUSTER: cluster.cluster_on_event,
    names.RESOURCE_CLOUDHSM_HSMS: hsms.hsms_on_event,
    names.RESOURCE_KMS_CUSTOM_KEY_STORE: key_store.key_store_on_event,
    names.RESOURCE_KMS_HSM_KEY: key.key_on_event,
}
_IS_COMPLETE = {
    names.RESOURCE_CLOUDHSM_CLUSTER: cluster.cluster_is_complete,
    names.RESOURCE_CLOUDHSM_HSMS: hsms.hsms_is_complete,
    names.RESOURCE_KMS_CUSTOM_KEY_STORE: key_store.key_store_is_complete,
    names.RESOURCE_KMS_HSM_KEY: key.key_is_complete,
}


def _dispatch(
    table: Mapping[str, Callable[..., dict[str, Any]]], event: Mapping[str, Any], clients: Clients, sleep: Sleep
) -> dict[str, Any]:
    resource_type = event.get("ResourceType", "")
    handler = table.get(resource_type)
    if handler is None:
        raise ProvisioningError(f"unknown custom resource type {resource_type!r}; expected one of {sorted(table)}")
    try:
        return handler(event, clients, sleep)
    except ClientError as err:
        raise ProvisioningError(f"{resource_type} {event.get('RequestType')}: {explain(err)}") from err


def on_event(event: Mapping[str, Any], clients: Clients, *, sleep: Sleep = time.sleep) -> dict[str, Any]:
    """The Provider's onEvent: start the change, return the physical id (and data)."""
    return _dispatch(_ON_EVENT, event, clients, sleep)


def is_complete(event: Mapping[str, Any], clients: Clients, *, sleep: Sleep = time.sleep) -> dict[str, Any]:
    """The Provider's isComplete: {"IsComplete": bool, "Data": {...}}; raises on a failure state."""
    return _dispatch(_IS_COMPLETE, event, clients, sleep)
