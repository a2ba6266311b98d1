"""The KMS control plane for an external key store, as plain functions taking a boto3 KMS client.

Create the key store (CustomKeyStoreType=EXTERNAL_KEY_STORE), connect it and wait, failing fast
with the documented remedy when KMS reports an XKS ConnectionErrorCode, then create the KMS key
(Origin=EXTERNAL_KEY_STORE, XksKeyId). The remedies are taken from the SDK's own service model
(the KMS API Reference text for CustomKeyStoresListEntry.ConnectionErrorCode), so they match
what AWS documents for the installed botocore.
"""

from __future__ import annotations

import functools
import html
import re
import time
from collections.abc import Callable


class KeyStoreConnectionFailed(RuntimeError):
    """KMS could not connect the external key store; the message carries the code and its remedy."""

    def __init__(self, code: str, remedy: str) -> None:
        super().__init__(f"{code}: {remedy}")
        self.code = code
        self.remedy = remedy


@functools.cache
def connection_error_remedies() -> dict[str, str]:
    """ConnectionErrorCode -> AWS's documented remedy, for every XKS_* code and the shared ones."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("kms")
    doc = model.shape_for("CustomKeyStoresListEntry").members["ConnectionErrorCode"].documentation
    text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", doc)))
    codes = model.shape_for("ConnectionErrorCodeType").enum
    external = text[text.find("External key stores:") :] if "External key stores:" in text else ""
    remedies = {}
    for code in codes:
        # The XKS section first: INVALID_CREDENTIALS means something else for CloudHSM key stores.
        match = re.search(rf"\b{code}\b\s*[—-]\s*(.+?)(?=\s+[A-Z][A-Z_]{{4,}}\s*[—-]|$)", external) or re.search(
            rf"\b{code}\b\s*[—-]\s*(.+?)(?=\s+[A-Z][A-Z_]{{4,}}\s*[—-]|\s+(?:External key stores|CloudHSM key stores|AWS CloudHSM key stores|All custom key stores):|$)",
            text,
        )
        if match:
            remedies[code] = match.group(1).strip()
    return remedies


def create_key_store(
    kms,
    *,
    name: str,
    uri_endpoint: str,
    uri_path: str,
    access_key_id: str,
    secret_access_key: str,
    vpc_endpoint_service_name: str | None = None,
) -> str:
    """CreateCustomKeyStore for an XKS proxy; public endpoint unless a VPC endpoint service is named."""
    params = {
        "CustomKeyStoreName": name,
        "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
        "XksProxyUriEndpoint": uri_endpoint,
        "XksProxyUriPath": uri_path,
        "XksProxyAuthenticationCredential": {"AccessKeyId": access_key_id, "RawSecretAccessKey": secret_access_key},
        "XksProxyConnectivity": "VPC_ENDPOINT_SERVICE" if vpc_endpoint_service_name else "PUBLIC_ENDPOINT",
    }
    if vpc_endpoint_service_name:
        params["XksProxyVpcEndpointServiceName"] = vpc_endpoint_service_name
    return kms.create_custom_key_store(**params)["CustomKeyStoreId"]


def connect_and_wait(
    kms, key_store_id: str, *, timeout: float = 900, poll: float = 15, sleep: Callable[[float], None] = time.sleep
) -> None:
    """ConnectCustomKeyStore, then poll DescribeCustomKeyStores until CONNECTED; fail fast on FAILED."""
    kms.connect_custom_key_store(CustomKeyStoreId=key_store_id)
    waited = 0.0
    while True:
        store = kms.describe_custom_key_stores(CustomKeyStoreId=key_store_id)["CustomKeyStores"][0]
        state = store["ConnectionState"]
        if state == "CONNECTED":
            return
        if state == "FAILED":
            code = store.get("ConnectionErrorCode", "UNKNOWN")
            raise KeyStoreConnectionFailed(code, connection_error_remedies().get(code, "see the KMS developer guide"))
        if state in ("DISCONNECTED", "DISCONNECTING") and waited > 0:
            raise KeyStoreConnectionFailed(state, "the key store stopped connecting; check it and connect again")
        if waited >= timeout:
            raise KeyStoreConnectionFailed("TIMEOUT", f"still {state} after {timeout:.0f} s")
        sleep(poll)
        waited += poll


def create_xks_key(kms, *, key_store_id: str, xks_key_id: str, policy: str, description: str) -> dict:
    """CreateKey backed by the external key `xks_key_id` (KMS calls the proxy's GetKeyMetadata)."""
    return kms.create_key(
        Origin="EXTERNAL_KEY_STORE",
        CustomKeyStoreId=key_store_id,
        XksKeyId=xks_key_id,
        KeySpec="SYMMETRIC_DEFAULT",
        KeyUsage="ENCRYPT_DECRYPT",
        Policy=policy,
        Description=description,
    )["KeyMetadata"]
