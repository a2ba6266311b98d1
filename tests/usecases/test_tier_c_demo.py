"""The tier C demo and control plane: the flow `make demo` shows, and the fail-fast connection path."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from kommunmoln.tier_c import controlplane, local
from usecases import tier_c_demo


@pytest.mark.softhsm
@pytest.mark.skipif(not local.available(), reason="SoftHSM2 is not installed (make system-deps)")
def test_demo_runs_the_proxy_flow_and_the_control_plane(capsys):
    assert tier_c_demo.main() == 0
    out = capsys.readouterr().out
    assert "data key recovered: True" in out
    assert "Next Decrypt -> 400 InvalidStateException" in out
    assert "chain intact" in out
    assert "fails fast: XKS_PROXY_INVALID_TLS_CONFIGURATION" in out


def kms_stub():
    kms = boto3.client("kms", region_name="eu-north-1", aws_access_key_id="t", aws_secret_access_key="t")
    return kms, Stubber(kms)


@pytest.mark.parametrize("code", sorted(c for c in controlplane.connection_error_remedies() if c.startswith("XKS_")))
def test_every_xks_connection_error_fails_fast_with_its_documented_remedy(code):
    # KMS API Reference, CustomKeyStoresListEntry: ConnectionErrorCode appears only when ConnectionState
    # is FAILED; the remedies are the SDK model's text for that field.
    kms, stub = kms_stub()
    stub.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": "cks-1"})
    stub.add_response("describe_custom_key_stores",
                      {"CustomKeyStores": [{"CustomKeyStoreId": "cks-1", "ConnectionState": "FAILED", "ConnectionErrorCode": code}]},
                      {"CustomKeyStoreId": "cks-1"})  # fmt: skip
    with stub, pytest.raises(controlplane.KeyStoreConnectionFailed) as failure:
        controlplane.connect_and_wait(kms, "cks-1", sleep=lambda _s: None)
    assert failure.value.code == code and len(failure.value.remedy) > 40


def test_all_eight_xks_codes_have_remedies_and_xks_invalid_credentials_is_the_xks_text():
    remedies = controlplane.connection_error_remedies()
    assert len([c for c in remedies if c.startswith("XKS_")]) == 8
    assert "XksProxyAuthenticationCredential" in remedies["INVALID_CREDENTIALS"]


def test_connect_times_out_when_the_store_never_connects():
    kms, stub = kms_stub()
    stub.add_response("connect_custom_key_store", {}, {"CustomKeyStoreId": "cks-1"})
    for _ in range(3):
        stub.add_response("describe_custom_key_stores",
                          {"CustomKeyStores": [{"CustomKeyStoreId": "cks-1", "ConnectionState": "CONNECTING"}]},
                          {"CustomKeyStoreId": "cks-1"})  # fmt: skip
    with stub, pytest.raises(controlplane.KeyStoreConnectionFailed, match="TIMEOUT"):
        controlplane.connect_and_wait(kms, "cks-1", timeout=30, poll=15, sleep=lambda _s: None)


def test_vpc_endpoint_service_connectivity_is_requested_when_a_service_is_named():
    kms, stub = kms_stub()
    stub.add_response("create_custom_key_store", {"CustomKeyStoreId": "cks-2"}, {
        "CustomKeyStoreName": "n", "CustomKeyStoreType": "EXTERNAL_KEY_STORE", "XksProxyUriEndpoint": "https://xks.kommun.example",
        "XksProxyUriPath": "/kms/xks/v1", "XksProxyAuthenticationCredential": {"AccessKeyId": "A" * 20, "RawSecretAccessKey": "B" * 43},
        "XksProxyConnectivity": "VPC_ENDPOINT_SERVICE", "XksProxyVpcEndpointServiceName": "com.amazonaws.vpce.eu-north-1.vpce-svc-0123"})  # fmt: skip
    with stub:
        assert controlplane.create_key_store(kms, name="n", uri_endpoint="https://xks.kommun.example", uri_path="/kms/xks/v1",
                                             access_key_id="A" * 20, secret_access_key="B" * 43,
                                             vpc_endpoint_service_name="com.amazonaws.vpce.eu-north-1.vpce-svc-0123") == "cks-2"  # fmt: skip
