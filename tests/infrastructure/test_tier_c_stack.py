"""Tier C stack (use case 3): the external key store (XKS) custom resources, key, bucket and gates.

Two apps, each synthesized once with the compliance gates (synthesis raises on any unacknowledged
finding): PUBLIC_ENDPOINT connectivity in eu-north-1 (partition aws) and VPC_ENDPOINT_SERVICE
connectivity in the AWS European Sovereign Cloud (eusc-de-east-1, partition aws-eusc). The default
cdk.json app deploys no tier C at all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file

from kommunmoln import names
from tests.conftest import Synthesized, synthesize
from tests.infrastructure.test_cfn_lint import ACCEPTED_WARNINGS

TIER_C = "-tier-c"
SECRET = "arn:{p}:secretsmanager:{r}:111122223333:secret:kommunmoln/xks-proxy-AbCdEf"
BASE = {
    "use_cases": [names.USE_CASE_CLIENT_SIDE, names.USE_CASE_EXTERNAL_KEY_STORE],
    "tier_c_proxy_uri_endpoint": "https://xks.exempel.se",
    "tier_c_xks_key_id": "kommun-key-1",
}
EUSC = "eusc-de-east-1"


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    context = {**BASE, "tier_c_credential_secret_arn": SECRET.format(p="aws", r="eu-north-1")}
    return synthesize(tmp_path_factory.mktemp("cdk.out.tierc.public"), context)


@pytest.fixture(scope="module")
def eusc(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    context = {
        **BASE,
        "region": EUSC,
        "allowed_regions": [EUSC],
        "availability_zones": [f"{EUSC}a", f"{EUSC}b"],
        "tier_c_connectivity": "VPC_ENDPOINT_SERVICE",
        "tier_c_proxy_target_ips": ["10.200.0.10", "10.200.1.10"],
        "tier_c_credential_secret_arn": SECRET.format(p="aws-eusc", r=EUSC),
    }
    return synthesize(tmp_path_factory.mktemp("cdk.out.tierc.eusc"), context)


def _one(synth: Synthesized, resource_type: str) -> tuple[str, dict[str, Any]]:
    (item,) = synth.resources(TIER_C, resource_type).items()
    return item


def test_default_app_deploys_no_tier_c(synthesized: Synthesized) -> None:
    # GIVEN the default cdk.json WHEN synthesized THEN there is no tier C stack (opt-in: it needs a running proxy)
    assert not any(name.endswith(TIER_C) for name in synthesized.templates)


@pytest.mark.parametrize("app", ["public", "eusc"])
def test_gates_pass_and_cfn_lint_is_clean(app: str, request: pytest.FixtureRequest) -> None:
    # GIVEN a tier C app synthesized with every pack (synthesis itself raises on an unacknowledged finding)
    synth: Synthesized = request.getfixturevalue(app)
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    for plugin in report["pluginReports"]:
        assert plugin["violations"] == [], plugin["pluginName"]
    # WHEN cfn-lint checks every template for the app's region THEN nothing but the accepted warnings remains
    region = EUSC if app == "eusc" else "eu-north-1"
    problems = [
        f"{path.name}: {match.rule.id} {match.message}"
        for path in sorted(synth.outdir.glob("*.template.json"))
        for match in lint_file(path, config=ManualArgs(regions=[region]))
        if match.rule.id not in ACCEPTED_WARNINGS
    ]
    assert problems == []


def test_public_key_store_is_external_and_the_credential_stays_in_secrets_manager(public: Synthesized) -> None:
    # GIVEN the PUBLIC_ENDPOINT app
    _, store = _one(public, names.RESOURCE_KMS_EXTERNAL_KEY_STORE)
    props = store["Properties"]
    # THEN the key store resource names the proxy and only the ARN of the credential's secret
    assert props["Connectivity"] == "PUBLIC_ENDPOINT"
    assert props["UriEndpoint"] == "https://xks.exempel.se"
    assert props["UriPath"] == "/kms/xks/v1"
    assert props["VpcEndpointServiceName"] == ""
    assert props["CredentialSecretArn"] == SECRET.format(p="aws", r="eu-north-1")
    text = json.dumps(public.template(TIER_C))
    assert "RawSecretAccessKey" not in text and "XksProxyAuthenticationCredential" not in text
    # AND it is retained (production)
    assert store["DeletionPolicy"] in ("Retain", "RetainExceptOnCreate")
    # AND no endpoint service or NLB exists for a public endpoint
    assert not public.resources(TIER_C, "AWS::EC2::VPCEndpointService")
    assert not public.resources(TIER_C, "AWS::ElasticLoadBalancingV2::LoadBalancer")


def test_key_is_external_with_tier_b_strict_policy(public: Synthesized) -> None:
    # GIVEN the key resource
    _, key = _one(public, names.RESOURCE_KMS_XKS_KEY)
    props = key["Properties"]
    # THEN it names the external key and the key store created in the same stack
    assert props["XksKeyId"] == "kommun-key-1"
    store_id = next(iter(public.resources(TIER_C, names.RESOURCE_KMS_EXTERNAL_KEY_STORE)))
    assert props["CustomKeyStoreId"] == {"Fn::GetAtt": [store_id, "CustomKeyStoreId"]}
    # AND its policy grants no wildcard action, and use only through S3 in this Region
    policy = json.dumps(
        public.template(TIER_C)["Resources"][next(iter(public.resources(TIER_C, names.RESOURCE_KMS_XKS_KEY)))]
    )
    assert '"kms:*"' not in policy and '"Action": "*"' not in policy
    assert "s3.eu-north-1.amazonaws.com" in policy
    assert props["AliasName"] == "alias/kommunmoln-exempel-tier-c"


def test_provisioner_may_create_only_external_key_store_keys(public: Synthesized) -> None:
    # GIVEN the provisioner's managed policy
    statements = [
        s
        for policy in public.resources(TIER_C, "AWS::IAM::ManagedPolicy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    create = [s for s in statements if s["Effect"] == "Allow"
              and (s.get("Action") == "kms:CreateKey" or "kms:CreateKey" in s.get("Action", []))]  # fmt: skip
    # THEN CreateKey is conditioned on origin EXTERNAL_KEY_STORE, never AWS_CLOUDHSM or AWS_KMS
    assert create and all(s["Condition"]["StringEquals"]["kms:KeyOrigin"] == "EXTERNAL_KEY_STORE" for s in create)
    # AND the credential secret is readable by exactly its ARN
    reads = [s for s in statements if s.get("Sid") == "ReadProxyCredential"]
    assert reads and reads[0]["Resource"] == SECRET.format(p="aws", r="eu-north-1")


def test_bucket_is_tier_c_sse_kms_with_tier_b_guards_and_validator(public: Synthesized) -> None:
    # GIVEN the protected data bucket
    data = [
        b
        for b in public.resources(TIER_C, "AWS::S3::Bucket").values()
        if {"Key": names.TAG_TIER, "Value": names.TIER_C} in b["Properties"].get("Tags", [])
    ]
    (bucket,) = data
    rule = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    key_id = next(iter(public.resources(TIER_C, names.RESOURCE_KMS_XKS_KEY)))
    # THEN default encryption is SSE-KMS with the external key and a Bucket Key
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [key_id, "KeyArn"]}
    assert rule["BucketKeyEnabled"] is True
    # AND the bucket policy carries tier B's PutObject guards
    sids = {s.get("Sid") for p in public.resources(TIER_C, "AWS::S3::BucketPolicy").values()
            for s in p["Properties"]["PolicyDocument"]["Statement"]}  # fmt: skip
    assert {"DenyOtherEncryptionModes", "DenyOtherKmsKeys", "DenyKmsWithoutKeyId", "DenySseC"} <= sids
    # AND tier A's deletion, perimeter, status-tag and configuration guards (as on tier B's bucket)
    assert {"DenyDeletionExceptSecurityRole", "DenyDataAccessOutsideEndpointAndPrincipals",
            "DenyStatusTagsFromOthersThanValidator", "DenyConfigurationChangesExceptBreakGlass"} <= sids  # fmt: skip
    outputs = public.template(TIER_C)["Outputs"]
    assert {names.OUTPUT_SECURITY_ROLE, names.OUTPUT_BREAK_GLASS_ROLE, names.OUTPUT_SSE_BUCKET} <= set(outputs)
    # AND new objects go to the validator, which expects the external key
    functions = public.resources(TIER_C, "AWS::Lambda::Function").values()
    validators = [
        f for f in functions if f["Properties"].get("Handler") == "lambdas.tier_b_validator.handler.lambda_handler"
    ]
    (validator,) = validators
    env = validator["Properties"]["Environment"]["Variables"]
    assert env[names.ENV_EXPECTED_KMS_KEY_ARN] == {"Fn::GetAtt": [key_id, "KeyArn"]}
    assert env[names.ENV_SERVICE_NAME] == "tier-c-object-validator"


def test_monitor_checks_the_external_key_store(public: Synthesized) -> None:
    monitors = [
        f for f in public.resources(TIER_C, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "lambdas.keystore_monitor.handler.lambda_handler"
    ]  # fmt: skip
    (monitor,) = monitors
    env = monitor["Properties"]["Environment"]["Variables"]
    assert env[names.ENV_KEY_STORE_TYPE] == "EXTERNAL_KEY_STORE"
    assert env[names.ENV_XKS_KEY_ID] == "kommun-key-1"
    assert env[names.ENV_XKS_PROXY_URI] == "https://xks.exempel.se/kms/xks/v1"
    assert names.ENV_CLUSTER_ID not in env
    # AND it compares the live key policy with the template's (the same document the key resource applies)
    key = public.template(TIER_C)["Resources"][next(iter(public.resources(TIER_C, names.RESOURCE_KMS_XKS_KEY)))]
    assert env[names.ENV_EXPECTED_KEY_POLICY] == key["Properties"]["KeyPolicy"]


def _kms_metric_alarms(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """The alarms on AWS/KMS metrics, by the construct's alarm id (the logical id without prefix and hash)."""
    found = {}
    for logical_id, alarm in synth.resources(TIER_C, "AWS::CloudWatch::Alarm").items():
        if "AWS/KMS" in json.dumps(alarm["Properties"]):
            found[re.sub(r"^MonitorKmsMetrics|[0-9A-F]{8}$", "", logical_id)] = alarm["Properties"]
    return found


def _expression(props: dict[str, Any], key_store_id: dict[str, Any]) -> str:
    """The alarm's one Metrics Insights query, with the key store id's GetAtt shown as <id>."""
    (query,) = props["Metrics"]
    assert query["ReturnData"] is True
    return "".join("<id>" if part == key_store_id else part for part in query["Expression"]["Fn::Join"][1])


def test_kms_external_key_store_metrics_have_alarms_that_notify(public: Synthesized) -> None:
    # GIVEN the tier C stack WHEN synthesized THEN every AWS/KMS metric the KMS Developer Guide lists for
    # external key stores ("Monitor KMS keys with Amazon CloudWatch") has an alarm on this key store
    alarms = _kms_metric_alarms(public)
    assert set(alarms) == {
        "RetryableErrorsAlarm", "NonRetryableErrorsAlarm", "NoActiveKeyManagerAlarm", "KeyManagerNotActiveAlarm",
        "CertificateExpiresAlarm", "CredentialAgeAlarm", "LatencyAlarm",
    }  # fmt: skip
    store_id = {"Fn::GetAtt": [_one(public, names.RESOURCE_KMS_EXTERNAL_KEY_STORE)[0], "CustomKeyStoreId"]}
    topic = {"Ref": next(iter(public.resources(TIER_C, "AWS::SNS::Topic")))}
    for props in alarms.values():  # each one notifies the alarm topic and names its runbook
        assert props["AlarmActions"] == [topic] and props.get("ActionsEnabled", True) is not False
        assert "docs/use-case-3.md#alarms-on-the-kms-metrics" in props["AlarmDescription"]
    # AND the errors alarms are the guide's: SUM(XksProxyErrors) by ErrorType, over 5 a minute, silence is healthy
    base = "SELECT SUM(XksProxyErrors) FROM \"AWS/KMS\" WHERE CustomKeyStoreId = '<id>' AND ErrorType = "
    for name, error_type in (("RetryableErrorsAlarm", "'Retryable'"), ("NonRetryableErrorsAlarm", "'Non-retryable'")):
        props = alarms[name]
        assert _expression(props, store_id) == base + error_type
        assert props["Metrics"][0]["Period"] == 60
        assert (props["ComparisonOperator"], props["Threshold"], props["TreatMissingData"]) == (
            "GreaterThanThreshold", 5, "notBreaching")  # fmt: skip
    # AND no Active external key manager, or no health data at all, alarms (fail closed) ...
    active = alarms["NoActiveKeyManagerAlarm"]
    assert (active["MetricName"], active["Statistic"], active["Period"]) == (
        "XksExternalKeyManagerStates",
        "Minimum",
        300,
    )
    assert active["Dimensions"] == [
        {"Name": "CustomKeyStoreId", "Value": store_id},
        {"Name": "XksExternalKeyManagerState", "Value": "Active"},
    ]
    assert (active["ComparisonOperator"], active["Threshold"], active["TreatMissingData"]) == (
        "LessThanThreshold", 1, "breaching")  # fmt: skip
    # ... and so does any instance Degraded or Unavailable
    states = {
        m["Id"]: m["MetricStat"]["Metric"] for m in alarms["KeyManagerNotActiveAlarm"]["Metrics"] if "MetricStat" in m
    }
    assert {m["Dimensions"][1]["Value"] for m in states.values()} == {"Degraded", "Unavailable"}
    assert all(m["MetricName"] == "XksExternalKeyManagerStates" for m in states.values())
    assert alarms["KeyManagerNotActiveAlarm"]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    # AND the certificate alarm takes the Minimum days of any certificate name, fails closed, at the configured 30
    certificate = alarms["CertificateExpiresAlarm"]
    assert (
        _expression(certificate, store_id)
        == "SELECT MIN(XksProxyCertificateDaysToExpire) FROM \"AWS/KMS\" WHERE CustomKeyStoreId = '<id>'"
    )
    assert (certificate["ComparisonOperator"], certificate["Threshold"], certificate["TreatMissingData"]) == (
        "LessThanThreshold", 30, "breaching")  # fmt: skip
    # AND the credential is to be rotated after the configured 90 days
    credential = alarms["CredentialAgeAlarm"]
    assert (credential["MetricName"], credential["Statistic"]) == ("XksProxyCredentialAge", "Maximum")
    assert (credential["ComparisonOperator"], credential["Threshold"]) == ("GreaterThanThreshold", 90)
    # AND latency alarms at the guide's 200 ms average, before the 250 ms timeout
    latency = alarms["LatencyAlarm"]
    assert (
        _expression(latency, store_id) == "SELECT AVG(XksProxyLatency) FROM \"AWS/KMS\" WHERE CustomKeyStoreId = '<id>'"
    )
    assert (latency["ComparisonOperator"], latency["Threshold"], latency["Metrics"][0]["Period"]) == (
        "GreaterThanThreshold", 200, 300)  # fmt: skip
    # AND no alarm names a unit (the guide names none; a wrong unit would leave the alarm without data)
    assert not any("Unit" in json.dumps(props) for props in alarms.values())


def test_kms_metric_alarm_thresholds_come_from_the_config(tmp_path: Path) -> None:
    from kommunmoln.config import ConfigError, load_config

    # GIVEN other thresholds in the context WHEN loaded THEN the config carries them; out of range is refused
    context = {**BASE, "tier_c_credential_secret_arn": SECRET.format(p="aws", r="eu-north-1"),
               "tier_c_certificate_alarm_days": 45, "tier_c_credential_rotation_days": 30}  # fmt: skip
    tier_c = load_config(context).tier_c
    assert (tier_c.certificate_alarm_days, tier_c.credential_rotation_days) == (45, 30)
    for key in ("tier_c_certificate_alarm_days", "tier_c_credential_rotation_days"):
        with pytest.raises(ConfigError) as error:
            load_config({**context, key: 0})
        assert error.value.key == key


def test_vpc_endpoint_service_meets_the_kms_requirements(eusc: Synthesized) -> None:
    # GIVEN the VPC_ENDPOINT_SERVICE app in the European Sovereign Cloud
    service_id, service = _one(eusc, "AWS::EC2::VPCEndpointService")
    props = service["Properties"]
    # THEN (KMS API Reference, XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION): no acceptance required,
    # a private DNS name (the proxy's host), an NLB ...
    assert props["AcceptanceRequired"] is False
    assert props["PrivateDnsName"] == "xks.exempel.se"
    ((nlb_id, nlb),) = eusc.resources(TIER_C, "AWS::ElasticLoadBalancingV2::LoadBalancer").items()
    assert props["NetworkLoadBalancerArns"] == [{"Ref": nlb_id}]
    assert nlb["Properties"]["Type"] == "network" and nlb["Properties"]["Scheme"] == "internal"
    # ... in at least two subnets (each in a different zone) ...
    assert len(nlb["Properties"]["Subnets"]) >= 2
    # (outside workshop mode the NLB cannot be deleted by accident)
    attributes = {a["Key"]: a["Value"] for a in nlb["Properties"]["LoadBalancerAttributes"]}
    assert attributes["deletion_protection.enabled"] == "true"
    # ... and the KMS service principal of the Region among the allowed principals
    _, permissions = _one(eusc, "AWS::EC2::VPCEndpointServicePermissions")
    assert permissions["Properties"]["AllowedPrincipals"] == [f"cks.kms.{EUSC}.amazonaws.com"]
    assert permissions["Properties"]["ServiceId"] == {"Ref": service_id}
    # AND the key store waits for the verified private DNS name and uses the service's name
    dns_id, dns = _one(eusc, names.RESOURCE_XKS_ENDPOINT_SERVICE_DNS)
    assert dns["Properties"]["PrivateDnsName"] == "xks.exempel.se"
    _, store = _one(eusc, names.RESOURCE_KMS_EXTERNAL_KEY_STORE)
    assert store["Properties"]["Connectivity"] == "VPC_ENDPOINT_SERVICE"
    assert store["Properties"]["VpcEndpointServiceName"] == {"Fn::GetAtt": [dns_id, "ServiceName"]}
    assert dns_id in store["DependsOn"]
    # AND the proxies are IP targets outside the VPC on the configured port
    _, group = _one(eusc, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert {t["Id"] for t in group["Properties"]["Targets"]} == {"10.200.0.10", "10.200.1.10"}
    assert all(t["AvailabilityZone"] == "all" for t in group["Properties"]["Targets"])


def test_eusc_templates_are_partition_aware(eusc: Synthesized) -> None:
    # GIVEN every template of the aws-eusc app
    for name, template in eusc.templates.items():
        text = json.dumps(template)
        # THEN no ARN is written for the aws partition (ARNs use AWS::Partition or aws-eusc)
        assert not re.search(r"arn:aws:", text), name
    # AND the key policy's kms:ViaService names S3 under the partition's DNS suffix
    key = json.dumps(eusc.template(TIER_C)["Resources"][next(iter(eusc.resources(TIER_C, names.RESOURCE_KMS_XKS_KEY)))])
    assert f"s3.{EUSC}.amazonaws.eu" in key
    # AND no CloudHSM resource exists anywhere (the partition does not offer it)
    assert not any(
        r["Type"].startswith("AWS::CloudHSM") for t in eusc.templates.values() for r in t["Resources"].values()
    )


def test_config_refuses_tier_b_in_the_sovereign_cloud() -> None:
    from kommunmoln.config import ConfigError, load_config

    # GIVEN eusc-de-east-1 with the default use cases (tier B included) WHEN loaded THEN use_cases is refused
    with pytest.raises(ConfigError) as error:
        load_config({"region": EUSC, "allowed_regions": [EUSC], "availability_zones": [f"{EUSC}a", f"{EUSC}b"]})
    assert error.value.key == "use_cases" and "cloudhsmv2" in str(error.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tier_c_proxy_uri_endpoint", "http://xks.exempel.se"),
        ("tier_c_proxy_uri_endpoint", "https://xks.exempel.se:8443"),
        ("tier_c_proxy_uri_path", "/xks/v1"),
        ("tier_c_credential_secret_arn", "arn:aws:secretsmanager:eu-west-1:111122223333:secret:x-AbCdEf"),
        ("tier_c_credential_secret_arn", "arn:aws-eusc:secretsmanager:eu-north-1:111122223333:secret:x-AbCdEf"),
        ("tier_c_xks_key_id", "kommun key"),
        ("tier_c_connectivity", "DIRECT"),
        ("tier_c_proxy_target_ips", ["8.8.8.8"]),
    ],
)
def test_tier_c_settings_are_validated(key: str, value: Any) -> None:
    from kommunmoln.config import ConfigError, load_config

    context = {**BASE, "tier_c_credential_secret_arn": SECRET.format(p="aws", r="eu-north-1"), key: value}
    with pytest.raises(ConfigError) as error:
        load_config(context)
    assert error.value.key == key


def test_vpc_connectivity_needs_proxy_addresses() -> None:
    from kommunmoln.config import ConfigError, load_config

    context = {**BASE, "tier_c_credential_secret_arn": SECRET.format(p="aws", r="eu-north-1"),
               "tier_c_connectivity": "VPC_ENDPOINT_SERVICE"}  # fmt: skip
    with pytest.raises(ConfigError) as error:
        load_config(context)
    assert error.value.key == "tier_c_proxy_target_ips"


def test_cdk_json_lists_every_tier_c_setting_with_its_default() -> None:
    from kommunmoln.config import DEFAULTS

    context = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
    for key in (k for k in DEFAULTS if k.startswith("tier_c_")):
        assert context[key] == DEFAULTS[key], key


# --- the compliance pack recognises tier C ----------------------------------------------------------
def _data_bucket(model: Any) -> Any:
    refs = [
        ref for ref, bucket in model.all_of_type("AWS::S3::Bucket")
        if {"Key": names.TAG_TIER, "Value": names.TIER_C} in bucket.get("Properties", {}).get("Tags", [])
    ]  # fmt: skip
    (ref,) = refs
    return ref


def test_compliance_recognises_tier_c_and_states_what_it_does_not_meet(public: Synthesized) -> None:
    from kommunmoln.compliance.catalog import RULES_BY_NUMBER
    from kommunmoln.compliance.checks import KEY_MATERIAL_ON_PREMISES, Evaluator
    from kommunmoln.compliance.model import AppModel

    # GIVEN the synthesized tier C app
    evaluator = Evaluator(AppModel.from_outdir(public.outdir))
    ref = _data_bucket(evaluator.model)
    bucket = evaluator.model.resource(ref)
    # THEN rule 2 accepts the bucket as tier C (SSE-KMS with a key in an external key store)
    assert evaluator.evaluate(RULES_BY_NUMBER[2], ref).status == "COMPLIANT"
    # AND the facts say: tier "B+", key material on premises, the no-disclosure rules not met (S3 sees plaintext)
    facts = evaluator.tier_facts(ref, bucket)
    assert facts["tier"] == "B+ (tier C)"
    assert facts["key material"] == KEY_MATERIAL_ON_PREMISES
    assert facts["no-disclosure rules"].startswith("not met")
    # AND rule 5 checks the external key's policy as a strict key (no wildcard actions)
    key_ref = next(r for r, _ in evaluator.model.all_of_type(names.RESOURCE_KMS_XKS_KEY))
    assert key_ref in evaluator.strict_keys
    assert evaluator.evaluate(RULES_BY_NUMBER[5], key_ref).status == "COMPLIANT"


def test_a_tier_c_bucket_on_an_aws_kms_key_fails_rule_2(public: Synthesized, tmp_path: Path) -> None:
    import shutil

    from kommunmoln.compliance.catalog import RULES_BY_NUMBER
    from kommunmoln.compliance.checks import Evaluator
    from kommunmoln.compliance.model import AppModel

    # GIVEN the same app where the external-key-store key is swapped for an ordinary AWS::KMS::Key
    outdir = tmp_path / "swapped"
    shutil.copytree(public.outdir, outdir, ignore=shutil.ignore_patterns("asset.*"))
    (path,) = outdir.glob(f"*{TIER_C}.template.json")
    template = json.loads(path.read_text())
    key_id = next(k for k, r in template["Resources"].items() if r["Type"] == names.RESOURCE_KMS_XKS_KEY)
    template["Resources"][key_id] = {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Statement": []}}}
    path.write_text(json.dumps(template))
    evaluator = Evaluator(AppModel.from_outdir(outdir))
    # WHEN rule 2 runs THEN it fails the bucket as tier C, naming the origin
    outcome = evaluator.evaluate(RULES_BY_NUMBER[2], _data_bucket(evaluator.model))
    assert outcome.status == "NON_COMPLIANT"
    assert any(reason.startswith("tier C:") and "AWS_KMS" in reason for reason in outcome.reasons)


def test_every_tier_c_handler_imports_from_its_lambda_asset(public: Synthesized) -> None:
    import subprocess
    import sys

    # GIVEN the tier C stack's functions of this project (CDK's own framework handlers aside)
    template = public.template(TIER_C)
    handlers = {
        r["Properties"]["Handler"].rsplit(".", 1)[0]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler", "").startswith("lambdas.")
    }
    assert {"lambdas.xks_provisioner.handler", "lambdas.keystore_monitor.handler",
            "lambdas.tier_b_validator.handler"} <= handlers  # fmt: skip
    (asset,) = {p for p in public.outdir.glob("asset.*") if (p / "lambdas").is_dir()}
    # WHEN each module is imported with only the asset's copy of the project on the path (the Lambda runtime's
    # view; boto3 and Powertools come from the runtime and the layer, here from the test environment)
    script = (
        "import importlib, sys; from pathlib import Path\n"
        f"for name in {sorted(handlers)!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    assert Path(module.__file__).resolve().is_relative_to(Path.cwd().resolve()), module.__file__\n"
        "    import lambdas.keystore_monitor.xks, lambdas.xks_provisioner.logic\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=asset, capture_output=True, text=True, timeout=120)
    # THEN every one imports (the asset carries what the handlers import, and no proxy code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (asset / "kommunmoln" / "tier_c").exists()
