"""Custom resources for tier C (the KMS external key store), served by one Provider like tier B's.

`on_event` and `is_complete` dispatch on `event["ResourceType"]`:
- `Custom::XksEndpointServicePrivateDns` (`endpoint_dns`): waits for the verified private DNS name;
- `Custom::KmsExternalKeyStore` (`key_store`): create (or adopt) the XKS key store and connect it;
- `Custom::KmsXksKey`: the KMS key (Origin EXTERNAL_KEY_STORE, XksKeyId) and alias, by tier B's key handler
  (`lambdas.cloudhsm_provisioner.key`), which picks the origin from the XksKeyId property.
Errors and the retrying call are tier B's (`lambdas.cloudhsm_provisioner.common`); the hints for the XKS
errors of CreateCustomKeyStore and CreateKey are added here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from kommunmoln import names
from lambdas.cloudhsm_provisioner import key
from lambdas.cloudhsm_provisioner.common import ProvisioningError, Sleep, error_code, explain
from lambdas.xks_provisioner import endpoint_dns, key_store
from lambdas.xks_provisioner.connection_errors import XksConnectionFailed

__all__ = ["ProvisioningError", "XksClients", "XksConnectionFailed", "is_complete", "on_event"]

# The XKS exceptions of CreateCustomKeyStore, UpdateCustomKeyStore and CreateKey (KMS API Reference, "Errors").
XKS_ERROR_HINTS: Mapping[str, str] = {
    "XksProxyIncorrectAuthenticationCredentialException": (
        "the proxy rejected the credential in tier_c_credential_secret_arn: it must be one of the proxy's "
        "configured SigV4 pairs"
    ),
    "XksProxyUriUnreachableException": (
        "KMS could not reach the proxy at tier_c_proxy_uri_endpoint + tier_c_proxy_uri_path (with PUBLIC_ENDPOINT it "
        "must answer before the key store can be created): start it and open HTTPS 443 to it"
    ),
    "XksProxyInvalidResponseException": "the proxy's answer was not a valid XKS response; check its version and logs",
    "XksProxyInvalidConfigurationException": (
        "the proxy configuration is invalid, e.g. the URI path or a TLS certificate that does not name the host"
    ),
    "XksProxyUriInUseException": "another external key store uses this endpoint and path in this account and Region",
    "XksProxyUriEndpointInUseException": (
        "another external key store uses this endpoint (a PUBLIC_ENDPOINT and a VPC_ENDPOINT_SERVICE store may "
        "not share it; each VPC store needs its own private DNS name)"
    ),
    "XksProxyVpcEndpointServiceInUseException": "another external key store uses this VPC endpoint service",
    "XksProxyVpcEndpointServiceNotFoundException": (
        "KMS cannot find the VPC endpoint service or may not use it (cks.kms.<region>.amazonaws.com must be allowed)"
    ),
    "XksProxyVpcEndpointServiceInvalidConfigurationException": (
        "the endpoint service breaks a KMS requirement: NLB in two zones, cks.kms.<region>.amazonaws.com allowed, no "
        "acceptance, verified private DNS name"
    ),
    "XksKeyNotFoundException": "the proxy has no key with tier_c_xks_key_id; create it in the HSM and the key map",
    "XksKeyInvalidConfigurationException": (
        "the external key must be an AES-256 key whose key map allows both encrypt and decrypt"
    ),
    "XksKeyAlreadyInUseException": "another KMS key in this key store already uses this external key id",
}


@dataclass(frozen=True)
class XksClients:
    """The boto3 clients the tier C provisioner uses (created by the handler, stubbed in tests)."""

    kms: Any
    secrets: Any
    ec2: Any


Handler = Callable[[Mapping[str, Any], Any, Sleep], dict[str, Any]]
_ON_EVENT: Mapping[str, Handler] = {
    names.RESOURCE_XKS_ENDPOINT_SERVICE_DNS: endpoint_dns.dns_on_event,
    names.RESOURCE_KMS_EXTERNAL_KEY_STORE: key_store.xks_key_store_on_event,
    names.RESOURCE_KMS_XKS_KEY: key.key_on_event,
}
_IS_COMPLETE: Mapping[str, Handler] = {
    names.RESOURCE_XKS_ENDPOINT_SERVICE_DNS: endpoint_dns.dns_is_complete,
    names.RESOURCE_KMS_EXTERNAL_KEY_STORE: key_store.xks_key_store_is_complete,
    names.RESOURCE_KMS_XKS_KEY: key.key_is_complete,
}


def _dispatch(
    table: Mapping[str, Handler], event: Mapping[str, Any], clients: XksClients, sleep: Sleep
) -> dict[str, Any]:
    resource_type = event.get("ResourceType", "")
    handler = table.get(resource_type)
    if handler is None:
        raise ProvisioningError(f"unknown custom resource type {resource_type!r}; expected one of {sorted(table)}")
    try:
        return handler(event, clients, sleep)
    except ClientError as err:
        hint = XKS_ERROR_HINTS.get(error_code(err))
        text = explain(err) + (f" ({hint})" if hint else "")
        raise ProvisioningError(f"{resource_type} {event.get('RequestType')}: {text}") from err


def on_event(event: Mapping[str, Any], clients: XksClients, *, sleep: Sleep = time.sleep) -> dict[str, Any]:
    """The Provider's onEvent: start the change, return the physical id (and data)."""
    return _dispatch(_ON_EVENT, event, clients, sleep)


def is_complete(event: Mapping[str, Any], clients: XksClients, *, sleep: Sleep = time.sleep) -> dict[str, Any]:
    """The Provider's isComplete: {"IsComplete": bool, "Data": {...}}; raises on a failure state."""
    return _dispatch(_IS_COMPLETE, event, clients, sleep)
