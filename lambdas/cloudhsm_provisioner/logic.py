"""Custom resources for what CloudFormation cannot create: HSMs, the KMS custom key store, the key.

Served by one `aws_cdk.custom_resources.Provider` (on_event + is_complete); `on_event` and
`is_complete` here dispatch on `event["ResourceType"]`:

- `Custom::CloudHsmCluster`: a cluster restored from a backup (CloudFormation's cluster
  resource has no SourceBackupId). Only BackupRetentionDays changes in place; the cluster
  is retained on delete unless `WorkshopMode` is "true" and it has no HSMs left.
- `Custom::CloudHsmHsms`: the cluster's HSMs, spread round-robin across availability zones.
- `Custom::KmsCustomKeyStore`: create (or adopt) the CloudHSM key store and connect it. A
  FAILED connection fails the deployment at once with its ConnectionErrorCode and remedy.
- `Custom::KmsHsmKey`: a symmetric KMS key in the key store (Origin AWS_CLOUDHSM) + alias.

Restored cluster, key store and key are retained on delete unless `WorkshopMode` is "true". Every AWS call
goes through `call()`, which retries throttling with a bounded exponential backoff (the
key store management APIs and CreateKey allow 5 requests per second). Every other error
becomes a `ProvisioningError` whose text names the call, the error code and what to do;
the Provider reports that text to CloudFormation. Secrets (the kmsuser password) are read
at run time and never logged or put in an exception.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from kommunmoln import names

LOG = logging.getLogger(__name__)
Sleep = Callable[[float], None]

# --- Remedies for a FAILED key store (AWS KMS Developer Guide, "Troubleshooting a custom key store")
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


# --- Hints for API errors ------------------------------------------------------------------
_ERROR_HINTS: Mapping[str, str] = {
    "CloudHsmClusterNotActiveException": "initialize and activate the cluster first (python -m usecases.cloudhsm_kms init)",
    "CloudHsmClusterInvalidConfigurationException": (
        "the cluster needs private subnets in at least two zones, a security group allowing TCP 2223-2225 to itself, "
        "and at least two ACTIVE HSMs in different zones to create a key store or key"
    ),
    "CloudHsmClusterNotRelatedException": "a key store can only move to a cluster restored from a backup of its original cluster",
    "CloudHsmClusterInUseException": "the cluster already backs another custom key store (set tier_b_existing_key_store_id to reuse it)",
    "CloudHsmClusterNotFoundException": "check the cluster id (DescribeClusters)",
    "IncorrectTrustAnchorException": "TrustAnchorCertificate must be the exact issuing certificate (customerCA.crt) given to InitializeCluster",
    "CustomKeyStoreNameInUseException": "another key store has this name; choose another or adopt it with tier_b_existing_key_store_id",
    "CustomKeyStoreInvalidStateException": "the key store must be CONNECTED to create keys and DISCONNECTED to be updated or deleted",
    "CustomKeyStoreHasCMKsException": "delete (schedule deletion of) every KMS key in the key store and wait for the waiting period first",
    "CustomKeyStoreNotFoundException": "check the key store id (aws kms describe-custom-key-stores)",
    "CloudHsmResourceLimitExceededException": "an HSM or cluster quota is reached; request a quota increase or lower tier_b_hsm_count",
    "CloudHsmAccessDeniedException": "the provisioner role lacks a CloudHSM permission",
    "AccessDeniedException": "the provisioner role lacks a permission",
    "LimitExceededException": "a KMS quota is reached (10 custom key stores per account and Region)",
}

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException", "RequestLimitExceeded"}
)
RETRYABLE_CODES = THROTTLING_CODES | {"KMSInternalException", "CloudHsmInternalFailureException", "InternalFailure"}
MAX_ATTEMPTS = 6
BASE_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0
_JITTER = secrets.SystemRandom()


class ProvisioningError(RuntimeError):
    """A failure CloudFormation shows to the operator: one clear sentence with what to do."""


class KeyStoreConnectionFailed(ProvisioningError):
    """ConnectionState FAILED: carries the ConnectionErrorCode and its remedy."""

    def __init__(self, key_store_id: str, code: str) -> None:
        self.key_store_id = key_store_id
        self.code = code
        self.remedy = remedy_for(code)
        super().__init__(
            f"custom key store {key_store_id} failed to connect: ConnectionErrorCode {code}. Remedy: {self.remedy}"
        )


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", "Unknown"))


def explain(err: ClientError) -> str:
    """One line: which call failed, the AWS error code and message, and a hint when we know one."""
    code = error_code(err)
    message = err.response.get("Error", {}).get("Message", "")
    hint = _ERROR_HINTS.get(code)
    return f"{err.operation_name} failed with {code}: {message}" + (f" ({hint})" if hint else "")


def call(operation: Callable[..., dict[str, Any]], *, sleep: Sleep, **kwargs: Any) -> dict[str, Any]:
    """Call one AWS API operation; retry throttling and internal failures with bounded backoff."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return operation(**kwargs)
        except ClientError as err:
            code = error_code(err)
            if code not in RETRYABLE_CODES:
                raise
            if attempt == MAX_ATTEMPTS:
                raise ProvisioningError(
                    f"{err.operation_name} still failed with {code} after {MAX_ATTEMPTS} attempts (key store "
                    "management calls and CreateKey allow 5 requests per second); retry the deployment later"
                ) from err
            delay = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** (attempt - 1))
            LOG.warning("%s returned %s; retry %d of %d", err.operation_name, code, attempt, MAX_ATTEMPTS - 1)
            sleep(delay * _JITTER.uniform(0.5, 1.0))
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Clients:
    """The boto3 clients the provisioner uses (created by the handler, stubbed in tests)."""

    cloudhsm: Any
    kms: Any
    secrets: Any


# --- Property parsing ------------------------------------------------------------------------
_CLUSTER_ID = r"cluster-[2-7a-zA-Z]{11,16}"
_KEY_STORE_ID = r"cks-[a-z0-9]{17}"


def _prop(props: Mapping[str, Any], key: str, *, pattern: str | None = None, allow_empty: bool = False) -> str:
    value = props.get(key, "")
    if not isinstance(value, str):
        raise ProvisioningError(f"property {key} must be a string")
    if not value and not allow_empty:
        raise ProvisioningError(f"property {key} is required")
    if value and pattern and not re.fullmatch(pattern, value):
        raise ProvisioningError(f"property {key}={value!r} does not match {pattern}")
    return value


def _flag(props: Mapping[str, Any], key: str) -> bool:
    value = str(props.get(key, "false")).lower()
    if value not in ("true", "false"):
        raise ProvisioningError(f"property {key} must be 'true' or 'false'")
    return value == "true"


# ==========================================================================================
# Custom::CloudHsmHsms
# ==========================================================================================
CLUSTER_FAILURE_STATES = frozenset({"DEGRADED", "DELETE_IN_PROGRESS", "DELETED", "ROLLBACK_IN_PROGRESS"})
HSM_GONE_STATES = frozenset({"DELETE_IN_PROGRESS", "DELETED"})


@dataclass(frozen=True)
class HsmProps:
    cluster_id: str
    zones: tuple[str, ...]
    count: int

    @staticmethod
    def parse(props: Mapping[str, Any]) -> HsmProps:
        cluster_id = _prop(props, "ClusterId", pattern=_CLUSTER_ID)
        zones = props.get("AvailabilityZones")
        if not isinstance(zones, list) or not zones or not all(isinstance(z, str) and z for z in zones):
            raise ProvisioningError("property AvailabilityZones must be a non-empty list of zone names")
        if len(set(zones)) != len(zones):
            raise ProvisioningError("property AvailabilityZones lists a zone twice")
        raw = str(props.get("HsmCount", ""))
        if not re.fullmatch(r"\d{1,2}", raw) or not 1 <= int(raw) <= 28:
            raise ProvisioningError(f"property HsmCount must be a whole number from 1 to 28, got {raw!r}")
        return HsmProps(cluster_id=cluster_id, zones=tuple(zones), count=int(raw))


def _describe_one(operation: Callable[..., Any], result_key: str, filters: dict[str, list[str]], sleep: Sleep):
    """The one CloudHSM item a describe call filters for, or None when it does not exist."""
    try:
        response = call(operation, sleep=sleep, Filters=filters)
    except ClientError as err:
        if error_code(err) in ("CloudHsmResourceNotFoundException", "CloudHsmInvalidRequestException"):
            return None
        raise
    items = response.get(result_key, [])
    return items[0] if items else None


def describe_cluster(cloudhsm: Any, cluster_id: str, *, sleep: Sleep) -> dict[str, Any] | None:
    """The cluster description, or None when no such cluster exists."""
    return _describe_one(cloudhsm.describe_clusters, "Clusters", {"clusterIds": [cluster_id]}, sleep)


def live_hsms(cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    """HSMs that exist or are being created (not being deleted)."""
    return [h for h in cluster.get("Hsms", []) if h.get("State") not in HSM_GONE_STATES]


def plan_additions(hsms: Sequence[Mapping[str, Any]], zones: Sequence[str], target: int) -> list[str]:
    """Zones for the HSMs to add: always the zone with the fewest HSMs (ties: config order)."""
    counts = Counter({zone: 0 for zone in zones})
    counts.update(h["AvailabilityZone"] for h in hsms if h.get("AvailabilityZone") in counts)
    plan: list[str] = []
    total = len(hsms)
    while total < target:
        zone = min(zones, key=lambda z: (counts[z], zones.index(z)))
        plan.append(zone)
        counts[zone] += 1
        total += 1
    return plan


def plan_removals(hsms: Sequence[Mapping[str, Any]], target: int) -> list[str]:
    """HSM ids to delete: from the zone with the most HSMs, non-active ones first; never below 1."""
    if target < 1:
        raise ProvisioningError("refusing to remove every HSM: HsmCount must be at least 1")
    remaining = list(hsms)
    removed: list[str] = []
    while len(remaining) > target:
        counts = Counter(h["AvailabilityZone"] for h in remaining)
        zone = max(sorted(counts), key=lambda z: counts[z])
        candidates = sorted(
            (h for h in remaining if h["AvailabilityZone"] == zone),
            key=lambda h: (h.get("State") == "ACTIVE", h["HsmId"]),
        )
        victim = candidates[0]
        remaining.remove(victim)
        removed.append(victim["HsmId"])
    return removed


def _require_usable_cluster(cluster: Mapping[str, Any]) -> None:
    state = cluster.get("State", "")
    if state in CLUSTER_FAILURE_STATES:
        message = cluster.get("StateMessage") or "no state message"
        raise ProvisioningError(
            f"CloudHSM cluster {cluster.get('ClusterId')} is {state} ({message}); fix or replace the cluster "
            "(restore from a backup) before changing its HSMs"
        )


def _hsm_data(cluster_id: str, hsms: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    ids = sorted(h["HsmId"] for h in hsms)
    return {"HsmIds": ",".join(ids), "HsmCount": str(len(ids))}


def hsms_on_event(event: Mapping[str, Any], clients: Clients, sleep: Sleep) -> dict[str, Any]:
    request = event["RequestType"]
    props = HsmProps.parse(event["ResourceProperties"])
    physical_id = f"{props.cluster_id}/hsms"
    cluster = describe_cluster(clients.cloudhsm, props.cluster_id, sleep=sleep)
    if request == "Delete":
        if cluster is None:
            LOG.info("cluster %s no longer exists; nothing to delete", props.cluster_id)
            return {"PhysicalResourceId": event.get("PhysicalResourceId", physical_id)}
        for hsm in live_hsms(cluster):
            call(clients.cloudhsm.delete_hsm, sleep=sleep, ClusterId=props.cluster_id, HsmId=hsm["HsmId"])
            LOG.info("deleting HSM %s in %s", hsm["HsmId"], hsm.get("AvailabilityZone"))
        return {"PhysicalResourceId": event.get("PhysicalResourceId", physical_id)}

    if cluster is None:
        raise ProvisioningError(f"CloudHSM cluster {props.cluster_id} not found")
    _require_usable_cluster(cluster)
    hsms = live_hsms(cluster)
    unknown = sorted({h["AvailabilityZone"] for h in hsms} - set(props.zones))
    if unknown:
        LOG.warning("cluster has HSMs in zones outside AvailabilityZones: %s", unknown)
    for zone in plan_additions(hsms, props.zones, props.count):
        created = call(clients.cloudhsm.create_hsm, sleep=sleep, ClusterId=props.cluster_id, AvailabilityZone=zone)
        hsms.append(created["Hsm"])
        LOG.info("creating HSM %s in %s", created["Hsm"]["HsmId"], zone)
    for hsm_id in plan_removals(hsms, props.count):
        call(clients.cloudhsm.delete_hsm, sleep=sleep, ClusterId=props.cluster_id, HsmId=hsm_id)
        hsms = [h for h in hsms if h["HsmId"] != hsm_id]
        LOG.info("deleting HSM %s (HsmCount lowered to %d)", hsm_id, props.count)
    return {"PhysicalResourceId": physical_id, "Data": _hsm_data(props.cluster_id, hsms)}


def hsms_is_complete(event: Mapping[str, Any], clients: Clients, sleep: Sleep) -> dict[str, Any]:
    props = HsmProps.parse(event["ResourceProperties"])
    cluster = describe_cluster(clients.cloudhsm, props.cluster_id, sleep=sleep)
    if event["RequestType"] == "Delete":
        pending = [] if cluster is None else [h for h in cluster.get("Hsms", []) if h.get("State") != "DELETED"]
        return {"IsComplete": not pending}
    if cluster is None:
        raise ProvisioningError(f"CloudHSM cluster {props.cluster_id} not found")
    _require_usable_cluster(cluster)
    all_hsms = cluster.get("Hsms", [])
    degraded = [h for h in all_hsms if h.get("State") == "DEGRADED"]
    if degraded:
        details = "; ".join(
            f"{h['HsmId']} in {h.get('AvailabilityZone')}: {h.get('StateMessage', '')}" for h in degraded
        )
        raise ProvisioningError(
            f"HSM creation failed in cluster {props.cluster_id}: DEGRADED ({details}). Delete the failed HSM "
            "(aws cloudhsmv2 delete-hsm) and deploy again; check the zone's capacity and the subnet's free addresses"
        )
    hsms = live_hsms(cluster)
    if len(hsms) < props.count:
        raise ProvisioningError(
            f"cluster {props.cluster_id} has {len(hsms)} HSMs but {props.count} were requested: an HSM creation "
            "failed or an HSM was deleted meanwhile; deploy again"
        )
    deleting = [h for h in all_hsms if h.get("State") == "DELETE_IN_PROGRESS"]
    waiting = [h for h in hsms if h.get("State") != "ACTIVE"]
    if waiting or deleting or len(hsms) > props.count:
        LOG.info("waiting for HSMs: %s", ", ".join(f"{h['HsmId']}={h.get('State')}" for h in waiting + deleting))
        return {"IsComplete": False}
    return {"IsComplete": True, "Data": _hsm_data(props.cluster_id, hsms)}


# ==========================================================================================
# Custom::CloudHsmCluster (a cluster restored from a backup)
# ==========================================================================================
# AWS::CloudHSM::Cluster has no SourceBackupId, so a restore is this custom resource.
# A backup is only taken of an initialized cluster, so a restored cluster comes up INITIALIZED
# (not yet activated when the backup was) or ACTIVE, with the users and key material of the
# backup and no HSMs. UNINITIALIZED would mean nothing was restored. CREATE_FAILED is not in
# the API's enum today; it is listed so that a future state fails fast rather than waits.
RESTORED_STATES = frozenset({"INITIALIZED", "ACTIVE"})
CLUSTER_CREATE_FAILED_STATES = frozenset(
    {"CREATE_FAILED", "DEGRADED", "DELETE_IN_PROGRESS", "DELETED", "ROLLBACK_IN_PROGRESS"}
)
_BACKUP_ID = r"backup-[2-7a-zA-Z]{11,16}"
_SUBNET_ID = r"subnet-[0-9a-fA-F]{8,17}"
_CLUSTER_IN_PLACE = ("BackupRetentionDays", "WorkshopMode")  # what an update may change


@dataclass(frozen=True)
class ClusterProps:
    source_backup_id: str
    hsm_type: str
    subnet_ids: tuple[str, ...]
    backup_retention_days: int
    mode: str  # "" = whatever the backup has
    workshop_mode: bool

    @staticmethod
    def parse(props: Mapping[str, Any]) -> ClusterProps:
        subnets = props.get("SubnetIds")
        if (
            not isinstance(subnets, list)
            or not subnets
            or not all(isinstance(s, str) and re.fullmatch(_SUBNET_ID, s) for s in subnets)
        ):
            raise ProvisioningError("property SubnetIds must be a non-empty list of subnet ids")
        if len(set(subnets)) != len(subnets):
            raise ProvisioningError("property SubnetIds lists a subnet twice")
        raw = str(props.get("BackupRetentionDays", ""))
        if not re.fullmatch(r"\d{1,3}", raw) or not 7 <= int(raw) <= 379:
            raise ProvisioningError(f"property BackupRetentionDays must be a whole number from 7 to 379, got {raw!r}")
        return ClusterProps(
            source_backup_id=_prop(props, "SourceBackupId", pattern=_BACKUP_ID),
            hsm_type=_prop(props, "HsmType", pattern=r"hsm[0-9][a-z0-9]*\.[a-zA-Z]+"),
            subnet_ids=tuple(subnets),
            backup_retention_days=int(raw),
            mode=_prop(props, "Mode", pattern=r"FIPS|NON_FIPS", allow_empty=True),
            workshop_mode=_flag(props, "WorkshopMode"),
        )

    def identity(self) -> tuple[Any, ...]:
        """What defines the cluster: a change means another cluster, never an in-place update."""
        return (self.source_backup_id, self.hsm_type, tuple(sorted(self.subnet_ids)), self.mode)


def _retention(days: int) -> dict[str, str]:
    return {"Type": "DAYS", "Value": str(days)}


def _cluster_data(cluster: Mapping[str, Any]) -> dict[str, str]:
    return {
        "ClusterId": cluster["ClusterId"],
        "SecurityGroup": cluster.get("SecurityGroup", ""),
        "State": cluster.get("State", ""),
    }


def describe_backup(cloudhsm: Any, backup_id: str, *, sleep: Sleep) -> dict[str, Any] | None:
    """The backup description, or None when no such backup exists."""
    return _describe_one(cloudhsm.describe_backups, "Backups", {"backupIds": [backup_id]}, sleep)


def _require_restorable(backup_id: str, backup: Mapping[str, Any] | None, props: ClusterProps) -> None:
    """Fail before CreateCluster, with what to do, when the backup cannot give the cluster we want."""
    if backup is None:
        raise ProvisioningError(
            f"backup {backup_id} not found in this account and Region; list the backups of the lost cluster "
            "(aws cloudhsmv2 describe-backups --filters clusterIds=<cluster id>) and set tier_b_restore_backup_id"
        )
    state = backup.get("BackupState", "")
    if state == "PENDING_DELETION":
        raise ProvisioningError(
            f"backup {backup_id} is PENDING_DELETION; restore it first (aws cloudhsmv2 restore-backup --backup-id "
            f"{backup_id}) and deploy again"
        )
    if state != "READY":
        raise ProvisioningError(
            f"backup {backup_id} is {state or 'in an unknown state'}, not READY; choose a READY backup"
        )
    if props.mode and backup.get("Mode") and backup["Mode"] != props.mode:
        # The cluster takes its mode from the backup: a NON_FIPS backup would silently weaken tier B.
        raise ProvisioningError(
            f"backup {backup_id} is of a {backup['Mode']} cluster but tier B requires a {props.mode} cluster; "
            "choose a backup of the original tier B cluster"
        )


def _require_restored(cluster: Mapping[str, Any], props: ClusterProps) -> None:
    cluster_id, state = cluster.get("ClusterId"), cluster.get("State", "")
    if state in CLUSTER_CREATE_FAILED_STATES:
        message = cluster.get("StateMessage") or "no state message"
        raise ProvisioningError(
            f"restoring CloudHSM cluster {cluster_id} from backup {props.source_backup_id} failed: {state} "
            f"({message}). Check the backup (aws cloudhsmv2 describe-backups) and the subnets, delete the failed "
            "cluster (aws cloudhsmv2 delete-cluster) and deploy again"
        )
    if state == "UNINITIALIZED":
        raise ProvisioningError(
            f"CloudHSM cluster {cluster_id} restored from backup {props.source_backup_id} is UNINITIALIZED: the backup "
            "holds no initialized cluster, so it has no users and no key material to restore. Choose a backup of the "
            "initialized tier B cluster"
        )
    if props.mode and cluster.get("Mode") and cluster["Mode"] != props.mode:
        raise ProvisioningError(
            f"CloudHSM cluster {cluster_id} restored from backup {props.source_backup_id} is {cluster['Mode']}, not "
            f"{props.mode}; delete it (aws cloudhsmv2 delete-cluster) and restore from a backup of a {props.mode} cluster"
        )


def _restore_cluster(props: ClusterProps, clients: Clients, *, sleep: Sleep) -> dict[str, Any]:
    cloudhsm = clients.cloudhsm
    _require_restorable(props.source_backup_id, describe_backup(cloudhsm, props.source_backup_id, sleep=sleep), props)
    # No Mode parameter: the restored cluster takes the backup's mode (checked above and again when it is up).
    created = call(
        cloudhsm.create_cluster,
        sleep=sleep,
        HsmType=props.hsm_type,
        SubnetIds=list(props.subnet_ids),
        SourceBackupId=props.source_backup_id,
        BackupRetentionPolicy=_retention(props.backup_retention_days),
        TagList=[
            {"Key": names.TAG_PROJECT, "Value": names.PROJECT},
            {"Key": names.TAG_TIER, "Value": names.TIER_B},
            {"Key": names.TAG_RESTORED_FROM_BACKUP, "Value": props.source_backup_id},
        ],
    )["Cluster"]
    LOG.info("restoring CloudHSM cluster %s from backup %s", created["ClusterId"], props.source_backup_id)
    return created


def _cluster_gone(cluster: Mapping[str, Any] | None) -> bool:
    return cluster is None or cluster.get("State") in ("DELETED", "DELETE_IN_PROGRESS")


def cluster_on_event(event: Mapping[str, Any], clients: Clients, sleep: Sleep) -> dict[str, Any]:
    request = event["RequestType"]
    props = ClusterProps.parse(event["ResourceProperties"])
    cloudhsm = clients.cloudhsm
    if request == "Create":
        created = _restore_cluster(props, clients, sleep=sleep)
        return {"PhysicalResourceId": created["ClusterId"], "Data": _cluster_data(created)}
    cluster_id = event["PhysicalResourceId"]
    if request == "Delete":
        return _cluster_delete(cluster_id, props, cloudhsm, sleep=sleep)

    old = ClusterProps.parse(event.get("OldResourceProperties", {}))
    cluster = describe_cluster(cloudhsm, cluster_id, sleep=sleep)
    if props.identity() != old.identity():
        changed = [
            name
            for name, new_value, old_value in zip(
                ("SourceBackupId", "HsmType", "SubnetIds", "Mode"), props.identity(), old.identity(), strict=True
            )
            if new_value != old_value
        ]
        if cluster is not None and not _cluster_gone(cluster):
            raise ProvisioningError(
                f"refusing to replace CloudHSM cluster {cluster_id} ({cluster.get('State')}, "
                f"{len(live_hsms(cluster))} HSM(s)): {', '.join(changed)} changed, and only BackupRetentionDays can "
                "change in place. The cluster holds the key material of the key store; replacing it must be a "
                "deliberate operator action: revert the setting, or, if this cluster is to be abandoned, delete its "
                "HSMs and the cluster by hand (aws cloudhsmv2 delete-hsm / delete-cluster; its backups stay) and "
                "deploy again (docs/use-case-2.md#restore)"
            )
        # The cluster is gone (the reason to restore again): a new one from the configured backup.
        LOG.warning("cluster %s no longer exists; restoring a new one (%s changed)", cluster_id, ", ".join(changed))
        created = _restore_cluster(props, clients, sleep=sleep)
        return {"PhysicalResourceId": created["ClusterId"], "Data": _cluster_data(created)}
    if cluster is None or _cluster_gone(cluster):
        raise ProvisioningError(
            f"CloudHSM cluster {cluster_id} no longer exists (deleted outside CloudFormation); to restore it again, "
            "set tier_b_restore_backup_id to a backup of it (the newest READY one) and deploy"
        )
    if props.backup_retention_days != old.backup_retention_days:
        cluster = call(
            cloudhsm.modify_cluster,
            sleep=sleep,
            ClusterId=cluster_id,
            BackupRetentionPolicy=_retention(props.backup_retention_days),
        )["Cluster"]
        LOG.info("cluster %s keeps backups for %d days", cluster_id, props.backup_retention_days)
    return {"PhysicalResourceId": cluster_id, "Data": _cluster_data(cluster)}


def _cluster_delete(cluster_id: str, props: ClusterProps, cloudhsm: Any, *, sleep: Sleep) -> dict[str, Any]:
    if not props.workshop_mode:
        LOG.info("CloudHSM cluster %s is retained (not workshop mode)", cluster_id)
        return {"PhysicalResourceId": cluster_id}
    cluster = describe_cluster(cloudhsm, cluster_id, sleep=sleep)
    if _cluster_gone(cluster):
        return {"PhysicalResourceId": cluster_id}
    _refuse_hsms(cluster_id, cluster)
    call(cloudhsm.delete_cluster, sleep=sleep, ClusterId=cluster_id)
    LOG.info("deleting CloudHSM cluster %s (its backups stay under their retention policy)", cluster_id)
    return {"PhysicalResourceId": cluster_id}


def _refuse_hsms(cluster_id: str, cluster: Mapping[str, Any]) -> None:
    remaining = [h["HsmId"] for h in cluster.get("Hsms", []) if h.get("State") != "DELETED"]
    if remaining:
        raise ProvisioningError(
            f"workshop teardown refused: CloudHSM cluster {cluster_id} still has HSMs ({', '.join(remaining)}). "
            "Delete them (aws cloudhsmv2 delete-hsm), wait until they are gone and delete the stack again"
        )


def cluster_is_complete(event: Mapping[str, Any], clients: Clients, sleep: Sleep) -> dict[str, Any]:
    props = ClusterProps.parse(event["ResourceProperties"])
    cluster_id = event["PhysicalResourceId"]
    if event["RequestType"] == "Delete" and not props.workshop_mode:
        return {"IsComplete": True}  # retained: nothing was asked of CloudHSM
    cluster = describe_cluster(clients.cloudhsm, cluster_id, sleep=sleep)
    if event["RequestType"] == "Delete":
        if cluster is None or cluster.get("State") == "DELETED":
            return {"IsComplete": True}
        if cluster.get("State") != "DELETE_IN_PROGRESS":
            _refuse_hsms(cluster_id, cluster)
        return {"IsComplete": False}
    if cluster is None:
        raise ProvisioningError(
            f"CloudHSM cluster {cluster_id} not found while restoring from {props.source_backup_id}"
        )
    _require_restored(cluster, props)
    state = cluster.get("State", "")
    if state in RESTORED_STATES:
        return {"IsComplete": True, "Data": _cluster_data(cluster)}
    LOG.info("waiting for cluster %s: %s", cluster_id, state)  # CREATE_IN_PROGRESS, MODIFY_IN_PROGRESS, ...
    return {"IsComplete": False}


# ==========================================================================================
# Custom::KmsCustomKeyStore
# ==========================================================================================
WAIT_POLL_SECONDS = 5.0
WAIT_POLLS = 60  # bounded wait inside one invocation: 5 minutes of a 15-minute Lambda
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
        existing = _prop(props, "ExistingKeyStoreId", pattern=_KEY_STORE_ID, allow_empty=True)
        trust_anchor = _prop(props, "TrustAnchorCertificate", allow_empty=bool(existing))
        if trust_anchor and "-----BEGIN CERTIFICATE-----" not in trust_anchor:
            raise ProvisioningError("property TrustAnchorCertificate must be a PEM certificate")
        return KeyStoreProps(
            cluster_id=_prop(props, "ClusterId", pattern=_CLUSTER_ID),
            name=_prop(props, "KeyStoreName", pattern=r"[\w.:/=+@-]{1,256}"),
            trust_anchor=trust_anchor,
            password_secret_arn=_prop(props, "KeyStorePasswordSecretArn", pattern=r"arn:aws[\w-]*:secretsmanager:.+"),
            existing_id=existing,
            workshop_mode=_flag(props, "WorkshopMode"),
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


def describe_key_store(kms: Any, key_store_id: str, *, sleep: Sleep) -> dict[str, Any] | None:
    try:
        stores = call(kms.describe_custom_key_stores, sleep=sleep, CustomKeyStoreId=key_store_id)
    except ClientError as err:
        if error_code(err) == "CustomKeyStoreNotFoundException":
            return None
        raise
    entries = stores.get("CustomKeyStores", [])
    return entries[0] if entries else None


def _find_key_store_by_name(kms: Any, name: str, *, sleep: Sleep) -> dict[str, Any] | None:
    try:
        stores = call(kms.describe_custom_key_stores, sleep=sleep, CustomKeyStoreName=name)
    except ClientError as err:
        if error_code(err) == "CustomKeyStoreNotFoundException":
            return None
        raise
    entries = stores.get("CustomKeyStores", [])
    return entries[0] if entries else None


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


# ==========================================================================================
# Custom::KmsHsmKey
# ==========================================================================================
PENDING_WINDOW_DAYS = 30


@dataclass(frozen=True)
class KeyProps:
    key_store_id: str
    description: str
    policy: str
    alias: str
    workshop_mode: bool

    @staticmethod
    def parse(props: Mapping[str, Any]) -> KeyProps:
        policy = _prop(props, "KeyPolicy")
        try:
            parsed = json.loads(policy)
        except ValueError as err:
            raise ProvisioningError(f"property KeyPolicy is not JSON: {err}") from None
        if not isinstance(parsed, dict) or not parsed.get("Statement"):
            raise ProvisioningError("property KeyPolicy must be a policy document with statements")
        alias = _prop(props, "AliasName", pattern=r"alias/[a-zA-Z0-9/_-]{1,250}")
        if alias.startswith("alias/aws/"):
            raise ProvisioningError("property AliasName must not start with alias/aws/ (reserved by AWS)")
        return KeyProps(
            key_store_id=_prop(props, "CustomKeyStoreId", pattern=_KEY_STORE_ID),
            description=str(props.get("Description", "")),
            policy=policy,
            alias=alias,
            workshop_mode=_flag(props, "WorkshopMode"),
        )


def _describe_key(kms: Any, key_id: str, *, sleep: Sleep) -> dict[str, Any] | None:
    try:
        return call(kms.describe_key, sleep=sleep, KeyId=key_id)["KeyMetadata"]
    except ClientError as err:
        if error_code(err) == "NotFoundException":
            return None
        raise


def _aliases_of(kms: Any, key_id: str, *, sleep: Sleep) -> list[str]:
    response = call(kms.list_aliases, sleep=sleep, KeyId=key_id)
    return [a["AliasName"] for a in response.get("Aliases", [])]


def _key_data(meta: Mapping[str, Any]) -> dict[str, str]:
    return {"KeyId": meta["KeyId"], "KeyArn": meta["Arn"]}


def _create_key(props: KeyProps, kms: Any, *, sleep: Sleep, replacing: bool) -> dict[str, Any]:
    current = _describe_key(kms, props.alias, sleep=sleep)
    if (
        current is not None
        and not replacing
        and current.get("CustomKeyStoreId") == props.key_store_id
        and current.get("KeyState") != "PendingDeletion"
    ):
        LOG.info("alias %s already names key %s in the key store; adopting it", props.alias, current["KeyId"])
        return current
    if current is not None and not replacing:
        raise ProvisioningError(
            f"alias {props.alias} already names key {current['KeyId']} outside custom key store {props.key_store_id}"
        )
    meta = call(
        kms.create_key,
        sleep=sleep,
        Policy=props.policy,
        Description=props.description,
        KeyUsage="ENCRYPT_DECRYPT",
        KeySpec="SYMMETRIC_DEFAULT",
        Origin="AWS_CLOUDHSM",
        CustomKeyStoreId=props.key_store_id,
        BypassPolicyLockoutSafetyCheck=False,
    )["KeyMetadata"]
    LOG.info("created KMS key %s in custom key store %s", meta["KeyId"], props.key_store_id)
    if current is None:
        call(kms.create_alias, sleep=sleep, AliasName=props.alias, TargetKeyId=meta["KeyId"])
    else:  # a new key for the same alias: the manual rotation step (alias switch)
        call(kms.update_alias, sleep=sleep, AliasName=props.alias, TargetKeyId=meta["KeyId"])
    return meta


def key_on_event(event: Mapping[str, Any], clients: Clients, sleep: Sleep) -> dict[str, Any]:
    request = event["RequestType"]
    props = KeyProps.parse(event["ResourceProperties"])
    kms = clients.kms
    if request == "Create":
        meta = _create_key(props, kms, sleep=sleep, replacing=False)
        return {"PhysicalResourceId": meta["KeyId"], "Data": _key_data(meta)}
    key_id = event["PhysicalResourceId"]
    if request == "Delete":
        return _key_delete(key_id, props, kms, sleep=sleep)
    old = KeyProps.parse(event.get("OldResourceProperties", {}))
    if old.key_store_id != props.key_store_id:
        meta = _create_key(props, kms, sleep=sleep, replacing=True)  # CloudFormation then deletes the old one
        return {"PhysicalResourceId": meta["KeyId"], "Data": _key_data(meta)}
    meta = _describe_key(kms, key_id, sleep=sleep)
    if meta is None:
        raise ProvisioningError(f"KMS key {key_id} not found; it was deleted outside CloudFormation")
    if props.policy != old.policy:
        call(
            kms.put_key_policy,
            sleep=sleep,
            KeyId=key_id,
            PolicyName="default",
            Policy=props.policy,
            BypassPolicyLockoutSafetyCheck=False,
        )
    if props.description != old.description:
        call(kms.update_key_description, sleep=sleep, KeyId=key_id, Description=props.description)
    if props.alias != old.alias:
        call(kms.create_alias, sleep=sleep, AliasName=props.alias, TargetKeyId=key_id)
        if old.alias in _aliases_of(kms, key_id, sleep=sleep):
            call(kms.delete_alias, sleep=sleep, AliasName=old.alias)
    return {"PhysicalResourceId": key_id, "Data": _key_data(meta)}


def _key_delete(key_id: str, props: KeyProps, kms: Any, *, sleep: Sleep) -> dict[str, Any]:
    if not props.workshop_mode:
        LOG.info("KMS key %s is retained (not workshop mode)", key_id)
        return {"PhysicalResourceId": key_id}
    meta = _describe_key(kms, key_id, sleep=sleep)
    if meta is None:
        return {"PhysicalResourceId": key_id}
    if props.alias in _aliases_of(kms, key_id, sleep=sleep):  # never remove an alias switched to a newer key
        call(kms.delete_alias, sleep=sleep, AliasName=props.alias)
    if meta.get("KeyState") != "PendingDeletion":
        call(kms.schedule_key_deletion, sleep=sleep, KeyId=key_id, PendingWindowInDays=PENDING_WINDOW_DAYS)
        LOG.info("scheduled deletion of KMS key %s in %d days", key_id, PENDING_WINDOW_DAYS)
    return {"PhysicalResourceId": key_id}


def key_is_complete(event: Mapping[str, Any], clients: Clients, sleep: Sleep) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    key_id = event["PhysicalResourceId"]
    meta = _describe_key(clients.kms, key_id, sleep=sleep)
    if meta is None:
        raise ProvisioningError(f"KMS key {key_id} not found")
    state = meta.get("KeyState")
    if state == "Enabled":
        return {"IsComplete": True, "Data": _key_data(meta)}
    if state in ("Creating", "Updating"):
        return {"IsComplete": False}
    raise ProvisioningError(
        f"KMS key {key_id} is {state}: "
        + (
            "its custom key store is not connected; connect it (aws kms connect-custom-key-store)"
            if state == "Unavailable"
            else "enable it or cancel its deletion"
        )
    )


# ==========================================================================================
# Dispatch
# ==========================================================================================
_ON_EVENT = {
    names.RESOURCE_CLOUDHSM_CLUSTER: cluster_on_event,
    names.RESOURCE_CLOUDHSM_HSMS: hsms_on_event,
    names.RESOURCE_KMS_CUSTOM_KEY_STORE: key_store_on_event,
    names.RESOURCE_KMS_HSM_KEY: key_on_event,
}
_IS_COMPLETE = {
    names.RESOURCE_CLOUDHSM_CLUSTER: cluster_is_complete,
    names.RESOURCE_CLOUDHSM_HSMS: hsms_is_complete,
    names.RESOURCE_KMS_CUSTOM_KEY_STORE: key_store_is_complete,
    names.RESOURCE_KMS_HSM_KEY: key_is_complete,
}


def _dispatch(
    table: Mapping[str, Callable[..., dict[str, Any]]], event: Mapping[str, Any], clients: Clients, sleep: Sleep
):
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
