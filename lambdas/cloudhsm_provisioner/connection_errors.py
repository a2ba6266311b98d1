"""ConnectionErrorCodes of a FAILED CloudHSM key store and their remedies.

Source: AWS KMS Developer Guide, "Troubleshooting a custom key store"
(https://docs.aws.amazon.com/kms/latest/developerguide/fix-keystore.html) and the
CustomKeyStoresListEntry.ConnectionErrorCode enum of the KMS API reference. The key store
monitor imports this module too, without loading the provisioner.
"""

from __future__ import annotations

from collections.abc import Mapping

from lambdas.cloudhsm_provisioner.common import ProvisioningError

_RECONNECT = "then disconnect the key store (aws kms disconnect-custom-key-store) and connect it again"
_KMSUSER_CREDENTIALS_FIX = (
    "on the admin host, logged in as admin in CloudHSM CLI, set the kmsuser password to the value in the "
    "kmsuser Secrets Manager secret (`user change-password --username kmsuser --role crypto-user`); with the "
    "key store DISCONNECTED, give KMS the same value (aws kms update-custom-key-store --key-store-password); "
    "then connect it again (runbook: docs/use-case-2.md, kmsuser password rotation)"
)
_XKS = "an external key store (XKS) error, not expected for a CloudHSM key store: check the key store id in the config"
CONNECTION_ERROR_REMEDIES: Mapping[str, str] = {
    "CLUSTER_NOT_FOUND": (
        "KMS cannot find the CloudHSM cluster of the key store. If the cluster was deleted, create a cluster from a "
        "recent backup of it (config tier_b_restore_backup_id), then, with the key store DISCONNECTED, point the key "
        "store at the new cluster (aws kms update-custom-key-store --cloud-hsm-cluster-id; only a cluster that shares "
        "the original's backup lineage is accepted) and connect it (runbook: docs/use-case-2.md, restore from backup)"
    ),
    "INSUFFICIENT_CLOUDHSM_HSMS": (
        "the cluster has no active HSM. Add HSMs (config tier_b_hsm_count; connecting needs 1 active HSM, creating "
        f"keys 2 in different zones), wait until they are ACTIVE, {_RECONNECT}"
    ),
    "INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET": (
        "a subnet of the cluster has no free IP address; KMS needs one free address in each cluster subnet (two are "
        "better). Free addresses (delete unused network interfaces in those subnets) or restore the cluster from a "
        f"backup into larger subnets and update the key store to it, {_RECONNECT}"
    ),
    "INTERNAL_ERROR": (
        "KMS had an internal error. Disconnect the key store, wait until it is DISCONNECTED and connect it again; "
        "contact AWS Support if it persists"
    ),
    "INVALID_CREDENTIALS": f"KMS cannot log in to the cluster as kmsuser with the password it holds: {_KMSUSER_CREDENTIALS_FIX}",
    "NETWORK_ERRORS": (
        "network problems keep KMS from reaching the cluster. Check that the cluster security group "
        "(cloudhsm-cluster-<id>-sg) allows TCP 2223-2225 inbound and outbound to itself, that network ACLs and route "
        f"tables of the cluster subnets allow it and that no subnet is IPv6-only, {_RECONNECT}"
    ),
    "SUBNET_NOT_FOUND": (
        "a subnet in the cluster configuration was deleted. Restore the cluster from a recent backup into existing "
        "subnets (config tier_b_restore_backup_id), update the key store to the new cluster id and connect it "
        "(runbook: docs/use-case-2.md, restore from backup)"
    ),
    "USER_LOCKED_OUT": f"kmsuser is locked out of the cluster after too many failed logins: {_KMSUSER_CREDENTIALS_FIX}",
    "USER_LOGGED_IN": (
        "kmsuser is logged in to the cluster from another client, so KMS cannot rotate its password and log in. Log "
        "kmsuser out of every CloudHSM CLI or SDK session (`logout`, or end the admin-host session); if you changed "
        f"the kmsuser password to log in, update the key store password too, {_RECONNECT}"
    ),
    "USER_NOT_FOUND": (
        "the cluster has no kmsuser crypto user. On the admin host, logged in as admin, create it with the password "
        "from the kmsuser secret (`user create --username kmsuser --role crypto-user`), update the key store password "
        "if it differs, then connect the key store (python -m usecases.cloudhsm_kms init prints the commands)"
    ),
    "XKS_PROXY_ACCESS_DENIED": _XKS,
    "XKS_PROXY_INVALID_CONFIGURATION": _XKS,
    "XKS_PROXY_INVALID_RESPONSE": _XKS,
    "XKS_PROXY_INVALID_TLS_CONFIGURATION": _XKS,
    "XKS_PROXY_NOT_REACHABLE": _XKS,
    "XKS_PROXY_TIMED_OUT": _XKS,
    "XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION": _XKS,
    "XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND": _XKS,
}
DISCONNECTED_REMEDY = (
    "the key store is DISCONNECTED (someone disconnected it, or it was never connected); its keys are Unavailable. "
    "Connect it: aws kms connect-custom-key-store --custom-key-store-id <id>"
)


def remedy_for(code: str) -> str:
    """The remedy for a ConnectionErrorCode (a generic pointer for codes AWS adds later)."""
    return CONNECTION_ERROR_REMEDIES.get(
        code,
        "unknown connection error code: see 'Troubleshooting a custom key store' in the AWS KMS Developer Guide",
    )


class KeyStoreConnectionFailed(ProvisioningError):
    """ConnectionState FAILED: carries the ConnectionErrorCode and its remedy."""

    def __init__(self, key_store_id: str, code: str) -> None:
        self.key_store_id = key_store_id
        self.code = code
        self.remedy = remedy_for(code)
        super().__init__(
            f"custom key store {key_store_id} failed to connect: ConnectionErrorCode {code}. Remedy: {self.remedy}"
        )
