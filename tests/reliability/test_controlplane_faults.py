"""Tier B control-plane faults (botocore Stubber: every call checked against the real AWS models).

Beyond the use-case tests:
- the key store disconnects while in use: SSE-KMS uploads fail (a multipart upload is
  aborted, nothing half-written), the monitor's metric drops 1 -> 0 and it alarms with the
  connect remedy, and it stops alarming once the store is connected again;
- an HSM is lost from one availability zone (degraded, or gone from the cluster): the
  monitor reports the zone with 0 active HSMs and alarms;
- InitializeCluster is interrupted (an API error, a lost answer, Ctrl-C while waiting) and
  `init` is re-run: it continues where it stopped and never needs a second signature once
  the cluster accepted one.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from kommunmoln import names
from kommunmoln.tier_b import ca as ca_lib
from kommunmoln.tier_b import recorded
from lambdas.keystore_monitor import handler, logic
from usecases import cloudhsm_kms

CATEGORY = "controlplane_faults"
TOPIC = f"arn:aws:sns:{recorded.REGION}:{recorded.ACCOUNT}:kommunmoln-alarms"
FILTER = {"Filters": {"clusterIds": [recorded.CLUSTER_ID]}}
STORE = {"CustomKeyStoreId": recorded.KEY_STORE_ID}
FULL = logic.MonitorSettings(recorded.KEY_STORE_ID, recorded.CLUSTER_ID, recorded.KEY_ARN, 2)
A, B = recorded.ZONES
TWO_ZONES = [recorded.hsm("hsm-aaaaaaaaaaa", A), recorded.hsm("hsm-bbbbbbbbbbb", B)]


@functools.cache
def _clients() -> dict[str, Any]:
    session = boto3.Session(region_name=recorded.REGION)
    return {
        s: session.client(s, endpoint_url=f"https://{s}.{recorded.REGION}.amazonaws.com")
        for s in ("kms", "cloudhsmv2", "s3")
    }


@pytest.fixture
def stubs() -> Iterator[dict[str, Stubber]]:
    stubbers = {name: Stubber(client) for name, client in _clients().items()}
    for stub in stubbers.values():
        stub.activate()
    try:
        yield stubbers
        for stub in stubbers.values():
            stub.assert_no_pending_responses()
    finally:
        for stub in stubbers.values():
            stub.deactivate()


class Topic:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish(self, **params: Any) -> dict[str, str]:
        self.messages.append(params)
        return {"MessageId": str(len(self.messages))}


def _monitor(stubs, store: dict, cluster: dict, key: dict, topic: Topic):
    stubs["kms"].add_response("describe_custom_key_stores", store, STORE)
    stubs["cloudhsmv2"].add_response("describe_clusters", cluster, FILTER)
    stubs["kms"].add_response("describe_key", key, {"KeyId": recorded.KEY_ARN})
    clients = _clients()
    return handler.run(
        handler.Settings(checks=FULL, topic_arn=TOPIC), kms=clients["kms"], cloudhsm=clients["cloudhsmv2"], sns=topic
    )


# --- Key store disconnecting during use ---------------------------------------------------------------
def test_monitor_follows_a_key_store_that_disconnects_and_reconnects(ledger, stubs) -> None:
    topic = Topic()
    # GIVEN a key store that is CONNECTED, then DISCONNECTED (keys Unavailable), then FAILED, then CONNECTED again
    timeline = [
        (recorded.key_store("CONNECTED"), recorded.key_metadata()),
        (recorded.key_store("DISCONNECTED"), recorded.key_metadata("Unavailable")),
        (recorded.key_store("FAILED", code="USER_LOGGED_IN"), recorded.key_metadata("Unavailable")),
        (recorded.key_store("CONNECTED"), recorded.key_metadata()),
    ]
    # WHEN the scheduled monitor runs at each point
    reports = [_monitor(stubs, store, recorded.cluster("ACTIVE", TWO_ZONES), key, topic)[0] for store, key in timeline]
    ledger.add(CATEGORY, inputs=len(timeline))
    # THEN the connected metric goes 1, 0, 0, 1; it alarms exactly for the two bad runs, each with a remedy
    assert [r.metrics()[names.METRIC_KEYSTORE_CONNECTED] for r in reports] == [1, 0, 0, 1]
    assert [r.metrics()[names.METRIC_KEY_USABLE] for r in reports] == [1, 0, 0, 1]
    assert [r.healthy for r in reports] == [True, False, False, True]
    assert len(topic.messages) == 2
    disconnected = json.loads(topic.messages[0]["Message"])
    remedies = " ".join(p["remedy"] for p in disconnected["problems"])
    assert f"connect-custom-key-store --custom-key-store-id {recorded.KEY_STORE_ID}" in remedies
    failed = json.loads(topic.messages[1]["Message"])
    assert any("USER_LOGGED_IN" in p["detail"] and p["remedy"] for p in failed["problems"])


def test_sse_kms_upload_while_the_key_store_disconnects_is_aborted(ledger, stubs, tmp_path, monkeypatch) -> None:
    # GIVEN a multipart SSE-KMS upload whose second part hits a disconnected key store
    monkeypatch.setattr(cloudhsm_kms, "MULTIPART_THRESHOLD", 1024)
    monkeypatch.setattr(cloudhsm_kms, "PART_SIZE", 1024)
    source = tmp_path / "beslut.pdf"
    source.write_bytes(b"x" * 3000)
    s3 = stubs["s3"]
    bucket, key = "kommun-sse", "beslut.pdf"
    s3.add_response("create_multipart_upload", {"Bucket": bucket, "Key": key, "UploadId": "up-1"},
                    {"Bucket": bucket, "Key": key, **cloudhsm_kms.sse_kms_args(recorded.KEY_ARN)})  # fmt: skip
    s3.add_response(
        "upload_part",
        {"ETag": '"e1"'},
        {"Bucket": bucket, "Key": key, "UploadId": "up-1", "PartNumber": 1, "Body": ANY},
    )
    s3.add_client_error(
        "upload_part", service_error_code="KMS.KMSInvalidStateException", http_status_code=400,
        service_message=f"arn is pending import / custom key store {recorded.KEY_STORE_ID} is not connected",
    )  # fmt: skip
    s3.add_response("abort_multipart_upload", {}, {"Bucket": bucket, "Key": key, "UploadId": "up-1"})
    # WHEN uploaded  THEN the KMS error surfaces and the upload was aborted (Stubber checks the abort call)
    with pytest.raises(ClientError) as raised:
        cloudhsm_kms.upload_object(_clients()["s3"], bucket, key, source, kms_key=recorded.KEY_ARN)
    assert raised.value.response["Error"]["Code"] == "KMS.KMSInvalidStateException"
    ledger.add(CATEGORY, inputs=1)


# --- An HSM lost from one availability zone ---------------------------------------------------------------
@pytest.mark.parametrize(
    "hsms",
    [
        [recorded.hsm("hsm-aaaaaaaaaaa", A), recorded.hsm("hsm-bbbbbbbbbbb", B, "DEGRADED", message="HSM failure")],
        [recorded.hsm("hsm-aaaaaaaaaaa", A), recorded.hsm("hsm-bbbbbbbbbbb", B, "DELETE_IN_PROGRESS")],
        [recorded.hsm("hsm-aaaaaaaaaaa", A), recorded.hsm("hsm-bbbbbbbbbbb", B, "CREATE_IN_PROGRESS")],
    ],
    ids=["degraded", "being-deleted", "being-replaced"],
)
def test_hsm_lost_from_one_zone_is_reported_per_zone(ledger, stubs, hsms) -> None:
    topic = Topic()
    # GIVEN two zones, one of which has no ACTIVE HSM any more (the HSM record is still listed)
    # WHEN the monitor runs
    report, _ = _monitor(
        stubs, recorded.key_store("CONNECTED"), recorded.cluster("ACTIVE", hsms), recorded.key_metadata(), topic
    )
    ledger.add(CATEGORY, inputs=1)
    # THEN the per-zone count shows 0 for that zone, the check is a problem and it alarms
    cluster_check = next(c for c in report.checks if c.name == "cluster")
    assert cluster_check.status == logic.PROBLEM
    assert report.metrics()[names.METRIC_MIN_HSMS_PER_AZ] == 0
    assert report.metrics()[names.METRIC_ACTIVE_HSMS] == 1
    assert f"{B}: 0" in cluster_check.detail and cluster_check.remedy
    assert len(topic.messages) == 1


def test_extra_hsm_lost_from_the_second_zone_still_alarms(ledger, stubs) -> None:
    topic = Topic()
    # GIVEN three HSMs (two in zone a, one in zone b), and zone b's HSM failed
    hsms = [
        recorded.hsm("hsm-aaaaaaaaaaa", A),
        recorded.hsm("hsm-ccccccccccc", A),
        recorded.hsm("hsm-bbbbbbbbbbb", B, "DEGRADED"),
    ]
    # WHEN the monitor runs
    report, _ = _monitor(
        stubs, recorded.key_store("CONNECTED"), recorded.cluster("ACTIVE", hsms), recorded.key_metadata(), topic
    )
    ledger.add(CATEGORY, inputs=1)
    # THEN enough HSMs in total, but one zone only: a problem (CreateKey needs two zones), alarmed
    assert report.metrics()[names.METRIC_ACTIVE_HSMS] == 2
    assert report.metrics()[names.METRIC_MIN_HSMS_PER_AZ] == 0
    assert not report.healthy and len(topic.messages) == 1


def test_hsm_gone_from_one_zone_reports_zero_for_that_zone(ledger, stubs) -> None:
    topic = Topic()
    # GIVEN a cluster mapped to zones a and b whose zone-b HSM was deleted (no longer listed)
    report, _ = _monitor(
        stubs, recorded.key_store("CONNECTED"), recorded.cluster("ACTIVE", [recorded.hsm("hsm-aaaaaaaaaaa", A)]),
        recorded.key_metadata(), topic,
    )  # fmt: skip
    ledger.add(CATEGORY, inputs=1)
    # WHEN/THEN the monitor alarms and reports zone b with 0 ACTIVE HSMs
    assert not report.healthy
    cluster_check = next(c for c in report.checks if c.name == "cluster")
    assert report.metrics()[names.METRIC_MIN_HSMS_PER_AZ] == 0
    assert f"{B}: 0" in cluster_check.detail


# --- InitializeCluster interrupted and re-run --------------------------------------------------------------
def make_csr() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HSM:1234:PARTN:0, for FIPS mode")])
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def issuing() -> ca_lib.IssuingCa:
    return ca_lib.create_issuing_ca("Exempelkommun CA", key_type="p384")


class Interrupted(BaseException):
    """Stands for Ctrl-C / the operator's session ending while init waits."""


def _init(issuing, lines: list[str], *, sleep=lambda _s: None, load=None) -> str:
    ticks = iter(range(0, 100_000, 15))
    return cloudhsm_kms.run_init(
        _clients()["cloudhsmv2"], recorded.CLUSTER_ID, trust_anchor_pem=issuing.certificate_pem(),
        load_ca=load or (lambda: issuing), echo=lines.append, sleep=sleep, clock=lambda: float(next(ticks)),
        timeout=600, poll=15,
    )  # fmt: skip


def _no_ca():
    raise AssertionError("the CA is not needed once InitializeCluster was accepted")


def _initialize(stubs, issuing) -> None:
    stubs["cloudhsmv2"].add_response(
        "initialize_cluster", {"State": "INITIALIZE_IN_PROGRESS"},
        {"ClusterId": recorded.CLUSTER_ID, "SignedCert": ANY, "TrustAnchor": issuing.certificate_pem()},
    )  # fmt: skip


@pytest.mark.parametrize(
    "code", ["CloudHsmInternalFailureException", "CloudHsmServiceException", "ThrottlingException"]
)
def test_initialize_refused_then_rerun_initializes(ledger, stubs, issuing, code: str) -> None:
    hsm = stubs["cloudhsmv2"]
    csr = make_csr()
    # GIVEN an UNINITIALIZED cluster whose InitializeCluster call fails once
    hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", TWO_ZONES, csr=csr), FILTER)
    hsm.add_client_error("initialize_cluster", service_error_code=code, http_status_code=500)
    # WHEN init runs  THEN the error surfaces (main() prints it as one line)
    with pytest.raises(ClientError):
        _init(issuing, [])
    # WHEN init is re-run  THEN it signs again, initializes and waits to INITIALIZED
    hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", TWO_ZONES, csr=csr), FILTER)
    _initialize(stubs, issuing)
    hsm.add_response("describe_clusters", recorded.cluster("INITIALIZE_IN_PROGRESS", TWO_ZONES), FILTER)
    hsm.add_response("describe_clusters", recorded.cluster("INITIALIZED", TWO_ZONES), FILTER)
    lines: list[str] = []
    assert _init(issuing, lines) == "INITIALIZED"
    assert any("cluster activate" in line for line in lines)
    ledger.add(CATEGORY, inputs=2)


def test_interrupted_while_waiting_then_rerun_only_waits(ledger, stubs, issuing) -> None:
    hsm = stubs["cloudhsmv2"]
    # GIVEN init accepted by the cluster and interrupted while waiting
    hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", TWO_ZONES, csr=make_csr()), FILTER)
    _initialize(stubs, issuing)

    def interrupt(_seconds: float) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        _init(issuing, [], sleep=interrupt)
    # WHEN re-run while the cluster is still initializing, then done
    hsm.add_response("describe_clusters", recorded.cluster("INITIALIZE_IN_PROGRESS", TWO_ZONES), FILTER)
    hsm.add_response("describe_clusters", recorded.cluster("INITIALIZE_IN_PROGRESS", TWO_ZONES), FILTER)
    hsm.add_response("describe_clusters", recorded.cluster("INITIALIZED", TWO_ZONES), FILTER)
    # THEN it only waits: no second InitializeCluster (the Stubber would refuse it), no CA needed
    assert _init(issuing, [], load=_no_ca) == "INITIALIZED"
    ledger.add(CATEGORY, inputs=2)


def test_lost_answer_then_rerun_before_the_state_changed(ledger, stubs, issuing) -> None:
    hsm = stubs["cloudhsmv2"]
    csr = make_csr()
    # GIVEN InitializeCluster reached AWS but its answer was lost (a timeout on the operator's side)
    hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", TWO_ZONES, csr=csr), FILTER)
    hsm.add_client_error("initialize_cluster", service_error_code="RequestTimeout", http_status_code=500)
    with pytest.raises(ClientError):
        _init(issuing, [])
    # WHEN init is re-run while DescribeClusters still says UNINITIALIZED, and AWS refuses the second call
    hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", TWO_ZONES, csr=csr), FILTER)
    hsm.add_client_error(
        "initialize_cluster", service_error_code="CloudHsmInvalidRequestException", http_status_code=400,
        service_message="The cluster is already being initialized",
    )  # fmt: skip
    lines: list[str] = []
    try:
        state = _init(issuing, lines)
    except ClientError as error:
        # THEN either it continues (preferred) or it stops with one clear line; a third run continues
        assert "\n" not in str(error)
        hsm.add_response("describe_clusters", recorded.cluster("INITIALIZE_IN_PROGRESS", TWO_ZONES), FILTER)
        hsm.add_response("describe_clusters", recorded.cluster("INITIALIZED", TWO_ZONES), FILTER)
        state = _init(issuing, lines, load=_no_ca)
    assert state == "INITIALIZED"
    ledger.add(CATEGORY, inputs=3)


def test_init_through_main_reports_an_api_error_in_one_line(ledger, stubs, issuing, tmp_path, monkeypatch) -> None:
    # GIVEN a CA on disk and a cluster whose DescribeClusters is throttled beyond retries
    cert_path, key_path = ca_lib.write_ca(issuing, tmp_path / "ca")
    hsm = stubs["cloudhsmv2"]
    hsm.add_client_error("describe_clusters", service_error_code="ThrottlingException", http_status_code=400)
    monkeypatch.setattr(cloudhsm_kms.Aws, "client", lambda self, service: _clients()[service])
    monkeypatch.setattr(cloudhsm_kms.Aws, "output", lambda self, key, required=True: self.overrides.get(key, ""))
    lines: list[str] = []
    # WHEN init runs through the CLI entry point
    code = cloudhsm_kms.main(
        ["--cluster-id", recorded.CLUSTER_ID, "init", "--ca-cert", str(cert_path), "--ca-key", str(key_path)],
        err=lines.append,
    )
    ledger.add(CATEGORY, inputs=1)
    # THEN the AWS-error exit code with one line naming the operation and the code
    assert code == cloudhsm_kms.EXIT_AWS
    assert lines[-1].startswith("error: DescribeClusters failed with ThrottlingException")
    assert all("\n" not in line for line in lines)
