"""`make preflight` against botocore's Stubber (real service models validate every request and response).

Each scripted response states the documented behaviour it stands for (see deploy/preflight.py for the pages).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from deploy import preflight
from kommunmoln.config import load_config
from stacks.components.function import POWERTOOLS_PARAMETER
from tests.conftest import REPO_ROOT, Synthesized

REGION = "eu-north-1"
ACCOUNT = "111122223333"
SERVICES = ("sts", "ssm", "lambda", "s3", "ec2", "kms", "pricing")


class Fake:
    def __init__(self) -> None:
        session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
        self.clients = {s: session.client(s, region_name="us-east-1" if s == "pricing" else REGION) for s in SERVICES}
        self.stubs = {s: Stubber(c) for s, c in self.clients.items()}

    def __call__(self, service: str) -> Any:
        return self.clients[service]


@pytest.fixture
def fake() -> Iterator[Fake]:
    f = Fake()
    for stub in f.stubs.values():
        stub.activate()
    yield f
    for stub in f.stubs.values():
        stub.deactivate()


def config(**overrides: Any):
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return load_config({**context, **overrides})


def script_healthy(
    fake: Fake, assembly: preflight.Assembly, *, unreserved: int = 1000, bucket_code: str = "404"
) -> None:
    st = fake.stubs
    st["sts"].add_response("get_caller_identity", {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:role/Platform",
                                                   "UserId": "AROAEXAMPLE"})  # fmt: skip
    # The bootstrap stack writes its version to /cdk-bootstrap/hnb659fds/version (CDK guide, Bootstrapping).
    st["ssm"].add_response("get_parameter", {"Parameter": {"Name": preflight.BOOTSTRAP_PARAMETER, "Value": "30"}},
                           {"Name": preflight.BOOTSTRAP_PARAMETER})  # fmt: skip
    # GetAccountSettings reports the account's unreserved concurrency (Lambda API reference).
    st["lambda"].add_response("get_account_settings", {"AccountLimit": {"UnreservedConcurrentExecutions": unreserved,
                                                                        "ConcurrentExecutions": unreserved}})  # fmt: skip
    st["ssm"].add_response("get_parameter", {"Parameter": {"Name": POWERTOOLS_PARAMETER, "Value": "arn:aws:lambda:x"}},
                           {"Name": POWERTOOLS_PARAMETER})  # fmt: skip
    # HeadBucket: 404 for a name no one uses, 403 for a bucket of another account, 200 for our own.
    buckets = {n for p in assembly.resources("AWS::S3::Bucket")
               if (n := preflight._literal(p.get("BucketName"), account=ACCOUNT, region=REGION, partition="aws"))}  # fmt: skip
    for bucket in sorted(buckets):
        st["s3"].add_client_error(
            "head_bucket", bucket_code, http_status_code=int(bucket_code), expected_params={"Bucket": bucket}
        )
    st["ec2"].add_response("describe_launch_templates", {"LaunchTemplates": []})
    # DescribeKey on an alias no key has: NotFoundException (KMS API reference).
    for _ in range(2):
        st["kms"].add_client_error("describe_key", "NotFoundException", http_status_code=400)
    price = {"product": {"attributes": {"instanceType": "hsm2m.medium"}}, "terms": {"OnDemand": {"t": {"priceDimensions": {
        "d": {"unit": "Hrs", "pricePerUnit": {"USD": "1.8500000000"}}}}}}}  # fmt: skip
    st["pricing"].add_response("get_products", {"PriceList": [json.dumps(price)], "FormatVersion": "aws_v1"})


def test_healthy_account_passes_every_check_but_names_the_missing_settings(
    fake: Fake, synthesized: Synthesized
) -> None:
    # GIVEN the example app (no alarm e-mail, no tier A client principals) and an account ready for it
    assembly = preflight.Assembly.read(synthesized.outdir)
    script_healthy(fake, assembly)
    results = {r.name: r for r in preflight.run_checks(config(), assembly, fake)}
    # THEN the AWS-side checks pass, one HSM's hourly cost is shown (phase 1)
    for name in ("account", "region", "cdk-bootstrap", "lambda-concurrency", "powertools-layer", "bucket-names",
                 "key-aliases", "hsm-cost"):  # fmt: skip
        assert results[name].ok, results[name].line()
    assert "1 HSM(s) x 1.85 USD/hour" in results["hsm-cost"].detail
    # AND outside workshop mode the two required settings are problems naming the setting
    assert not results["alarm-email"].ok and "alarm_email" in results["alarm-email"].remedy
    assert not results["tier-a-clients"].ok and "tier_a_data_access_principals" in results["tier-a-clients"].line()
    assert not results["cloudhsm-cli-pin"].ok and "tier_b_cloudhsm_cli_sha256" in results["cloudhsm-cli-pin"].line()


def test_configured_clients_their_networks_and_the_cli_pin_pass(fake: Fake, synthesized: Synthesized) -> None:
    # GIVEN a production config naming its on-premises principal, its network and the CLI package checksum
    assembly = preflight.Assembly.read(synthesized.outdir)
    script_healthy(fake, assembly)
    settings = config(
        alarm_email="it@kommun.se",
        tier_a_data_access_principals=["arn:aws:iam::111122223333:role/FileServer"],
        tier_a_client_source_ips=["193.44.0.0/24"],
        tier_b_cloudhsm_cli_sha256="ab" * 32,
    )
    results = {r.name: r for r in preflight.run_checks(settings, assembly, fake)}
    # THEN the settings checks pass and say what they allow
    assert results["tier-a-clients"].ok and "only from 193.44.0.0/24" in results["tier-a-clients"].detail
    assert results["cloudhsm-cli-pin"].ok and "ab" * 32 in results["cloudhsm-cli-pin"].detail
    # AND in workshop mode neither is required
    workshop = {
        r.name: r for r in preflight.run_checks(config(workshop_mode=True), assembly, _rescripted(fake, assembly))
    }
    assert "tier-a-clients" not in workshop and workshop["settings"].ok


def _rescripted(fake: Fake, assembly: preflight.Assembly) -> Fake:
    script_healthy(fake, assembly)
    return fake


def test_small_lambda_quota_and_taken_bucket_names_are_problems_with_remedies(
    fake: Fake, synthesized: Synthesized
) -> None:
    # GIVEN a new account (Lambda concurrency quota 10) where the bucket names already exist (a retained bucket)
    assembly = preflight.Assembly.read(synthesized.outdir)
    script_healthy(fake, assembly, unreserved=10, bucket_code="403")
    results = {r.name: r for r in preflight.run_checks(config(alarm_email="it@kommun.se"), assembly, fake)}
    # THEN both are problems and say what to do
    assert (
        not results["lambda-concurrency"].ok
        and "lambda_reserved_concurrency=false" in results["lambda-concurrency"].remedy
    )
    assert not results["bucket-names"].ok and "already exist" in results["bucket-names"].detail


def test_main_prints_one_line_per_check_and_exits_non_zero_on_a_problem(
    fake: Fake, synthesized: Synthesized, capsys: pytest.CaptureFixture[str]
) -> None:
    assembly = preflight.Assembly.read(synthesized.outdir)
    script_healthy(fake, assembly)
    code = preflight.main(["--assembly", str(synthesized.outdir)], client_factory=lambda region, profile: fake)
    out = capsys.readouterr().out.splitlines()
    assert code == preflight.EXIT_PROBLEM
    assert all(line.startswith(("ok ", "PROBLEM ", "preflight:")) for line in out)
    assert any(line.startswith("ok       workshop-mode: off") for line in out)


def test_missing_assembly_cannot_run(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert preflight.main(["--assembly", str(tmp_path)]) == preflight.EXIT_CANNOT_RUN
    assert "make synth" in capsys.readouterr().err


# --- which tiers a Region offers (tier C, issue 14) -------------------------------------------
def test_tiers_of_the_sovereign_cloud_are_a_and_c_without_cloudhsm() -> None:
    # GIVEN the SDK's endpoint data for aws-eusc (KMS listed, CloudHSM not) WHEN asked for eusc-de-east-1
    line = preflight.tiers_offered("eusc-de-east-1").line()
    # THEN tier A and C are offered, tier B is not, and the reason names cloudhsmv2
    assert "eusc-de-east-1 (aws-eusc)" in line
    assert "tier A (client-side encryption): yes" in line
    assert "tier B (CloudHSM key store): no (cloudhsmv2 not offered)" in line
    assert "tier C (external key store, XKS): yes" in line


def test_tiers_of_stockholm_are_all_three() -> None:
    line = preflight.tiers_offered("eu-north-1").line()
    assert line.count(": yes") == 3 and "(aws)" in line


def test_tiers_flag_prints_without_credentials_and_refuses_an_unknown_region(capsys) -> None:
    # GIVEN no cloud assembly and no credentials WHEN --tiers runs THEN it prints the one line and exits 0
    assert preflight.main(["--tiers", "eusc-de-east-1", "--assembly", "/nonexistent"]) == 0
    assert "tier B (CloudHSM key store): no" in capsys.readouterr().out
    # AND a Region no partition lists cannot run
    assert preflight.main(["--tiers", "xx-nowhere-9"]) == preflight.EXIT_CANNOT_RUN
