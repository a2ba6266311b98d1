"""Tier C demo (`make demo`): the XKS proxy on loopback against SoftHSM2, then the KMS control plane.

1. A SoftHSM2 token with the four example keys; the proxy started as
   `python -m usecases.external_key_store serve`; requests shaped and SigV4-signed as KMS sends them.
2. GenerateDataKey-style encrypt of a random data key (with AAD and CDIV), decrypt, refusals.
3. The audit log lines; the kill switch (one command) and the next request refused.
4. The stack's custom resources (lambdas/xks_provisioner, the one KMS control-plane implementation):
   CreateCustomKeyStore (EXTERNAL_KEY_STORE) -> ConnectCustomKeyStore -> CONNECTED -> CreateKey
   (Origin=EXTERNAL_KEY_STORE) and its alias, against recorded responses checked by botocore's Stubber
   (moto has no custom key stores), including the fail-fast path on an XKS ConnectionErrorCode.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from pathlib import Path
from unittest import mock

from kommunmoln.tier_c import local

KEY_ARN = "arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
STORE_ID = "cks-1234567890abcdef0"


def _meta(operation: str, **extra) -> dict:
    return {"awsPrincipalArn": "arn:aws:iam::111122223333:role/kommun-handlaggare", "kmsKeyArn": KEY_ARN,
            "kmsOperation": operation, "kmsRequestId": f"demo-{operation}", "kmsViaService": "s3", **extra}  # fmt: skip


def proxy_flow(root: Path) -> None:
    setup = local.make_setup(root)
    print(f"SoftHSM2 token and keys ready; config {setup.config_path.name} (plain HTTP on loopback: test flag)")
    with local.running_proxy(setup):
        status, health = local.call(
            setup, "/health", {"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "demo-health"}}
        )
        print(f"GetHealthStatus -> {status} {health['ekmFleetDetails'][0]}")
        status, metadata = local.call(
            setup, "/keys/sekretess-s3-data/metadata", {"requestMetadata": _meta("CreateKey")}
        )
        print(f"GetKeyMetadata (as for CreateKey) -> {status} {metadata}")
        data_key = os.urandom(32)
        aad = b"kms-encryption-context-binding"
        status, sealed = local.call(setup, "/keys/sekretess-s3-data/encrypt", {
            "requestMetadata": _meta("GenerateDataKey"), "plaintext": base64.b64encode(data_key).decode(),
            "encryptionAlgorithm": "AES_GCM", "additionalAuthenticatedData": base64.b64encode(aad).decode(),
            "ciphertextDataIntegrityValueAlgorithm": "SHA_256"})  # fmt: skip
        print(
            f"Encrypt (GenerateDataKey's 32-byte data key) -> {status}, IV {sealed['initializationVector']}, CDIV {sealed['ciphertextDataIntegrityValue'][:16]}..."
        )
        body = {"requestMetadata": _meta("Decrypt"), "encryptionAlgorithm": "AES_GCM",
                "additionalAuthenticatedData": base64.b64encode(aad).decode(),
                **{k: sealed[k] for k in ("ciphertext", "initializationVector", "authenticationTag")}}  # fmt: skip
        status, opened = local.call(setup, "/keys/sekretess-s3-data/decrypt", body, credential=1)
        ok = base64.b64decode(opened["plaintext"]) == data_key
        print(f"Decrypt (signed with the second credential) -> {status}, data key recovered: {ok}")
        if not ok:
            raise RuntimeError("the data key did not round-trip")
        status, denied = local.call(
            setup, "/keys/sekretess-s3-data/decrypt", {**body, "requestMetadata": _meta("Decrypt", kmsViaService="ebs")}
        )
        print(f"Decrypt via EBS (not allowed for this key) -> {status} {denied['errorName']}")
        status, denied = local.call(setup, "/keys/arkiv-decrypt-only/encrypt", {**body, "plaintext": "AA=="})
        print(f"Encrypt with the decrypt-only key -> {status} {denied['errorName']}")
        killed = setup.run("kill", "--all")
        print(f"$ python -m usecases.external_key_store kill --all --config ...\n  {killed.stdout.strip()}")
        status, refused = local.call(setup, "/keys/sekretess-s3-data/decrypt", body)
        print(f"Next Decrypt -> {status} {refused['errorName']}")
        if status != 400:
            raise RuntimeError("the kill switch did not refuse the next request")
        setup.run("revive", "--all")
    print("Audit log (one JSON line per request, hash-chained; never plaintext):")
    for line in (root / "audit.jsonl").read_text().splitlines()[-6:]:
        record = json.loads(line)
        meta = record.get("requestMetadata", {})
        print(f"  {record.get('operation', record.get('event')):15} {record.get('status', ''):>3} "
              f"{record.get('errorName', 'ok'):24} {meta.get('kmsOperation', ''):16} {meta.get('kmsViaService', '')}")  # fmt: skip
    print(f"  {setup.run('verify-audit').stdout.strip()}")


def control_plane() -> None:
    """The stack's own KMS control plane (`lambdas/xks_provisioner`, the custom resources' handler) driven with
    CloudFormation's events against recorded responses; Stubber checks every request against botocore's model."""
    import boto3
    from botocore.stub import Stubber

    from kommunmoln import names
    from lambdas.xks_provisioner import logic

    def client(service: str):
        return boto3.client(service, region_name="eu-north-1", aws_access_key_id="demo", aws_secret_access_key="demo")  # noqa: S106

    clients = logic.XksClients(kms=client("kms"), secrets=client("secretsmanager"), ec2=client("ec2"))
    kms, secrets = Stubber(clients.kms), Stubber(clients.secrets)
    secret_arn = "arn:aws:secretsmanager:eu-north-1:111122223333:secret:kommunmoln/xks-proxy-AbCdEf"  # noqa: S105 - an ARN
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "Admin", "Effect": "Allow",
                         "Principal": {"AWS": "arn:aws:iam::111122223333:role/kommun-break-glass"},
                         "Action": ["kms:DescribeKey"], "Resource": "*"}]})  # fmt: skip
    creds = {"AccessKeyId": "XKSCURRENTAAAAAAAAAAAAAA", "RawSecretAccessKey": "A" * 43}
    store_props = {"KeyStoreName": "kommunmoln-tier-c", "Connectivity": "PUBLIC_ENDPOINT",
                   "UriEndpoint": "https://xks.kommun.example", "UriPath": "/kommunmoln-xks/kms/xks/v1",
                   "VpcEndpointServiceName": "", "CredentialSecretArn": secret_arn, "WorkshopMode": "false"}  # fmt: skip
    # DescribeCustomKeyStores by a name that does not exist throws CustomKeyStoreNotFoundException (API
    # Reference, DescribeCustomKeyStores): nothing to adopt. The credential comes from Secrets Manager.
    kms.add_client_error("describe_custom_key_stores", "CustomKeyStoreNotFoundException",
                         expected_params={"CustomKeyStoreName": "kommunmoln-tier-c"})  # fmt: skip
    secrets.add_response("get_secret_value", {"ARN": secret_arn, "Name": "kommunmoln/xks-proxy",
                         "SecretString": json.dumps(creds)}, {"SecretId": secret_arn})  # fmt: skip
    # CreateCustomKeyStore returns only the new store's id (API Reference, CreateCustomKeyStore).
    kms.add_response("create_custom_key_store", {"CustomKeyStoreId": STORE_ID}, {
        "CustomKeyStoreName": "kommunmoln-tier-c", "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
        "XksProxyUriEndpoint": "https://xks.kommun.example", "XksProxyUriPath": "/kommunmoln-xks/kms/xks/v1",
        "XksProxyAuthenticationCredential": creds, "XksProxyConnectivity": "PUBLIC_ENDPOINT"})  # fmt: skip
    # ConnectCustomKeyStore returns an empty body; the connection is asynchronous and is followed with
    # DescribeCustomKeyStores ConnectionState CONNECTING -> CONNECTED (API Reference, ConnectCustomKeyStore).
    kms.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": STORE_ID})
    for state in ("CONNECTING", "CONNECTED"):
        kms.add_response("describe_custom_key_stores",
                         {"CustomKeyStores": [{"CustomKeyStoreId": STORE_ID, "ConnectionState": state}]},
                         {"CustomKeyStoreId": STORE_ID})  # fmt: skip
    # CreateKey in an external key store: Origin EXTERNAL_KEY_STORE with XksKeyId; the metadata carries
    # XksKeyConfiguration.Id (API Reference, CreateKey and KeyMetadata). The alias does not exist yet
    # (DescribeKey on it: NotFoundException) and is created after the key (API Reference, CreateAlias).
    alias = "alias/kommunmoln-demo-tier-c"
    kms.add_client_error("describe_key", "NotFoundException", expected_params={"KeyId": alias})
    kms.add_response("create_key", {"KeyMetadata": {"KeyId": KEY_ARN.rsplit("/", 1)[1], "Arn": KEY_ARN,
        "Origin": "EXTERNAL_KEY_STORE", "CustomKeyStoreId": STORE_ID, "XksKeyConfiguration": {"Id": "sekretess-s3-data"}}}, {
        "Origin": "EXTERNAL_KEY_STORE", "CustomKeyStoreId": STORE_ID, "XksKeyId": "sekretess-s3-data", "KeySpec": "SYMMETRIC_DEFAULT",
        "KeyUsage": "ENCRYPT_DECRYPT", "Policy": policy, "Description": "kommunmoln tier C", "BypassPolicyLockoutSafetyCheck": False})  # fmt: skip
    kms.add_response("create_alias", {}, {"AliasName": alias, "TargetKeyId": KEY_ARN.rsplit("/", 1)[1]})
    # A second store whose connection FAILS with an XKS ConnectionErrorCode (API Reference,
    # CustomKeyStoresListEntry: ConnectionErrorCode appears only when ConnectionState is FAILED).
    kms.add_response("describe_custom_key_stores", {"CustomKeyStores": [{"CustomKeyStoreId": "cks-badtls0000000000",
        "ConnectionState": "FAILED", "ConnectionErrorCode": "XKS_PROXY_INVALID_TLS_CONFIGURATION"}]},
        {"CustomKeyStoreId": "cks-badtls0000000000"})  # fmt: skip

    def event(request: str, resource_type: str, props: dict, physical: str | None = None) -> dict:
        return {"RequestType": request, "ResourceType": resource_type, "ResourceProperties": props,
                **({"PhysicalResourceId": physical} if physical else {})}  # fmt: skip

    no_wait = {"sleep": lambda _s: None}
    # The key handler applies only the key policy of its own environment, which synthesis sets on the Lambda.
    deployed = {names.ENV_EXPECTED_KEY_POLICY: policy}
    with kms, secrets, mock.patch.dict(os.environ, deployed):
        store = logic.on_event(event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, store_props), clients, **no_wait)
        store_id = store["PhysicalResourceId"]
        polls = 0
        while not logic.is_complete(
            event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, store_props, store_id), clients, **no_wait
        )["IsComplete"]:
            polls += 1
        print(f"{names.RESOURCE_KMS_EXTERNAL_KEY_STORE}: CreateCustomKeyStore EXTERNAL_KEY_STORE -> {store_id}; "
              f"ConnectCustomKeyStore -> CONNECTED after {polls + 1} polls")  # fmt: skip
        key_props = {"CustomKeyStoreId": store_id, "Description": "kommunmoln tier C", "KeyPolicy": policy,
                     "AliasName": alias, "XksKeyId": "sekretess-s3-data", "WorkshopMode": "false"}  # fmt: skip
        key = logic.on_event(event("Create", names.RESOURCE_KMS_XKS_KEY, key_props), clients, **no_wait)
        print(f"{names.RESOURCE_KMS_XKS_KEY}: CreateKey Origin=EXTERNAL_KEY_STORE XksKeyId=sekretess-s3-data "
              f"-> {key['Data']['KeyArn']}, {alias}")  # fmt: skip
        try:
            logic.is_complete(
                event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, store_props, "cks-badtls0000000000"),
                clients, **no_wait,
            )  # fmt: skip
            raise RuntimeError("a FAILED connection was not reported")
        except logic.XksConnectionFailed as failure:
            print(f"ConnectCustomKeyStore (bad TLS) -> fails the deployment at once: {failure.code}\n"
                  f"  remedy: {failure.remedy[:160]}...")  # fmt: skip
        kms.assert_no_pending_responses()
        secrets.assert_no_pending_responses()


def main() -> int:
    if not local.available():
        print("SoftHSM2 or python-pkcs11 is missing (make system-deps): the proxy part is skipped")
    else:
        with tempfile.TemporaryDirectory(prefix="kommunmoln-tier-c-") as tmp:
            proxy_flow(Path(tmp))
    control_plane()
    return 0


if __name__ == "__main__":
    sys.exit(main())
