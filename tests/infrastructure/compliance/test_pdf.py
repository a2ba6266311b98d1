"""The filed formats (issue 16 items 12 and 16): PDF/A in Swedish and English, the fact sheets, the DPIA annex.

The PDFs are read back with pypdf: what a reader of the file sees is what the tests assert.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import aws_cdk as cdk
import pytest
from pypdf import PdfReader

from kommunmoln import names
from kommunmoln.compliance.catalog import REQUIREMENTS, REQUIREMENTS_BY_ID
from kommunmoln.compliance.catalog_sv import REQUIREMENTS_SV
from kommunmoln.compliance.checks import Evaluator, Options
from kommunmoln.compliance.dpia import key_policies, mermaid, svg
from kommunmoln.compliance.facts import TIER_A, TIER_B, TIER_C, TIER_UNVERIFIED, tier_of
from kommunmoln.compliance.mappings import MAPPINGS, NOT_CHECKED, unmapped
from kommunmoln.compliance.model import AppModel, ResourceRef, StackModel
from kommunmoln.compliance.pdf import DOCUMENTS, LANGUAGES, write_pdfs
from kommunmoln.compliance.report import Evidence, _pack_rows
from kommunmoln.compliance.results import TestResults
from tests.infrastructure.compliance.fixtures import REGION, GoodStack, protected_bucket_model, write_results

_PASSED_TEST = "tests/infrastructure/compliance/test_rules.py::test_osl2_tier_a_bucket_passes"


def _squash(text: str) -> str:
    """Text without whitespace: the PDF wraps lines, even inside long names, wherever the page needs."""
    return re.sub(r"\s+", "", text)


def _text(path: Path) -> str:
    """All pages' text, squashed (compare with `_squash(needle)`)."""
    return _squash(" ".join(page.extract_text() or "" for page in PdfReader(path).pages))


@pytest.fixture(scope="module")
def good_evidence(tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    """The compliant fixture stack (tier A buckets, a tier B bucket on an HSM key) with one dated result."""
    outdir = tmp_path_factory.mktemp("good")
    app = cdk.App(outdir=str(outdir))
    GoodStack(app, "Good")
    app.synth()
    model = AppModel.from_outdir(outdir)
    results = write_results(
        outdir / "results.json",
        "0" * 40,
        {_PASSED_TEST: ("passed", "2026-12-02T09:01:02Z")},
        ("2026-12-02T09:00:00Z", "2026-12-02T09:30:00Z"),
    )
    options = Options((REGION,))
    return Evidence(
        config={"municipality": "Exempelkommun"},
        rows=_pack_rows(Evaluator(model, options), {}, {}, {}),
        provenance={"generated (UTC)": "2026-12-02T10:00:00Z", "git commit": "0" * 40},
        results=TestResults.load(results),
        model=model,
        options=options,
    )


@pytest.fixture(scope="module")
def pdfs(good_evidence: Evidence, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pdf")
    written = write_pdfs(good_evidence, directory)
    return {p.name: p for p in written}


def test_every_document_is_written_as_pdf_a_in_swedish_and_english(pdfs: dict[str, Path]) -> None:
    # GIVEN the report, the fact sheets and the DPIA annex written by write_pdfs
    expected = {f"{name}.{language}.pdf" for name in DOCUMENTS for language in LANGUAGES}
    assert expected <= set(pdfs)
    for name in expected:
        reader = PdfReader(pdfs[name])
        # THEN each declares PDF/A-3b in its XMP metadata and carries an output intent
        xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode("utf-8")
        assert re.search(r"pdfaid:part[^0-9]{1,3}3", xmp) and re.search(r"pdfaid:conformance[^A-Z]{1,3}B", xmp), name
        assert reader.trailer["/Root"].get("/OutputIntents"), name
        # AND its language is the document's
        assert str(reader.trailer["/Root"]["/Lang"]) == name.split(".")[1], name
        # AND every page carries the handling note in its footer
        footer = "kan vara hemlig (OSL 18 kap. 8 §)" if ".sv." in name else "may be secret (OSL 18 kap. 8 §)"
        assert all(_squash(footer) in _squash(page.extract_text()) for page in reader.pages), name


def test_swedish_and_english_reports_say_the_same_in_their_own_language(pdfs: dict[str, Path]) -> None:
    swedish, english = _text(pdfs["compliance-report.sv.pdf"]), _text(pdfs["compliance-report.en.pdf"])
    # THEN the Swedish one has the Swedish title, handling note, requirement titles and statuses
    assert _squash("Underlag om regelefterlevnad") in swedish and _squash("Hanteringsanvisning") in swedish
    assert _squash("Pröva sekretessen innan den diarieförs") in swedish
    for requirement in REQUIREMENTS:
        assert _squash(REQUIREMENTS_SV[requirement.id][0]) in swedish, requirement.id
        assert _squash(requirement.title) not in swedish
        assert _squash(requirement.title) in english, requirement.id
    # AND tier B under "no disclosure" is `not met` in both, never a pass
    assert _squash("inte uppfyllt") in swedish and _squash("not met") in english
    assert _squash("Compliance evidence report") in english and _squash("Handling note") in english
    assert _squash("Underlag om regelefterlevnad") not in english


def test_report_maps_klassa_iso_and_nist_and_marks_what_is_not_checked(pdfs: dict[str, Path]) -> None:
    english = _text(pdfs["compliance-report.en.pdf"])
    assert _squash("KLASSA (SKR)") in english and _squash(f"krav-id {NOT_CHECKED}") in english
    assert _squash("A.5.23 Information security for use of cloud services") in english
    assert _squash(f"A.5.33 Protection of records ({NOT_CHECKED})") in english
    assert _squash("SC-28") in english and _squash("AU-9") in english
    assert _squash("Sources of the mappings") in english and _squash("MSBFS 2020:7") in english


def test_proven_by_lists_dated_results_and_not_run(pdfs: dict[str, Path]) -> None:
    # GIVEN results that include one proving test (passed) and none of the others
    english = _text(pdfs["compliance-report.en.pdf"])
    # THEN the report shows that test with its outcome and date, and the others as `not run`
    assert _squash("test_osl2_tier_a_bucket_passes: passed 2026-12-02T09:01:02Z") in english
    assert _squash("test_osl2_tier_b_bucket_with_hsm_key_raises_no_rule_2_finding: not run") in english
    assert _squash("test_osl2_tier_b_bucket_with_hsm_key_raises_no_rule_2_finding: passed") not in english


def test_one_fact_sheet_page_per_protected_bucket(good_evidence: Evidence, pdfs: dict[str, Path]) -> None:
    # GIVEN the fixture stack's three protected buckets (two tier A, one tier B)
    sheets = good_evidence.fact_sheets()
    assert sorted(s.tier for s in sheets) == [TIER_A, TIER_A, TIER_B]
    for language, words in (
        ("sv", ("Avtalspart hos AWS", "Jurisdiktion", "Synligt för leverantören", "Utträde", "inte kontrollerat")),
        ("en", ("Contracting AWS entity", "Jurisdiction", "Visible to the provider", "Exit", "not checked")),
    ):
        reader = PdfReader(pdfs[f"fact-sheets.{language}.pdf"])
        # THEN each sheet is exactly one page, with every fact of the 10 kap. 2 a § assessment
        assert len(reader.pages) == len(sheets)
        for page, sheet in zip(reader.pages, sheets, strict=True):
            text = _squash(page.extract_text())
            assert all(_squash(word) in text for word in words), (language, sheet.resource)
            assert _squash("CLOUD Act") in text and _squash("FISA") in text and _squash("eu-north-1") in text
    tier_b_page = next(i for i, s in enumerate(sheets) if s.tier == TIER_B)
    tier_b_text = _squash(PdfReader(pdfs["fact-sheets.sv.pdf"]).pages[tier_b_page].extract_text())
    assert _squash("klartexten och datanyckeln medan S3 behandlar") in tier_b_text


def test_dpia_annex_exports_every_key_policy_and_the_data_flow(good_evidence: Evidence, pdfs: dict[str, Path]) -> None:
    policies = good_evidence.key_policies()
    # GIVEN the fixture stack's keys (the HSM-backed key among them)
    assert any(p.resource_type == names.RESOURCE_KMS_HSM_KEY for p in policies)
    annex = _text(pdfs["dpia-annex.en.pdf"])
    for policy in policies:
        # THEN every key policy is exported as JSON as it stands in the template, and shown in the annex
        exported = json.loads(pdfs[policy.file_name].read_text())
        assert exported == policy.document and exported["Statement"], policy.logical_id
        assert _squash(policy.logical_id) in annex
    assert _squash("What AWS sees, per tier") in annex and _squash("flowchart LR") in annex
    for tier in ("Tier A", "Tier B", "Tier C"):
        assert _squash(tier) in annex
    assert _squash("Vad AWS ser, per nivå") in _text(pdfs["dpia-annex.sv.pdf"])
    # AND the diagram is the same in both forms: every Mermaid label (7 nodes, 2 zones) is drawn in the SVG
    for language in LANGUAGES:
        labels = re.findall(r'\["([^"]+)"\]', mermaid(language))
        assert len(labels) == 9 and all(label in svg(language) for label in labels)


def test_dpia_annex_tier_names_are_not_broken_inside_words(pdfs: dict[str, Path]) -> None:
    # GIVEN the DPIA annex's per-tier table (column 1 was too narrow: "krypterin g", "CloudHS M")
    from kommunmoln.compliance.facts import TIERS

    for language in LANGUAGES:
        page = "\n".join(p.extract_text() for p in PdfReader(pdfs[f"dpia-annex.{language}.pdf"]).pages)
        # THEN every word of every tier name is on one line, whole
        for tier in (TIERS[TIER_A], TIERS[TIER_B], TIERS[TIER_C]):
            for word in re.findall(r"\w+", tier.name[language]):
                assert re.search(rf"(?<!\w){re.escape(word)}(?!\w)", page), (language, word)


def test_a_key_policy_the_template_cannot_show_is_marked_not_checked() -> None:
    model = AppModel()
    model.add(
        StackModel("S", {"Resources": {"K": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": 7}}}}, REGION, None)
    )
    (policy,) = key_policies(model)
    assert policy.document is None and "not checked" in policy.text()


def test_tier_is_read_from_the_template_and_fails_closed() -> None:
    kms = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "Key"}}
    cases = (
        (kms, {"Type": names.RESOURCE_KMS_HSM_KEY, "Properties": {"Origin": "EXTERNAL_KEY_STORE"}}, TIER_C),
        (kms, {"Type": names.RESOURCE_KMS_HSM_KEY, "Properties": {"CustomKeyStoreId": "cks-1"}}, TIER_B),
        # GIVEN a bucket tagged tier B whose key is an ordinary KMS key, or SSE-S3: THEN not verified, not B
        (kms, {"Type": "AWS::KMS::Key", "Properties": {}}, TIER_UNVERIFIED),
        ({"SSEAlgorithm": "AES256"}, None, TIER_UNVERIFIED),
        (None, None, TIER_UNVERIFIED),
    )
    for encryption, key, expected in cases:
        model = protected_bucket_model(encryption, key)
        ref = ResourceRef("C", "Data")
        assert tier_of(Evaluator(model, Options()), ref, model.resource(ref)) == expected, (encryption, key)


def test_every_requirement_has_a_swedish_text_and_a_mapping() -> None:
    assert unmapped() == [] and set(MAPPINGS) == set(REQUIREMENTS_BY_ID) == set(REQUIREMENTS_SV)
    for requirement_id, mapping in MAPPINGS.items():
        # ISO/IEC 27001:2022 Annex A numbers exist (5.1-5.37 organisational, 8.1-8.34 technological)
        for control in mapping.iso:
            theme, number = (int(part) for part in control.number.split("."))
            assert (theme, number) in {(5, n) for n in range(1, 38)} | {(8, n) for n in range(1, 35)}, requirement_id
        assert all(re.fullmatch(r"[A-Z]{2}-\d{1,2}(\(\d+\))?", c) for c in mapping.nist), requirement_id
        assert set(mapping.klassa_aspects) <= {"K", "R", "T"} and NOT_CHECKED in mapping.klassa_label()


def test_pdf_reports_open_with_the_per_requirement_headline_and_print_each_source(
    good_evidence: Evidence, pdfs: dict[str, Path]
) -> None:
    # GIVEN the fixture stack's tier B bucket (not met under the two non-disclosure requirements)
    from kommunmoln.compliance.report import requirement_tally

    tally = {req.id: counts for req, counts in requirement_tally(good_evidence)}
    not_met = tally["disclosure"]["not met"]
    assert not_met > 0
    swedish, english = _text(pdfs["compliance-report.sv.pdf"]), _text(pdfs["compliance-report.en.pdf"])
    # THEN each PDF opens with the count per requirement, in its own language
    first_en = english.split(_squash("Provenance"))[0]
    first_sv = swedish.split(_squash("Spårbarhet"))[0]
    assert _squash("Per requirement") in first_en
    assert _squash(f"{REQUIREMENTS_BY_ID['disclosure'].title} {not_met} not met, 0 fail") in first_en
    assert _squash("Per krav") in first_sv and _squash(f"{not_met} inte uppfyllt") in first_sv
    # AND the bold headline is in the PDF's language, requirements first (review items 2 and 12)
    assert _squash(f"Efterlevnad: {len(REQUIREMENTS)} krav: ") in first_sv and _squash("Compliance:") not in swedish
    assert _squash("Regelutfall (per kontroll och resurs") in first_sv
    assert _squash(f"Compliance: {len(REQUIREMENTS)} requirements: ") in first_en
    # AND every source is printed with its date, reference and whether it was checked
    for requirement in REQUIREMENTS:
        for source in requirement.sources:
            assert _squash(source.reference) in english, source.name
            assert _squash(source.date) in english, source.name
    assert _squash("Checked against the source text") in english
    assert _squash("Kontrollerad mot källtexten") in swedish
    # AND the Swedish report prints the sources' notes in Swedish (review item 12)
    assert _squash("själva uttalandet inte läst") in swedish
    assert (
        _squash("the statement itself not read") not in swedish and _squash("the statement itself not read") in english
    )
