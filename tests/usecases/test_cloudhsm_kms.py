"""Use case 2 operator flow: the demo end to end, init's resume logic, ca, upload/download/verify."""

from __future__ import annotations

import functools
import json
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from kommunmoln.tier_b import ca as ca_lib
from kommunmoln.tier_b import recorded
from lambdas.keystore_monitor import logic as monitor_logic
from usecases import cloudhsm_kms

FILTER = {"Filters": {"clusterIds": [recorded.CLUSTER_ID]}}
ACTIVE_HSMS = [recorded.hsm("hsm-aaaaaaaaaaa", recorded.ZONES[0]), recorded.hsm("hsm-bbbbbbbbbbb", recorded.ZONES[1])]


def test_demo_runs_end_to_end_offline(moto_endpoint: str) -> None:
    # GIVEN a local moto server / WHEN the demo runs
    lines: list[str] = []
    code = cloudhsm_kms.main(["--endpoint-url", moto_endpoint, "demo"], echo=lines.append)
    text = "\n".join(lines)
    # THEN it says what stands in for what, every step is as expected, and it exits 0
    assert code == 0, text
    assert "moto has no CloudHSM" in text and "regular moto KMS key stands in" in text
    assert "ConnectionErrorCode INVALID_CREDENTIALS" in text
    assert "wrong-key.pdf        -> quarantined wrong-kms-key" in text
    assert "cluster activate" in text and "user create --username kmsuser --role crypto-user" in text
    assert "15 of 15 steps as expected" in text


# --- init ------------------------------------------------------------------------------------
@functools.cache
def _cloudhsm() -> Any:
    return boto3.Session(region_name=recorded.REGION).client(
        "cloudhsmv2", endpoint_url="https://cloudhsmv2.eu-north-1.amazonaws.com"
    )


@pytest.fixture
def hsm() -> Iterator[Stubber]:
    with Stubber(_cloudhsm()) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture(scope="module")
def issuing() -> ca_lib.IssuingCa:
    return ca_lib.create_issuing_ca("Exempelkommun CA", key_type="p384")


def init(issuing: ca_lib.IssuingCa, lines: list[str], *, timeout: float = 60, load: Any = None) -> str:
    ticks = iter(range(0, 10_000, 15))
    return cloudhsm_kms.run_init(
        _cloudhsm(),
        recorded.CLUSTER_ID,
        trust_anchor_pem=issuing.certificate_pem(),
        load_ca=load or (lambda: issuing),
        echo=lines.append,
        sleep=lambda _s: None,
        clock=lambda: float(next(ticks)),
        timeout=timeout,
        poll=15,
    )


def test_init_signs_checks_initializes_and_waits(hsm: Stubber, issuing: ca_lib.IssuingCa) -> None:
    from tests.library.tier_b.test_ca import make_csr

    hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED", ACTIVE_HSMS, csr=make_csr()), FILTER)
    hsm.add_response(
        "initialize_cluster",
        {"State": "INITIALIZE_IN_PROGRESS"},
        {"ClusterId": recorded.CLUSTER_ID, "SignedCert": ANY, "TrustAnchor": issuing.certificate_pem()},
    )
    hsm.add_response("describe_clusters", recorded.cluster("INITIALIZED", ACTIVE_HSMS), FILTER)
    lines: list[str] = []
    assert init(issuing, lines) == "INITIALIZED"
    assert any("aws-cloudhsm > cluster activate" in line for line in lines)


def test_rerun_while_initializing_only_waits(hsm: Stubber, issuing: ca_lib.IssuingCa) -> None:
    hsm.add_response("describe_clusters", recorded.cluster("INITIALIZE_IN_PROGRESS", ACTIVE_HSMS), FILTER)
    hsm.add_response("describe_clusters", recorded.cluster("INITIALIZED", ACTIVE_HSMS), FILTER)

    def no_ca() -> ca_lib.IssuingCa:
        raise AssertionError("the CA is not needed once InitializeCluster was accepted")

    assert init(issuing, [], load=no_ca) == "INITIALIZED"


@pytest.mark.parametrize("state", ["INITIALIZED", "ACTIVE"])
def test_rerun_after_initialization_skips_to_the_next_step(hsm: Stubber, issuing: ca_lib.IssuingCa, state: str) -> None:
    hsm.add_response("describe_clusters", recorded.cluster(state, ACTIVE_HSMS), FILTER)
    lines: list[str] = []
    assert init(issuing, lines) == state
    assert any("configure-cli -a 10.42." in line for line in lines)


def test_waiting_for_initialized_is_bounded(hsm: Stubber, issuing: ca_lib.IssuingCa) -> None:
    # GIVEN a cluster that stays INITIALIZE_IN_PROGRESS (the fake clock advances 15 s per look)
    for _ in range(2):
        hsm.add_response("describe_clusters", recorded.cluster("INITIALIZE_IN_PROGRESS", ACTIVE_HSMS), FILTER)
    # WHEN / THEN init stops at the timeout and says how to continue
    with pytest.raises(cloudhsm_kms.OperatorError, match="still INITIALIZE_IN_PROGRESS after 30 s; run init again"):
        init(issuing, [], timeout=30)


def test_uninitialized_cluster_without_csr_says_to_wait(hsm: Stubber, issuing: ca_lib.IssuingCa) -> None:
    hsm.add_response("describe_clusters", recorded.cluster("UNINITIALIZED"), FILTER)
    with pytest.raises(cloudhsm_kms.OperatorError, match="no CSR yet"):
        init(issuing, [])


def test_degraded_cluster_is_not_initialized(hsm: Stubber, issuing: ca_lib.IssuingCa) -> None:
    hsm.add_response("describe_clusters", recorded.cluster("DEGRADED", message="HSM lost"), FILTER)
    with pytest.raises(cloudhsm_kms.OperatorError, match=r"DEGRADED \(HSM lost\)"):
        init(issuing, [])


def test_next_step_follows_the_lifecycle() -> None:
    skipped = monitor_logic.HealthReport((monitor_logic.Check("key-store", monitor_logic.SKIPPED, "phase 1"),))
    uninit = recorded.cluster("UNINITIALIZED", ACTIVE_HSMS)["Clusters"][0]
    assert "init" in cloudhsm_kms.next_step(uninit, skipped)
    active = recorded.cluster("ACTIVE", ACTIVE_HSMS)["Clusters"][0]
    assert "tier_b_keystore_enabled=true" in cloudhsm_kms.next_step(active, skipped)
    failed = monitor_logic.HealthReport((monitor_logic.Check("key-store", monitor_logic.PROBLEM, "FAILED", "do X"),))
    assert cloudhsm_kms.next_step(active, failed) == "key-store: do X"
    cost = cloudhsm_kms.hsm_cost_lines(active)
    assert "2 HSM x 24 h = 48 HSM-hours per day" in cost[1] and "no free tier" in cost[1]


# --- ca, upload, download, verify --------------------------------------------------------------
def test_ca_command_writes_a_0600_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    lines: list[str] = []
    args = ["ca", "--out", str(tmp_path), "--key-type", "p384"]
    assert cloudhsm_kms.main(args, echo=lines.append) == 0
    assert stat.S_IMODE((tmp_path / "customerCA.key").stat().st_mode) == 0o600
    errors: list[str] = []
    assert cloudhsm_kms.main(args, echo=lines.append, err=errors.append) == cloudhsm_kms.EXIT_OPERATOR
    assert "refusing to overwrite" in errors[-1]


def test_upload_download_verify_report_the_protecting_key(moto_endpoint: str, tmp_path: Path) -> None:
    # GIVEN a bucket and a key on the moto server
    session = boto3.Session(region_name="eu-north-1")
    s3 = session.client("s3", endpoint_url=moto_endpoint)
    kms = session.client("kms", endpoint_url=moto_endpoint)
    bucket = f"kommunmoln-uc2-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    source = tmp_path / "beslut.txt"
    source.write_text("Beslut enligt OSL\n", encoding="utf-8")
    common = ["--endpoint-url", moto_endpoint, "--bucket", bucket, "--key-id", key_arn]
    lines: list[str] = []
    # WHEN uploaded, verified and downloaded
    assert cloudhsm_kms.main([*common, "upload", str(source)], echo=lines.append) == 0
    assert cloudhsm_kms.main([*common, "verify", "beslut.txt"], echo=lines.append) == 0
    out = tmp_path / "back.txt"
    assert cloudhsm_kms.main([*common, "download", "beslut.txt", "--out", str(out)], echo=lines.append) == 0
    # THEN each step names the key, and the bytes round-trip
    assert f"encryption aws:kms, KMS key {key_arn}, bucket key on" in lines[0]
    assert "OK" in lines[1]
    assert out.read_bytes() == source.read_bytes()
    # AND an object under another encryption fails verify with the reason
    s3.put_object(Bucket=bucket, Key="sse-s3.txt", Body=b"x", ServerSideEncryption="AES256")
    assert cloudhsm_kms.main([*common, "verify", "sse-s3.txt"], echo=lines.append) == 1
    assert "FAIL not-sse-kms" in lines[-1]
    errors: list[str] = []
    code = cloudhsm_kms.main(
        [*common, "download", "beslut.txt", "--out", str(out)], echo=lines.append, err=errors.append
    )
    assert code == cloudhsm_kms.EXIT_OPERATOR and "exists" in errors[-1]


def test_missing_stack_gives_one_clear_line(moto_endpoint: str) -> None:
    lines: list[str] = []
    code = cloudhsm_kms.main(["--endpoint-url", moto_endpoint, "--stack-name", "nope", "status"], err=lines.append)
    assert code == cloudhsm_kms.EXIT_OPERATOR
    assert lines[-1].startswith("error: cannot read stack nope")


def test_data_plane_commands_assume_the_usage_role(moto_endpoint: str) -> None:
    # GIVEN the stack's usage role (the only principal the key policy lets use the key) and an operator tool
    session = boto3.Session(region_name="eu-north-1")
    iam = session.client("iam", endpoint_url=moto_endpoint)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}  # fmt: skip
    role_arn = iam.create_role(RoleName=f"usage-{secrets.token_hex(4)}", AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"
    ]["Arn"]
    aws = cloudhsm_kms.Aws(endpoint_url=moto_endpoint, role_arn=role_arn)
    # WHEN a data-plane client is built
    s3 = aws.data_client("s3")
    # THEN it signs with the role's temporary credentials (STS session keys), not the caller's
    creds = s3._request_signer._credentials.get_frozen_credentials()
    assert creds.token and creds.access_key != aws.client("s3")._request_signer._credentials.access_key
    # AND without a role the caller's own client is used
    assert cloudhsm_kms.Aws(endpoint_url=moto_endpoint).data_client("s3") is not None
