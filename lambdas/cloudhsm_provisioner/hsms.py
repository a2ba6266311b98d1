"""Custom::CloudHsmHsms: the cluster's HSMs, spread round-robin across availability zones."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lambdas.cloudhsm_provisioner.common import (
    CLUSTER_ID,
    LOG,
    Clients,
    ProvisioningError,
    Sleep,
    call,
    describe_cluster,
    live_hsms,
    prop,
)

CLUSTER_FAILURE_STATES = frozenset({"DEGRADED", "DELETE_IN_PROGRESS", "DELETED", "ROLLBACK_IN_PROGRESS"})


@dataclass(frozen=True)
class HsmProps:
    cluster_id: str
    zones: tuple[str, ...]
    count: int

    @staticmethod
    def parse(props: Mapping[str, Any]) -> HsmProps:
        cluster_id = prop(props, "ClusterId", pattern=CLUSTER_ID)
        zones = props.get("AvailabilityZones")
        if not isinstance(zones, list) or not zones or not all(isinstance(z, str) and z for z in zones):
            raise ProvisioningError("property AvailabilityZones must be a non-empty list of zone names")
        if len(set(zones)) != len(zones):
            raise ProvisioningError("property AvailabilityZones lists a zone twice")
        raw = str(props.get("HsmCount", ""))
        if not re.fullmatch(r"\d{1,2}", raw) or not 1 <= int(raw) <= 28:
            raise ProvisioningError(f"property HsmCount must be a whole number from 1 to 28, got {raw!r}")
        return HsmProps(cluster_id=cluster_id, zones=tuple(zones), count=int(raw))


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


# Cluster states in which CloudHSM accepts CreateHsm at all, and the one in which it accepts more than one
# HSM: a cluster that is not yet activated takes exactly one ("already contains an HSM but has not yet been
# fully activated"; CloudHSM User Guide, Getting started: create one HSM, initialize, activate, then add HSMs:
# https://docs.aws.amazon.com/cloudhsm/latest/userguide/getting-started.html).
CREATE_HSM_STATES = frozenset({"UNINITIALIZED", "ACTIVE", "DEGRADED"})


def _require_activated_for(cluster: Mapping[str, Any], hsms: Sequence[Mapping[str, Any]], additions: Sequence[str]):
    """Refuse, before any CreateHsm, a plan CloudHSM would refuse half-way (and bill the first HSM of)."""
    if not additions:
        return
    state, cluster_id = cluster.get("State", ""), cluster.get("ClusterId")
    if state not in CREATE_HSM_STATES:
        raise ProvisioningError(
            f"CloudHSM cluster {cluster_id} is {state}: HSMs can be added only when it is UNINITIALIZED (the first "
            "HSM) or ACTIVE; wait for the operation in progress and deploy again"
        )
    if state != "ACTIVE" and len(hsms) + len(additions) > 1:
        raise ProvisioningError(
            f"CloudHSM cluster {cluster_id} is {state}: until it is initialized and activated CloudHSM accepts "
            f"exactly one HSM, but HsmCount asks for {len(hsms) + len(additions)}. Phase 1 creates one HSM; "
            "initialize and activate the cluster (python -m usecases.cloudhsm_kms init), then deploy phase 2 "
            "(tier_b_keystore_enabled=true), which adds the others"
        )


def _delete_quietly(clients: Clients, cluster_id: str, hsm_ids: Sequence[str], *, sleep: Sleep) -> None:
    for hsm_id in hsm_ids:
        try:
            call(clients.cloudhsm.delete_hsm, sleep=sleep, ClusterId=cluster_id, HsmId=hsm_id)
            LOG.warning("deleted HSM %s created by the failed request", hsm_id)
        except Exception:  # the original error is the one to report; this one is logged
            LOG.exception("could not delete HSM %s created by the failed request; delete it by hand", hsm_id)


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
    additions = plan_additions(hsms, props.zones, props.count)
    _require_activated_for(cluster, hsms, additions)
    created_now: list[str] = []
    try:
        for zone in additions:
            created = call(clients.cloudhsm.create_hsm, sleep=sleep, ClusterId=props.cluster_id, AvailabilityZone=zone)
            hsms.append(created["Hsm"])
            created_now.append(created["Hsm"]["HsmId"])
            LOG.info("creating HSM %s in %s", created["Hsm"]["HsmId"], zone)
    except Exception:
        # The Provider framework does not send a Delete for a resource whose onEvent failed on Create, so an
        # HSM created here would be billed with nothing to delete it: delete what this call created.
        _delete_quietly(clients, props.cluster_id, created_now, sleep=sleep)
        raise
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
