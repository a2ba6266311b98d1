"""Custom::KmsExternalKeyStore: create (or adopt) the external key store (XKS) and connect it.

KMS API rules this follows (KMS API Reference, CreateCustomKeyStore and ConnectCustomKeyStore):
- CreateCustomKeyStore with CustomKeyStoreType=EXTERNAL_KEY_STORE needs XksProxyUriEndpoint, XksProxyUriPath,
  XksProxyAuthenticationCredential and XksProxyConnectivity, plus XksProxyVpcEndpointServiceName for
  VPC_ENDPOINT_SERVICE. With PUBLIC_ENDPOINT KMS already talks to the proxy while creating the key store, so a
  wrong credential or an unreachable proxy fails the create itself (Xks* exceptions, explained below).
- ConnectCustomKeyStore only starts the connection; DescribeCustomKeyStores reports CONNECTING, then CONNECTED
  or FAILED with a ConnectionErrorCode. FAILED fails the deployment at once with the code's remedy.
The credential comes from Secrets Manager at run time and is never logged, returned or put in the template.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from lambdas.cloudhsm_provisioner.common import (
    LOG,
    ProvisioningError,
    Sleep,
    call,
    error_code,
    flag,
    prop,
)
from lambdas.cloudhsm_provisioner.key_store import (
    _find_key_store_by_name,
    _key_store_delete,
    _key_store_delete_complete,
    describe_key_store,
)
from lambdas.xks_provisioner.connection_errors import XksConnectionFailed

CONNECTIVITY = ("PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE")
# Patterns of the KMS API model (XksProxyUriEndpointType, XksProxyUriPathType, XksProxyVpcEndpointServiceNameType,
# XksProxyAuthenticationAccessKeyIdType, XksProxyAuthenticationRawSecretAccessKeyType).
URI_ENDPOINT = r"https://[a-zA-Z0-9.-]{2,120}"
URI_PATH = r"(/[a-zA-Z0-9/_-]+/kms/xks/v\d{1,2})|(/kms/xks/v\d{1,2})"
ENDPOINT_SERVICE_NAME = r"(com|eu)\.amazonaws\.vpce\.([a-z]+-){2,3}\d+\.vpce-svc-[0-9a-z]+"
ACCESS_KEY_ID = re.compile(r"[A-Z2-7]{20,30}")
RAW_SECRET = re.compile(r"[a-zA-Z0-9/+=]{43,64}")


@dataclass(frozen=True)
class XksKeyStoreProps:
    name: str
    connectivity: str
    uri_endpoint: str
    uri_path: str
    endpoint_service_name: str  # "" with PUBLIC_ENDPOINT
    credential_secret_arn: str
    workshop_mode: bool

    @staticmethod
    def parse(props: Mapping[str, Any]) -> XksKeyStoreProps:
        connectivity = prop(props, "Connectivity", pattern="|".join(CONNECTIVITY))
        vpc = connectivity == "VPC_ENDPOINT_SERVICE"
        return XksKeyStoreProps(
            name=prop(props, "KeyStoreName", pattern=r"[\w.:/=+@-]{1,256}"),
            connectivity=connectivity,
            uri_endpoint=prop(props, "UriEndpoint", pattern=URI_ENDPOINT),
            uri_path=prop(props, "UriPath", pattern=URI_PATH),
            endpoint_service_name=prop(
                props, "VpcEndpointServiceName", pattern=ENDPOINT_SERVICE_NAME, allow_empty=not vpc
            )
            if vpc
            else "",
            credential_secret_arn=prop(props, "CredentialSecretArn", pattern=r"arn:aws[\w-]*:secretsmanager:.+"),
            workshop_mode=flag(props, "WorkshopMode"),
        )

    def proxy_parameters(self) -> dict[str, str]:
        """The XKS proxy parameters CreateCustomKeyStore and UpdateCustomKeyStore share (no credential)."""
        params = {
            "XksProxyUriEndpoint": self.uri_endpoint,
            "XksProxyUriPath": self.uri_path,
            "XksProxyConnectivity": self.connectivity,
        }
        if self.endpoint_service_name:
            params["XksProxyVpcEndpointServiceName"] = self.endpoint_service_name
        return params


def read_proxy_credential(secrets_client: Any, secret_arn: str, *, sleep: Sleep) -> dict[str, str]:
    """The proxy's SigV4 credential from the secret: JSON {"AccessKeyId": ..., "RawSecretAccessKey": ...}."""
    raw = call(secrets_client.get_secret_value, sleep=sleep, SecretId=secret_arn).get("SecretString", "")
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    access_key = value.get("AccessKeyId") if isinstance(value, dict) else None
    secret = value.get("RawSecretAccessKey") if isinstance(value, dict) else None
    if not (
        isinstance(access_key, str)
        and ACCESS_KEY_ID.fullmatch(access_key)
        and isinstance(secret, str)
        and RAW_SECRET.fullmatch(secret)
    ):
        # Never echo any part of the value: say only what it must look like.
        raise ProvisioningError(
            f'secret {secret_arn} must hold JSON {{"AccessKeyId": 20-30 characters A-Z and 2-7, '
            '"RawSecretAccessKey": 43-64 characters a-z A-Z 0-9 / + =} (the credential configured on the proxy)'
        )
    return {"AccessKeyId": access_key, "RawSecretAccessKey": secret}


def _same_proxy(store: Mapping[str, Any], props: XksKeyStoreProps) -> bool:
    config = store.get("XksProxyConfiguration", {})
    return (
        store.get("CustomKeyStoreType") == "EXTERNAL_KEY_STORE"
        and config.get("UriEndpoint") == props.uri_endpoint
        and config.get("UriPath") == props.uri_path
        and config.get("Connectivity") == props.connectivity
        and (config.get("VpcEndpointServiceName") or "") == props.endpoint_service_name
    )


def _start_connect(kms: Any, store: Mapping[str, Any], *, sleep: Sleep) -> None:
    """ConnectCustomKeyStore unless connected or connecting; a FAILED store must be disconnected first."""
    state = store["ConnectionState"]
    if state in ("CONNECTED", "CONNECTING"):
        return
    if state == "FAILED":
        # ConnectCustomKeyStore refuses a FAILED store (CustomKeyStoreInvalidStateException): disconnect first.
        call(kms.disconnect_custom_key_store, sleep=sleep, CustomKeyStoreId=store["CustomKeyStoreId"])
        return  # is_complete connects once the store is DISCONNECTED
    if state == "DISCONNECTING":
        return
    call(kms.connect_custom_key_store, sleep=sleep, CustomKeyStoreId=store["CustomKeyStoreId"])


def xks_key_store_on_event(event: Mapping[str, Any], clients: Any, sleep: Sleep) -> dict[str, Any]:
    request = event["RequestType"]
    props = XksKeyStoreProps.parse(event["ResourceProperties"])
    kms = clients.kms
    if request == "Delete":
        return _key_store_delete(event["PhysicalResourceId"], props, kms, sleep=sleep)
    if request == "Update":
        store = _update(event["PhysicalResourceId"], props, clients, sleep=sleep)
    else:
        store = _find_key_store_by_name(kms, props.name, sleep=sleep)
        if store is not None and not _same_proxy(store, props):
            raise ProvisioningError(
                f"a custom key store named {props.name!r} already exists with another type or proxy; "
                "delete it or change municipality_id"
            )
        if store is None:
            credential = read_proxy_credential(clients.secrets, props.credential_secret_arn, sleep=sleep)
            created = call(
                kms.create_custom_key_store,
                sleep=sleep,
                CustomKeyStoreName=props.name,
                CustomKeyStoreType="EXTERNAL_KEY_STORE",
                XksProxyAuthenticationCredential=credential,
                **props.proxy_parameters(),
            )
            store = {"CustomKeyStoreId": created["CustomKeyStoreId"], "ConnectionState": "DISCONNECTED"}
            LOG.info("created external key store %s (%s)", store["CustomKeyStoreId"], props.connectivity)
        else:
            LOG.info("adopting external key store %s of the same name (a retried create)", store["CustomKeyStoreId"])
    _start_connect(kms, store, sleep=sleep)
    store_id = store["CustomKeyStoreId"]
    return {"PhysicalResourceId": store_id, "Data": {"CustomKeyStoreId": store_id}}


# KMS API Reference, UpdateCustomKeyStore: for an external key store XksProxyUriEndpoint, XksProxyConnectivity and
# XksProxyVpcEndpointServiceName "must be disconnected" to change; NewCustomKeyStoreName, XksProxyUriPath and
# XksProxyAuthenticationCredential may change "when the external key store is connected or disconnected".
NEEDS_DISCONNECTED = frozenset({"XksProxyUriEndpoint", "XksProxyConnectivity", "XksProxyVpcEndpointServiceName"})
_DESCRIBED = {"XksProxyUriEndpoint": "UriEndpoint", "XksProxyUriPath": "UriPath",
              "XksProxyConnectivity": "Connectivity", "XksProxyVpcEndpointServiceName": "VpcEndpointServiceName"}  # fmt: skip


def _update(store_id: str, props: XksKeyStoreProps, clients: Any, *, sleep: Sleep) -> dict[str, Any]:
    """Send UpdateCustomKeyStore with only what changed; refuse a change KMS allows only while DISCONNECTED."""
    kms = clients.kms
    store = describe_key_store(kms, store_id, sleep=sleep)
    if store is None:
        raise ProvisioningError(f"external key store {store_id} not found; it was deleted outside CloudFormation")
    current = store.get("XksProxyConfiguration", {})
    wanted = {**props.proxy_parameters(), "XksProxyVpcEndpointServiceName": props.endpoint_service_name}
    changes: dict[str, Any] = {k: v for k, v in wanted.items() if (current.get(_DESCRIBED[k]) or "") != v}
    if store.get("CustomKeyStoreName") not in (None, props.name):
        changes["NewCustomKeyStoreName"] = props.name
    credential = read_proxy_credential(clients.secrets, props.credential_secret_arn, sleep=sleep)
    if current.get("AccessKeyId") != credential["AccessKeyId"]:  # a rotated credential (runbook, docs/use-case-3.md)
        changes["XksProxyAuthenticationCredential"] = credential
    if not changes:
        return store
    blocked = sorted(NEEDS_DISCONNECTED & set(changes))
    if blocked and store["ConnectionState"] != "DISCONNECTED":
        raise ProvisioningError(
            f"external key store {store_id} is {store['ConnectionState']}: changing {', '.join(blocked)} needs it "
            "DISCONNECTED. Disconnect it yourself (its keys are unusable until it reconnects), then deploy again"
        )
    call(kms.update_custom_key_store, sleep=sleep, CustomKeyStoreId=store_id, **changes)
    LOG.info("updated external key store %s: %s", store_id, ", ".join(sorted(changes)))
    return store


def xks_key_store_is_complete(event: Mapping[str, Any], clients: Any, sleep: Sleep) -> dict[str, Any]:
    props = XksKeyStoreProps.parse(event["ResourceProperties"])
    store_id = event["PhysicalResourceId"]
    kms = clients.kms
    if event["RequestType"] == "Delete":
        return _key_store_delete_complete(store_id, props, kms, sleep=sleep)
    store = describe_key_store(kms, store_id, sleep=sleep)
    if store is None:
        raise ProvisioningError(f"external key store {store_id} not found")
    state = store["ConnectionState"]
    if state == "CONNECTED":
        return {"IsComplete": True, "Data": {"CustomKeyStoreId": store_id}}
    if state == "FAILED":
        raise XksConnectionFailed(store_id, store.get("ConnectionErrorCode", "UNKNOWN"))
    if state == "DISCONNECTED":
        # After on_event's connect request (or the disconnect of a FAILED store): connect once more.
        try:
            call(kms.connect_custom_key_store, sleep=sleep, CustomKeyStoreId=store_id)
        except ClientError as err:
            if error_code(err) != "CustomKeyStoreInvalidStateException":
                raise
    return {"IsComplete": False}
