"""Tier C: the key store monitor's checks for an external key store (XKS).

What KMS documents (KMS API Reference, CustomKeyStoresListEntry and KeyMetadata):
- ConnectionState is CONNECTED, CONNECTING, FAILED, DISCONNECTED or DISCONNECTING; FAILED carries a
  ConnectionErrorCode, for external key stores INVALID_CREDENTIALS, NETWORK_ERRORS, INTERNAL_ERROR or one of
  the XKS_PROXY_* / XKS_VPC_ENDPOINT_SERVICE_* codes (remedies: lambdas.xks_provisioner.connection_errors).
  KMS reports an unhealthy proxy or HSM itself: "Connection attempts fail with [XKS_PROXY_NOT_REACHABLE] if the
  proxy reports that all external key manager instances are unavailable".
- XksProxyConfiguration holds Connectivity, AccessKeyId, UriEndpoint, UriPath and VpcEndpointServiceName.
- A key in an external key store has Origin EXTERNAL_KEY_STORE and XksKeyConfiguration.Id, the external key id.
A DISCONNECTED store is what the kill switch of use case 3 (disconnecting the key store) looks like: reported,
with the reconnect command, never silently accepted.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from kommunmoln import names
from lambdas.keystore_monitor.logic import (
    OK,
    PROBLEM,
    SKIPPED,
    Check,
    HealthReport,
    MonitorSettings,
    check_key,
    check_key_policy,
    describe_key_store,
)
from lambdas.xks_provisioner.connection_errors import XKS_DISCONNECTED_REMEDY, xks_remedy_for

EXTERNAL_KEY_STORE = "EXTERNAL_KEY_STORE"


def check_xks_key_store(kms: Any, key_store_id: str, *, proxy_uri: str = "") -> Check:
    """ConnectionState of the external key store, and that it still points at the configured proxy."""
    if not key_store_id:
        return Check("key-store", SKIPPED, f"{names.ENV_CUSTOM_KEY_STORE_ID} is empty")
    metric = names.METRIC_KEYSTORE_CONNECTED
    store = describe_key_store(kms, key_store_id)
    if store is None:
        return Check("key-store", PROBLEM, f"external key store {key_store_id} not found",
                     "check CustomKeyStoreId in the tier C stack outputs", {metric: 0})  # fmt: skip
    if store.get("CustomKeyStoreType") != EXTERNAL_KEY_STORE:
        return Check("key-store", PROBLEM, f"key store {key_store_id} is {store.get('CustomKeyStoreType')}, not external",
                     "point the tier C stack at its external key store", {metric: 0})  # fmt: skip
    config = store.get("XksProxyConfiguration", {})
    uri = f"{config.get('UriEndpoint', '')}{config.get('UriPath', '')}"
    if proxy_uri and uri != proxy_uri:
        return Check("key-store", PROBLEM, f"external key store {key_store_id} points at {uri}, not {proxy_uri}",
                     "someone changed the proxy URI outside the stack: redeploy, or correct tier_c_proxy_uri_*",
                     {metric: 0})  # fmt: skip
    state = store.get("ConnectionState", "UNKNOWN")
    where = f"external key store {key_store_id} ({config.get('Connectivity', '?')}, {uri})"
    if state == "CONNECTED":
        return Check("key-store", OK, f"{where} is CONNECTED", metrics={metric: 1})
    if state == "FAILED":
        code = store.get("ConnectionErrorCode", "UNKNOWN")
        return Check("key-store", PROBLEM, f"{where} is FAILED with {code}", xks_remedy_for(code), {metric: 0})
    if state == "DISCONNECTED":
        return Check("key-store", PROBLEM, f"{where} is DISCONNECTED (kill switch, or never connected)",
                     XKS_DISCONNECTED_REMEDY.replace("<id>", key_store_id), {metric: 0})  # fmt: skip
    return Check("key-store", PROBLEM, f"{where} is {state}",
                 "a connect or disconnect is in progress; if it lasts, disconnect and connect again", {metric: 0})  # fmt: skip


def check_xks_key(kms: Any, key_arn: str, key_store_id: str, xks_key_id: str) -> Check:
    """The KMS key: tier B's state checks, then origin EXTERNAL_KEY_STORE and the configured external key id."""
    if not key_arn:
        return check_key(kms, key_arn, key_store_id)
    metric = names.METRIC_KEY_USABLE
    try:
        meta = kms.describe_key(KeyId=key_arn)["KeyMetadata"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "NotFoundException":
            raise
        return Check("kms-key", PROBLEM, f"KMS key {key_arn} not found", "check KmsKeyArn in the stack outputs",
                     {metric: 0})  # fmt: skip
    problems = []
    if meta.get("KeyState") != "Enabled":
        problems.append(f"key state is {meta.get('KeyState')}")
    if meta.get("Origin") != EXTERNAL_KEY_STORE:
        problems.append(f"origin is {meta.get('Origin')}, not EXTERNAL_KEY_STORE: the key material is in AWS")
    if key_store_id and meta.get("CustomKeyStoreId") != key_store_id:
        problems.append(f"key is in key store {meta.get('CustomKeyStoreId')}, not {key_store_id}")
    external = meta.get("XksKeyConfiguration", {}).get("Id")
    if xks_key_id and external != xks_key_id:
        problems.append(f"external key is {external}, not {xks_key_id}")
    if not problems:
        return Check("kms-key", OK, f"KMS key {meta['KeyId']} is Enabled on external key {external}",
                     metrics={metric: 1})  # fmt: skip
    remedy = {
        "Unavailable": "the external key store is not connected: see the key-store check",
        "PendingDeletion": "cancel the deletion if it was a mistake: aws kms cancel-key-deletion, then aws kms enable-key",
        "Disabled": "enable the key if it was disabled by mistake: aws kms enable-key",
    }.get(meta.get("KeyState"), "point the stack at the external-key-store key (config and stack outputs)")
    return Check("kms-key", PROBLEM, f"KMS key {key_arn}: " + "; ".join(problems), remedy, {metric: 0})


def check_health(*, kms: Any, settings: MonitorSettings) -> HealthReport:
    return HealthReport(
        (
            check_xks_key_store(kms, settings.key_store_id, proxy_uri=settings.xks_proxy_uri),
            check_xks_key(kms, settings.key_arn, settings.key_store_id, settings.xks_key_id),
            check_key_policy(kms, settings.key_arn, settings.expected_key_policy),
        )
    )
