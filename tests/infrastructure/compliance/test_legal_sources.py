"""The legal material the pack prints: every requirement cites a dated source, and the statements
a review found overstated stay corrected (issue 16 items 1-6)."""

from __future__ import annotations

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
