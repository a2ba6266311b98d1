"""The legal material the pack prints: every requirement cites a dated source, and the statements
a review found overstated stay corrected (issue 16 items 1-6)."""

from __future__ import annotations

import html
import re

import pytest

from kommunmoln.compliance import REQUIREMENTS
from kommunmoln.compliance.catalog import REQUIREMENTS_BY_ID
from tests.conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"


@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=lambda r: r.id)
def test_every_requirement_cites_a_dated_source(requirement) -> None:
    # GIVEN a requirement of the catalogue THEN its source names at least one year (a dated document)
    assert re.search(r"\b(19|20)\d\d\b", requirement.source), requirement.source


def test_disclosure_is_not_presented_as_an_exception_encryption_meets() -> None:
    # GIVEN the no-disclosure requirement THEN eSam's encryption remark is quoted as unverified, the opposite
    # reading of SOU 2021:1 stands beside it, and 10 kap. 2 a § is named as the test that applies
    summary = REQUIREMENTS_BY_ID["disclosure"].summary
    assert "not been verified in practice" in summary
    assert "SOU 2021:1" in summary and "10 kap. 2 a §" in summary
    assert "meets that exception" not in summary


def test_osl_10_2a_is_quoted_and_recording_is_not_called_a_duty() -> None:
    summary = REQUIREMENTS_BY_ID["osl-10-2a"].summary
    assert "endast tekniskt bearbeta eller tekniskt lagra" in summary
    assert "för den utlämnande myndighetens räkning" in summary
    assert "must make and record" not in summary
    assert "1 Jul 2023" in REQUIREMENTS_BY_ID["osl-10-2a"].source


def test_no_tier_is_offered_for_security_classified_information() -> None:
    text = (DOCS / "compliance.md").read_text(encoding="utf-8")
    assert "tier A may be" not in text
    assert "Neither tier is designed for security-classified information" in text
    assert "2021:955" in text and "County Administrative Board" in text
    assert "Neither tier is designed" in REQUIREMENTS_BY_ID["protective-security"].summary


def test_residency_reduces_transfers_rather_than_avoiding_them() -> None:
    summary = REQUIREMENTS_BY_ID["residency"].summary
    assert "avoids a transfer" not in summary
    assert "reduces, does not eliminate" in summary


def test_tier_b_cut_off_is_described_as_it_behaves() -> None:
    # GIVEN the tier B documentation THEN changing kmsuser's password is not sold as a kill switch, and the
    # Bucket Key caveat from the AWS KMS guide ("Disconnect an AWS CloudHSM key store") is stated
    text = (DOCS / "use-case-2.md").read_text(encoding="utf-8")
    assert "change `kmsuser`'s password: new decryptions stop at once" not in text
    assert "does not stop a connected key store" in text
    assert "not affected until the KMS key is used again" in text


def test_foreign_access_law_beyond_the_cloud_act_and_the_mcf_rename_are_recorded() -> None:
    text = (DOCS / "compliance.md").read_text(encoding="utf-8")
    for needle in ("FISA section 702", "(EU) 2023/1543", "18 Aug 2026", "(EU) 2023/2854", "Art. 32", "Art. 28"):
        assert needle in text, needle
    assert "Myndigheten för civilt försvar" in text and "CERT-SE" in text
    assert "tier B+" in text


BANNED_IN_USE_CASES = (
    "sufficiently strong encryption",
    "exception of eSam",
    "eSam's 2018/2019 statements",
    '| eSam / EDPB "provider cannot read the data" | Met |',
    "eSam / EDPB",
)


@pytest.mark.parametrize("name", ["use-case-1.md", "use-case-2.md", "use-case-3.md"])
def test_use_cases_do_not_sell_encryption_as_an_esam_exception(name: str) -> None:
    # GIVEN a use-case document THEN none of the phrasings that present tier A as meeting an eSam exception
    # is left (compliance.md section 1.1: not an exception to rely on without own evidence)
    text = (DOCS / name).read_text(encoding="utf-8")
    for phrase in BANNED_IN_USE_CASES:
        assert phrase not in text, f"{name}: {phrase!r}"


def test_tier_a_is_described_as_evidence_for_the_municipalitys_assessment() -> None:
    # GIVEN use case 1 and the tier table of use case 2 THEN they state compliance.md's position
    for name in ("use-case-1.md", "use-case-2.md"):
        text = (DOCS / name).read_text(encoding="utf-8")
        assert "SOU 2021:1" in text and "the assessment is the municipality's" in text, name
    assert "10 kap. 2 a §" in (DOCS / "use-case-1.md").read_text(encoding="utf-8")


def test_e_evidence_content_orders_are_stated_with_their_judicial_and_offence_limits() -> None:
    # GIVEN compliance.md THEN the e-Evidence row does not let a prosecutor order content data
    # (Regulation (EU) 2023/1543 Art. 4(1)-(2)) and names the offence threshold of Art. 5(4)
    text = (DOCS / "compliance.md").read_text(encoding="utf-8")
    assert "A prosecutor in any Member State can order" not in text
    assert "judge, a court or an investigating judge" in text and "Art. 4(2)" in text and "Art. 4(1)" in text
    assert "at least 3 years" in text and "Art. 5(4)" in text
    assert "| The same orders can reach plaintext |" not in text


def test_fisa_702_is_dated_and_worded_as_a_risk() -> None:
    # GIVEN compliance.md and the fact sheet's jurisdiction line THEN FISA 702's status carries its date and a
    # not-checked marker, and its reach is a contested risk, not a certainty
    from kommunmoln.compliance.facts import JURISDICTION

    text = (DOCS / "compliance.md").read_text(encoding="utf-8")
    assert "reauthorised 2024 |" not in text and "20 Apr 2026" in text and "not checked" in text
    assert "can reach the provider wherever" not in JURISDICTION["en"]
    assert "contested" in JURISDICTION["en"] and "omstridd" in JURISDICTION["sv"]


def test_fact_sheets_state_the_bucket_key_caveat_and_where_rsa_escrow_wrappings_are() -> None:
    # GIVEN the tier fact sheets THEN tier B/C's cut-off leaves cached Bucket Keys working until the next KMS
    # call (AWS KMS Developer Guide, "Disconnect an AWS CloudHSM key store"), and tier A's key line says the RSA
    # escrow wrapping is stored at AWS and names the symmetric option
    from kommunmoln.compliance.facts import TIER_A, TIER_B, TIER_C, TIERS

    for tier in (TIER_B, TIER_C):
        assert "until S3 next calls KMS" in TIERS[tier].exit["en"], tier
        assert "tills S3 nästa gång anropar KMS" in TIERS[tier].exit["sv"], tier
    assert "first stops that" not in TIERS[TIER_B].exit["en"]
    keys = TIERS[TIER_A].keys["en"]
    assert "RSA" in keys and "stored at AWS" in keys and "--escrow-key" in keys
    use_case_3 = (DOCS / "use-case-3.md").read_text(encoding="utf-8")
    assert "never after the kill switch" not in use_case_3 and "until S3 next calls KMS" in use_case_3


@pytest.mark.parametrize("name", ["docs/use-case-3.md", "README.md"])
def test_tier_c_is_ranked_tier_b_plus(name: str) -> None:
    assert "tier B+" in (REPO_ROOT / name).read_text(encoding="utf-8")


def test_use_case_1_escrow_section_warns_about_rsa_and_offers_the_symmetric_key() -> None:
    # GIVEN use case 1 THEN its escrow section says where RSA wrappings are stored and why that matters for a
    # 70-year secrecy horizon, and documents the --escrow-key option (compliance.md section 5)
    text = (DOCS / "use-case-1.md").read_text(encoding="utf-8")
    assert "harvest now, decrypt later" in text and "stored at AWS in every object header" in text
    assert "--escrow-key KEYFILE" in text and "70 years" in text


def test_archives_requirement_leaves_the_classification_to_the_municipality() -> None:
    # GIVEN the archives requirement in both languages THEN records are "likely" allmänna handlingar and the
    # informationshanteringsplan and archives authority decide; recording the 10 kap. 2 a § assessment is not a duty
    from kommunmoln.compliance.catalog_sv import REQUIREMENTS_SV as SV

    summary = REQUIREMENTS_BY_ID["archives"].summary
    assert "are likely to be public records" in summary and "informationshanteringsplan" in summary
    assert "sannolikt allmänna" in str(SV) and "informationshanteringsplan" in str(SV)
    assert "Record it." not in (DOCS / "compliance.md").read_text(encoding="utf-8")


# --- every source carries its date, its reference and whether it was checked (issue 16, review item 2) ------
@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=lambda r: r.id)
def test_every_legal_source_has_a_date_a_reference_and_a_checked_flag(requirement) -> None:
    # GIVEN a requirement of the catalogue WHEN its sources are validated THEN none lacks a date, a reference or
    # a checked flag (a date or reference that could not be found is written "not verified", never left out)
    from kommunmoln.compliance.legal_sources import source_problems

    assert source_problems(requirement.sources) == []


def test_a_source_missing_its_date_reference_or_checked_flag_is_rejected() -> None:
    # GIVEN sources that lack a date, a reference, a bool checked flag, or that are absent altogether
    from kommunmoln.compliance.legal_sources import LegalSource, source_problems

    undated = LegalSource("Some act (2099:1)", "", "SFS 2099:1", True)
    unreferenced = LegalSource("Some memo", "1 Jan 2099", "  ", False)
    unflagged = LegalSource("Some ruling", "1 Jan 2099", "C-1/99", "yes")  # type: ignore[arg-type]
    # WHEN validated THEN each gap is reported by name, and no source at all is a problem too
    assert source_problems((undated,)) == ["Some act (2099:1): no date (write 'not verified' if it could not be found)"]
    assert source_problems((unreferenced,)) == [
        "Some memo: no reference (write 'not verified' if it could not be found)"
    ]
    assert source_problems((unflagged,)) == ["Some ruling: checked is 'yes', not True or False"]
    assert source_problems(()) == ["no legal source"]
    assert source_problems(("OSL 10 kap. 2 a §",)) == ["source 0: 'OSL 10 kap. 2 a §' is not a LegalSource"]  # type: ignore[arg-type]


def test_the_report_prints_each_source_with_date_reference_and_checked_flag() -> None:
    # GIVEN an evidence report (no rows needed) WHEN rendered as Markdown and HTML
    from kommunmoln.compliance.report import Evidence, render_html, render_markdown

    evidence = Evidence(config={})
    markdown, page = render_markdown(evidence), render_html(evidence)
    # THEN every source of every requirement appears with its date, reference and checked label
    for requirement in REQUIREMENTS:
        for source in requirement.sources:
            row = f"| {source.name} | {source.date} | {source.reference} | {source.checked_label()} |"
            assert row in markdown, source.name
            assert f"<td>{html.escape(source.reference)}</td>" in page, source.name
    assert "not checked against the source text" in markdown and "checked against the source text" in markdown


# --- eSam's wording (review item 1) and the eSam dates of the rules (item 3) ---------------------------
ESAM_VERIFIED = (
    # eSam news of 14 Dec 2018 (esamverka.se), read for this catalogue
    "inte går att utesluta att en leverantör av en molntjänst som lyder under viss utländsk lagstiftning kan "
    "medverka till att sekretessreglerade uppgifter röjs",
    "utesluter [expertgruppen] inte att det skulle kunna gå",
    "i praktiken inte har kunnat verifieras att krypteringsmekanismer",
)


def test_swedish_esam_quotations_are_esams_wording_and_the_paraphrase_is_marked() -> None:
    # GIVEN the Swedish no-disclosure text THEN the quotations are eSam's own wording from its 14 Dec 2018 news,
    # the "genom ägande eller på annat sätt" is marked as an unchecked paraphrase, and the earlier
    # invented wording is gone
    from kommunmoln.compliance.catalog_sv import REQUIREMENTS_SV as SV

    summary = SV["disclosure"][1]
    for quote in ESAM_VERIFIED:
        assert quote in summary, quote
    paraphrase = summary.index("genom ägande eller på annat sätt")
    assert "inte kontrollerad mot uttalandet och är inget citat" in summary[paraphrase : paraphrase + 120]
    assert "andrahandskälla" in summary  # "får uppgifterna anses vara röjda" rests on a secondary source
    assert "inte är prövat i praktiken" not in summary and "'kan anses röjda'" not in summary


def test_esam_statement_reference_is_not_presented_as_verified() -> None:
    from kommunmoln.compliance.legal_sources import ESAM_NEWS_2018, ESAM_PM_2023, ESAM_STATEMENT_2018

    assert not ESAM_STATEMENT_2018.checked and "not verified" in ESAM_STATEMENT_2018.reference
    assert ESAM_NEWS_2018.checked and ESAM_NEWS_2018.date == "14 Dec 2018"
    assert not ESAM_PM_2023.checked and ESAM_PM_2023.reference == "reference not verified"
    text = (DOCS / "compliance.md").read_text(encoding="utf-8")
    assert "ES2018-xx" not in text and "utesluter inte att det skulle kunna gå" in text


def test_no_rule_cites_an_ambiguous_esam_date() -> None:
    # GIVEN the rules' explanations and the docs THEN eSam is cited with one document and date, not "2018/2019"
    from kommunmoln.compliance import RULES

    for rule in RULES:
        assert "2018/2019" not in rule.explanation, rule.rule_id
        if "eSam" in rule.explanation:
            assert "eSam legal expert group statement (Nov 2018)" in rule.explanation, rule.rule_id
    assert "2018/2019" not in (DOCS / "compliance.md").read_text(encoding="utf-8")


# --- HSLF-FS 2016:40 (item 6) and the open points of issue 16 item 1 (item 10) ------------------------
def test_hslf_fs_logs_are_the_care_providers_and_the_paragraph_is_not_overstated() -> None:
    text = (DOCS / "compliance.md").read_text(encoding="utf-8")
    assert "9 § p. 7" not in text and "4 kap. 9 § 7" not in text
    assert "HSLF-FS 2016:40 4 kap." in text and "paragraph and point not verified" in text.lower()
    assert "the care provider's" in text and "who read which patient's record" in text
    logging = REQUIREMENTS_BY_ID["logging"]
    assert any("HSLF-FS 2016:40" in s.name and not s.checked for s in logging.sources)


def test_skl_skr_comments_the_2023_sfs_number_and_lag_2020_914_are_cited_honestly() -> None:
    text = (DOCS / "compliance.md").read_text(encoding="utf-8")
    assert "27 Jan 2020" in text and "Computer Sweden" in text  # SKR's dated reply; SKL's position as reported
    assert "SFS number of the amending law is **not verified**" in text
    assert "Lag (2020:914)" in text
    sources = REQUIREMENTS_BY_ID["osl-10-2a"].sources
    assert any("2020:914" in s.reference for s in sources)
    assert any(s.reference == "amending SFS number not verified" for s in sources)


# --- second review, items 8-10 and 12: dates, case numbers and outcomes, Swedish notes -----------------
def _all_sources() -> list:
    return [s for r in REQUIREMENTS for s in r.sources]


def test_lag_2020_914_bill_date_and_in_force_date_are_stated() -> None:
    # GIVEN the catalogue's source for lag (2020:914) (review item 8: the bill is of 3 Sep 2020)
    (source,) = [s for s in _all_sources() if "2020:914" in s.reference]
    # THEN it names the bill's date and the in-force date, and says what was read where
    assert "3 Sep 2020" in source.date and "1 Jan 2021" in source.date
    assert "lagen.nu/prop/2019/20:201" in source.note and "enacted SFS text not read" in source.note
    text = (DOCS / "compliance.md").read_text(encoding="utf-8")
    assert "the date 3 Sep 2020 is **not verified**" not in text and "in force **1 Jan 2021**" in text


def test_sou_2021_1_is_dated_and_its_encryption_point_is_marked_secondary() -> None:
    # GIVEN SOU 2021:1 (review item 9)
    from kommunmoln.compliance.legal_sources import SOU_2021_1

    # THEN its date and addresses are given; the s. 282 f. quote is marked as quoted via certezza.net
    assert SOU_2021_1.date == "submitted 15 Jan 2021" and "ZZB31" in SOU_2021_1.reference
    assert "s. 282 f." in SOU_2021_1.note and "certezza.net" in SOU_2021_1.note and not SOU_2021_1.checked


def test_imy_tele2_decision_has_case_number_and_outcome_and_the_others_are_unverified() -> None:
    # GIVEN the EDPB Use Case 1 requirement's IMY sources (review item 10)
    sources = [s for s in REQUIREMENTS_BY_ID["edpb-uc1"].sources if s.name.startswith("IMY")]
    (tele2,) = [s for s in sources if "Tele2" in s.name]
    # THEN Tele2's case number and the appeal outcome are cited, and where the number comes from
    assert "DI-2020-11373" in tele2.reference and "gdprhub" in tele2.reference
    assert "Kammarrätten" in tele2.name and "16 Oct 2025" in tele2.date
    # AND the decisions not read on imy.se are marked unverified
    others = [s for s in sources if s is not tele2]
    assert others and all(not s.checked and "not verified" in s.reference for s in others)


def test_every_source_note_has_a_swedish_rendering() -> None:
    # GIVEN every legal source with a note (review item 12: the Swedish PDF printed them in English)
    from kommunmoln.compliance.catalog_sv import NOTES_SV, source_note_sv

    for source in _all_sources():
        if source.note:
            # THEN the Swedish report has its own Swedish text for it, not the fallback
            swedish = source_note_sv(source)
            assert source.note_sv or source.note in NOTES_SV, source.note
            assert swedish and swedish != source.note and "saknar svensk" not in swedish, source.note


def test_post_quantum_plan_says_what_rotate_rewrites() -> None:
    # GIVEN docs/compliance.md's rewrapping paragraph and post-quantum plan (second review, item 3)
    text = (DOCS / "compliance.md").read_text(encoding="utf-8")
    rotate = (REPO_ROOT / "kommunmoln" / "tier_a" / "rotate.py").read_text(encoding="utf-8")
    # THEN both match rotate.py: current versions only, noncurrent versions keep the RSA wrapping
    assert "Older versions are not rewritten" in rotate
    assert "not automated yet" not in text
    plan = text.split("**Post-quantum plan.**")[1].split("\n\n")[0]
    assert "**current versions**" in plan and "noncurrent versions" in plan and "indefinitely" in plan
    assert "from the first upload" in plan
