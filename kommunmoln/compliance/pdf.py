"""The filed formats: the evidence report, the fact sheets and the DPIA annex as PDF/A, in Swedish and English.

HTML is rendered here and turned into PDF/A-3b by WeasyPrint (a maintained PyPI library; it needs
Pango, which Debian's libpango packages provide). PDF/A-3b is the variant WeasyPrint declares and
builds (embedded fonts, an sRGB output intent, XMP metadata); the files are not validated with
veraPDF here. Every document starts with the handling note (OSL 18 kap. 8 §) and repeats it in
the footer of every page.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from kommunmoln.compliance import dpia, facts
from kommunmoln.compliance.catalog import REQUIREMENTS, Requirement
from kommunmoln.compliance.catalog_sv import REQUIREMENTS_SV, STATUS_SV, source_note_sv
from kommunmoln.compliance.legal_sources import LegalSource
from kommunmoln.compliance.mappings import SOURCES, mapping_for

if TYPE_CHECKING:
    from kommunmoln.compliance.report import Evidence

LANGUAGES = ("sv", "en")
PDF_VARIANT = "pdf/a-3b"
esc = html.escape

WORDS: dict[str, dict[str, str]] = {
    "report": {"en": "Compliance evidence report", "sv": "Underlag om regelefterlevnad"},
    "sheets": {
        "en": "Fact sheets for the OSL 10 kap. 2 a § assessment",
        "sv": "Faktablad för bedömningen enligt OSL 10 kap. 2 a §",
    },
    "dpia": {
        "en": "DPIA annex: what AWS sees, data flow, key policies",
        "sv": "Bilaga till konsekvensbedömningen (DPIA): vad AWS ser, dataflöde, nyckelpolicyer",
    },
    "handling_title": {"en": "Handling note", "sv": "Hanteringsanvisning"},
    "handling": {
        "en": "A report generated for a live account's configuration may itself contain secret information (OSL "
        "18 kap. 8 §: information on security measures, such as access control and the protection of IT systems). "
        "Assess secrecy before registering, disclosing or sharing it.",
        "sv": "En rapport som tagits fram för ett levande kontos konfiguration kan själv innehålla uppgifter som "
        "omfattas av sekretess (OSL 18 kap. 8 §: uppgifter om säkerhetsåtgärder, t.ex. behörighetskontroll och "
        "skydd av it-system). Pröva sekretessen innan den diarieförs, lämnas ut eller sprids.",
    },
    "footer": {"en": "Handling: may be secret (OSL 18 kap. 8 §)", "sv": "Hantering: kan vara hemlig (OSL 18 kap. 8 §)"},
    "disclaimer": {
        "en": "Engineering evidence from the synthesized CloudFormation templates: not legal advice, and not the "
        "municipality's own assessments (OSL 10 kap. 2 a §, Säkerhetsskyddslagen, DPIA). See docs/compliance.md.",
        "sv": "Tekniskt underlag ur de syntetiserade CloudFormation-mallarna: inte juridisk rådgivning och inte "
        "kommunens egna bedömningar (OSL 10 kap. 2 a §, säkerhetsskyddslagen, DPIA). Se docs/compliance.md.",
    },
    "machine": {
        "en": "Control details and test names are machine output in English.",
        "sv": "Kontrollernas detaljtext och testnamn är maskinutdata på engelska.",
    },
    "provenance": {"en": "Provenance", "sv": "Spårbarhet"},
    "tests": {"en": "Test results", "sv": "Testresultat"},
    "source": {"en": "Source", "sv": "Källa"},
    "date": {"en": "Date", "sv": "Datum"},
    "reference": {"en": "Reference", "sv": "Referens"},
    "checked": {"en": "Checked against the source text", "sv": "Kontrollerad mot källtexten"},
    "yes": {"en": "yes", "sv": "ja"},
    "no": {"en": "no", "sv": "nej"},
    "per_requirement": {"en": "Per requirement", "sv": "Per krav"},
    "facts": {"en": "facts for the assessment", "sv": "fakta för bedömningen"},
    "mapping": {"en": "Mapped to", "sv": "Motsvarar"},
    "control": {"en": "Control", "sv": "Kontroll"},
    "resource": {"en": "Resource", "sv": "Resurs"},
    "status": {"en": "Status", "sv": "Status"},
    "detail": {"en": "Detail", "sv": "Detalj"},
    "proven": {"en": "Proven by (dated test results)", "sv": "Belagt av (daterade testresultat)"},
    "framework_sources": {"en": "Sources of the mappings", "sv": "Källor för motsvarigheterna"},
    "information_type": {"en": "Information type", "sv": "Informationstyp"},
    "unnamed": {
        "en": "the information stored in this bucket (name it: tag kommunmoln:information-type)",
        "sv": "uppgifterna i denna bucket (namnge dem: taggen kommunmoln:information-type)",
    },
    "entity": {"en": "Contracting AWS entity", "sv": "Avtalspart hos AWS"},
    "jurisdiction": {"en": "Jurisdiction", "sv": "Jurisdiktion"},
    "tier": {"en": "Tier", "sv": "Nivå"},
    "region": {"en": "Region", "sv": "Region"},
    "keys": {"en": "Key material", "sv": "Nyckelmaterial"},
    "sees": {"en": "Visible to the provider", "sv": "Synligt för leverantören"},
    "not_sees": {"en": "Not visible to the provider", "sv": "Inte synligt för leverantören"},
    "logs": {"en": "Logs", "sv": "Loggar"},
    "retention": {"en": "Retention", "sv": "Bevarande och gallring"},
    "exit": {"en": "Exit", "sv": "Utträde"},
    "assessment": {
        "en": "Facts for the assessment; whether handing over is inappropriate (olämpligt) is the municipality's "
        "decision.",
        "sv": "Fakta för bedömningen; om utlämnandet är olämpligt avgör kommunen.",
    },
    "no_sheets": {
        "en": "The app has no protected bucket, so there is no fact sheet.",
        "sv": "Appen har ingen skyddad bucket, så det finns inget faktablad.",
    },
    "per_tier": {"en": "What AWS sees, per tier", "sv": "Vad AWS ser, per nivå"},
    "flow": {"en": "Data flow", "sv": "Dataflöde"},
    "policies": {
        "en": "Key policies from the synthesized templates",
        "sv": "Nyckelpolicyer ur de syntetiserade mallarna",
    },
    "origin": {"en": "origin", "sv": "ursprung"},
}

_CSS = """
@page { size: A4; margin: 16mm 14mm 18mm 14mm;
  @bottom-left { content: "%(footer)s"; font: 7pt "DejaVu Sans", sans-serif; color: #800; }
  @bottom-right { content: counter(page) " / " counter(pages); font: 7pt "DejaVu Sans", sans-serif; } }
body { font-family: "DejaVu Sans", sans-serif; font-size: 8pt; line-height: 1.3; }
h1 { font-size: 15pt; } h2 { font-size: 11pt; margin-top: 12pt; } h3 { font-size: 9pt; }
table { border-collapse: collapse; width: 100%%; margin: 4pt 0; }
td, th { border: 0.5pt solid #999; padding: 2pt 3pt; vertical-align: top; text-align: left; }
td { overflow-wrap: anywhere; }
.handling { border: 1pt solid #800; padding: 4pt 6pt; background: #fee; }
.sheet { page-break-after: always; } .sheet:last-child { page-break-after: auto; }
.sheet th { width: 28%%; } .fail { background: #fdd; } .not-met { background: #fdb; } .pass { background: #dfd; }
.acknowledged { background: #ffd; } table.rows { table-layout: fixed; }
table.rows th:nth-child(1) { width: 20%%; } table.rows th:nth-child(2) { width: 17%%; }
table.rows th:nth-child(3) { width: 9%%; }
tr { break-inside: avoid; page-break-inside: avoid; }
table.tiers { table-layout: fixed; } table.tiers th:nth-child(1) { width: 22%%; }
table.tiers td:first-child { overflow-wrap: normal; hyphens: manual; } table.rows th:nth-child(4) { width: 27%%; } pre { font-size: 6.5pt; white-space: pre-wrap; overflow-wrap: anywhere; }
"""


def _w(key: str, language: str) -> str:
    return WORDS[key][language]


def _page(title: str, body: list[str], language: str) -> str:
    css = _CSS % {"footer": _w("footer", language)}
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="{language}"><head><meta charset="utf-8"><title>{esc(title)}</title>',
            f"<style>{css}</style></head><body>",
            f"<h1>{esc(title)}</h1>",
            f'<div class="handling"><strong>{esc(_w("handling_title", language))}:</strong> '
            f"{esc(_w('handling', language))}</div>",
            f"<p><em>{esc(_w('disclaimer', language))}</em></p>",
            *body,
            "</body></html>",
        ]
    )


def _status(status: str, language: str) -> str:
    return STATUS_SV.get(status, status) if language == "sv" else status


def _header(evidence: Evidence, language: str) -> list[str]:
    municipality = evidence.config.get("municipality", "")
    commit = evidence.provenance.get("git commit", "")
    rows = [("municipality" if language == "en" else "kommun", str(municipality))]
    rows += [(k, v) for k, v in evidence.provenance.items() if not k.startswith("sha256 ")]
    rows.append((_w("tests", language), evidence.results.summary(commit)))
    parts = [f"<h2>{esc(_w('provenance', language))}</h2><table>"]
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows]
    parts.append("</table>")
    return parts


def _sources_table(requirement: Requirement, language: str) -> list[str]:
    """Every legal source of the requirement with its date, reference and whether it was checked."""
    head = "".join(f"<th>{esc(_w(k, language))}</th>" for k in ("source", "date", "reference", "checked"))
    rows = [
        f"<tr><td>{esc(s.name)}</td><td>{esc(s.date)}</td><td>{esc(s.reference)}</td>"
        f"<td>{esc(_w('yes' if s.checked else 'no', language))}{esc(': ' + note if (note := _note(s, language)) else '')}"
        "</td></tr>"
        for s in requirement.sources
    ]
    return [f"<table><tr>{head}</tr>", *rows, "</table>"]


def _note(source: LegalSource, language: str) -> str:
    return source_note_sv(source) if language == "sv" else source.note


def _headline(evidence: Evidence, language: str) -> list[str]:
    """The per-requirement count of `not met` (and the other statuses), as read against each requirement."""
    from kommunmoln.compliance.report import requirement_tally  # report imports this module lazily

    parts = [f"<h2>{esc(_w('per_requirement', language))}</h2><table>"]
    for requirement, counts in requirement_tally(evidence):
        title = REQUIREMENTS_SV[requirement.id][0] if language == "sv" else requirement.title
        if requirement.assessment:
            text = f"{counts['fact']} {_w('facts', language)}"
        else:
            text = ", ".join(
                f"{counts[status]} {_status(status, language)}"
                for status in ("not met", "fail", "not run", "acknowledged", "pass")
            )
        parts.append(f"<tr><td>{esc(title)}</td><td>{esc(text)}</td></tr>")
    parts.append("</table>")
    return parts


def render_report(evidence: Evidence, language: str) -> str:
    """The evidence report as HTML for the PDF, in `language` (sv or en)."""
    commit = evidence.provenance.get("git commit", "")
    from kommunmoln.compliance.report import summary_line  # report imports this module lazily

    body = [
        f"<p><strong>{esc(summary_line(evidence, language))}</strong></p>",
        f"<p>{esc(_w('machine', language))}</p>",
    ]
    body += _headline(evidence, language)
    body += _header(evidence, language)
    hashes = [(k, v) for k, v in evidence.provenance.items() if k.startswith("sha256 ")]
    if hashes:
        body.append("<table>" + "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in hashes) + "</table>")
    for requirement in REQUIREMENTS:
        title, summary = (
            REQUIREMENTS_SV[requirement.id] if language == "sv" else (requirement.title, requirement.summary)
        )
        mapping = mapping_for(requirement.id)
        rows = evidence.rows_for(requirement)
        counts = Counter(_status(row.status, language) for row in rows)
        body += [
            f"<h2>{esc(title)}</h2>",
            f"<p>{esc(summary)}</p>",
            *_sources_table(requirement, language),
            f"<table><tr><th colspan='2'>{esc(_w('mapping', language))}</th></tr>",
            f"<tr><td>KLASSA (SKR)</td><td>{esc(mapping.klassa_label())}</td></tr>",
            f"<tr><td>ISO/IEC 27001:2022 Annex A</td><td>{esc('; '.join(c.label() for c in mapping.iso))}</td></tr>",
            f"<tr><td>NIST SP 800-53 Rev. 5</td><td>{esc(', '.join(mapping.nist))}</td></tr></table>",
            f"<p>{esc(', '.join(f'{n} {s}' for s, n in sorted(counts.items())))}</p>",
            f"<table class='rows'><tr><th>{esc(_w('control', language))}</th><th>{esc(_w('resource', language))}</th>"
            f"<th>{esc(_w('status', language))}</th><th>{esc(_w('detail', language))}</th>"
            f"<th>{esc(_w('proven', language))}</th></tr>",
        ]
        for row in sorted(rows, key=lambda r: (r.status != "fail", r.control, r.resource)):
            proof = "<br>".join(
                f"{esc(t.split('::')[-1])}: {esc(evidence.results.describe(t, commit))}" for t in row.tests
            )
            body.append(
                f"<tr class='{esc(row.status.replace(' ', '-'))}'><td>{esc(row.control)} {esc(row.title)}</td>"
                f"<td>{esc(row.resource)}</td><td>{esc(_status(row.status, language))}</td><td>{esc(row.detail)}</td>"
                f"<td>{proof}</td></tr>"
            )
        body.append("</table>")
    body.append(f"<h2>{esc(_w('framework_sources', language))}</h2><ul>")
    body += [f"<li>{esc(source)}</li>" for source in SOURCES]
    body.append("</ul>")
    return _page(_w("report", language), body, language)


def render_fact_sheets(evidence: Evidence, language: str) -> str:
    """One page per protected bucket (information type)."""
    sheets = evidence.fact_sheets()
    body = [] if sheets else [f"<p>{esc(_w('no_sheets', language))}</p>"]
    for sheet in sheets:
        tier = facts.TIERS[sheet.tier]
        rows = [
            ("information_type", sheet.information_type or _w("unnamed", language)),
            ("resource", f"{sheet.resource} ({sheet.stack})"),
            ("tier", tier.name[language]),
            ("region", sheet.region),
            ("entity", facts.CONTRACTING_ENTITY[language]),
            ("jurisdiction", facts.JURISDICTION[language]),
            ("keys", tier.keys[language]),
            ("sees", tier.sees[language]),
            ("not_sees", tier.does_not_see[language]),
            ("logs", sheet.logging[language]),
            ("retention", sheet.retention[language]),
            ("exit", tier.exit[language]),
        ]
        body += [
            "<section class='sheet'>",
            f"<h2>{esc(_w('information_type', language))}: {esc(sheet.resource)}</h2>",
            f"<p>{esc(_w('assessment', language))}</p><table>",
            *(f"<tr><th>{esc(_w(key, language))}</th><td>{esc(value)}</td></tr>" for key, value in rows),
            "</table></section>",
        ]
    return _page(_w("sheets", language), body, language)


def render_dpia(evidence: Evidence, language: str) -> str:
    """The DPIA annex: what AWS sees per tier, the data-flow diagram, the exported key policies."""
    # Column 1 is wide enough for the tier names' longest words (no "krypterin g", "CloudHS M").
    body = [f"<h2>{esc(_w('per_tier', language))}</h2><table class='tiers'>"]
    body.append(
        f"<tr><th>{esc(_w('tier', language))}</th><th>{esc(_w('keys', language))}</th>"
        f"<th>{esc(_w('sees', language))}</th><th>{esc(_w('not_sees', language))}</th></tr>"
    )
    for key in (facts.TIER_A, facts.TIER_B, facts.TIER_C):
        tier = facts.TIERS[key]
        body.append(
            f"<tr><td>{esc(tier.name[language])}</td><td>{esc(tier.keys[language])}</td>"
            f"<td>{esc(tier.sees[language])}</td><td>{esc(tier.does_not_see[language])}</td></tr>"
        )
    body += ["</table>", f"<h2>{esc(_w('flow', language))}</h2>", dpia.svg(language)]
    body.append(f"<pre>{esc(dpia.mermaid(language))}</pre>")
    body.append(f"<h2>{esc(_w('policies', language))}</h2>")
    for policy in evidence.key_policies():
        body += [
            f"<h3>{esc(policy.stack)} / {esc(policy.logical_id)} ({esc(policy.resource_type)}, "
            f"{esc(_w('origin', language))} {esc(policy.origin)})</h3>",
            f"<p>{esc(policy.description)}</p>",
            f"<pre>{esc(policy.text())}</pre>",
        ]
    return _page(_w("dpia", language), body, language)


DOCUMENTS = {"compliance-report": render_report, "fact-sheets": render_fact_sheets, "dpia-annex": render_dpia}


def write_pdfs(evidence: Evidence, directory: Path) -> list[Path]:
    """Write every document in every language as PDF/A, plus the exported key policies; return the paths."""
    import weasyprint  # imported here: it loads Pango, which only the PDF output needs

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in DOCUMENTS.items():
        for language in LANGUAGES:
            path = directory / f"{name}.{language}.pdf"
            weasyprint.HTML(string=render(evidence, language)).write_pdf(path, pdf_variant=PDF_VARIANT)
            written.append(path)
    written += dpia.export_key_policies(evidence.key_policies(), directory / "key-policies")
    return written
