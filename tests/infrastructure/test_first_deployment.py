"""What a first `cdk deploy` in a real account depends on, checked on the synthesized templates.

Each test names the AWS rule it encodes (issue 10, defects 2, 3, 7, 8, 9, 10).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kommunmoln import names
from lambdas.cloudhsm_provisioner import common, key_store
from stacks.components.cloudhsm import PROVIDER_TOTAL_TIMEOUT_SECONDS, PROVISIONER_FUNCTION_TIMEOUT_SECONDS
from tests.conftest import REPO_ROOT, Synthesized, synthesize
from tests.infrastructure.test_tier_b_stack import _write_trust_anchor

# Backticked names in the docs that look like outputs but are custom resource properties (documented as such),
# or AWS API fields the docs quote (KMS CreateKey XksKeyId, the XKS credential's AccessKeyId, HeadObject SSEKMSKeyId,
# the ExceptionName dimension of KMS's external key store CloudWatch metrics).
NOT_OUTPUTS = {"SourceBackupId", "ExistingKeyStoreId", "XksKeyId", "AccessKeyId", "SSEKMSKeyId", "ExceptionName"}


@pytest.fixture(scope="module")
def phase2(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    anchor = _write_trust_anchor(tmp_path_factory.mktemp("pki") / "trust-anchor.pem")
    context = {"tier_b_keystore_enabled": True, "tier_b_trust_anchor_path": str(anchor)}
    return synthesize(tmp_path_factory.mktemp("cdk.out.first"), context)


def _outputs(synth: Synthesized) -> set[str]:
    return {key for template in synth.templates.values() for key in template.get("Outputs", {})}


def test_every_output_a_script_or_doc_reads_is_created(phase2: Synthesized) -> None:
    # GIVEN every stack output the operator tools read (names.OUTPUT_* in the code) and the docs name
    constants = {k: v for k, v in vars(names).items() if k.startswith("OUTPUT_")}
    code = "\n".join(p.read_text(encoding="utf-8") for d in ("usecases", "kommunmoln") for p in (REPO_ROOT / d).rglob("*.py")
                     if p.name != "names.py")  # fmt: skip
    read_by_code = {value for key, value in constants.items() if f"names.{key}" in code}
    docs = "\n".join(
        p.read_text(encoding="utf-8") for p in [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")]
    )
    read_by_docs = set(re.findall(r"`([A-Z][A-Za-z0-9]+(?:Arn|Id|Name|Alias))`", docs)) - NOT_OUTPUTS
    # THEN each exists in the synthesized templates (phase 2 creates the superset)
    assert read_by_code, "the operator tools read stack outputs"
    assert read_by_code - _outputs(phase2) == set()
    assert read_by_docs - _outputs(phase2) == set()


def test_no_fixed_launch_template_name_collides_across_stacks(synthesized: Synthesized) -> None:
    # GIVEN the IMDSv2 launch template CDK makes for the admin host: without the feature flag it is named
    # `InstanceLaunchTemplate` in every stack of the account, and a second stack fails with "already exists"
    names_ = [r["Properties"].get("LaunchTemplateName") for t in synthesized.templates.values()
              for r in t["Resources"].values() if r["Type"] == "AWS::EC2::LaunchTemplate"]  # fmt: skip
    # THEN every name is unique to its stack
    assert names_ and all(n and n != "InstanceLaunchTemplate" and "tierb" in n for n in names_)


def test_no_stateful_resource_is_retained_when_its_create_rolls_back(synthesized: Synthesized) -> None:
    # GIVEN production mode: RetainExceptOnCreate keeps deployed resources but deletes the ones a rolled-back
    # create made (DeletionPolicy attribute, CloudFormation Template Reference), so a retry finds no bucket of
    # the same name and no billed cluster or HSM is left behind
    policies = {
        (r["Type"], r.get("DeletionPolicy")) for t in synthesized.templates.values() for r in t["Resources"].values()
    }
    # THEN nothing is plain Retain, and the stateful types are RetainExceptOnCreate
    assert not {p for p in policies if p[1] == "Retain"}
    for kind in ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::CloudHSM::Cluster", "Custom::CloudHsmHsms"):
        assert (kind, "RetainExceptOnCreate") in policies, kind


def test_provisioner_waits_fit_their_containers(synthesized: Synthesized) -> None:
    # GIVEN the longest wait inside one invocation (the key store's disconnect wait is is_complete's now:
    # test_cloudhsm_provisioner, test_behaviour_model) and the synthesized function timeouts
    in_invocation = key_store.RECHECK_SECONDS
    assert in_invocation <= common.MAX_WAIT_IN_INVOCATION_SECONDS
    template = synthesized.template("-tier-b")
    timeouts = [r["Properties"]["Timeout"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
                and "cloudhsm_provisioner" in str(r["Properties"].get("Handler", ""))]  # fmt: skip
    # THEN each function outlives its waits with room for the calls (at least twice the wait)
    assert timeouts == [PROVISIONER_FUNCTION_TIMEOUT_SECONDS] * 2
    assert PROVISIONER_FUNCTION_TIMEOUT_SECONDS >= 2 * common.MAX_WAIT_IN_INVOCATION_SECONDS
    # AND the Provider's total wait stays below CloudFormation's 3600 s custom resource limit
    assert PROVIDER_TOTAL_TIMEOUT_SECONDS < 3600


def test_reserved_concurrency_can_be_switched_off(tmp_path: Path, synthesized: Synthesized) -> None:
    # GIVEN the default (reserved) and lambda_reserved_concurrency=false (accounts with a quota of 10)
    def reserved(synth: Synthesized) -> list[int]:
        return [r["Properties"].get("ReservedConcurrentExecutions", 0) for t in synth.templates.values()
                for r in t["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]  # fmt: skip

    off = synthesize(tmp_path / "out", {"lambda_reserved_concurrency": False})
    # THEN by default the app's own functions reserve some, and switched off none does (synthesis passes the gates)
    assert sum(reserved(synthesized)) > 0
    assert sum(reserved(off)) == 0


def test_admin_host_ami_is_pinned_and_deletion_is_not_blocked(tmp_path: Path) -> None:
    # GIVEN a pinned AMI (an SSM-resolved image would be re-resolved on every deployment and replace the host)
    synth = synthesize(tmp_path / "out", {"tier_b_admin_host_ami": "ami-0123456789abcdef0"})
    (instance,) = synth.resources("-tier-b", "AWS::EC2::Instance").values()
    # THEN the template names that AMI, and termination protection does not block replacement or destroy
    assert instance["Properties"]["ImageId"] == "ami-0123456789abcdef0"
    assert instance["Properties"].get("DisableApiTermination") in (None, False)


def test_phase_2_asks_for_the_configured_hsm_count_and_the_monitor_knows_the_phase(
    phase2: Synthesized, synthesized: Synthesized
) -> None:
    # GIVEN phase 1 (default) and phase 2 templates
    def hsm_count(synth: Synthesized) -> str:
        (hsms,) = synth.resources("-tier-b", "Custom::CloudHsmHsms").values()
        return hsms["Properties"]["HsmCount"]

    def monitor_env(synth: Synthesized) -> dict[str, object]:
        (function,) = [r for r in synth.resources("-tier-b", "AWS::Lambda::Function").values()
                       if "keystore_monitor" in str(r["Properties"].get("Handler"))]  # fmt: skip
        return function["Properties"]["Environment"]["Variables"]

    # THEN phase 1 asks for one HSM (CloudHSM takes no second before activation), phase 2 for tier_b_hsm_count
    assert (hsm_count(synthesized), hsm_count(phase2)) == ("1", "2")
    # AND the monitor expects one HSM in phase 1 (no per-zone alarm then), and has the key store in phase 2
    assert monitor_env(synthesized)[names.ENV_MIN_HSMS] == "1"
    assert monitor_env(phase2)[names.ENV_MIN_HSMS] == "2"
    alarms = {
        r["Properties"].get("MetricName") for r in synthesized.resources("-tier-b", "AWS::CloudWatch::Alarm").values()
    }
    assert names.METRIC_MIN_HSMS_PER_AZ not in alarms


def _phase_1_step(text: str) -> str:
    """Step 1 of the initialization runbook in docs/use-case-2.md (up to step 2)."""
    start = text.index("1. Deploy (phase 1):")
    return " ".join(text[start : text.index("\n2. ", start)].split())


def test_use_case_2_step_1_names_exactly_what_phase_1_creates(synthesized: Synthesized) -> None:
    # Rule (issue 10 defect 13, and CloudHSM's "already contains an HSM but has not yet been fully activated"):
    # phase 1 creates one HSM and nothing that needs an activated cluster; the runbook must say what is billed.
    # GIVEN the default (phase 1) tier B template and step 1 of the runbook
    template = synthesized.template("-tier-b")
    resources = template["Resources"].values()
    step = _phase_1_step((REPO_ROOT / "docs" / "use-case-2.md").read_text(encoding="utf-8"))
    kinds = {r["Type"] for r in resources}
    buckets = [k for k, r in template["Resources"].items() if r["Type"] == "AWS::S3::Bucket"]
    functions = [k for k, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"]
    created = {
        # what the doc says exists -> whether the template has it
        "the cluster": "AWS::CloudHSM::Cluster" in kinds,
        "exactly **one** HSM": [
            r["Properties"]["HsmCount"] for r in resources if r["Type"] == names.RESOURCE_CLOUDHSM_HSMS
        ]
        == ["1"],
        "the admin host with its staging bucket (and that bucket's access-log bucket)": "AWS::EC2::Instance" in kinds
        and any("StagingBucket" in b for b in buckets)
        and any("AccessLogs" in b for b in buckets),
        "the `kmsuser` secret": "AWS::SecretsManager::Secret" in kinds,
        "the alarm topic": "AWS::SNS::Topic" in kinds,
        "the monitor": any("Monitor" in f for f in functions),
    }
    absent = {
        "No key store": {"Custom::KmsCustomKeyStore"} & kinds,
        "no key,": {"Custom::KmsHsmKey"} & kinds,
        "no data bucket": [
            b for b in buckets if not any(p in b for p in ("StagingBucket", "TrailBucket", "AccessLogs"))
        ],
        "no object validator": [f for f in functions if "Validator" in f],
    }
    # THEN every component the step names exists, every one it rules out is absent
    for phrase, exists in created.items():
        assert phrase in step and exists, phrase
    for phrase, found in absent.items():
        assert phrase in step and not found, (phrase, found)
    # AND every bucket and every project function of phase 1 is one the step names (nothing billed unnamed)
    assert len(buckets) == 2
    project = [f for f in functions if "framework" not in f]
    assert all(any(part in f for part in ("Provisioner", "Monitor")) for f in project), project


def test_synthesis_prints_whether_workshop_mode_deletes_everything(tmp_path: Path) -> None:
    # GIVEN workshop mode, handed to app.py as the CDK CLI does (CDK_CONTEXT_JSON, CDK_OUTDIR; a new process,
    # because the jsii kernel of this one read its environment at start)
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    context.update({"workshop_mode": True, "use_cases": ["client-side-encryption"]})
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    # WHEN app.py synthesizes
    done = subprocess.run([sys.executable, str(REPO_ROOT / "app.py")], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    # THEN it says, before anything else, that the stacks delete their data (make deploy synthesizes first too)
    assert done.returncode == 0, done.stderr
    assert done.stderr.lstrip().startswith("kommunmoln: WORKSHOP MODE") and "DELETED" in done.stderr
    assert list(tmp_path.glob("*.template.json"))
