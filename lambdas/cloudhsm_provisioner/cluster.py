"""Custom::CloudHsmCluster: a cluster restored from a backup (CloudFormation's cluster resource has no
SourceBackupId). Only BackupRetentionDays changes in place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kommunmoln import names
from lambdas.cloudhsm_provisioner.common import (
    LOG,
    Clients,
    ProvisioningError,
    Sleep,
    call,
    describe_cluster,
    describe_one,
    flag,
    live_hsms,
    prop,
)

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
            source_backup_id=prop(props, "SourceBackupId", pattern=_BACKUP_ID),
            hsm_type=prop(props, "HsmType", pattern=r"hsm[0-9][a-z0-9]*\.[a-zA-Z]+"),
            subnet_ids=tuple(subnets),
            backup_retention_days=int(raw),
            mode=prop(props, "Mode", pattern=r"FIPS|NON_FIPS", allow_empty=True),
            workshop_mode=flag(props, "WorkshopMode"),
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
    return describe_one(cloudhsm.describe_backups, "Backups", {"backupIds": [backup_id]}, sleep)


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
        return _cluster_delete(cluster_id, cloudhsm, sleep=sleep)

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


def _cluster_delete(cluster_id: str, cloudhsm: Any, *, sleep: Sleep) -> dict[str, Any]:
    # CloudFormation sends Delete only in workshop mode (DeletionPolicy Delete) or when the create of this
    # resource is rolled back (RetainExceptOnCreate): then the cluster restored moments ago holds nothing the
    # backup does not, and leaving it would make every retry restore another one. Never with HSMs in it.
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
