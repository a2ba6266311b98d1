"""What each requirement maps to in the frameworks municipalities use: SKR's KLASSA, ISO/IEC 27001:2022
Annex A and NIST SP 800-53 Rev. 5.

Only what could be checked against a public source is given as a number. KLASSA's own requirement ids
sit in SKR's catalogue (klassa.skr.se, behind a login): they are `not checked` here, and the mapping
names the KLASSA aspects (konfidentialitet, riktighet, tillgänglighet) and the ISO/IEC 27002 area
KLASSA's requirements are built on instead. An ISO control whose number and title were not seen in a
public listing carries `checked=False` and is shown as `not checked`. Engineering cross-reference,
not a certification statement.
"""

from __future__ import annotations

from dataclasses import dataclass

from kommunmoln.compliance.catalog import (
    REQ_ARCHIVES,
    REQ_CYBERSECURITY,
    REQ_DELETION,
    REQ_DISCLOSURE,
    REQ_EDPB_UC1,
    REQ_GDPR_SECURITY,
    REQ_LOGGING,
    REQ_OSL_10_2A,
    REQ_PROTECTIVE_SECURITY,
    REQ_RESIDENCY,
    REQUIREMENTS,
)

NOT_CHECKED = "not checked"

SOURCES: tuple[str, ...] = (
    "ISO/IEC 27001:2022 Annex A (Table A.1), control numbers and titles checked against public listings of the "
    "2022 control set (a published statement of applicability, microlise.com; the Annex A index of hightable.io; "
    "isms.online pages on A.5.23, A.8.15 and A.8.24), not against the standard's text",
    "NIST SP 800-53 Rev. 5, Security and Privacy Controls for Information Systems and Organizations (Sep 2020, "
    "updated 10 Dec 2020), control identifiers as in the catalogue; the cdk-nag NIST.800.53.R5 pack names the "
    "same identifiers in its rule descriptions",
    "SKR, KLASSA (klassa.skr.se): consequence levels 0-4 for konfidentialitet, riktighet and tillgänglighet after "
    "MSB's model 0040-09 (level 4 'synnerligen allvarlig' is not handled by KLASSA's requirement catalogues); "
    "requirements built on SS-ISO/IEC 27001:2017 and 27002:2017, with references to MSBFS 2020:7 (klassa.skr.se, "
    "'Utformning av krav i KLASSA'; klassa-info.skr.se, 'Vägledning för klassificering'). KLASSA requirement ids: "
    "not checked",
)


@dataclass(frozen=True)
class IsoControl:
    number: str  # e.g. "5.23"
    title: str
    checked: bool = True  # False: number and title not seen in a public listing

    def label(self) -> str:
        return f"A.{self.number} {self.title}" + ("" if self.checked else f" ({NOT_CHECKED})")


@dataclass(frozen=True)
class Mapping:
    """One requirement's cross-references."""

    klassa_aspects: tuple[str, ...]  # K, R, T
    klassa_area: str  # where in KLASSA's ISO 27002-based catalogue to look (ids not checked)
    iso: tuple[IsoControl, ...]
    nist: tuple[str, ...]

    def klassa_label(self) -> str:
        aspects = {"K": "konfidentialitet", "R": "riktighet", "T": "tillgänglighet"}
        named = ", ".join(aspects[a] for a in self.klassa_aspects)
        return f"{named}; {self.klassa_area}; krav-id {NOT_CHECKED}"


_CLOUD = IsoControl("5.23", "Information security for use of cloud services")
_SUPPLIER = IsoControl("5.19", "Information security in supplier relationships")
_AGREEMENTS = IsoControl("5.20", "Addressing information security within supplier agreements")
_LEGAL = IsoControl("5.31", "Identification of legal, statutory, regulatory and contractual requirements")
_CLASSIFY = IsoControl("5.12", "Classification of information")
_TRANSFER = IsoControl("5.14", "Information transfer")
_ACCESS = IsoControl("5.15", "Access control")
_RIGHTS = IsoControl("5.18", "Access rights")
_SUPPLY_CHAIN = IsoControl("5.21", "Managing information security in the ICT supply chain")
_SUPPLIER_REVIEW = IsoControl("5.22", "Monitoring, review and change management of supplier services")
_INCIDENT_PLAN = IsoControl("5.24", "Information security incident management planning and preparation")
_INCIDENT_RESPONSE = IsoControl("5.26", "Response to information security incidents")
_EVIDENCE = IsoControl("5.28", "Collection of evidence")
_DISRUPTION = IsoControl("5.29", "Information security during disruption")
_CONTINUITY = IsoControl("5.30", "ICT readiness for business continuity")
_RECORDS = IsoControl("5.33", "Protection of records", checked=False)
_PII = IsoControl("5.34", "Privacy and protection of PII", checked=False)
_LOGGING = IsoControl("8.15", "Logging")
_MONITORING = IsoControl("8.16", "Monitoring activities", checked=False)
_CRYPTO = IsoControl("8.24", "Use of cryptography")
_BACKUP = IsoControl("8.13", "Information backup", checked=False)
_DELETION = IsoControl("8.10", "Information deletion", checked=False)

MAPPINGS: dict[str, Mapping] = {
    REQ_DISCLOSURE: Mapping(
        ("K",),
        "lagrumskrav OSL; krav på kryptering och leverantörens åtkomst",
        (_CLOUD, _CRYPTO, _LEGAL, _CLASSIFY),
        ("SC-28", "SC-12", "SC-13", "SA-9"),
    ),
    REQ_OSL_10_2A: Mapping(
        ("K",),
        "lagrumskrav OSL; leverantörsavtal och molntjänst",
        (_CLOUD, _SUPPLIER, _AGREEMENTS, _LEGAL),
        ("SA-9", "SA-4", "SR-3"),
    ),
    REQ_EDPB_UC1: Mapping(
        ("K",),
        "lagrumskrav dataskyddsförordningen; kryptering och nyckelhantering",
        (_CRYPTO, _TRANSFER, _PII, _CLOUD),
        ("SC-12", "SC-13", "SC-28", "SA-9(5)"),
    ),
    REQ_PROTECTIVE_SECURITY: Mapping(
        ("K", "R", "T"),
        "behörighet och åtkomst; KLASSA nivå 4 (säkerhetsskydd) hanteras inte i kravkatalogerna",
        (_ACCESS, _RIGHTS, _SUPPLIER, _AGREEMENTS),
        ("AC-3", "AC-4", "AC-6", "SC-8", "SC-7"),
    ),
    REQ_RESIDENCY: Mapping(
        ("K",),
        "lagrumskrav dataskyddsförordningen; leverantör och lagringsplats",
        (_CLOUD, _TRANSFER, _PII),
        ("SA-9(5)", "AC-4"),
    ),
    REQ_LOGGING: Mapping(
        ("K", "R"),
        "loggning och uppföljning",
        (_LOGGING, _MONITORING, _EVIDENCE),
        ("AU-2", "AU-9", "AU-11", "AU-12"),
    ),
    REQ_DELETION: Mapping(
        ("R", "T"),
        "säkerhetskopiering och kontinuitet",
        (_BACKUP, _CONTINUITY, _DISRUPTION),
        ("CP-9", "CP-10", "SI-12"),
    ),
    REQ_ARCHIVES: Mapping(
        ("R", "T"),
        "lagrumskrav arkivlagen; bevarande och gallring",
        (_RECORDS, _DELETION, _BACKUP),
        ("SI-12", "MP-6", "AU-11", "CP-4"),  # CP-4: the drills test delivery and escrow recovery
    ),
    REQ_CYBERSECURITY: Mapping(
        ("K", "R", "T"),
        "incidenthantering, kontinuitet, leverantörskedja",
        (_INCIDENT_PLAN, _INCIDENT_RESPONSE, _CONTINUITY, _SUPPLY_CHAIN, _SUPPLIER_REVIEW, _CRYPTO),
        # CP-4/CP-10: the restore drill; CM-8: the SBOM; IA-2(1): MFA on the roles people assume
        ("IR-4", "IR-6", "CP-2", "CP-4", "CP-10", "SR-3", "CM-8", "SC-12", "IA-2", "IA-2(1)"),
    ),
    REQ_GDPR_SECURITY: Mapping(
        ("K", "R", "T"),
        "lagrumskrav dataskyddsförordningen; personuppgiftsbiträde och säkerhet i behandlingen",
        (_PII, _CRYPTO, _AGREEMENTS, _BACKUP),
        ("SC-28", "CP-9", "CA-2", "PT-2", "RA-8"),
    ),
}


def mapping_for(requirement_id: str) -> Mapping:
    """The mapping of a catalogued requirement (every requirement has one: see the tests)."""
    return MAPPINGS[requirement_id]


def mapping_line(requirement_id: str) -> str:
    """The mapping in one line, for the Markdown and HTML reports."""
    mapping = MAPPINGS[requirement_id]
    return (
        f"KLASSA (SKR): {mapping.klassa_label()}; ISO/IEC 27001:2022 Annex A: "
        f"{'; '.join(c.label() for c in mapping.iso)}; NIST SP 800-53 Rev. 5: {', '.join(mapping.nist)}"
    )


def unmapped() -> list[str]:
    """Requirement ids without a mapping (empty when the catalogue and this table agree)."""
    return [r.id for r in REQUIREMENTS if r.id not in MAPPINGS]
