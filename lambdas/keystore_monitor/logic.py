"""Tier B key store monitor: is the HSM-backed key usable, and if not, what to do.

Three checks, each skipped (and reported as skipped) while its setting is empty, as in
phase 1 before the key store exists:
- the custom key store's ConnectionState (FAILED: its ConnectionErrorCode and remedy);
- the CloudHSM cluster's state and ACTIVE HSMs, in total and per availability zone;
- the KMS key: Enabled, Origin AWS_CLOUDHSM, in the expected key store;
- the KMS key's live policy (GetKeyPolicy) against the template's (canonical JSON).
Each check yields metric values (1/0, counts) and, when unhealthy, a remedy.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from kommunmoln import names
from kommunmoln.tier_b import key_policy
from lambdas.cloudhsm_provisioner.connection_errors import DISCONNECTED_REMEDY, remedy_for

OK = "ok"
PROBLEM = "problem"
SKIPPED = "skipped"


@dataclass(frozen=True)
class MonitorSettings:
    key_store_id: str  # "" = phase 1: no key store yet
    cluster_id: str  # "" = no cluster to check
    key_arn: str  # "" = no key yet
    min_hsms: int
    expected_key_policy: str = ""  # the template's key policy; "" = the policy check is skipped
    # Tier C (lambdas.keystore_monitor.xks): EXTERNAL_KEY_STORE, the external key id and the proxy URI.
    key_store_type: str = "AWS_CLOUDHSM"
    xks_key_id: str = ""
    xks_proxy_uri: str = ""

    @staticmethod
    def from_env(env: Mapping[str, str]) -> MonitorSettings:
        """The settings of a deployed monitor; a key without its key store or its policy is refused.

        Fail closed: with a key ARN but no key store id, a key in another key store could not be
        told apart; without the expected policy, a rewritten policy would go unnoticed.
        """
        raw = env.get(names.ENV_MIN_HSMS, "").strip() or "2"
        if not raw.isdigit() or not 1 <= int(raw) <= 28:
            raise ValueError(f"{names.ENV_MIN_HSMS} must be a whole number from 1 to 28, got {raw!r}")
        store_type = env.get(names.ENV_KEY_STORE_TYPE, "").strip() or "AWS_CLOUDHSM"
        if store_type not in ("AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"):
            raise ValueError(
                f"{names.ENV_KEY_STORE_TYPE} must be AWS_CLOUDHSM or EXTERNAL_KEY_STORE, got {store_type!r}"
            )
        settings = MonitorSettings(
            key_store_id=env.get(names.ENV_CUSTOM_KEY_STORE_ID, "").strip(),
            cluster_id=env.get(names.ENV_CLUSTER_ID, "").strip(),
            key_arn=env.get(names.ENV_EXPECTED_KMS_KEY_ARN, "").strip(),
            min_hsms=int(raw),
            expected_key_policy=env.get(names.ENV_EXPECTED_KEY_POLICY, "").strip(),
            key_store_type=store_type,
            xks_key_id=env.get(names.ENV_XKS_KEY_ID, "").strip(),
            xks_proxy_uri=env.get(names.ENV_XKS_PROXY_URI, "").strip(),
        )
        if settings.key_arn:
            for variable, value in (
                (names.ENV_CUSTOM_KEY_STORE_ID, settings.key_store_id),
                (names.ENV_EXPECTED_KEY_POLICY, settings.expected_key_policy),
            ):
                if not value:
                    raise ValueError(f"{names.ENV_EXPECTED_KMS_KEY_ARN} is set but {variable} is empty")
            key_policy.canonical(settings.expected_key_policy)  # raises PolicyNotJson (a ValueError)
        return settings


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | problem | skipped
    detail: str
    remedy: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        return all(c.status != PROBLEM for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == PROBLEM]

    def metrics(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for check in self.checks:
            merged.update(check.metrics)
        return merged

    def alarm_message(self) -> str:
        return json.dumps(
            {
                "event": "tier-b-key-store-unhealthy",
                "problems": [{"check": c.name, "detail": c.detail, "remedy": c.remedy} for c in self.problems],
                "skipped": [c.name for c in self.checks if c.status == SKIPPED],
            },
            indent=2,
        )


def describe_key_store(kms: Any, key_store_id: str) -> dict[str, Any] | None:
    """The key store's description, or None when KMS says it does not exist (any other error propagates)."""
    try:
        stores = kms.describe_custom_key_stores(CustomKeyStoreId=key_store_id).get("CustomKeyStores", [])
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "CustomKeyStoreNotFoundException":
            raise
        return None
    return stores[0] if stores else None


def check_key_store(kms: Any, key_store_id: str) -> Check:
    if not key_store_id:
        return Check("key-store", SKIPPED, f"{names.ENV_CUSTOM_KEY_STORE_ID} is empty (phase 1: no key store yet)")
    metric = names.METRIC_KEYSTORE_CONNECTED
    store = describe_key_store(kms, key_store_id)
    if store is None:
        return Check(
            "key-store", PROBLEM, f"custom key store {key_store_id} not found",
            "check the key store id in the config (tier_b_existing_key_store_id) and the stack outputs",
            {metric: 0},
        )  # fmt: skip
    state = store.get("ConnectionState", "UNKNOWN")
    if state == "CONNECTED":
        return Check("key-store", OK, f"custom key store {key_store_id} is CONNECTED", metrics={metric: 1})
    if state == "FAILED":
        code = store.get("ConnectionErrorCode", "UNKNOWN")
        return Check(
            "key-store",
            PROBLEM,
            f"custom key store {key_store_id} is FAILED with {code}",
            remedy_for(code),
            {metric: 0},
        )
    if state == "DISCONNECTED":
        return Check(
            "key-store", PROBLEM, f"custom key store {key_store_id} is DISCONNECTED",
            DISCONNECTED_REMEDY.replace("<id>", key_store_id), {metric: 0},
        )  # fmt: skip
    return Check(
        "key-store", PROBLEM, f"custom key store {key_store_id} is {state}",
        "a connect or disconnect is in progress; if it lasts more than 20 minutes, disconnect and connect again",
        {metric: 0},
    )  # fmt: skip


# Phase 1 (no key store yet) deploys an uninitialized cluster on purpose: until the operator has initialized
# and activated it, these states are the expected ones, not an incident (docs/use-case-2.md, step 2).
PHASE_1_EXPECTED_STATES = frozenset({"UNINITIALIZED", "INITIALIZE_IN_PROGRESS", "INITIALIZED"})


def check_cluster(cloudhsm: Any, cluster_id: str, min_hsms: int, *, phase_1: bool = False) -> Check:
    """The cluster's state and ACTIVE HSMs per zone; in phase 1 the pre-activation states are expected."""
    if not cluster_id:
        return Check("cluster", SKIPPED, f"{names.ENV_CLUSTER_ID} is empty")
    clusters = cloudhsm.describe_clusters(Filters={"clusterIds": [cluster_id]}).get("Clusters", [])
    if not clusters:
        return Check(
            "cluster", PROBLEM, f"CloudHSM cluster {cluster_id} not found",
            remedy_for("CLUSTER_NOT_FOUND"), {names.METRIC_ACTIVE_HSMS: 0, names.METRIC_MIN_HSMS_PER_AZ: 0},
        )  # fmt: skip
    cluster = clusters[0]
    hsms = [h for h in cluster.get("Hsms", []) if h.get("State") != "DELETED"]
    active = Counter(h["AvailabilityZone"] for h in hsms if h.get("State") == "ACTIVE")
    # The cluster's subnet mapping names every zone it spans: a zone whose HSMs are all gone
    # must count as 0, not vanish from the minimum.
    zones = {h["AvailabilityZone"] for h in hsms} | set(cluster.get("SubnetMapping", {}))
    total = sum(active.values())
    min_per_zone = min((active[z] for z in zones), default=0)
    values = {names.METRIC_ACTIVE_HSMS: total, names.METRIC_MIN_HSMS_PER_AZ: min_per_zone}
    per_zone = ", ".join(f"{z}: {active[z]}" for z in sorted(zones)) or "no HSMs"
    state = cluster.get("State", "UNKNOWN")
    problems = []
    if state not in ("ACTIVE", "UPDATE_IN_PROGRESS"):
        problems.append(f"cluster is {state} ({cluster.get('StateMessage') or 'no message'})")
    if total < min_hsms:
        problems.append(f"{total} ACTIVE HSMs, fewer than the {min_hsms} required")
    needed_zones = min(2, min_hsms)
    if len(+active) < needed_zones:
        problems.append(f"ACTIVE HSMs in {len(+active)} zone(s); keys in a key store need HSMs in {needed_zones}")
    detail = f"cluster {cluster_id} is {state}; ACTIVE HSMs per zone: {per_zone}"
    if phase_1 and state in PHASE_1_EXPECTED_STATES and total >= min_hsms:
        # One ACTIVE HSM waiting for the operator's initialization: expected, reported, no alarm.
        return Check("cluster", OK, f"{detail} (phase 1: awaiting initialization and activation)", metrics=values)
    if not problems:
        return Check("cluster", OK, detail, metrics=values)
    remedy = (
        "replace failed HSMs (aws cloudhsmv2 delete-hsm, then redeploy so the stack adds them back in the emptiest "
        "zone, or aws cloudhsmv2 create-hsm --availability-zone <zone>); a DEGRADED cluster needs AWS Support or a "
        "restore from backup (docs/use-case-2.md)"
    )
    if state == "INITIALIZED":
        remedy = "activate the cluster and create kmsuser (python -m usecases.cloudhsm_kms init prints the commands)"
    elif state in ("UNINITIALIZED", "INITIALIZE_IN_PROGRESS"):
        remedy = "initialize the cluster: python -m usecases.cloudhsm_kms init"
    return Check("cluster", PROBLEM, f"{detail}: " + "; ".join(problems), remedy, values)


def check_key(kms: Any, key_arn: str, key_store_id: str) -> Check:
    if not key_arn:
        return Check("kms-key", SKIPPED, f"{names.ENV_EXPECTED_KMS_KEY_ARN} is empty (no key yet)")
    metric = names.METRIC_KEY_USABLE
    try:
        meta = kms.describe_key(KeyId=key_arn)["KeyMetadata"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "NotFoundException":
            raise
        return Check(
            "kms-key", PROBLEM, f"KMS key {key_arn} not found", "check KmsKeyArn in the stack outputs", {metric: 0}
        )
    problems = []
    if meta.get("KeyState") != "Enabled":
        problems.append(f"key state is {meta.get('KeyState')}")
    if meta.get("Origin") != "AWS_CLOUDHSM":
        problems.append(f"origin is {meta.get('Origin')}, not AWS_CLOUDHSM: the key material is not in the HSMs")
    if key_store_id and meta.get("CustomKeyStoreId") != key_store_id:
        problems.append(f"key is in key store {meta.get('CustomKeyStoreId')}, not {key_store_id}")
    if not problems:
        return Check("kms-key", OK, f"KMS key {meta['KeyId']} is Enabled in the HSM key store", metrics={metric: 1})
    state = meta.get("KeyState")
    if state == "Unavailable":
        remedy = "the key store is disconnected: connect it (see the key-store check)"
    elif state == "PendingDeletion":
        remedy = "cancel the deletion if it was a mistake: aws kms cancel-key-deletion, then aws kms enable-key"
    elif state == "Disabled":
        remedy = "enable the key if it was disabled by mistake: aws kms enable-key"
    else:
        remedy = "point the stack at the HSM-backed key (config and stack outputs)"
    return Check("kms-key", PROBLEM, f"KMS key {key_arn}: " + "; ".join(problems), remedy, {metric: 0})


def check_key_policy(kms: Any, key_arn: str, expected: str) -> Check:
    """The live key policy against the template's, as canonical JSON (kommunmoln.tier_b.key_policy)."""
    if not key_arn or not expected:
        return Check("key-policy", SKIPPED, f"{names.ENV_EXPECTED_KEY_POLICY} or the key ARN is empty (no key yet)")
    metric = names.METRIC_KEY_POLICY_AS_TEMPLATE
    try:
        live = kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "NotFoundException":
            raise
        return Check("key-policy", PROBLEM, f"KMS key {key_arn} not found", "see the kms-key check", {metric: 0})
    try:
        found = key_policy.differences(expected, live)
    except key_policy.PolicyNotJson as err:
        found = [str(err)]
    if not found:
        return Check("key-policy", OK, f"the key policy of {key_arn} is the template's", metrics={metric: 1})
    return Check(
        "key-policy",
        PROBLEM,
        f"the key policy of {key_arn} differs from the template's: " + "; ".join(found),
        "find who called PutKeyPolicy in CloudTrail (the KeyChangeAlarm fired too) and treat an unsanctioned "
        f"change as an incident; restore the template's policy (the monitor's {names.ENV_EXPECTED_KEY_POLICY}) "
        "as the break-glass role with MFA: aws kms put-key-policy --policy-name default --policy file://... "
        "- docs/use-case-2.md#key-state",
        {metric: 0},
    )


def check_health(*, kms: Any, cloudhsm: Any, settings: MonitorSettings) -> HealthReport:
    if settings.key_store_type == "EXTERNAL_KEY_STORE":
        from lambdas.keystore_monitor import xks  # tier C: no cluster to check

        return xks.check_health(kms=kms, settings=settings)
    return HealthReport(
        (
            check_key_store(kms, settings.key_store_id),
            check_cluster(cloudhsm, settings.cluster_id, settings.min_hsms, phase_1=not settings.key_store_id),
            check_key(kms, settings.key_arn, settings.key_store_id),
            check_key_policy(kms, settings.key_arn, settings.expected_key_policy),
        )
    )
