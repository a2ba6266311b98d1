"""The legal sources the requirement catalogue cites: each with its date, its reference and whether it was checked.

`checked` says whether the project read the cited source's own text (or its official rendering) for the
statement the catalogue makes; False means the statement rests on a secondary source or on memory, and the
municipality's lawyer must read the original. A date or reference the project could not find is written out
as "not verified", never guessed: `source_problems` rejects an empty field, so a source cannot silently lack one.
This is engineering documentation, not legal advice.
"""

from __future__ import annotations

from dataclasses import dataclass

NOT_VERIFIED = "not verified"


@dataclass(frozen=True)
class LegalSource:
    """One cited source: what it is, when, its reference (SFS, CELEX, case or diary number), and if it was read."""

    name: str
    date: str  # the document's date or entry into force; "not verified" when not found
    reference: str  # SFS/CELEX/case/diary number or address; "reference not verified" when not found
    checked: bool  # True: the statement was checked against the source's own text
    note: str = ""  # what exactly was (not) checked, and against what
    note_sv: str = ""  # the same note in Swedish, for the Swedish report ("" falls back to a Swedish label)

    def citation(self) -> str:
        """The one-line form used in finding texts and the source line of the report."""
        return f"{self.name} ({self.date}; {self.reference})"

    def checked_label(self) -> str:
        label = "checked against the source text" if self.checked else "not checked against the source text"
        return f"{label}: {self.note}" if self.note else label


def source_problems(sources: tuple[LegalSource, ...] | list[LegalSource]) -> list[str]:
    """What is missing from the sources of one requirement (empty: every source is complete).

    Fails closed: no source at all, an empty name, date or reference, or a `checked` that is not a bool.
    """
    if not sources:
        return ["no legal source"]
    problems = []
    for index, source in enumerate(sources):
        if not isinstance(source, LegalSource):
            problems.append(f"source {index}: {source!r} is not a LegalSource")
            continue
        label = source.name.strip() or f"source {index}"
        for field in ("name", "date", "reference"):
            value = getattr(source, field)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{label}: no {field} (write '{NOT_VERIFIED}' if it could not be found)")
        if not isinstance(source.checked, bool):
            problems.append(f"{label}: checked is {source.checked!r}, not True or False")
    return problems


# --- sources cited by more than one requirement ---------------------------------------------------
GDPR = LegalSource(
    "Regulation (EU) 2016/679 (GDPR)",
    "27 Apr 2016, applies since 25 May 2018",
    "CELEX 32016R0679",
    False,
    "article numbers from the regulation as commonly cited; not re-read for this catalogue",
)
SAKERHETSSKYDDSLAGEN = LegalSource(
    "Säkerhetsskyddslagen (2018:585)",
    "2018, in its current form since 1 Dec 2021",
    "SFS 2018:585",
    False,
    "paragraph numbers of the assessment, consultation and notification duties not checked",
)
SAKERHETSSKYDDSFORORDNINGEN = LegalSource(
    "Säkerhetsskyddsförordning (2021:955)",
    "2021",
    "SFS 2021:955",
    True,
    "§ 1 read on data.riksdagen.se",
)
CYBERSAKERHETSLAGEN = LegalSource(
    "Cybersäkerhetslagen (2025:1506), prop. 2025/26:28 (9 Oct 2025)",
    "in force 15 Jan 2026",
    "SFS 2025:1506",
    False,
    "the act's text not read; the paragraph-to-deadline mapping of incident reports not checked",
)
CYBERSAKERHETSFORORDNINGEN = LegalSource(
    "Cybersäkerhetsförordningen (2025:1507)",
    "issued 11 Dec 2025, in force 15 Jan 2026",
    "SFS 2025:1507",
    True,
    "read on rkrattsbaser.gov.se (§ 6: reports to the CSIRT unit)",
)
SOU_2021_1 = LegalSource(
    "SOU 2021:1 Säker och kostnadseffektiv it-drift – rättsliga förutsättningar för utkontraktering",
    "submitted 15 Jan 2021",
    "SOU 2021:1; data.riksdagen.se/dokument/ZZB31.html; lagen.nu/sou/2021:1",
    False,
    "title and preface read on data.riksdagen.se (ZZB31) and lagen.nu; the date from SOU 2021:97's preface "
    "('överlämnades till statsrådet den 15 januari 2021'); the encryption point (s. 282 f.: 'ett utlämnande är "
    "en form av röjande oavsett om uppgifterna har skyddats med exempelvis kryptering') only as quoted by "
    "certezza.net, not read on the SOU's own page; Digg's remissvar (6 May 2021 per the reviewer) not found",
    "titel och förord lästa på data.riksdagen.se (ZZB31) och lagen.nu; datumet ur förordet till SOU 2021:97 "
    "('överlämnades till statsrådet den 15 januari 2021'); krypteringspunkten (s. 282 f.: 'ett utlämnande är "
    "en form av röjande oavsett om uppgifterna har skyddats med exempelvis kryptering') bara som certezza.net "
    "citerar den, inte läst i betänkandet självt; Diggs remissvar (6 maj 2021 enligt granskaren) inte funnet",
)
ESAM_STATEMENT_2018 = LegalSource(
    "eSam, rättsliga expertgruppen: rättsligt uttalande om röjande och molntjänster",
    "Nov 2018 (month as stated in eSam's news of 14 Dec 2018)",
    "VER 2018:57 according to a secondary source (elits.se); reference not verified against eSam",
    False,
    "the statement itself not read; its key sentence is quoted from Dagens Samhälle (6 Sep 2019)",
)
ESAM_NEWS_2018 = LegalSource(
    "eSam news 'eSams rättsliga uttalande har satt molnfrågan på agendan'",
    "14 Dec 2018",
    "esamverka.se/nyheter/nyheter/2018-12-14-esams-rattsliga-uttalande-har-satt-molnfragan-pa-agendan.html",
    True,
    "the encryption sentences read on eSam's page",
)
ESAM_PM_2023 = LegalSource(
    "eSam PM 'Adekvansbeslut och ny sekretessbrytande bestämmelse – Är det grönt ljus?'",
    "June 2023 (day not verified)",
    "reference not verified",
    False,
    "content from a summary of the PM and eSam's presentation (webperf.se); the PM itself not read",
)
ARKIVLAGEN = LegalSource(
    "Arkivlagen (1990:782) 3 § (preservation) and 10 § (gallring)",
    "1990",
    "SFS 1990:782",
    False,
    "paragraph numbers as in the consolidated text, not re-read",
)
TRYCKFRIHETSFORORDNINGEN = LegalSource(
    "Tryckfrihetsförordningen (1949:105) 2 kap. (allmänna handlingar, prompt access on request)",
    "1949",
    "SFS 1949:105",
    False,
    "chapter 2 as commonly cited; paragraph numbers not checked",
)
