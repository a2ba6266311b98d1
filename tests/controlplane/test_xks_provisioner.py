"""Tier C custom resources and monitor against botocore's Stubber (the real KMS, Secrets Manager and EC2 models).

moto implements no custom key store calls, so every KMS answer here is scripted. Each scripted answer states
the documented rule it encodes and where it is documented:
  [Create]   KMS API Reference, CreateCustomKeyStore
             https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateCustomKeyStore.html
  [Connect]  KMS API Reference, ConnectCustomKeyStore
             https://docs.aws.amazon.com/kms/latest/APIReference/API_ConnectCustomKeyStore.html
  [Describe] KMS API Reference, DescribeCustomKeyStores and CustomKeyStoresListEntry
             https://docs.aws.amazon.com/kms/latest/APIReference/API_DescribeCustomKeyStores.html
             https://docs.aws.amazon.com/kms/latest/APIReference/API_CustomKeyStoresListEntry.html
  [CreateKey] KMS API Reference, CreateKey (XksKeyId, Origin EXTERNAL_KEY_STORE)
             https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateKey.html
  [PrivateDns] Amazon VPC PrivateLink guide, "Manage DNS names for VPC endpoint services"
             https://docs.aws.amazon.com/vpc/latest/privatelink/manage-dns-names.html
Stubber itself validates every request and response against the service model.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from kommunmoln import names
from lambdas.keystore_monitor import logic as monitor
from lambdas.keystore_monitor import xks as xks_monitor
from lambdas.xks_provisioner import endpoint_dns, logic
from lambdas.xks_provisioner.connection_errors import XKS_CONNECTION_ERROR_REMEDIES, XksConnectionFailed

REGION = "eu-north-1"
ACCOUNT = "111122223333"
STORE = "cks-0123456789abcdef0"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:kommunmoln/xks-proxy-AbCdEf"
ACCESS_KEY = "AKIAXKSPROXY2345ABCD"
RAW_SECRET = "K7MDENG/bPxRfiCYEXAMPLEKEYxks0proxy0secret0a"
ENDPOINT = "https://xks.exempel.se"
PATH = "/kms/xks/v1"
SERVICE_ID = "vpce-svc-0123456789abcdef0"
SERVICE_NAME = f"com.amazonaws.vpce.{REGION}.{SERVICE_ID}"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{KEY_ID}"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "Admin", "Effect": "Allow",
                     "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/admin"}, "Action": ["kms:DescribeKey"],
                     "Resource": "*"}]})  # fmt: skip
XKS_CODES = sorted(c for c in XKS_CONNECTION_ERROR_REMEDIES if c.startswith("XKS_"))


@functools.cache
def _clients() -> logic.XksClients:
    session = boto3.Session(region_name=REGION)

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=f"https://{service}.{REGION}.amazonaws.com")

    return logic.XksClients(kms=client("kms"), secrets=client("secretsmanager"), ec2=client("ec2"))


class Stubs:
    def __init__(self) -> None:
        self.clients = _clients()
        self.kms, self.sm, self.ec2 = (
            Stubber(self.clients.kms),
            Stubber(self.clients.secrets),
            Stubber(self.clients.ec2),
        )
        self.sleeps: list[float] = []

    def __enter__(self) -> Stubs:
        for s in (self.kms, self.sm, self.ec2):
            s.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        for s in (self.kms, self.sm, self.ec2):
            s.deactivate()

    def verify(self) -> None:
        for s in (self.kms, self.sm, self.ec2):
            s.assert_no_pending_responses()

    def on_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return logic.on_event(event, self.clients, sleep=self.sleeps.append)

    def is_complete(self, event: dict[str, Any]) -> dict[str, Any]:
        return logic.is_complete(event, self.clients, sleep=self.sleeps.append)


@pytest.fixture
def stubs() -> Any:
    with Stubs() as s:
        yield s


def _store_props(connectivity: str = "PUBLIC_ENDPOINT") -> dict[str, str]:
    return {
        "ServiceToken": "arn:aws:lambda:eu-north-1:111122223333:function:provider",
        "KeyStoreName": "kommunmoln-exempel-tier-c",
        "Connectivity": connectivity,
        "UriEndpoint": ENDPOINT,
        "UriPath": PATH,
        "VpcEndpointServiceName": SERVICE_NAME if connectivity == "VPC_ENDPOINT_SERVICE" else "",
        "CredentialSecretArn": SECRET_ARN,
        "WorkshopMode": "false",
    }


def _event(request: str, resource_type: str, props: dict[str, Any], physical: str | None = None) -> dict[str, Any]:
    event = {"RequestType": request, "ResourceType": resource_type, "ResourceProperties": props,
             "LogicalResourceId": "KeyStore"}  # fmt: skip
    if physical:
        event["PhysicalResourceId"] = physical
    return event


def _store(state: str, code: str | None = None, connectivity: str = "PUBLIC_ENDPOINT") -> dict[str, Any]:
    # [Describe] an external key store entry: CustomKeyStoreType EXTERNAL_KEY_STORE, XksProxyConfiguration with
    # Connectivity, AccessKeyId, UriEndpoint, UriPath (VpcEndpointServiceName for VPC connectivity);
    # ConnectionErrorCode "appears in the response only when the ConnectionState is FAILED".
    config = {"Connectivity": connectivity, "AccessKeyId": ACCESS_KEY, "UriEndpoint": ENDPOINT, "UriPath": PATH}
    if connectivity == "VPC_ENDPOINT_SERVICE":
        config["VpcEndpointServiceName"] = SERVICE_NAME
    entry = {"CustomKeyStoreId": STORE, "CustomKeyStoreName": "kommunmoln-exempel-tier-c",
             "CustomKeyStoreType": "EXTERNAL_KEY_STORE", "ConnectionState": state, "XksProxyConfiguration": config}  # fmt: skip
    if code:
        entry["ConnectionErrorCode"] = code
    return {"CustomKeyStores": [entry]}


def _secret(value: Any) -> dict[str, Any]:
    return {"ARN": SECRET_ARN, "Name": "kommunmoln/xks-proxy", "SecretString": json.dumps(value)}


def _expect_create(stubs: Stubs, connectivity: str) -> None:
    # [Describe] "If you specify a name that doesn't exist, DescribeCustomKeyStores throws
    # CustomKeyStoreNotFoundException": nothing of that name yet.
    stubs.kms.add_client_error("describe_custom_key_stores", "CustomKeyStoreNotFoundException",
                               expected_params={"CustomKeyStoreName": "kommunmoln-exempel-tier-c"})  # fmt: skip
    stubs.sm.add_response("get_secret_value", _secret({"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": RAW_SECRET}),
                          {"SecretId": SECRET_ARN})  # fmt: skip
    params = {
        "CustomKeyStoreName": "kommunmoln-exempel-tier-c",
        "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
        "XksProxyUriEndpoint": ENDPOINT,
        "XksProxyUriPath": PATH,
        "XksProxyConnectivity": connectivity,
        "XksProxyAuthenticationCredential": {"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": RAW_SECRET},
    }
    if connectivity == "VPC_ENDPOINT_SERVICE":
        # [Create] XksProxyVpcEndpointServiceName "is required when ... XksProxyConnectivity is VPC_ENDPOINT_SERVICE".
        params["XksProxyVpcEndpointServiceName"] = SERVICE_NAME
    # [Create] the response holds only the new CustomKeyStoreId; the store starts DISCONNECTED.
    stubs.kms.add_response("create_custom_key_store", {"CustomKeyStoreId": STORE}, params)
    # [Connect] "This operation starts the connection process, but it does not wait for it to complete ...
    # returns an HTTP 200 response and a JSON object with no properties."
    stubs.kms.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": STORE})


@pytest.mark.parametrize("connectivity", ["PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE"])
def test_create_makes_an_external_key_store_and_starts_connecting(stubs: Stubs, connectivity: str, caplog) -> None:
    # GIVEN no key store of that name and the proxy credential in Secrets Manager
    _expect_create(stubs, connectivity)
    caplog.set_level(logging.DEBUG)
    # WHEN CloudFormation creates the resource
    result = stubs.on_event(_event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, _store_props(connectivity)))
    # THEN the key store exists with the XKS parameters and the connect was requested
    stubs.verify()
    assert result == {"PhysicalResourceId": STORE, "Data": {"CustomKeyStoreId": STORE}}
    # AND the secret half of the credential appears in no result and no log line
    assert RAW_SECRET not in json.dumps(result) and RAW_SECRET not in caplog.text


def test_connecting_is_not_complete_and_connected_is(stubs: Stubs) -> None:
    event = _event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, _store_props(), STORE)
    # [Describe] CONNECTING while KMS establishes the connection, then CONNECTED.
    stubs.kms.add_response("describe_custom_key_stores", _store("CONNECTING"), {"CustomKeyStoreId": STORE})
    stubs.kms.add_response("describe_custom_key_stores", _store("CONNECTED"), {"CustomKeyStoreId": STORE})
    assert stubs.is_complete(event) == {"IsComplete": False}
    assert stubs.is_complete(event) == {"IsComplete": True, "Data": {"CustomKeyStoreId": STORE}}
    stubs.verify()


@pytest.mark.parametrize("code", [*XKS_CODES, "INVALID_CREDENTIALS"])
def test_a_failed_connection_fails_at_once_with_its_code_and_remedy(stubs: Stubs, code: str) -> None:
    # GIVEN [Describe] ConnectionState FAILED with one of the external key store ConnectionErrorCodes
    stubs.kms.add_response("describe_custom_key_stores", _store("FAILED", code), {"CustomKeyStoreId": STORE})
    # WHEN the waiter asks THEN it fails now (no wait), naming the code and the remedy
    with pytest.raises(XksConnectionFailed) as failure:
        stubs.is_complete(_event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, _store_props(), STORE))
    assert failure.value.code == code
    assert code in str(failure.value) and failure.value.remedy in str(failure.value)
    assert failure.value.remedy == XKS_CONNECTION_ERROR_REMEDIES[code]
    assert stubs.sleeps == []


def test_every_xks_connection_error_code_of_the_kms_model_has_a_remedy() -> None:
    import botocore.session

    # GIVEN the ConnectionErrorCodeType enum of the installed KMS model
    codes = botocore.session.get_session().get_service_model("kms").shape_for("ConnectionErrorCodeType").enum
    # THEN every XKS_* code has its own remedy (not the generic pointer)
    assert {c for c in codes if c.startswith("XKS_")} == set(XKS_CODES)


def test_a_credential_secret_of_the_wrong_shape_is_refused_without_echoing_it(stubs: Stubs) -> None:
    stubs.kms.add_client_error("describe_custom_key_stores", "CustomKeyStoreNotFoundException")
    # [Create] XksProxyAuthenticationCredentialType: RawSecretAccessKey is 43-64 characters; this one is too short.
    stubs.sm.add_response(
        "get_secret_value", _secret({"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": "short-secret"})
    )
    with pytest.raises(logic.ProvisioningError) as error:
        stubs.on_event(_event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, _store_props()))
    assert "short-secret" not in str(error.value) and ACCESS_KEY not in str(error.value)
    assert "RawSecretAccessKey" in str(error.value)


def test_a_proxy_that_rejects_the_credential_fails_the_create_with_a_hint(stubs: Stubs) -> None:
    stubs.kms.add_client_error("describe_custom_key_stores", "CustomKeyStoreNotFoundException")
    stubs.sm.add_response("get_secret_value", _secret({"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": RAW_SECRET}))
    # [Create] with PUBLIC_ENDPOINT "KMS connects to the external key store proxy while creating the custom key
    # store"; a credential the proxy rejects raises XksProxyIncorrectAuthenticationCredentialException.
    stubs.kms.add_client_error("create_custom_key_store", "XksProxyIncorrectAuthenticationCredentialException")
    with pytest.raises(logic.ProvisioningError) as error:
        stubs.on_event(_event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, _store_props()))
    assert "tier_c_credential_secret_arn" in str(error.value) and RAW_SECRET not in str(error.value)


def test_a_retried_create_adopts_the_store_of_the_same_name_and_proxy(stubs: Stubs) -> None:
    # [Describe] by CustomKeyStoreName: the store a failed earlier attempt created, still DISCONNECTED.
    stubs.kms.add_response("describe_custom_key_stores", _store("DISCONNECTED"),
                           {"CustomKeyStoreName": "kommunmoln-exempel-tier-c"})  # fmt: skip
    stubs.kms.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    result = stubs.on_event(_event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, _store_props()))
    assert result["PhysicalResourceId"] == STORE
    stubs.verify()


def test_a_store_of_the_same_name_on_another_proxy_is_not_adopted(stubs: Stubs) -> None:
    other = _store("CONNECTED")
    other["CustomKeyStores"][0]["XksProxyConfiguration"]["UriEndpoint"] = "https://other.example.org"
    stubs.kms.add_response("describe_custom_key_stores", other)
    with pytest.raises(logic.ProvisioningError, match="already exists"):
        stubs.on_event(_event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, _store_props()))


# [Update] KMS API Reference, UpdateCustomKeyStore (https://docs.aws.amazon.com/kms/latest/APIReference/API_UpdateCustomKeyStore.html):
# XksProxyUriPath and XksProxyAuthenticationCredential "You can change this value when the external key store is
# connected or disconnected"; XksProxyUriEndpoint, XksProxyConnectivity, XksProxyVpcEndpointServiceName: "To
# change this value, the external key store must be disconnected." The response is an empty object.
def _update_event(**changed: str) -> dict[str, Any]:
    props = {**_store_props(), **changed}
    return {
        **_event("Update", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, props, STORE),
        "OldResourceProperties": _store_props(),
    }


def test_a_new_uri_path_is_applied_while_connected(stubs: Stubs) -> None:
    stubs.kms.add_response("describe_custom_key_stores", _store("CONNECTED"), {"CustomKeyStoreId": STORE})
    stubs.sm.add_response("get_secret_value", _secret({"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": RAW_SECRET}))
    # THEN only the changed parameter is sent, and the store is not disconnected
    stubs.kms.add_response(
        "update_custom_key_store", {}, {"CustomKeyStoreId": STORE, "XksProxyUriPath": "/kommun/kms/xks/v1"}
    )
    assert stubs.on_event(_update_event(UriPath="/kommun/kms/xks/v1"))["PhysicalResourceId"] == STORE
    stubs.verify()


def test_a_rotated_credential_is_given_to_kms_while_connected(stubs: Stubs) -> None:
    # GIVEN the secret now holds the new pair (runbook step 3), KMS still the old access key id
    new = {"AccessKeyId": "AKIAXKSPROXY2345WXYZ", "RawSecretAccessKey": RAW_SECRET[::-1]}
    stubs.kms.add_response("describe_custom_key_stores", _store("CONNECTED"), {"CustomKeyStoreId": STORE})
    stubs.sm.add_response("get_secret_value", _secret(new))
    stubs.kms.add_response("update_custom_key_store", {},
                           {"CustomKeyStoreId": STORE, "XksProxyAuthenticationCredential": new})  # fmt: skip
    stubs.on_event(_update_event())
    stubs.verify()


def test_a_new_endpoint_is_refused_while_connected_and_applied_when_disconnected(stubs: Stubs) -> None:
    stubs.kms.add_response("describe_custom_key_stores", _store("CONNECTED"), {"CustomKeyStoreId": STORE})
    stubs.sm.add_response("get_secret_value", _secret({"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": RAW_SECRET}))
    with pytest.raises(logic.ProvisioningError, match="XksProxyUriEndpoint needs it DISCONNECTED"):
        stubs.on_event(_update_event(UriEndpoint="https://xks2.exempel.se"))
    # AND once disconnected the change is sent, then the connect is started again
    stubs.kms.add_response("describe_custom_key_stores", _store("DISCONNECTED"), {"CustomKeyStoreId": STORE})
    stubs.sm.add_response("get_secret_value", _secret({"AccessKeyId": ACCESS_KEY, "RawSecretAccessKey": RAW_SECRET}))
    stubs.kms.add_response("update_custom_key_store", {},
                           {"CustomKeyStoreId": STORE, "XksProxyUriEndpoint": "https://xks2.exempel.se"})  # fmt: skip
    stubs.kms.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": STORE})
    stubs.on_event(_update_event(UriEndpoint="https://xks2.exempel.se"))
    stubs.verify()


def test_the_key_is_created_in_the_external_key_store_with_its_external_key_id(stubs: Stubs) -> None:
    props = {"CustomKeyStoreId": STORE, "Description": "tier C", "KeyPolicy": POLICY,
             "AliasName": "alias/kommunmoln-exempel-tier-c", "XksKeyId": "kommun-key-1", "WorkshopMode": "false"}  # fmt: skip
    stubs.kms.add_client_error("describe_key", "NotFoundException", expected_params={"KeyId": props["AliasName"]})
    meta = {"KeyId": KEY_ID, "Arn": KEY_ARN, "KeyState": "Creating", "Origin": "EXTERNAL_KEY_STORE",
            "CustomKeyStoreId": STORE, "XksKeyConfiguration": {"Id": "kommun-key-1"}}  # fmt: skip
    # [CreateKey] "To create a KMS key in an external key store, ... set the Origin parameter to EXTERNAL_KEY_STORE
    # ... use the XksKeyId parameter to specify the ID of the external key"; only SYMMETRIC_DEFAULT keys.
    stubs.kms.add_response("create_key", {"KeyMetadata": meta}, {
        "Policy": POLICY, "Description": "tier C", "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT",
        "Origin": "EXTERNAL_KEY_STORE", "CustomKeyStoreId": STORE, "XksKeyId": "kommun-key-1",
        "BypassPolicyLockoutSafetyCheck": False,
    })  # fmt: skip
    stubs.kms.add_response("create_alias", {}, {"AliasName": props["AliasName"], "TargetKeyId": KEY_ID})
    result = stubs.on_event(_event("Create", names.RESOURCE_KMS_XKS_KEY, props))
    assert result == {"PhysicalResourceId": KEY_ID, "Data": {"KeyId": KEY_ID, "KeyArn": KEY_ARN}}
    stubs.verify()


def test_an_unknown_external_key_fails_with_a_hint(stubs: Stubs) -> None:
    props = {"CustomKeyStoreId": STORE, "Description": "tier C", "KeyPolicy": POLICY,
             "AliasName": "alias/kommunmoln-exempel-tier-c", "XksKeyId": "no-such-key", "WorkshopMode": "false"}  # fmt: skip
    stubs.kms.add_client_error("describe_key", "NotFoundException")
    # [CreateKey] XksKeyNotFoundException: "the external key store proxy could not find the external key".
    stubs.kms.add_client_error("create_key", "XksKeyNotFoundException")
    with pytest.raises(logic.ProvisioningError, match="tier_c_xks_key_id"):
        stubs.on_event(_event("Create", names.RESOURCE_KMS_XKS_KEY, props))


def _service(state: str, dns_name: str = "xks.exempel.se") -> dict[str, Any]:
    # [PrivateDns] PrivateDnsNameConfiguration: State pendingVerification | verified | failed, Type TXT, Name, Value.
    return {"ServiceConfigurations": [{
        "ServiceId": SERVICE_ID, "ServiceName": SERVICE_NAME, "PrivateDnsName": dns_name,
        "PrivateDnsNameConfiguration": {"State": state, "Type": "TXT", "Name": "_kms1a2b3c", "Value": "vpce:abc123"},
    }]}  # fmt: skip


def test_private_dns_waits_for_verification_and_names_the_txt_record(stubs: Stubs) -> None:
    props = {"ServiceId": SERVICE_ID, "PrivateDnsName": "xks.exempel.se"}
    now = [1_000_000.0]
    stubs.ec2.add_response("describe_vpc_endpoint_service_configurations", _service("pendingVerification"),
                           {"ServiceIds": [SERVICE_ID]})  # fmt: skip
    stubs.ec2.add_response("start_vpc_endpoint_service_private_dns_verification", {"ReturnValue": True},
                           {"ServiceId": SERVICE_ID})  # fmt: skip
    # WHEN created THEN verification is started and the wait begins
    created = endpoint_dns.dns_on_event(_event("Create", "x", props), stubs.clients, stubs.sleeps.append,
                                        clock=lambda: now[0])  # fmt: skip
    waiting = {**_event("Create", "x", props, created["PhysicalResourceId"]), "Data": created["Data"]}
    # AND a pending name is not complete, a verified one is
    stubs.ec2.add_response("describe_vpc_endpoint_service_configurations", _service("pendingVerification"))
    assert endpoint_dns.dns_is_complete(waiting, stubs.clients, stubs.sleeps.append, clock=lambda: now[0]) == {
        "IsComplete": False
    }
    stubs.ec2.add_response("describe_vpc_endpoint_service_configurations", _service("verified"))
    done = endpoint_dns.dns_is_complete(waiting, stubs.clients, stubs.sleeps.append, clock=lambda: now[0])
    assert done == {"IsComplete": True, "Data": {"ServiceName": SERVICE_NAME}}
    # AND after the bounded wait the error names the exact TXT record to publish
    now[0] += endpoint_dns.VERIFY_WAIT_SECONDS + 1
    stubs.ec2.add_response("describe_vpc_endpoint_service_configurations", _service("failed"))
    with pytest.raises(logic.ProvisioningError, match=r'_kms1a2b3c\.xks\.exempel\.se TXT "vpce:abc123"'):
        endpoint_dns.dns_is_complete(waiting, stubs.clients, stubs.sleeps.append, clock=lambda: now[0])
    stubs.verify()


def test_private_dns_of_another_name_is_refused(stubs: Stubs) -> None:
    stubs.ec2.add_response("describe_vpc_endpoint_service_configurations", _service("verified", "other.example.org"))
    with pytest.raises(logic.ProvisioningError, match=r"other\.example\.org"):
        stubs.on_event(_event("Create", names.RESOURCE_XKS_ENDPOINT_SERVICE_DNS,
                              {"ServiceId": SERVICE_ID, "PrivateDnsName": "xks.exempel.se"}))  # fmt: skip


# --- the monitor -------------------------------------------------------------------------------
SETTINGS = monitor.MonitorSettings.from_env({
    names.ENV_KEY_STORE_TYPE: "EXTERNAL_KEY_STORE", names.ENV_CUSTOM_KEY_STORE_ID: STORE,
    names.ENV_EXPECTED_KMS_KEY_ARN: KEY_ARN, names.ENV_XKS_KEY_ID: "kommun-key-1",
    names.ENV_XKS_PROXY_URI: ENDPOINT + PATH, names.ENV_EXPECTED_KEY_POLICY: POLICY,
})  # fmt: skip
KEY_OK = {"KeyMetadata": {"KeyId": KEY_ID, "Arn": KEY_ARN, "KeyState": "Enabled", "Origin": "EXTERNAL_KEY_STORE",
                          "CustomKeyStoreId": STORE, "XksKeyConfiguration": {"Id": "kommun-key-1"}}}  # fmt: skip


def test_monitor_reports_a_healthy_external_key_store(stubs: Stubs) -> None:
    stubs.kms.add_response("describe_custom_key_stores", _store("CONNECTED"), {"CustomKeyStoreId": STORE})
    stubs.kms.add_response("describe_key", KEY_OK, {"KeyId": KEY_ARN})
    stubs.kms.add_response("get_key_policy", {"Policy": POLICY, "PolicyName": "default"},
                           {"KeyId": KEY_ARN, "PolicyName": "default"})  # fmt: skip
    # WHEN the tier C monitor runs (no CloudHSM client: tier C has no cluster)
    report = monitor.check_health(kms=stubs.clients.kms, cloudhsm=None, settings=SETTINGS)
    # THEN the store, the key and its policy are checked and healthy
    assert report.healthy and [c.name for c in report.checks] == ["key-store", "kms-key", "key-policy"]
    assert report.metrics() == {names.METRIC_KEYSTORE_CONNECTED: 1, names.METRIC_KEY_USABLE: 1,
                                names.METRIC_KEY_POLICY_AS_TEMPLATE: 1}  # fmt: skip
    stubs.verify()


@pytest.mark.parametrize("code", XKS_CODES)
def test_monitor_names_the_xks_code_and_its_remedy(stubs: Stubs, code: str) -> None:
    stubs.kms.add_response("describe_custom_key_stores", _store("FAILED", code))
    check = xks_monitor.check_xks_key_store(stubs.clients.kms, STORE, proxy_uri=ENDPOINT + PATH)
    assert check.status == monitor.PROBLEM and code in check.detail
    assert check.remedy == XKS_CONNECTION_ERROR_REMEDIES[code] and check.metrics == {names.METRIC_KEYSTORE_CONNECTED: 0}


def test_monitor_treats_a_disconnected_store_and_a_moved_proxy_as_problems(stubs: Stubs) -> None:
    stubs.kms.add_response("describe_custom_key_stores", _store("DISCONNECTED"))
    check = xks_monitor.check_xks_key_store(stubs.clients.kms, STORE, proxy_uri=ENDPOINT + PATH)
    assert check.status == monitor.PROBLEM and "connect-custom-key-store" in check.remedy
    stubs.kms.add_response("describe_custom_key_stores", _store("CONNECTED"))
    moved = xks_monitor.check_xks_key_store(stubs.clients.kms, STORE, proxy_uri="https://old.exempel.se" + PATH)
    assert moved.status == monitor.PROBLEM and "old.exempel.se" in moved.detail


def test_monitor_refuses_a_key_of_another_origin_or_external_key(stubs: Stubs) -> None:
    aws_key = {"KeyMetadata": {**KEY_OK["KeyMetadata"], "Origin": "AWS_KMS", "XksKeyConfiguration": {"Id": "x"}}}
    stubs.kms.add_response("describe_key", aws_key)
    check = xks_monitor.check_xks_key(stubs.clients.kms, KEY_ARN, STORE, "kommun-key-1")
    assert check.status == monitor.PROBLEM
    assert "not EXTERNAL_KEY_STORE" in check.detail and "not kommun-key-1" in check.detail


def test_monitor_refuses_an_unknown_key_store_type() -> None:
    with pytest.raises(ValueError, match=names.ENV_KEY_STORE_TYPE):
        monitor.MonitorSettings.from_env({names.ENV_KEY_STORE_TYPE: "AWS_KMS"})


# --- every call of the tier C provisioner is allowed by its synthesized role ---------------------------
@pytest.fixture(scope="module")
def vpc_workshop(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import synthesize

    context = {
        "use_cases": [names.USE_CASE_EXTERNAL_KEY_STORE], "workshop_mode": True, "account": ACCOUNT,
        "tier_c_connectivity": "VPC_ENDPOINT_SERVICE", "tier_c_proxy_uri_endpoint": ENDPOINT,
        "tier_c_proxy_target_ips": ["10.200.0.10"], "tier_c_credential_secret_arn": SECRET_ARN,
        "tier_c_xks_key_id": "kommun-key-1",
    }  # fmt: skip
    return synthesize(tmp_path_factory.mktemp("cdk.out.xks.iam"), context)


def test_every_call_of_the_tier_c_provisioner_is_allowed_by_its_role(vpc_workshop: Any) -> None:
    from tests.controlplane import iam_check

    # GIVEN fresh clients (so that the recorder sees only this lifecycle), stubbed, every call recorded
    session = boto3.Session(region_name=REGION)
    clients = logic.XksClients(*(session.client(s, endpoint_url=f"https://{s}.{REGION}.amazonaws.com")
                                 for s in ("kms", "secretsmanager", "ec2")))  # fmt: skip
    recorder = iam_check.Recorder()
    for client in (clients.kms, clients.secrets, clients.ec2):
        recorder.attach(client)
    stubs = Stubs.__new__(Stubs)
    stubs.clients, stubs.sleeps = clients, []
    stubs.kms, stubs.sm, stubs.ec2 = Stubber(clients.kms), Stubber(clients.secrets), Stubber(clients.ec2)
    with stubs:
        # WHEN it lives a whole workshop life: DNS verification, create + connect, key, credential rotation, teardown
        stubs.ec2.add_response("describe_vpc_endpoint_service_configurations", _service("pendingVerification"))
        stubs.ec2.add_response("start_vpc_endpoint_service_private_dns_verification", {"ReturnValue": True})
        stubs.on_event(_event("Create", names.RESOURCE_XKS_ENDPOINT_SERVICE_DNS,
                              {"ServiceId": SERVICE_ID, "PrivateDnsName": "xks.exempel.se"}))  # fmt: skip
        _expect_create(stubs, "VPC_ENDPOINT_SERVICE")
        stubs.on_event(_event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, _store_props("VPC_ENDPOINT_SERVICE")))
        stubs.kms.add_response("describe_custom_key_stores", _store("CONNECTED", connectivity="VPC_ENDPOINT_SERVICE"))
        stubs.is_complete(
            _event("Create", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, _store_props("VPC_ENDPOINT_SERVICE"), STORE)
        )
        key_props = {"CustomKeyStoreId": STORE, "Description": "tier C", "KeyPolicy": POLICY, "WorkshopMode": "true",
                     "AliasName": "alias/kommunmoln-exempel-tier-c", "XksKeyId": "kommun-key-1"}  # fmt: skip
        meta = {"KeyId": KEY_ID, "Arn": KEY_ARN, "KeyState": "Enabled", "Origin": "EXTERNAL_KEY_STORE",
                "CustomKeyStoreId": STORE, "XksKeyConfiguration": {"Id": "kommun-key-1"}}  # fmt: skip
        stubs.kms.add_client_error("describe_key", "NotFoundException")
        stubs.kms.add_response("create_key", {"KeyMetadata": meta})
        stubs.kms.add_response("create_alias", {})
        stubs.on_event(_event("Create", names.RESOURCE_KMS_XKS_KEY, key_props))
        rotated = {"AccessKeyId": "AKIAXKSPROXY2345WXYZ", "RawSecretAccessKey": RAW_SECRET[::-1]}
        stubs.kms.add_response("describe_custom_key_stores", _store("CONNECTED", connectivity="VPC_ENDPOINT_SERVICE"))
        stubs.sm.add_response("get_secret_value", _secret(rotated))
        stubs.kms.add_response("update_custom_key_store", {})
        stubs.on_event({**_event("Update", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, _store_props("VPC_ENDPOINT_SERVICE"),
                                 STORE), "OldResourceProperties": _store_props("VPC_ENDPOINT_SERVICE")})  # fmt: skip
        stubs.kms.add_response("describe_key", {"KeyMetadata": meta})
        stubs.kms.add_response("list_aliases", {"Aliases": [{"AliasName": "alias/kommunmoln-exempel-tier-c",
                                                             "TargetKeyId": KEY_ID}]})  # fmt: skip
        stubs.kms.add_response("delete_alias", {})
        stubs.kms.add_response("schedule_key_deletion", {"KeyId": KEY_ARN})
        stubs.on_event(_event("Delete", names.RESOURCE_KMS_XKS_KEY, key_props, KEY_ID))
        workshop = {**_store_props("VPC_ENDPOINT_SERVICE"), "WorkshopMode": "true"}
        stubs.kms.add_response("describe_custom_key_stores", _store("CONNECTED", connectivity="VPC_ENDPOINT_SERVICE"))
        stubs.kms.add_response("list_keys", {"Keys": [{"KeyId": KEY_ID, "KeyArn": KEY_ARN}], "Truncated": False})
        stubs.kms.add_response("describe_key", {"KeyMetadata": {**meta, "KeyState": "PendingDeletion"}})
        stubs.kms.add_response("disconnect_custom_key_store", {})
        stubs.on_event(_event("Delete", names.RESOURCE_KMS_EXTERNAL_KEY_STORE, workshop, STORE))
        stubs.verify()
    assert {"kms:CreateCustomKeyStore", "kms:ConnectCustomKeyStore", "kms:UpdateCustomKeyStore", "kms:CreateKey",
            "kms:ScheduleKeyDeletion", "kms:DisconnectCustomKeyStore", "secretsmanager:GetSecretValue",
            "ec2:StartVpcEndpointServicePrivateDnsVerification"} <= {c.action for c in recorder.calls}  # fmt: skip
    # THEN each provisioner function's role in the synthesized workshop template allows every call
    template = vpc_workshop.template("-tier-c")
    functions = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
                 and "lambdas.xks_provisioner.handler" in str(r["Properties"].get("Handler", ""))]  # fmt: skip
    assert len(functions) == 2
    arns = iam_check.Arns("aws", REGION, ACCOUNT, resolve_key=lambda k: KEY_ID)
    for function in functions:
        assert iam_check.denied(recorder.calls, iam_check.role_statements(template, function), arns) == [], function
