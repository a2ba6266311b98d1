"""The evidence report: built from the project's own app, every reference in it is real."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kommunmoln import names
from kommunmoln.compliance import REQUIREMENTS, RULES
from kommunmoln.compliance.catalog import REQUIREMENTS_BY_ID
from kommunmoln.compliance.checks import Evaluator, Options
from kommunmoln.compliance.model import AppModel
from kommunmoln.compliance.report import (
    ACKNOWLEDGED,
    EXTERNAL_CONTROLS,
    FACT,
    FAIL,
    NOT_MET,
    PASS,
    Evidence,
    Row,
    _pack_rows,
    collect_evidence,
    render_html,
    render_markdown,
    summary_line,
    write_reports,
)
from tests.conftest import REPO_ROOT
from tests.infrastructure.compliance.fixtures import REGION, build_main_app, protected_bucket_model, synth_findings


@pytest.fixture(scope="module")
def evidence() -> Evidence:
    return collect_evidence()


def test_project_app_passes_the_osl_pack(evidence: Evidence) -> None:
    # GIVEN the project's app from cdk.json (network, tier A, tier B) evaluated by every control
    osl = [row for row in evidence.rows if row.control.startswith("KommunmolnOSL-")]
    # THEN no OSL control fails, and the protected-bucket rules really ran (positive passes)
    assert [row for row in osl if row.status == FAIL] == []
    passed = {row.control for row in osl if row.status == PASS}
    assert {"KommunmolnOSL-1", "KommunmolnOSL-2", "KommunmolnOSL-3", "KommunmolnOSL-6", "KommunmolnOSL-7"} <= passed


def test_every_requirement_has_controls_and_acknowledgments_carry_reasons(evidence: Evidence) -> None:
    for requirement in REQUIREMENTS:
        assert evidence.rows_for(requirement), requirement.id
    for row in evidence.rows:
        if row.status == ACKNOWLEDGED:
            assert len(row.detail) >= 40, row


_SUMMARY_RE = (
    r"Compliance: (\d+) requirements: (\d+) met, (\d+) not met, (\d+) with proving tests not run, (\d+) for the "
    r"municipality's own assessment \(facts, not pass/fail\)\. Rule outcomes \(per control and resource, before they "
    r"are read against a requirement; (\d+) controls\): (\d+) pass, (\d+) acknowledged, (\d+) fail, (\d+) not met, "
    r"(\d+) not run"
)


def test_summary_line_counts_rows(evidence: Evidence) -> None:
    line = summary_line(evidence)
    match = re.fullmatch(_SUMMARY_RE, line)
    assert match, line
    numbers = [int(n) for n in match.groups()]
    assert numbers[0] == len(REQUIREMENTS) == sum(numbers[1:5])
    assert sum(numbers[6:]) == len(evidence.rows)


@pytest.fixture(scope="module")
def keystore_evidence() -> Evidence:
    """The project's app with the tier B keystore enabled (reconnecting an existing key store: no trust anchor)."""
    return collect_evidence({"tier_b_keystore_enabled": True, "tier_b_existing_key_store_id": "cks-0123456789abcdef0"})


def test_summary_line_leads_with_requirements_not_rule_outcomes_with_the_tier_b_keystore(
    keystore_evidence: Evidence,
) -> None:
    # GIVEN the app with the tier B keystore enabled: the tier B bucket passes rule 2 but is `not met`
    # under the two non-disclosure requirements (review item 2: the line read "... 1 not met")
    from kommunmoln.compliance.report import REQUIREMENT_NOT_MET, requirement_result, requirement_tally

    tally = requirement_tally(keystore_evidence)
    not_met = [req.id for req, counts in tally if requirement_result(req, counts) == REQUIREMENT_NOT_MET]
    assert {"disclosure", "edpb-uc1"} <= set(not_met)
    # WHEN the summary line is built
    line = summary_line(keystore_evidence)
    match = re.fullmatch(_SUMMARY_RE, line)
    assert match, line
    # THEN it starts with the per-requirement result, which counts those requirements not met
    assert int(match.group(3)) == len(not_met) >= 2
    assert line.index("not met") < line.index("Rule outcomes") < line.index(" pass,")
    # AND the per-row rule outcomes are labelled as rule outcomes, not as requirement results
    assert "Rule outcomes (per control and resource" in line
    # AND a requirement is met only when every row read against it passes or is acknowledged
    for requirement, counts in tally:
        if requirement_result(requirement, counts) == "met":
            assert set(counts) <= {PASS, ACKNOWLEDGED}, requirement.id
    # AND the Swedish line says the same in Swedish
    swedish = summary_line(keystore_evidence, "sv")
    assert swedish.startswith(f"Efterlevnad: {len(REQUIREMENTS)} krav: ") and "Compliance" not in swedish
    assert f"{len(not_met)} inte uppfyllda, " in swedish


def test_requirement_without_rows_or_with_a_fail_is_not_met() -> None:
    # GIVEN a requirement with no rows, one with a failing row, and one with only passes
    from collections import Counter

    from kommunmoln.compliance.report import requirement_result

    requirement = REQUIREMENTS_BY_ID["logging"]
    # THEN fail closed: nothing shown or a fail is not met; only passes are met
    assert requirement_result(requirement, Counter()) == "not met"
    assert requirement_result(requirement, Counter({PASS: 3, FAIL: 1})) == "not met"
    assert requirement_result(requirement, Counter({PASS: 3, "not run": 1})) == "not run"
    assert requirement_result(requirement, Counter({PASS: 3, ACKNOWLEDGED: 1})) == "met"
    assert requirement_result(REQUIREMENTS_BY_ID["osl-10-2a"], Counter({FACT: 2})) == "assessment"


def test_reports_are_written_and_html_is_escaped(tmp_path: Path) -> None:
    # GIVEN evidence whose detail contains markup
    evidence = Evidence(
        config={"municipality": "Exempel"},
        rows=[Row(("disclosure",), "KommunmolnOSL-2", "t", "S/B|x", "AWS::S3::Bucket", FAIL, "<script>x</script>", ())],
    )
    # WHEN both reports are written
    markdown, html_file = write_reports(evidence, tmp_path / "docs" / "compliance-report.md")
    # THEN the HTML escapes it and the Markdown keeps the table intact
    page = html_file.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "S/B\\|x" in markdown.read_text()
    assert render_markdown(evidence).count("## ") == len(REQUIREMENTS)
    assert render_html(evidence).count("<h2>") == len(REQUIREMENTS)
    # AND every requirement shows its KLASSA / ISO/IEC 27001:2022 / NIST SP 800-53 mapping, with the sources
    assert render_markdown(evidence).count("Mapped to: KLASSA (SKR): ") == len(REQUIREMENTS)
    assert render_html(evidence).count("Mapped to: KLASSA (SKR): ") == len(REQUIREMENTS)
    assert "**Sources of the mappings**" in render_markdown(evidence) and "krav-id not checked" in page


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_proving_test_named_in_the_catalogue_exists() -> None:
    references = {t for rule in RULES for t in rule.tests} | {t for c in EXTERNAL_CONTROLS for t in c.tests}
    for reference in sorted(references):
        file, _, name = reference.partition("::")
        assert name in _test_names(REPO_ROOT / file), reference


# --- what a control evidences, read per requirement (issue 16 item 7) -----------------------
_NON_DISCLOSURE = (REQUIREMENTS_BY_ID["disclosure"], REQUIREMENTS_BY_ID["edpb-uc1"])


@pytest.fixture(scope="module")
def good_stack_evidence(tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    """The compliant fixture stack (tier A bucket, tier B bucket on an HSM key), every rule evaluated."""
    outdir = tmp_path_factory.mktemp("good-stack")
    synth_findings(build_main_app(outdir), outdir)
    model = AppModel.from_outdir(outdir)
    model.stacks = {k: v for k, v in model.stacks.items() if k == "Good"}
    return Evidence(config={}, rows=_pack_rows(Evaluator(model, Options((REGION,))), {}, {}, {}))


def test_tier_b_bucket_is_not_met_under_no_disclosure_and_edpb_use_case_1(good_stack_evidence: Evidence) -> None:
    # GIVEN a tier B bucket on an HSM-backed key, which passes rule 2 (protected server-side)
    evidence = good_stack_evidence
    tier_b = [r for r in evidence.rows if r.control == "KommunmolnOSL-2" and r.tier == "server-side"]
    assert tier_b and all(r.status == PASS for r in tier_b)
    for requirement in _NON_DISCLOSURE:
        rows = evidence.rows_for(requirement)
        # THEN under "no disclosure to the provider" and EDPB Use Case 1 it is `not met`, never pass
        shown = [r for r in rows if r.tier == "server-side"]
        assert shown and {r.status for r in shown} == {NOT_MET}, requirement.id
        assert "S3 receives the plaintext" in shown[0].detail
        # AND only rule 2 evidences these requirements, and tier A passes them
        assert {r.control for r in rows} == {"KommunmolnOSL-2"}
        assert any(r.tier == "client-side" and r.status == PASS for r in rows)


def test_generic_controls_move_to_the_sections_they_evidence(evidence: Evidence) -> None:
    generic = {
        "AwsSolutions-S2",
        "NIST.800.53.R5-S3BucketLevelPublicAccessProhibited",
        "NIST.800.53.R5-S3DefaultEncryptionKMS",
        "KommunmolnOSL-4",
        "KommunmolnOSL-5",
    }
    for requirement in _NON_DISCLOSURE:
        assert not generic & {r.control for r in evidence.rows_for(requirement)}
    assert generic <= {r.control for r in evidence.rows_for(REQUIREMENTS_BY_ID["protective-security"])}


def test_osl_10_2a_section_shows_facts_for_the_assessment_not_pass_fail(evidence: Evidence) -> None:
    rows = evidence.rows_for(REQUIREMENTS_BY_ID["osl-10-2a"])
    assert rows and {r.status for r in rows} == {FACT}
    assert all(r.detail.startswith("the control reports ") for r in rows)
    section = render_markdown(evidence).split("## Handing information to a technical provider")[1].split("\n## ")[0]
    assert "facts for the municipality's own assessment (not pass/fail)" in section
    assert "**pass**" not in section and "**fail**" not in section


def test_residency_guardrails_absent_show_not_met_with_the_fix(evidence: Evidence) -> None:
    (row,) = [r for r in evidence.rows_for(REQUIREMENTS_BY_ID["residency"]) if r.control == "KommunmolnOSL-8"]
    assert row.status == NOT_MET and "make guardrails" in row.detail


def test_bucket_on_an_external_key_store_key_is_not_met_under_no_disclosure() -> None:
    # GIVEN a protected tier B bucket whose key has Origin EXTERNAL_KEY_STORE (tier C, XKS)
    model = protected_bucket_model(
        {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "Key"}},
        {"Type": names.RESOURCE_KMS_HSM_KEY, "Properties": {"Origin": "EXTERNAL_KEY_STORE"}},
    )
    rows = Evidence(config={}, rows=_pack_rows(Evaluator(model, Options()), {}, {}, {}))
    # WHEN rule 2 evaluates it THEN it is protected (rule 2 passes) ...
    (rule2,) = [r for r in rows.rows if r.control == "KommunmolnOSL-2"]
    assert rule2.status == PASS and rule2.tier == "server-side"
    # ... but under no disclosure and EDPB Use Case 1 it is not met
    for requirement in _NON_DISCLOSURE:
        assert [r.status for r in rows.rows_for(requirement)] == [NOT_MET]


def test_report_is_traceable(evidence: Evidence) -> None:
    # GIVEN the report of the project's app THEN it names the date, the commit, tool versions and
    # a SHA-256 of every template it evaluated
    facts = evidence.provenance
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", facts["generated (UTC)"])
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown \(not a git checkout\)", facts["git commit"])
    assert facts["aws-cdk-lib"][0].isdigit() and facts["cdk-nag"][0].isdigit()
    hashes = {k: v for k, v in facts.items() if k.startswith("sha256 ")}
    assert len(hashes) >= 3 and all(re.fullmatch(r"[0-9a-f]{64}", v) for v in hashes.values())
    page = render_markdown(evidence)
    assert "**Provenance**" in page and facts["git commit"] in page and "OSL 18 kap. 8 §" in page


# --- the headline per requirement, and tier C's facts (review items 5 and 9) -------------------------------
def test_headline_counts_not_met_per_requirement(good_stack_evidence: Evidence) -> None:
    # GIVEN the compliant fixture stack with one tier B bucket (rule 2 passes on it)
    from kommunmoln.compliance.report import requirement_tally

    tally = dict((req.id, counts) for req, counts in requirement_tally(good_stack_evidence))
    tier_b = [r for r in good_stack_evidence.rows if r.control == "KommunmolnOSL-2" and r.tier == "server-side"]
    # THEN the headline counts it `not met` under each non-disclosure requirement, not only in the totals
    for requirement in _NON_DISCLOSURE:
        assert tally[requirement.id][NOT_MET] == len(tier_b) > 0, requirement.id
        assert tally[requirement.id][PASS] >= 1  # the tier A bucket
    # AND the assessment requirement is counted as facts, never not met
    assert tally["osl-10-2a"][NOT_MET] == 0 and tally["osl-10-2a"][FACT] > 0
    # AND the rendered summary shows the count per requirement, before the first section
    page = render_markdown(good_stack_evidence)
    headline = page.split("\n## ")[0]
    row = f"| {REQUIREMENTS_BY_ID['disclosure'].title} | **{len(tier_b)}** | 0 |"
    assert row in headline
    assert f"{len(tier_b)} not met, 0 fail" in render_html(good_stack_evidence).split("<h2>")[0]


def _tier_c_model() -> AppModel:
    """Stack `C`: a protected bucket tagged tier C on an external-key-store key, as the tier C stack builds it."""
    model = protected_bucket_model(
        {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "Key"}},
        {"Type": names.RESOURCE_KMS_XKS_KEY, "Properties": {"CustomKeyStoreId": "cks-1", "XksKeyId": "xks-key-1"}},
    )
    bucket = model.stacks["C"].template["Resources"]["Data"]
    for tag in bucket["Properties"]["Tags"]:
        if tag["Key"] == names.TAG_TIER:
            tag["Value"] = names.TIER_C
    return model


def test_tier_c_bucket_shows_its_b_plus_facts_in_the_report() -> None:
    # GIVEN a tier C bucket (key material on the municipality's premises, S3 still sees plaintext)
    model = _tier_c_model()
    options = Options((REGION,))
    evidence = Evidence(config={}, rows=_pack_rows(Evaluator(model, options), {}, {}, {}), model=model, options=options)
    # WHEN the report is rendered
    page, html_page = render_markdown(evidence), render_html(evidence)
    # THEN the no-disclosure section lists the bucket's tier facts: B+, on premises, not met
    section = page.split(f"## {REQUIREMENTS_BY_ID['disclosure'].title}")[1].split("\n## ")[0]
    assert "Tier facts per protected bucket" in section
    assert (
        "| `C/Data` | B+ (tier C) | on the municipality's premises (external key store) | not met: S3 sees" in section
    )
    assert "<td>B+ (tier C)</td>" in html_page
    # AND its rows under no disclosure are `not met`, never pass
    assert [r.status for r in evidence.rows_for(REQUIREMENTS_BY_ID["disclosure"])] == [NOT_MET]


def test_tier_facts_are_absent_without_templates_and_for_access_log_buckets() -> None:
    # GIVEN evidence built by hand (no templates) THEN no tier-facts table is invented
    assert "Tier facts per protected bucket" not in render_markdown(Evidence(config={}))
    # GIVEN a protected bucket that receives another protected bucket's server access logs
    model = _tier_c_model()
    resources = model.stacks["C"].template["Resources"]
    resources["Data"]["Properties"]["LoggingConfiguration"] = {"DestinationBucketName": {"Ref": "Logs"}}
    resources["Logs"] = {
        "Type": "AWS::S3::Bucket",
        "Properties": {"Tags": [{"Key": names.TAG_CLASSIFICATION, "Value": names.CLASSIFICATION_PROTECTED}]},
    }
    model.add(model.stacks["C"])
    options = Options((REGION,))
    evidence = Evidence(config={}, rows=_pack_rows(Evaluator(model, options), {}, {}, {}), model=model, options=options)
    # THEN, as docs/compliance.md says, it has no row under no disclosure (rule 2 does not apply) and no tier facts
    shown = {r.resource for r in evidence.rows_for(REQUIREMENTS_BY_ID["disclosure"])}
    assert shown == {"C/Data"}
    from kommunmoln.compliance.report import tier_fact_rows

    assert [bucket for bucket, _ in tier_fact_rows(evidence)] == ["C/Data"]


# --- rule 3's findings under their own requirements (second review, item 11) ---------------------------
def _expiring_bucket_rows(acknowledged: dict | None = None) -> Evidence:
    """Stack `C`'s protected bucket, versioned, whose lifecycle expires noncurrent versions without a gallring
    decision: only rule 3's Retention finding fails (TLS, Block Public Access, logging are absent too)."""
    model = protected_bucket_model({"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k"}, None)
    props = model.stacks["C"].template["Resources"]["Data"]["Properties"]
    props["VersioningConfiguration"] = {"Status": "Enabled"}
    props["LifecycleConfiguration"] = {
        "Rules": [{"Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]
    }
    return Evidence(config={}, rows=_pack_rows(Evaluator(model, Options((REGION,))), {}, {}, acknowledged or {}))


def test_retention_finding_is_shown_only_under_the_archives_requirement() -> None:
    # GIVEN a protected bucket whose noncurrent versions expire without a gallring decision
    evidence = _expiring_bucket_rows()
    osl3 = lambda req: [r for r in evidence.rows_for(REQUIREMENTS_BY_ID[req]) if r.control == "KommunmolnOSL-3"]  # noqa: E731
    # WHEN the report reads rule 3 against each requirement
    archives, deletion = osl3("archives"), osl3("deletion-protection")
    # THEN the Retention failure is under "records are preserved and destroyed only by decision" only
    (retention,) = archives
    assert retention.status == FAIL and "[Retention]" in retention.title and "gallring" in retention.detail
    for requirement in REQUIREMENTS:
        if requirement.id != "archives":
            assert not [r for r in osl3(requirement.id) if "[Retention]" in r.title], requirement.id
    # AND "nothing is deleted by accident" shows the Versioning finding (it passes: versioning is on)
    assert [(r.title.rsplit("[", 1)[1], r.status) for r in deletion] == [("Versioning]", PASS)]
    # AND the other failures go under their own requirements (TLS under protective security, not archives)
    tls = [r for r in osl3("protective-security") if "[TLS]" in r.title]
    assert tls and tls[0].status == FAIL


def test_a_finding_is_acknowledged_only_by_its_own_acknowledgement() -> None:
    # GIVEN the same bucket with the Retention finding acknowledged on it (and nothing else)
    path = "C/Data"
    evidence = _expiring_bucket_rows({("KommunmolnOSL", "KommunmolnOSL-3[Retention]", path): "decision pending, see X"})
    rows = {r.title.rsplit("[", 1)[1].rstrip("]"): r for r in evidence.rows if r.control == "KommunmolnOSL-3"}
    # THEN Retention is acknowledged with its reason, and TLS still fails
    assert rows["Retention"].status == ACKNOWLEDGED and "decision pending" in rows["Retention"].detail
    assert rows["TLS"].status == FAIL


def test_every_finding_mapping_covers_the_rule_findings_within_its_requirements() -> None:
    for rule in RULES:
        if rule.finding_requirements:
            assert [f for f, _ in rule.finding_requirements] == list(rule.findings), rule.rule_id
            for _, requirements in rule.finding_requirements:
                assert set(requirements) <= set(rule.requirements), rule.rule_id
