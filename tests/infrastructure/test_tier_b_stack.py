"""Tier B stack: the security properties of the CloudHSM / SSE-KMS stack, asserted on templates.

Four synthesized apps, each synthesized once: phase 1 (the default cdk.json, shared
session fixture), phase 2 (key store enabled, full app: the compliance gates must pass or
synthesis raises), workshop mode (tier B only) and a restore from a backup (tier B only,
phase 2, reconnecting an existing key store).
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kommunmoln import names
from tests.conftest import Synthesized, synthesize

TIER_B = "-tier-b"
VPC_CIDR = "10.42.0.0/16"
BROAD_PRINCIPALS = ("*", "root")


# --- fixtures -------------------------------------------------------------------------------
def _write_trust_anchor(path: Path) -> Path:
    """A self-signed CA certificate standing in for the municipality's issuing CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Exempelkommun test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def trust_anchor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_trust_anchor(tmp_path_factory.mktemp("pki") / "trust-anchor.pem")


@pytest.fixture(scope="module")
def phase2(tmp_path_factory: pytest.TempPathFactory, trust_anchor: Path) -> Synthesized:
    """The full app with the key store enabled (synthesis raises if any gate fails)."""
    context = {"tier_b_keystore_enabled": True, "tier_b_trust_anchor_path": str(trust_anchor.resolve())}
    return synthesize(tmp_path_factory.mktemp("cdk.out.phase2"), context)


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    context = {"workshop_mode": True, "use_cases": [names.USE_CASE_CLOUDHSM]}
    return synthesize(tmp_path_factory.mktemp("cdk.out.workshop"), context)


BACKUP_ID = "backup-abcdefghijk"
EXISTING_KEY_STORE = "cks-0123456789abcdef0"


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory, trust_anchor: Path) -> Synthesized:
    """Tier B restored from a backup, reconnecting an existing key store (production: gates with retention)."""
    context = {
        "use_cases": [names.USE_CASE_CLOUDHSM],
        "tier_b_restore_backup_id": BACKUP_ID,
        "tier_b_existing_key_store_id": EXISTING_KEY_STORE,
        "tier_b_keystore_enabled": True,
        "tier_b_trust_anchor_path": str(trust_anchor.resolve()),
    }
    return synthesize(tmp_path_factory.mktemp("cdk.out.restored"), context)


# --- helpers --------------------------------------------------------------------------------
def _one(synth: Synthesized, resource_type: str) -> dict[str, Any]:
    (resource,) = synth.resources(TIER_B, resource_type).values()
    return resource


def _render(value: Any) -> str:
    """A string with Fn::Join/Ref/GetAtt replaced by readable placeholders (`<Ref>`, `<Id.Attr>`)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return "".join(_render(part) for part in value["Fn::Join"][1])
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if "Fn::ImportValue" in value:
        return f"<import:{value['Fn::ImportValue']}>"
    raise AssertionError(f"unexpected intrinsic {value}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _key_policy(synth: Synthesized) -> dict[str, Any]:
    return json.loads(_render(_one(synth, "Custom::KmsHsmKey")["Properties"]["KeyPolicy"]))


def _data_bucket(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    buckets = {
        logical: bucket
        for logical, bucket in synth.resources(TIER_B, "AWS::S3::Bucket").items()
        if {"Key": names.TAG_TIER, "Value": names.TIER_B} in bucket["Properties"].get("Tags", [])
    }
    assert len(buckets) == 1, sorted(buckets)
    return next(iter(buckets.items()))


def _bucket_policy(synth: Synthesized, bucket_logical_id: str) -> list[dict[str, Any]]:
    for policy in synth.resources(TIER_B, "AWS::S3::BucketPolicy").values():
        if policy["Properties"]["Bucket"] == {"Ref": bucket_logical_id}:
            return policy["Properties"]["PolicyDocument"]["Statement"]
    raise AssertionError(f"no bucket policy for {bucket_logical_id}")


# --- phase 1 (default cdk.json) -------------------------------------------------------------
def test_cluster_is_fips_hsm2m_in_two_zones_with_backup_retention_and_retained(synthesized: Synthesized) -> None:
    # GIVEN the default configuration (two zones, 90 days of backups, no workshop mode)
    cluster = _one(synthesized, "AWS::CloudHSM::Cluster")
    props = cluster["Properties"]
    # THEN the cluster is hsm2m.medium in FIPS mode, in one isolated subnet per zone
    assert props["HsmType"] == "hsm2m.medium"
    assert props["Mode"] == "FIPS"
    subnet_ids = [_render(s) for s in props["SubnetIds"]]
    assert len(subnet_ids) >= 2 and len(set(subnet_ids)) == len(subnet_ids)
    assert all("isolatedSubnet" in s for s in subnet_ids)
    # AND backups are kept for the configured days, and the cluster survives a stack deletion
    assert props["BackupRetentionPolicy"] == {"Type": "DAYS", "Value": "379"}  # the maximum: keep by default
    assert cluster["DeletionPolicy"] == "RetainExceptOnCreate"
    assert cluster["UpdateReplacePolicy"] == "Retain"


def test_hsm_custom_resource_spreads_the_configured_count_across_zones(synthesized: Synthesized) -> None:
    # GIVEN the HSMs custom resource
    hsms = _one(synthesized, "Custom::CloudHsmHsms")
    props = hsms["Properties"]
    # THEN phase 1 asks for exactly one HSM (CloudHSM refuses a second one until the cluster is activated:
    # CloudHSM User Guide, Getting started, https://docs.aws.amazon.com/cloudhsm/latest/userguide/getting-started.html)
    # in the configured zones, on the stack's cluster; phase 2 asks for the configured count (test below)
    assert props["HsmCount"] == "1"
    assert props["AvailabilityZones"] == ["eu-north-1a", "eu-north-1b"]
    assert props["ClusterId"] == {
        "Fn::GetAtt": [next(iter(synthesized.resources(TIER_B, "AWS::CloudHSM::Cluster"))), "ClusterId"]
    }
    # AND HSMs are retained by default (they hold what the key store needs), except when their create is
    # rolled back (RetainExceptOnCreate: no billed HSM survives a failed first deployment)
    assert hsms["DeletionPolicy"] == "RetainExceptOnCreate"


def test_provider_waits_long_enough_for_hsm_creation(synthesized: Synthesized) -> None:
    # GIVEN the waiter state machine of the provisioning Provider
    machines = synthesized.resources(TIER_B, "AWS::StepFunctions::StateMachine")
    (machine,) = machines.values()
    definition = _render(machine["Properties"]["DefinitionString"])
    # THEN it polls every 30 s for at most 55 minutes: a custom resource operation times out after at most
    # 3600 s (AWS::CloudFormation::CustomResource ServiceTimeout, "an integer from 1 to 3600",
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-cloudformation-customresource.html)
    assert '"IntervalSeconds":30' in definition
    (attempts,) = re.findall(r'"MaxAttempts":(\d+)', definition)
    assert 30 * int(attempts) <= 3600 - 60
    # AND it logs ALL events
    assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"


def test_hsm_ports_are_open_only_to_the_client_security_group_not_the_vpc(synthesized: Synthesized) -> None:
    # Rule (#11 item 13): only the clients that need the HSMs reach 2223-2225. KMS reaches them through the
    # cluster security group's own self-referencing rules, which CloudHSM creates and KMS requires unchanged
    # (ConnectCustomKeyStore, CloudHsmClusterInvalidConfigurationException:
    # https://docs.aws.amazon.com/kms/latest/APIReference/API_ConnectCustomKeyStore.html), so no rule here.
    # GIVEN every ingress rule of the tier B stack
    ingress = list(synthesized.resources(TIER_B, "AWS::EC2::SecurityGroupIngress").values())
    for group in synthesized.resources(TIER_B, "AWS::EC2::SecurityGroup").values():
        ingress += group["Properties"].get("SecurityGroupIngress", [])
    ingress = [r.get("Properties", r) for r in ingress]
    # THEN the only ingress is 2223-2225/tcp, on the cluster's own security group, from the client group
    assert len(ingress) == 1
    (rule,) = ingress
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 2223, 2225)
    assert "CidrIp" not in rule and "CidrIpv6" not in rule
    assert rule["GroupId"]["Fn::GetAtt"][1] == "SecurityGroup"
    (source_group, attribute) = rule["SourceSecurityGroupId"]["Fn::GetAtt"]
    assert "ClientSecurityGroup" in source_group and attribute == "GroupId"
    # AND the client group is the admin host's, and its HSM egress goes to the cluster group, not the CIDR
    instance = _one(synthesized, "AWS::EC2::Instance")["Properties"]
    assert {"Fn::GetAtt": [source_group, "GroupId"]} in instance["SecurityGroupIds"]
    client = synthesized.resources(TIER_B, "AWS::EC2::SecurityGroup")[source_group]["Properties"]
    (hsm_egress,) = [e for e in client["SecurityGroupEgress"] if e["FromPort"] == 2223]
    assert hsm_egress["DestinationSecurityGroupId"] == rule["GroupId"]
    # AND no Lambda's security group is the client group (they call the HSM APIs over HTTPS only)
    for function in synthesized.resources(TIER_B, "AWS::Lambda::Function").values():
        groups = function["Properties"].get("VpcConfig", {}).get("SecurityGroupIds", [])
        assert {"Fn::GetAtt": [source_group, "GroupId"]} not in groups


def test_admin_host_has_no_inbound_no_key_pair_and_requires_imdsv2(synthesized: Synthesized) -> None:
    # GIVEN the admin host, its launch template and its security group
    instance = _one(synthesized, "AWS::EC2::Instance")["Properties"]
    template = _one(synthesized, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    (group_ref,) = instance["SecurityGroupIds"]
    group = synthesized.template(TIER_B)["Resources"][group_ref["Fn::GetAtt"][0]]["Properties"]
    # THEN nobody can log in with a key or reach it from the network
    assert "KeyName" not in instance
    assert "SecurityGroupIngress" not in group
    assert "SubnetId" in instance and "isolatedSubnet" in _render(instance["SubnetId"])
    # AND IMDSv2 is required, the disk is encrypted, monitoring and termination protection are on
    assert template["MetadataOptions"]["HttpTokens"] == "required"
    assert all(d["Ebs"]["Encrypted"] is True for d in instance["BlockDeviceMappings"])
    assert instance["Monitoring"] is True
    # AND no termination protection: the host holds no data, and protection would block its replacement and
    # `make destroy` (issue 10, defect 9; test_first_deployment pins the AMI)
    assert instance.get("DisableApiTermination") in (None, False)
    # AND the AMI comes from the public SSM parameter at deploy time (no synthesis look-up)
    parameters = synthesized.template(TIER_B)["Parameters"]
    assert parameters[instance["ImageId"]["Ref"]]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"


def test_kmsuser_secret_is_generated_without_punctuation_with_a_cmk_and_retained(synthesized: Synthesized) -> None:
    # GIVEN the kmsuser secret
    secret = _one(synthesized, "AWS::SecretsManager::Secret")
    # THEN it is generated, without punctuation, encrypted with a customer-managed key and retained
    generator = secret["Properties"]["GenerateSecretString"]
    assert generator["ExcludePunctuation"] is True
    assert 7 <= generator["PasswordLength"] <= 32
    assert "KmsKeyId" in secret["Properties"]
    assert secret["DeletionPolicy"] == "RetainExceptOnCreate"


def test_phase_1_has_no_key_store_key_or_data_bucket_and_says_so(synthesized: Synthesized) -> None:
    # GIVEN the default configuration (tier_b_keystore_enabled false)
    template = synthesized.template(TIER_B)
    types = {r["Type"] for r in template["Resources"].values()}
    # THEN no key store, key or data bucket exists (no silent weaker tier)
    assert not types & {"Custom::KmsCustomKeyStore", "Custom::KmsHsmKey"}
    assert not [
        b for b in synthesized.resources(TIER_B, "AWS::S3::Bucket").values()
        if {"Key": names.TAG_TIER, "Value": names.TIER_B} in b["Properties"].get("Tags", [])
    ]  # fmt: skip
    # AND the description and the outputs say it
    assert "no data bucket" in template["Description"]
    assert set(template["Outputs"]) == {
        names.OUTPUT_CLUSTER_ID, names.OUTPUT_ADMIN_HOST_ID, names.OUTPUT_ALARM_TOPIC, names.OUTPUT_KMSUSER_SECRET
    }  # fmt: skip
    assert "tier_b_keystore_enabled=true" in template["Outputs"][names.OUTPUT_CLUSTER_ID]["Description"]
    # AND the monitor still runs (cluster and HSM checks only)
    env = [
        f["Properties"]["Environment"]["Variables"]
        for f in synthesized.resources(TIER_B, "AWS::Lambda::Function").values()
        if names.ENV_MIN_HSMS in f["Properties"].get("Environment", {}).get("Variables", {})
    ]
    assert len(env) == 1 and env[0][names.ENV_CUSTOM_KEY_STORE_ID] == ""


def test_every_alarm_names_a_remedy_and_notifies_the_encrypted_topic(synthesized: Synthesized) -> None:
    # GIVEN every alarm of the tier B stack and the topic
    alarms = synthesized.resources(TIER_B, "AWS::CloudWatch::Alarm").values()
    topic = _one(synthesized, "AWS::SNS::Topic")
    # THEN each description names what to run or read, and each notifies the topic
    assert alarms
    for alarm in alarms:
        description = _render(alarm["Properties"]["AlarmDescription"])
        assert "docs/use-case-2.md#" in description
        assert len(alarm["Properties"]["AlarmActions"]) == 1
    # AND the EMF alarms select the Powertools `service` dimension
    emf = [a for a in alarms if a["Properties"].get("Namespace") == names.METRIC_NAMESPACE]
    assert {a["Properties"]["MetricName"] for a in emf} >= {names.METRIC_ACTIVE_HSMS}
    assert all(a["Properties"]["Dimensions"][0]["Name"] == "service" for a in emf)
    # AND the topic is encrypted with a customer-managed key
    assert "Fn::GetAtt" in topic["Properties"]["KmsMasterKeyId"]


def test_phase_1_records_key_and_cluster_calls_in_the_network_stacks_trail(synthesized: Synthesized) -> None:
    # AWS rule: a second trail recording management events in the same Region bills every event again
    # ("The first copy of management events is free. You are charged for additional copies", CloudTrail API
    # reference, EventSelector.IncludeManagementEvents). KMS and CloudHSM calls are management events.
    # GIVEN phase 1 THEN tier B has no trail of its own (no data bucket, so no data events yet)
    assert not synthesized.resources(TIER_B, "AWS::CloudTrail::Trail")
    # AND the network stack's trail records all management events, in every Region, validated and KMS-encrypted
    (trail,) = [r["Properties"] for r in synthesized.resources("-network", "AWS::CloudTrail::Trail").values()]
    assert trail["EventSelectors"] == [{"IncludeManagementEvents": True, "ReadWriteType": "All"}]
    assert trail["IsMultiRegionTrail"] is True and trail["EnableLogFileValidation"] is True
    assert "KMSKeyId" in trail and "CloudWatchLogsLogGroupArn" in trail


# --- phase 2 ----------------------------------------------------------------------------------
def test_phase_2_creates_key_store_and_key_with_alias_and_outputs(phase2: Synthesized, trust_anchor: Path) -> None:
    # GIVEN the key store enabled with a trust anchor
    store = _one(phase2, "Custom::KmsCustomKeyStore")["Properties"]
    key = _one(phase2, "Custom::KmsHsmKey")["Properties"]
    # THEN the key store carries the PEM read at synthesis and the secret, and waits for the HSMs
    assert store["TrustAnchorCertificate"] == trust_anchor.read_text().strip()
    assert "Ref" in store["KeyStorePasswordSecretArn"]
    assert _one(phase2, "Custom::KmsCustomKeyStore")["DependsOn"] == [
        next(iter(phase2.resources(TIER_B, "Custom::CloudHsmHsms")))
    ]
    # AND the key lives in that key store under the tier B alias
    assert key["CustomKeyStoreId"]["Fn::GetAtt"][1] == "CustomKeyStoreId"
    assert key["AliasName"] == "alias/kommunmoln-exempel-tier-b"
    outputs = phase2.template(TIER_B)["Outputs"]
    assert {
        names.OUTPUT_CUSTOM_KEY_STORE_ID,
        names.OUTPUT_KMS_KEY_ARN,
        names.OUTPUT_KMS_ALIAS,
        names.OUTPUT_SSE_BUCKET,
    } <= set(outputs)


def test_key_policy_has_no_wildcard_for_broad_principals_and_root_only_administers(phase2: Synthesized) -> None:
    # GIVEN the key policy document of the HSM-backed key
    statements = _key_policy(phase2)["Statement"]
    # THEN no statement allows kms:* or * at all, and none uses NotAction
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert not {"kms:*", "*"} & set(_as_list(statement["Action"]))
        principal = _as_list(statement["Principal"]["AWS"])
        assert "*" not in principal
    # AND the account root (the documented lockout guard) may only administer, and only as the
    # break-glass role with MFA or the provisioner: no crypto action, no unconditioned admin
    roots = [s for s in statements if any(p.endswith(":root") for p in _as_list(s["Principal"]["AWS"]))]
    crypto = {
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:GenerateDataKey*",
        "kms:ReEncrypt*",
        "kms:CreateGrant",
    }
    for root in roots:
        assert not crypto & set(root["Action"])
        if "kms:PutKeyPolicy" in root["Action"]:
            assert "aws:PrincipalArn" in root["Condition"]["ArnEquals"]
    assert any("kms:PutKeyPolicy" in root["Action"] for root in roots)


def test_key_admins_manage_but_cannot_use_and_usage_is_only_via_s3(phase2: Synthesized) -> None:
    # GIVEN the named statements
    statements = {s["Sid"]: s for s in _key_policy(phase2)["Statement"]}
    admin, usage = statements["BreakGlassAdministersWithMfa"], statements["UseOnlyThroughS3"]
    # THEN the administrators get no cryptographic action and no grant creation
    assert not {
        a for a in admin["Action"] if a.split(":")[1].startswith(("Encrypt", "Decrypt", "GenerateDataKey", "ReEncrypt"))
    }
    assert "kms:CreateGrant" not in admin["Action"]
    assert "AdminRole" in str(admin["Condition"]["ArnEquals"]["aws:PrincipalArn"])
    assert admin["Condition"]["Bool"] == {"aws:MultiFactorAuthPresent": "true"}
    # AND the usage role may encrypt/decrypt only through S3 in this Region
    assert "UsageRole" in usage["Principal"]["AWS"]
    assert set(usage["Action"]) <= {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"}
    assert usage["Condition"]["StringEquals"]["kms:ViaService"] == "s3.eu-north-1.amazonaws.com"


def test_data_bucket_uses_the_hsm_key_with_bucket_keys_and_is_hardened(phase2: Synthesized) -> None:
    # GIVEN the tier B data bucket
    logical_id, bucket = _data_bucket(phase2)
    props = bucket["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    key_id = next(iter(phase2.resources(TIER_B, "Custom::KmsHsmKey")))
    # THEN default encryption is aws:kms with the HSM-backed key and S3 Bucket Keys
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "KeyArn"]},
    }
    assert rule["BucketKeyEnabled"] is True
    # AND it is private, owner-enforced, versioned, access-logged, with lifecycle rules, retained and tagged
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert "DestinationBucketName" in props["LoggingConfiguration"]
    (lifecycle,) = props["LifecycleConfiguration"]["Rules"]
    assert "NoncurrentVersionExpiration" not in lifecycle  # kept: no gallring decision in cdk.json
    assert lifecycle["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    assert bucket["DeletionPolicy"] == "RetainExceptOnCreate"
    assert {"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED} in props["Tags"]
    # AND new objects notify the validator directly
    (notification,) = props["NotificationConfiguration"]["LambdaConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert logical_id


def test_bucket_policy_denies_other_encryption_modes_keys_sse_c_and_insecure_transport(phase2: Synthesized) -> None:
    # GIVEN the data bucket's policy
    logical_id, _ = _data_bucket(phase2)
    statements = _bucket_policy(phase2, logical_id)
    denies = {s["Sid"]: s for s in statements if s["Effect"] == "Deny" and "Sid" in s}
    key_arn = {"Fn::GetAtt": [next(iter(phase2.resources(TIER_B, "Custom::KmsHsmKey"))), "KeyArn"]}
    sse = "s3:x-amz-server-side-encryption"
    # THEN any other encryption mode and any other key are denied when requested
    # (only when the header is sent: multipart parts carry none; test_tier_b_bucket_matrix.py evaluates both)
    assert denies["DenyOtherEncryptionModes"]["Condition"] == {
        "Null": {sse: "false"},
        "StringNotEquals": {sse: "aws:kms"},
    }
    assert denies["DenyOtherKmsKeys"]["Condition"] == {
        "Null": {f"{sse}-aws-kms-key-id": "false"}, "StringNotEquals": {f"{sse}-aws-kms-key-id": key_arn}
    }  # fmt: skip
    # AND aws:kms without a key id (S3 might choose aws/s3) and SSE-C are denied
    assert denies["DenyKmsWithoutKeyId"]["Condition"] == {
        "StringEquals": {sse: "aws:kms"}, "Null": {f"{sse}-aws-kms-key-id": "true"}
    }  # fmt: skip
    assert denies["DenySseC"]["Condition"] == {"Null": {f"{sse}-customer-algorithm": "false"}}
    for sid in ("DenyOtherEncryptionModes", "DenyOtherKmsKeys", "DenyKmsWithoutKeyId", "DenySseC"):
        assert denies[sid]["Action"] == "s3:PutObject"
        assert denies[sid]["Principal"] == {"AWS": "*"}
    # AND plain HTTP is denied for everything
    assert any(
        s["Effect"] == "Deny"
        and s["Action"] == "s3:*"
        and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


def test_trail_records_data_events_of_the_data_bucket(phase2: Synthesized) -> None:
    # GIVEN the trail in phase 2
    trail = _one(phase2, "AWS::CloudTrail::Trail")["Properties"]
    logical_id, _ = _data_bucket(phase2)
    # THEN its one event selector covers every object of the data bucket, reads and writes, and no management events
    (selector,) = trail["EventSelectors"]
    assert selector["IncludeManagementEvents"] is False
    (resource,) = selector["DataResources"]
    assert resource["Type"] == "AWS::S3::Object"
    assert [_render(v) for v in resource["Values"]] == [f"<{logical_id}.Arn>/"]
    assert selector["ReadWriteType"] == "All"


def test_phase_2_alarms_cover_the_key_store_the_key_and_quarantine(phase2: Synthesized) -> None:
    # GIVEN the alarms of phase 2
    alarms = phase2.resources(TIER_B, "AWS::CloudWatch::Alarm").values()
    by_metric = {a["Properties"].get("MetricName"): _render(a["Properties"]["AlarmDescription"]) for a in alarms}
    # THEN a disconnected key store names the status command and the reconnect runbook
    assert "python -m usecases.cloudhsm_kms status" in by_metric[names.METRIC_KEYSTORE_CONNECTED]
    assert "docs/use-case-2.md#reconnect" in by_metric[names.METRIC_KEYSTORE_CONNECTED]
    assert names.METRIC_KEY_USABLE in by_metric
    assert names.STATUS_QUARANTINED in by_metric[names.METRIC_OBJECTS_QUARANTINED]


def test_phase_2_template_passes_cfn_lint(phase2: Synthesized) -> None:
    # GIVEN the phase 2 tier B template (the default one is linted by test_cfn_lint.py)
    (path,) = [p for p in phase2.outdir.glob("*.template.json") if p.name.endswith(f"{TIER_B}.template.json")]
    # WHEN cfn-lint checks it for eu-north-1
    matches = lint_file(path, config=ManualArgs(regions=["eu-north-1"]))
    # THEN it reports nothing but CDK's redundant DependsOn next to a GetAtt (W3005)
    assert [f"{m.rule.id} {m.message}" for m in matches if m.rule.id != "W3005"] == []


def test_phase_2_full_app_passes_the_compliance_gates(phase2: Synthesized) -> None:
    # GIVEN the full app synthesized with the key store enabled (app.synth raises on any
    # unacknowledged finding, so reaching here means the gates passed)
    report = json.loads((phase2.outdir / "validation-report.json").read_text())
    # THEN every pack concluded with success and no open violation
    for plugin in report["pluginReports"]:
        assert plugin["conclusion"] == "success", plugin["pluginName"]
        assert plugin["violations"] == []
    # AND every tier B acknowledgment sits on one resource and gives a specific reason
    acknowledged = [
        v for plugin in report["pluginReports"] for v in plugin.get("suppressedViolations", [])
        if v["acknowledgedAt"].startswith("kommunmoln-exempel-tier-b/")
    ]  # fmt: skip
    assert acknowledged
    assert all(v["acknowledgedAt"].endswith(("/Resource", "/Cluster")) and len(v["reason"]) >= 40 for v in acknowledged)
    assert {"kommunmoln-exempel-network", "kommunmoln-exempel-tier-b"} <= set(phase2.templates)


# --- workshop mode ---------------------------------------------------------------------------
def test_workshop_mode_deletes_what_production_retains(workshop: Synthesized) -> None:
    # GIVEN workshop mode
    cluster = _one(workshop, "AWS::CloudHSM::Cluster")
    hsms = _one(workshop, "Custom::CloudHsmHsms")
    instance = _one(workshop, "AWS::EC2::Instance")["Properties"]
    # THEN the cluster and the HSMs go with the stack (HSMs are billed per hour)
    assert cluster["DeletionPolicy"] == "Delete"
    assert hsms["DeletionPolicy"] == "Delete"
    assert _one(workshop, "AWS::SecretsManager::Secret")["DeletionPolicy"] == "Delete"
    # AND the admin host can be terminated by the stack
    assert instance["DisableApiTermination"] is False


def test_workshop_mode_empties_every_tier_b_bucket_so_one_destroy_removes_it(workshop: Synthesized) -> None:
    # GIVEN workshop mode (access logs and staging bucket in phase 1; the phase 2 data and trail
    # buckets come from the same hardened_bucket helper)
    buckets = workshop.resources(TIER_B, "AWS::S3::Bucket")
    emptied = [
        r["Properties"]["BucketName"] for r in workshop.resources(TIER_B, "Custom::S3AutoDeleteObjects").values()
    ]
    # THEN every bucket is deleted with the stack and emptied first (versions included) by CDK's provider
    assert len(buckets) >= 2
    for logical_id, bucket in buckets.items():
        assert bucket["DeletionPolicy"] == "Delete", logical_id
        assert {"Ref": logical_id} in emptied, logical_id
    # AND the emptying resource waits for the bucket policy, so it can deny new writes before it deletes
    for resource in workshop.resources(TIER_B, "Custom::S3AutoDeleteObjects").values():
        assert any("Policy" in dependency for dependency in resource["DependsOn"])
    # AND the provider is one function of CDK's, and the gates passed with it (synthesis raises otherwise)
    providers = [k for k in workshop.resources(TIER_B, "AWS::Lambda::Function") if k.startswith("CustomS3AutoDelete")]
    assert len(providers) == 1
    report = json.loads((workshop.outdir / "validation-report.json").read_text())
    assert all(plugin["conclusion"] == "success" for plugin in report["pluginReports"])


def test_production_buckets_have_no_auto_delete(synthesized: Synthesized) -> None:
    # GIVEN the default configuration THEN no tier B bucket can be emptied by the stack
    assert not synthesized.resources(TIER_B, "Custom::S3AutoDeleteObjects")
    assert all(
        b["DeletionPolicy"] == "RetainExceptOnCreate" for b in synthesized.resources(TIER_B, "AWS::S3::Bucket").values()
    )


# --- restore from a backup -------------------------------------------------------------------
def test_restore_creates_the_cluster_through_the_custom_resource_not_cloudformation(restored: Synthesized) -> None:
    # GIVEN tier_b_restore_backup_id
    (logical_id, cluster), *others = restored.resources(TIER_B, names.RESOURCE_CLOUDHSM_CLUSTER).items()
    props = cluster["Properties"]
    # THEN there is no AWS::CloudHSM::Cluster (it has no SourceBackupId) but one restore custom resource
    assert not others
    assert not restored.resources(TIER_B, "AWS::CloudHSM::Cluster")
    assert props["SourceBackupId"] == BACKUP_ID
    assert (props["HsmType"], props["Mode"], props["BackupRetentionDays"]) == ("hsm2m.medium", "FIPS", "379")
    assert len(props["SubnetIds"]) == 2 and all("isolatedSubnet" in _render(s) for s in props["SubnetIds"])
    # AND it is retained, as a cluster holding key material must be
    assert (cluster["DeletionPolicy"], cluster["UpdateReplacePolicy"], props["WorkshopMode"]) == (
        "RetainExceptOnCreate", "Retain", "false"
    )  # fmt: skip
    # AND the HSMs, the HSM port rule, the key store and the output all use the restored cluster
    cluster_id = {"Fn::GetAtt": [logical_id, "ClusterId"]}
    hsms = _one(restored, names.RESOURCE_CLOUDHSM_HSMS)
    assert hsms["Properties"]["ClusterId"] == cluster_id
    assert logical_id in hsms["DependsOn"]  # CloudFormation deletes the HSMs before the cluster
    (rule,) = restored.resources(TIER_B, "AWS::EC2::SecurityGroupIngress").values()
    assert rule["Properties"]["GroupId"] == {"Fn::GetAtt": [logical_id, "SecurityGroup"]}
    store = _one(restored, names.RESOURCE_KMS_CUSTOM_KEY_STORE)["Properties"]
    assert store["ClusterId"] == cluster_id
    assert store["ExistingKeyStoreId"] == EXISTING_KEY_STORE
    assert restored.template(TIER_B)["Outputs"][names.OUTPUT_CLUSTER_ID]["Value"] == cluster_id


def test_restore_permissions_name_the_backup_and_the_restored_cluster_tag(restored: Synthesized) -> None:
    # GIVEN the provisioning policy of the restored stack
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for k, p in restored.resources(TIER_B, "AWS::IAM::ManagedPolicy").items()
        if k.startswith("ProvisionerPermissions")
    ]
    statements = {s["Sid"]: s for s in policy}
    tag_condition = {"StringEquals": {f"aws:ResourceTag/{names.TAG_RESTORED_FROM_BACKUP}": BACKUP_ID}}
    # THEN CreateCluster is allowed from the configured backup only
    restore = statements["RestoreFromTheConfiguredBackup"]
    assert restore["Action"] == "cloudhsm:CreateCluster"
    assert _render(restore["Resource"]).endswith(f":backup/{BACKUP_ID}")
    # AND ModifyCluster/DeleteCluster and the HSM actions only on the cluster tagged as restored from it
    assert statements["ManageTheRestoredCluster"]["Condition"] == tag_condition
    assert statements["HsmsOfThisCluster"]["Condition"] == tag_condition
    # AND the CloudHSM service-linked role may be created, and nothing else of IAM
    slr = statements["CloudHsmServiceLinkedRole"]
    assert slr["Condition"] == {"StringEquals": {"iam:AWSServiceName": "cloudhsm.amazonaws.com"}}
    assert _render(slr["Resource"]).endswith("/cloudhsm.amazonaws.com/AWSServiceRoleForCloudHSM")


def test_restored_stack_passes_the_compliance_gates(restored: Synthesized) -> None:
    # GIVEN the restored stack (synthesis raises on any unacknowledged finding)
    report = json.loads((restored.outdir / "validation-report.json").read_text())
    # THEN every pack concluded with success, and the one new wildcard (cluster/*) is acknowledged on the policy
    assert all(plugin["conclusion"] == "success" and not plugin["violations"] for plugin in report["pluginReports"])
    acknowledged = [
        v for plugin in report["pluginReports"] for v in plugin.get("suppressedViolations", [])
        if ":cloudhsm:" in v.get("ruleName", "") + json.dumps(v)
    ]  # fmt: skip
    assert acknowledged and all(v["acknowledgedAt"].endswith("/Permissions/Resource") for v in acknowledged)


def test_alarm_topic_accepts_cloudwatch_alarms(synthesized: Synthesized) -> None:
    # GIVEN the tier B alarm topic, whose TLS-only topic policy replaces SNS's default one
    (policy,) = synthesized.resources("-tier-b", "AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    # THEN CloudWatch alarms of this account may still publish to it (else alarms go nowhere)
    publish = [s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(publish) == 1
    assert publish[0]["Effect"] == "Allow" and publish[0]["Action"] == "sns:Publish"
    assert publish[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    # AND the key lets CloudWatch encrypt the message
    keys = synthesized.resources("-tier-b", "AWS::KMS::Key").values()
    assert any(
        s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
        for k in keys
        for s in k["Properties"]["KeyPolicy"]["Statement"]
    )
