"""Recorded CloudHSMv2 and KMS responses, shaped like the real APIs.

moto has no CreateHsm, InitializeCluster or custom key stores, so the offline demo and the
control-plane tests replay these through botocore's Stubber, which checks every request
and every response against the real AWS service models. Ids are fixed and fake.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

REGION = "eu-north-1"
ACCOUNT = "111122223333"
CLUSTER_ID = "cluster-demo2kommun7"
KEY_STORE_ID = "cks-0123456789abcdef0"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{KEY_ID}"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:kommunmoln-exempel-kmsuser-AbCdEf"
ZONES = (f"{REGION}a", f"{REGION}b")
CREATED = dt.datetime(2026, 1, 15, 9, 0, tzinfo=dt.UTC)


def hsm(
    hsm_id: str, zone: str, state: str = "ACTIVE", *, message: str = "", cluster_id: str = CLUSTER_ID
) -> dict[str, Any]:
    octet = 10 + sum(map(ord, hsm_id)) % 200
    entry = {
        "AvailabilityZone": zone,
        "ClusterId": cluster_id,
        "SubnetId": f"subnet-0{zone[-1]}{'0' * 15}",
        "EniId": f"eni-0{octet:03d}{'0' * 13}",
        "EniIp": f"10.42.{ZONES.index(zone) if zone in ZONES else 9}.{octet}",
        "HsmId": hsm_id,
        "HsmType": "hsm2m.medium",
        "State": state,
    }
    if message:
        entry["StateMessage"] = message
    return entry


def cluster(
    state: str,
    hsms: Sequence[dict[str, Any]] = (),
    *,
    csr: str | None = None,
    message: str = "",
    cluster_id: str = CLUSTER_ID,
) -> dict[str, Any]:
    """A DescribeClusters response holding one cluster."""
    entry: dict[str, Any] = {
        "ClusterId": cluster_id,
        "CreateTimestamp": CREATED,
        "HsmType": "hsm2m.medium",
        "Mode": "FIPS",
        "State": state,
        "Hsms": list(hsms),
        "SubnetMapping": {zone: f"subnet-0{zone[-1]}{'0' * 15}" for zone in ZONES},
        "VpcId": "vpc-0aaaabbbbccccdddd",
        "SecurityGroup": "sg-0aaaabbbbccccdddd",
        "BackupPolicy": "DEFAULT",
    }
    if message:
        entry["StateMessage"] = message
    if csr:
        entry["Certificates"] = {"ClusterCsr": csr}
    return {"Clusters": [entry]}


def key_store(
    state: str, *, code: str | None = None, store_id: str = KEY_STORE_ID, name: str = "kommunmoln-exempel"
) -> dict[str, Any]:
    """A DescribeCustomKeyStores response holding one CloudHSM key store."""
    entry: dict[str, Any] = {
        "CustomKeyStoreId": store_id,
        "CustomKeyStoreName": name,
        "CloudHsmClusterId": CLUSTER_ID,
        "TrustAnchorCertificate": "-----BEGIN CERTIFICATE-----\n(demo)\n-----END CERTIFICATE-----\n",
        "ConnectionState": state,
        "CreationDate": CREATED,
        "CustomKeyStoreType": "AWS_CLOUDHSM",
    }
    if code:
        entry["ConnectionErrorCode"] = code
    return {"CustomKeyStores": [entry]}


def key_metadata(
    state: str = "Enabled", *, origin: str = "AWS_CLOUDHSM", key_id: str = KEY_ID, store_id: str = KEY_STORE_ID
) -> dict[str, Any]:
    """A DescribeKey (or CreateKey) response."""
    meta: dict[str, Any] = {
        "AWSAccountId": ACCOUNT,
        "KeyId": key_id,
        "Arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}",
        "CreationDate": CREATED,
        "Enabled": state == "Enabled",
        "Description": "kommunmoln tier B: SSE-KMS key in the municipality's CloudHSM cluster",
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": state,
        "Origin": origin,
        "KeyManager": "CUSTOMER",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
    }
    if origin == "AWS_CLOUDHSM":
        meta["CustomKeyStoreId"] = store_id
        meta["CloudHsmClusterId"] = CLUSTER_ID
    return {"KeyMetadata": meta}
