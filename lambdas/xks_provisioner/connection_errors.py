"""ConnectionErrorCodes of a FAILED external key store (XKS) and what to do about each.

Source: the KMS API Reference, CustomKeyStoresListEntry.ConnectionErrorCode ("External key stores:"
section, https://docs.aws.amazon.com/kms/latest/APIReference/API_CustomKeyStoresListEntry.html) and the
KMS Developer Guide, "Troubleshooting external key stores"
(https://docs.aws.amazon.com/kms/latest/developerguide/xks-troubleshooting.html). The remedies name this
project's settings and commands. The key store monitor imports this module too, without the provisioner.
"""

from __future__ import annotations

from collections.abc import Mapping

from lambdas.cloudhsm_provisioner.common import ProvisioningError

_RECONNECT = (
    "then disconnect the key store (aws kms disconnect-custom-key-store), correct it (aws kms "
    "update-custom-key-store, or redeploy with the corrected tier_c_* setting) and connect it again"
)
_PROXY_LOG = "the proxy's audit log (one JSON line per request) shows what KMS sent and why it was refused"
XKS_CONNECTION_ERROR_REMEDIES: Mapping[str, str] = {
    # KMS API Reference: "One or both of the XksProxyAuthenticationCredential values is not valid on the
    # specified external key store proxy."
    "INVALID_CREDENTIALS": (
        "the proxy does not accept the SigV4 credential KMS holds. Make the secret named by "
        "tier_c_credential_secret_arn and the proxy config's access key id and secret variable agree (the proxy "
        "accepts two pairs during a rotation), give KMS the current pair (aws kms update-custom-key-store "
        f"--xks-proxy-authentication-credential), {_RECONNECT} (runbook: docs/use-case-3.md, credential rotation)"
    ),
    # "KMS requests are denied access to the external key store proxy. If the external key store proxy has
    # authorization rules, verify that they permit KMS to communicate with the proxy on your behalf."
    "XKS_PROXY_ACCESS_DENIED": (
        "the proxy refused KMS (secondary authorization, or the kill switch). Check the key map's allowed "
        f"principals and kmsViaService values and `python -m usecases.external_key_store` kill-switch state; {_PROXY_LOG}"
    ),
    # "A configuration error is preventing the external key store from connecting to its proxy. Verify the
    # value of the XksProxyUriPath."
    "XKS_PROXY_INVALID_CONFIGURATION": (
        "the URI path does not reach the proxy's API: tier_c_proxy_uri_path must equal the proxy config's "
        f"uri_prefix followed by /kms/xks/v1, {_RECONNECT}"
    ),
    # "KMS cannot interpret the response from the external key store proxy."
    "XKS_PROXY_INVALID_RESPONSE": (
        "KMS could not interpret the proxy's answer: check that nothing between KMS and the proxy (a load balancer, "
        f"a web application firewall) rewrites responses, and that the proxy runs a released version; {_PROXY_LOG}"
    ),
    # "... Verify that the XKS proxy supports TLS 1.2 or 1.3 ... certificate is not expired, ... matches the
    # hostname in the XksProxyUriEndpoint value, and ... is signed by a certificate authority included in the
    # Trusted Certificate Authorities list."
    "XKS_PROXY_INVALID_TLS_CONFIGURATION": (
        "KMS rejected the proxy's TLS: the certificate must be valid now, name the host of tier_c_proxy_uri_endpoint "
        "and chain to a public CA that KMS trusts (not the municipality's own CA); TLS 1.2 or 1.3. Replace the "
        "certificate on the proxy and connect again"
    ),
    # "KMS can't communicate with your external key store proxy. Verify that the XksProxyUriEndpoint and
    # XksProxyUriPath are correct ... Connection attempts fail with this connection error code if the proxy
    # reports that all external key manager instances are unavailable."
    "XKS_PROXY_NOT_REACHABLE": (
        "KMS cannot reach the proxy, or the proxy reports its HSM unavailable. Check that the proxy runs "
        "(systemctl status), that its /health reports the HSM token, and the network path: for PUBLIC_ENDPOINT the "
        "firewall must let HTTPS from the internet reach port 443; for VPC_ENDPOINT_SERVICE the NLB's targets "
        f"(tier_c_proxy_target_ips) must be healthy over the private link; {_RECONNECT}"
    ),
    # "KMS can connect to the external key store proxy, but the proxy does not respond to KMS in the time allotted."
    "XKS_PROXY_TIMED_OUT": (
        "the proxy answered too slowly (KMS allows 250 ms per request): check the HSM's latency and the proxy's "
        "session pool size (make bench measures p99), and the network round trip; then connect again"
    ),
    # "The Amazon VPC endpoint service configuration doesn't conform to the requirements ...": NLB in two
    # zones, cks.kms.<region>.amazonaws.com allowed, no acceptance, a verified unique private DNS name.
    "XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION": (
        "the VPC endpoint service does not meet KMS's requirements: its NLB must span two zones, its allowed "
        "principals must include cks.kms.<region>.amazonaws.com, acceptance must not be required and its private "
        "DNS name (the host of tier_c_proxy_uri_endpoint) must be verified and unique in the Region. The stack sets "
        f"all of these; check for manual changes (aws ec2 describe-vpc-endpoint-service-configurations), {_RECONNECT}"
    ),
    # "KMS can't find the VPC endpoint service ... Verify that the XksProxyVpcEndpointServiceName is correct
    # and the KMS service principal has service consumer permissions on the Amazon VPC endpoint service."
    "XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND": (
        "KMS cannot find the VPC endpoint service, or may not use it: check that the service in the stack output "
        f"XksVpcEndpointServiceName exists and allows cks.kms.<region>.amazonaws.com, {_RECONNECT}"
    ),
    # All custom key stores: "KMS could not complete the request due to an internal error. Retry the request.
    # For ConnectCustomKeyStore requests, disconnect the custom key store before trying to connect again."
    "INTERNAL_ERROR": "KMS had an internal error: disconnect the key store, wait until DISCONNECTED, connect again",
    # "Network errors are preventing KMS from connecting the custom key store to its backing key store."
    "NETWORK_ERRORS": f"network errors keep KMS from the proxy: check the proxy's reachability as for XKS_PROXY_NOT_REACHABLE, {_RECONNECT}",
}
XKS_DISCONNECTED_REMEDY = (
    "the external key store is DISCONNECTED (someone disconnected it, or it was never connected); its keys are "
    "Unavailable. Connect it: aws kms connect-custom-key-store --custom-key-store-id <id>"
)


def xks_remedy_for(code: str) -> str:
    """The remedy for an external key store's ConnectionErrorCode (a pointer for codes AWS adds later)."""
    return XKS_CONNECTION_ERROR_REMEDIES.get(
        code, "unknown connection error code: see 'Troubleshooting external key stores' in the AWS KMS Developer Guide"
    )


class XksConnectionFailed(ProvisioningError):
    """ConnectionState FAILED for an external key store: carries the ConnectionErrorCode and its remedy."""

    def __init__(self, key_store_id: str, code: str) -> None:
        self.key_store_id = key_store_id
        self.code = code
        self.remedy = xks_remedy_for(code)
        super().__init__(
            f"external key store {key_store_id} failed to connect: ConnectionErrorCode {code}. Remedy: {self.remedy}"
        )
