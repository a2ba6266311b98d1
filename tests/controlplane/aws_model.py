"""A behaviour model of the CloudHSM and KMS custom-key-store control planes, for offline tests.

Real boto3 clients are pointed at the model through botocore's `before-call` event: botocore
still serializes (so validates) every request against the service model, and the model's
responses are validated against the operation's output shape, so shapes stay AWS's. What the
model adds over Stubber is AWS's *behaviour*: states that advance with a simulated clock, and the
refusals AWS documents for each state. Every rule names the page it comes from:

[API-HSM]   CloudHSM API reference, CreateHsm / DeleteHsm / DeleteCluster / InitializeCluster
            https://docs.aws.amazon.com/cloudhsm/latest/APIReference/API_CreateHsm.html
[HSM-2ND]   CloudHSM refuses a second HSM in a cluster that is not yet activated ("already contains
            an HSM but has not yet been fully activated"); add HSMs after activation
            (/work/shared/REFERENCE.md; CloudHSM User Guide, "Getting started":
            https://docs.aws.amazon.com/cloudhsm/latest/userguide/getting-started.html)
[HSM-TIME]  Creating an HSM can take up to 20 minutes (CreateHsm documentation).
[KMS-CFG]   CloudHsmClusterInvalidConfigurationException: CreateCustomKeyStore, UpdateCustomKeyStore
            and CreateKey need at least two ACTIVE HSMs, each in a different Availability Zone;
            ConnectCustomKeyStore needs at least one
            https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateCustomKeyStore.html
[KMS-ACT]   CloudHsmClusterNotActiveException: the cluster must be initialized and activated.
[KMS-STATE] CustomKeyStoreInvalidStateException: Connect refused in DISCONNECTING or FAILED; CreateKey
            only when CONNECTED; Disconnect refused in DISCONNECTING or DISCONNECTED; Update and Delete
            only when DISCONNECTED
            https://docs.aws.amazon.com/kms/latest/APIReference/API_ConnectCustomKeyStore.html
[KMS-CONN]  Connecting "can take an extended amount of time to complete; up to 20 minutes"; the call
            returns at once; a failure shows as ConnectionState FAILED with a ConnectionErrorCode
            (CustomKeyStoresListEntry; "Troubleshooting a custom key store",
            https://docs.aws.amazon.com/kms/latest/developerguide/fix-keystore.html)
[KMS-DUP]   CreateCustomKeyStore with the same properties as an existing DISCONNECTED store returns
            that store's id ("Create an AWS CloudHSM key store",
            https://docs.aws.amazon.com/kms/latest/developerguide/create-keystore.html)
[KMS-INUSE] CloudHsmClusterInUseException: a cluster backs at most one key store.
[KMS-CMKS]  CustomKeyStoreHasCMKsException: DeleteCustomKeyStore needs every key deleted first.

Operator steps that have no API (activating the cluster, creating kmsuser in CloudHSM CLI) are
model methods (`activate`, `create_kmsuser`); time passes only through `advance` or the
`sleep` the model hands to the code under test.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from botocore.model import OperationModel
from botocore.validate import ParamValidator

ACCOUNT = "111122223333"
HSM_CREATE_SECONDS = 15 * 60  # [HSM-TIME]
HSM_DELETE_SECONDS = 3 * 60
CLUSTER_CREATE_SECONDS = 5 * 60
INITIALIZE_SECONDS = 3 * 60
CONNECT_SECONDS = 10 * 60  # [KMS-CONN]: up to 20 minutes
DISCONNECT_SECONDS = 60
CLUSTER_DELETE_SECONDS = 5 * 60
_ID = itertools.count(1)
_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Refused(Exception):
    """An AWS error response: code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def _suffix(width: int = 11) -> str:
    # CloudHSM ids use base32-like letters (the provisioner's id patterns accept [2-7a-zA-Z]).
    n, letters = next(_ID), "abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(width):
        out, n = letters[n % 26] + out, n // 26
    return out


@dataclass
class Hsm:
    hsm_id: str
    zone: str
    state: str
    ready_at: float


@dataclass
class Cluster:
    cluster_id: str
    zones: dict[str, str]  # zone -> subnet
    state: str
    ready_at: float
    hsms: list[Hsm] = field(default_factory=list)
    trust_anchor: str = ""
    kmsuser_password: str | None = None
    security_group: str = "sg-0123456789abcdef0"


@dataclass
class KeyStore:
    store_id: str
    name: str
    cluster_id: str
    trust_anchor: str
    password: str
    state: str = "DISCONNECTED"
    ready_at: float = 0.0
    error_code: str = ""


@dataclass
class Key:
    key_id: str
    store_id: str
    state: str = "Enabled"
    description: str = ""
    policy: str = ""


class ControlPlane:
    """CloudHSM + KMS custom key store control planes as one state machine with a clock."""

    def __init__(self, *, region: str = "eu-north-1") -> None:
        self.region = region
        self.now = 0.0
        self.clusters: dict[str, Cluster] = {}
        self.stores: dict[str, KeyStore] = {}
        self.keys: dict[str, Key] = {}
        self.aliases: dict[str, str] = {}
        self.secrets: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.published: list[dict[str, Any]] = []
        self.billed_hsm_seconds = 0.0

    # --- time ---------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Let time pass: HSMs bill, transitions finish."""
        self.billed_hsm_seconds += seconds * sum(
            1 for c in self.clusters.values() for h in c.hsms if h.state != "DELETED"
        )
        self.now += seconds
        self._settle()

    def sleep(self, seconds: float) -> None:
        """The `sleep` handed to the code under test: waiting is time passing."""
        self.advance(seconds)

    def _settle(self) -> None:
        for cluster in self.clusters.values():
            for hsm in cluster.hsms:
                if self.now >= hsm.ready_at:
                    hsm.state = {"CREATE_IN_PROGRESS": "ACTIVE", "DELETE_IN_PROGRESS": "DELETED"}.get(
                        hsm.state, hsm.state
                    )
            if self.now >= cluster.ready_at:
                cluster.state = {
                    "CREATE_IN_PROGRESS": "UNINITIALIZED",
                    "INITIALIZE_IN_PROGRESS": "INITIALIZED",
                    "DELETE_IN_PROGRESS": "DELETED",
                }.get(cluster.state, cluster.state)
        for store in self.stores.values():
            if self.now < store.ready_at:
                continue
            if store.state == "DISCONNECTING":
                store.state = "DISCONNECTED"
            elif store.state == "CONNECTING":
                code = self._connect_error(store)
                store.state, store.error_code = ("FAILED", code) if code else ("CONNECTED", "")
        for key in self.keys.values():
            store = self.stores.get(key.store_id)
            if store is not None and key.state in ("Enabled", "Unavailable"):
                key.state = "Enabled" if store.state == "CONNECTED" else "Unavailable"

    # --- operator steps without an API ---------------------------------------------------
    def add_cluster(self, zones: dict[str, str], *, state: str = "UNINITIALIZED") -> str:
        """A cluster as AWS::CloudHSM::Cluster leaves it (CloudFormation waits for UNINITIALIZED)."""
        cluster_id = f"cluster-{_suffix()}"
        self.clusters[cluster_id] = Cluster(cluster_id, dict(zones), state, self.now)
        return cluster_id

    def activate(self, cluster_id: str, *, kmsuser_password: str | None = None) -> None:
        """The CloudHSM CLI `cluster activate` (and optionally `user create kmsuser`)."""
        cluster = self.clusters[cluster_id]
        if cluster.state != "INITIALIZED":
            raise AssertionError(f"cannot activate a cluster that is {cluster.state}")
        cluster.state = "ACTIVE"
        if kmsuser_password is not None:
            cluster.kmsuser_password = kmsuser_password

    def create_kmsuser(self, cluster_id: str, password: str) -> None:
        self.clusters[cluster_id].kmsuser_password = password

    def live_hsms(self, cluster_id: str) -> list[Hsm]:
        return [h for h in self.clusters[cluster_id].hsms if h.state not in ("DELETE_IN_PROGRESS", "DELETED")]

    def billed_hsms(self) -> list[str]:
        """HSMs that still cost money (every state but DELETED)."""
        return [h.hsm_id for c in self.clusters.values() for h in c.hsms if h.state != "DELETED"]

    # --- wiring --------------------------------------------------------------------------
    def attach(self, client: Any) -> Any:
        """Answer every call of this boto3 client from the model (requests still validated by botocore)."""
        client.meta.events.register("before-call", self._before_call)
        return client

    def _before_call(self, model: OperationModel, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        body = params.get("body") or b"{}"
        if isinstance(body, dict):  # the query protocol (SNS): the form fields, not yet encoded
            request: dict[str, Any] = dict(body)
        else:
            request = json.loads(body if isinstance(body, str) else body.decode() or "{}")
        service = model.service_model.service_name
        self.calls.append((service, model.name))
        self._settle()
        handler = getattr(self, f"_{service.replace('-', '_')}_{model.name}", None)
        if handler is None:
            raise AssertionError(f"the behaviour model has no rule for {service}:{model.name}")
        try:
            response = handler(request)
        except Refused as err:
            return _Http(400), {"Error": {"Code": err.code, "Message": err.message}, "ResponseMetadata": {}}
        if model.output_shape is not None:
            report = ParamValidator().validate(response, model.output_shape)
            if report.has_errors():
                raise AssertionError(
                    f"model response for {model.name} breaks the output shape: {report.generate_report()}"
                )
        return _Http(200), {**response, "ResponseMetadata": {"HTTPStatusCode": 200}}

    # --- CloudHSM ------------------------------------------------------------------------
    def _cluster(self, cluster_id: str) -> Cluster:
        cluster = self.clusters.get(cluster_id)
        if cluster is None or cluster.state == "DELETED":
            raise Refused("CloudHsmResourceNotFoundException", f"cluster {cluster_id} not found")
        return cluster

    def _describe(self, cluster: Cluster) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ClusterId": cluster.cluster_id,
            "State": cluster.state,
            "HsmType": "hsm2m.medium",
            "Mode": "FIPS",
            "SecurityGroup": cluster.security_group,
            "SubnetMapping": dict(cluster.zones),
            "CreateTimestamp": _EPOCH,
            "Hsms": [
                {
                    "HsmId": h.hsm_id,
                    "AvailabilityZone": h.zone,
                    "ClusterId": cluster.cluster_id,
                    "SubnetId": cluster.zones[h.zone],
                    "State": h.state,
                }
                for h in cluster.hsms
            ],
        }
        if cluster.state == "UNINITIALIZED" and any(h.state == "ACTIVE" for h in cluster.hsms):
            out["Certificates"] = {
                "ClusterCsr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
            }
        return out

    def _cloudhsmv2_DescribeClusters(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted = set(request.get("Filters", {}).get("clusterIds", []))
        found = [self._describe(c) for c in self.clusters.values() if not wanted or c.cluster_id in wanted]
        return {"Clusters": found}

    def _cloudhsmv2_CreateHsm(self, request: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(request["ClusterId"])
        zone = request["AvailabilityZone"]
        if zone not in cluster.zones:
            raise Refused("CloudHsmInvalidRequestException", f"the cluster has no subnet in {zone}")  # [API-HSM]
        if cluster.state not in ("UNINITIALIZED", "ACTIVE", "DEGRADED"):
            raise Refused("CloudHsmInvalidRequestException", f"cannot add an HSM to a cluster in state {cluster.state}")
        if cluster.state != "ACTIVE" and self.live_hsms(cluster.cluster_id):  # [HSM-2ND]
            raise Refused(
                "CloudHsmInvalidRequestException",
                f"The cluster {cluster.cluster_id} already contains an HSM but has not yet been fully activated",
            )
        hsm = Hsm(f"hsm-{_suffix()}", zone, "CREATE_IN_PROGRESS", self.now + HSM_CREATE_SECONDS)
        cluster.hsms.append(hsm)
        return {"Hsm": {"HsmId": hsm.hsm_id, "AvailabilityZone": zone, "ClusterId": cluster.cluster_id,
                        "State": hsm.state, "SubnetId": cluster.zones[zone]}}  # fmt: skip

    def _cloudhsmv2_DeleteHsm(self, request: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(request["ClusterId"])
        for hsm in cluster.hsms:
            if hsm.hsm_id == request.get("HsmId") and hsm.state != "DELETED":
                if hsm.state != "DELETE_IN_PROGRESS":
                    hsm.state, hsm.ready_at = "DELETE_IN_PROGRESS", self.now + HSM_DELETE_SECONDS
                return {"HsmId": hsm.hsm_id}
        raise Refused("CloudHsmResourceNotFoundException", f"HSM {request.get('HsmId')} not found")

    def _cloudhsmv2_DeleteCluster(self, request: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(request["ClusterId"])
        if any(h.state != "DELETED" for h in cluster.hsms):  # [API-HSM] DeleteCluster: delete the HSMs first
            raise Refused("CloudHsmInvalidRequestException", "the cluster still contains HSMs; delete them first")
        cluster.state, cluster.ready_at = "DELETE_IN_PROGRESS", self.now + CLUSTER_DELETE_SECONDS
        return {"Cluster": self._describe(cluster)}

    def _cloudhsmv2_InitializeCluster(self, request: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(request["ClusterId"])
        if cluster.state != "UNINITIALIZED" or not any(h.state == "ACTIVE" for h in cluster.hsms):
            raise Refused("CloudHsmInvalidRequestException", f"cluster is {cluster.state}; it needs an ACTIVE HSM")
        cluster.trust_anchor = request["TrustAnchor"]
        cluster.state, cluster.ready_at = "INITIALIZE_IN_PROGRESS", self.now + INITIALIZE_SECONDS
        return {"State": cluster.state, "StateMessage": "initializing"}

    # --- KMS custom key stores -------------------------------------------------------------
    def _active_zones(self, cluster: Cluster) -> set[str]:
        return {h.zone for h in cluster.hsms if h.state == "ACTIVE"}

    def _require_two_zones(self, cluster_id: str) -> Cluster:
        cluster = self.clusters.get(cluster_id)
        if cluster is None or cluster.state == "DELETED":
            raise Refused("CloudHsmClusterNotFoundException", f"cluster {cluster_id} not found")
        if cluster.state != "ACTIVE":  # [KMS-ACT]
            raise Refused("CloudHsmClusterNotActiveException", f"cluster {cluster_id} is {cluster.state}")
        if len(self._active_zones(cluster)) < 2:  # [KMS-CFG]
            raise Refused(
                "CloudHsmClusterInvalidConfigurationException",
                "the cluster must have at least two active HSMs, each in a different Availability Zone",
            )
        return cluster

    def _entry(self, store: KeyStore) -> dict[str, Any]:
        out = {
            "CustomKeyStoreId": store.store_id,
            "CustomKeyStoreName": store.name,
            "CloudHsmClusterId": store.cluster_id,
            "TrustAnchorCertificate": store.trust_anchor,
            "ConnectionState": store.state,
            "CustomKeyStoreType": "AWS_CLOUDHSM",
            "CreationDate": _EPOCH,
        }
        if store.state == "FAILED":
            out["ConnectionErrorCode"] = store.error_code
        return out

    def _store(self, store_id: str) -> KeyStore:
        store = self.stores.get(store_id)
        if store is None:
            raise Refused("CustomKeyStoreNotFoundException", f"custom key store {store_id} not found")
        return store

    def _connect_error(self, store: KeyStore) -> str:
        """[KMS-CONN] the ConnectionErrorCode a connect ends with, or "" when it connects."""
        cluster = self.clusters.get(store.cluster_id)
        if cluster is None or cluster.state == "DELETED":
            return "CLUSTER_NOT_FOUND"
        if not self._active_zones(cluster):
            return "INSUFFICIENT_CLOUDHSM_HSMS"
        if cluster.kmsuser_password is None:
            return "USER_NOT_FOUND"
        if cluster.kmsuser_password != store.password:
            return "INVALID_CREDENTIALS"
        return ""

    def _kms_DescribeCustomKeyStores(self, request: dict[str, Any]) -> dict[str, Any]:
        if "CustomKeyStoreId" in request:
            return {"CustomKeyStores": [self._entry(self._store(request["CustomKeyStoreId"]))], "Truncated": False}
        if "CustomKeyStoreName" in request:
            named = [s for s in self.stores.values() if s.name == request["CustomKeyStoreName"]]
            if not named:
                raise Refused("CustomKeyStoreNotFoundException", "no custom key store of that name")
            return {"CustomKeyStores": [self._entry(s) for s in named], "Truncated": False}
        return {"CustomKeyStores": [self._entry(s) for s in self.stores.values()], "Truncated": False}

    def _kms_CreateCustomKeyStore(self, request: dict[str, Any]) -> dict[str, Any]:
        name, cluster_id = request["CustomKeyStoreName"], request["CloudHsmClusterId"]
        for store in self.stores.values():
            if store.name == name:
                same = (store.cluster_id, store.trust_anchor) == (cluster_id, request.get("TrustAnchorCertificate"))
                if same and store.state == "DISCONNECTED":  # [KMS-DUP]
                    return {"CustomKeyStoreId": store.store_id}
                raise Refused("CustomKeyStoreNameInUseException", f"name {name} is in use")
        cluster = self._require_two_zones(cluster_id)
        if any(s.cluster_id == cluster_id for s in self.stores.values()):  # [KMS-INUSE]
            raise Refused("CloudHsmClusterInUseException", f"cluster {cluster_id} backs another key store")
        if request.get("TrustAnchorCertificate") != cluster.trust_anchor:
            raise Refused("IncorrectTrustAnchorException", "the trust anchor does not match the cluster's")
        store = KeyStore(f"cks-{_suffix(17)}", name, cluster_id, cluster.trust_anchor, request["KeyStorePassword"])
        self.stores[store.store_id] = store
        return {"CustomKeyStoreId": store.store_id}

    def _kms_ConnectCustomKeyStore(self, request: dict[str, Any]) -> dict[str, Any]:
        store = self._store(request["CustomKeyStoreId"])
        if store.state in ("DISCONNECTING", "FAILED"):  # [KMS-STATE]
            raise Refused("CustomKeyStoreInvalidStateException", f"the key store is {store.state}")
        cluster = self.clusters.get(store.cluster_id)
        if cluster is not None and cluster.state not in ("ACTIVE", "DELETED"):  # [KMS-ACT]
            raise Refused("CloudHsmClusterNotActiveException", f"cluster {store.cluster_id} is {cluster.state}")
        if store.state == "DISCONNECTED":
            store.state, store.ready_at = "CONNECTING", self.now + CONNECT_SECONDS
        return {}

    def _kms_DisconnectCustomKeyStore(self, request: dict[str, Any]) -> dict[str, Any]:
        store = self._store(request["CustomKeyStoreId"])
        if store.state in ("DISCONNECTING", "DISCONNECTED"):  # [KMS-STATE]
            raise Refused("CustomKeyStoreInvalidStateException", f"the key store is {store.state}")
        store.state, store.ready_at, store.error_code = "DISCONNECTING", self.now + DISCONNECT_SECONDS, ""
        return {}

    def _kms_UpdateCustomKeyStore(self, request: dict[str, Any]) -> dict[str, Any]:
        store = self._store(request["CustomKeyStoreId"])
        only_name = set(request) <= {"CustomKeyStoreId", "NewCustomKeyStoreName"}
        if store.state != "DISCONNECTED" and not (only_name and store.state == "CONNECTED"):  # [KMS-STATE]
            raise Refused("CustomKeyStoreInvalidStateException", f"the key store is {store.state}")
        if "CloudHsmClusterId" in request:
            self._require_two_zones(request["CloudHsmClusterId"])
            store.cluster_id = request["CloudHsmClusterId"]
        if "KeyStorePassword" in request:
            store.password = request["KeyStorePassword"]
        store.name = request.get("NewCustomKeyStoreName", store.name)
        return {}

    def _kms_DeleteCustomKeyStore(self, request: dict[str, Any]) -> dict[str, Any]:
        store = self._store(request["CustomKeyStoreId"])
        if store.state != "DISCONNECTED":  # [KMS-STATE]
            raise Refused("CustomKeyStoreInvalidStateException", f"the key store is {store.state}")
        if any(k.store_id == store.store_id for k in self.keys.values()):  # [KMS-CMKS]
            raise Refused("CustomKeyStoreHasCMKsException", "the key store still holds KMS keys")
        del self.stores[store.store_id]
        return {}

    # --- KMS keys ------------------------------------------------------------------------------
    def _arn(self, key_id: str) -> str:
        return f"arn:aws:kms:{self.region}:{ACCOUNT}:key/{key_id}"

    def _meta(self, key: Key) -> dict[str, Any]:
        return {"KeyId": key.key_id, "Arn": self._arn(key.key_id), "KeyState": key.state, "Origin": "AWS_CLOUDHSM",
                "CustomKeyStoreId": key.store_id, "CloudHsmClusterId": self.stores[key.store_id].cluster_id
                if key.store_id in self.stores else "", "Description": key.description,
                "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT", "CreationDate": _EPOCH}  # fmt: skip

    def _key(self, key_id: str) -> Key:
        key_id = self.aliases.get(key_id, key_id).rsplit("/", 1)[-1]
        if key_id not in self.keys:
            raise Refused("NotFoundException", f"key {key_id} not found")
        return self.keys[key_id]

    def _kms_CreateKey(self, request: dict[str, Any]) -> dict[str, Any]:
        store = self._store(request["CustomKeyStoreId"])
        if store.state != "CONNECTED":  # [KMS-STATE]
            raise Refused("CustomKeyStoreInvalidStateException", f"the key store is {store.state}")
        self._require_two_zones(store.cluster_id)  # [KMS-CFG]
        key = Key(f"{next(_ID):08d}-0000-4000-8000-000000000000", store.store_id,
                  description=request.get("Description", ""), policy=request.get("Policy", ""))  # fmt: skip
        self.keys[key.key_id] = key
        return {"KeyMetadata": self._meta(key)}

    def _kms_DescribeKey(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"KeyMetadata": self._meta(self._key(request["KeyId"]))}

    def _kms_ListKeys(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"Keys": [{"KeyId": k, "KeyArn": self._arn(k)} for k in self.keys], "Truncated": False}

    def _kms_ListAliases(self, request: dict[str, Any]) -> dict[str, Any]:
        key_id = request.get("KeyId")
        entries = [{"AliasName": a, "TargetKeyId": k} for a, k in self.aliases.items() if key_id in (None, k)]
        return {"Aliases": entries, "Truncated": False}

    def _kms_CreateAlias(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["AliasName"] in self.aliases:
            raise Refused("AlreadyExistsException", f"alias {request['AliasName']} exists")
        self.aliases[request["AliasName"]] = self._key(request["TargetKeyId"]).key_id
        return {}

    def _kms_UpdateAlias(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["AliasName"] not in self.aliases:
            raise Refused("NotFoundException", f"alias {request['AliasName']} not found")
        self.aliases[request["AliasName"]] = self._key(request["TargetKeyId"]).key_id
        return {}

    def _kms_DeleteAlias(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.aliases.pop(request["AliasName"], None) is None:
            raise Refused("NotFoundException", f"alias {request['AliasName']} not found")
        return {}

    def _kms_ScheduleKeyDeletion(self, request: dict[str, Any]) -> dict[str, Any]:
        key = self._key(request["KeyId"])
        key.state = "PendingDeletion"
        return {"KeyId": self._arn(key.key_id), "KeyState": key.state, "PendingWindowInDays": 30}

    def _kms_PutKeyPolicy(self, request: dict[str, Any]) -> dict[str, Any]:
        self._key(request["KeyId"]).policy = request["Policy"]
        return {}

    def _kms_GetKeyPolicy(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"Policy": self._key(request["KeyId"]).policy, "PolicyName": "default"}

    def _kms_ListGrants(self, request: dict[str, Any]) -> dict[str, Any]:
        self._key(request["KeyId"])  # the model's keys carry no grants (CreateGrant is never called)
        return {"Grants": [], "Truncated": False}

    def _kms_UpdateKeyDescription(self, request: dict[str, Any]) -> dict[str, Any]:
        self._key(request["KeyId"]).description = request["Description"]
        return {}

    # --- Secrets Manager (the kmsuser password) ---------------------------------------------
    def _secretsmanager_GetSecretValue(self, request: dict[str, Any]) -> dict[str, Any]:
        secret_id = request["SecretId"]
        if secret_id not in self.secrets:
            raise Refused("ResourceNotFoundException", f"secret {secret_id} not found")
        return {"ARN": secret_id, "Name": secret_id.rsplit(":", 1)[-1], "SecretString": self.secrets[secret_id]}


# --- SNS (the monitor's alarm) -------------------------------------------------------------------
def _sns_publish(self: ControlPlane, request: dict[str, Any]) -> dict[str, Any]:
    self.published.append(request)
    return {"MessageId": f"msg-{next(_ID)}"}


ControlPlane._sns_Publish = _sns_publish  # type: ignore[attr-defined]


class _Http:
    """The part of an HTTP response botocore reads after a before-call short circuit."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.content = b""
