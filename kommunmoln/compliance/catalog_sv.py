"""The Swedish text of the requirement catalogue and of the report's fixed wording.

The English catalogue (`catalog.py`) is the one the rules and tests use; this module gives the
Swedish title and summary of every requirement for the Swedish report. Sources are the same
(`Requirement.sources`: name, date, reference, checked) and are printed as they are. Control details are machine output and stay in
English in both versions (the report says so).
"""

from __future__ import annotations

from kommunmoln.compliance import catalog as c
from kommunmoln.compliance.legal_sources import LegalSource

# requirement id -> (title, summary)
REQUIREMENTS_SV: dict[str, tuple[str, str]] = {
    c.REQ_DISCLOSURE: (
        "Inget röjande av sekretessbelagda uppgifter för leverantören",
        "eSams rättsliga expertgrupp (uttalande i november 2018): enligt eSams nyhet den 14 dec 2018 framgår av "
        'uttalandet "att det inte går att utesluta att en leverantör av en molntjänst som lyder under viss utländsk '
        'lagstiftning kan medverka till att sekretessreglerade uppgifter röjs"; uttalandets slutsats är enligt en '
        'andrahandskälla (Dagens Samhälle 6 sep 2019): "får uppgifterna anses vara röjda" (uttalandet självt är inte '
        "läst). Omskrivningen "
        'att leverantören är bunden "genom ägande eller på annat sätt" är inte kontrollerad mot uttalandet och är '
        'inget citat. Om kryptering "utesluter [expertgruppen] inte att det skulle kunna gå", men påpekar att det '
        '"i praktiken inte har kunnat verifieras att krypteringsmekanismer" [...] (nyheten 14 dec 2018; resten av '
        "meningen återges inte här): inget undantag som kommunen kan luta sig mot utan egen bevisning. SOU 2021:1 "
        "gör motsatt läsning (ett utlämnande är röjande oavsett kryptering); OSL 10 kap. 2 a § är den prövning som "
        "gäller. Nivå A är byggd för att ge den bevisningen (leverantören har bara chiffertext); nivå B och C är "
        "'inte uppfyllt'.",
    ),
    c.REQ_OSL_10_2A: (
        "Utlämnande till en teknisk leverantör är inte olämpligt (OSL 10 kap. 2 a §)",
        "Sekretess hindrar inte att uppgifter lämnas till den som 'för den utlämnande myndighetens räkning' har "
        "fått i uppdrag att 'endast tekniskt bearbeta eller tekniskt lagra' dem, om det inte är olämpligt med "
        "hänsyn till omständigheterna. Kommunen gör den bedömningen; att dokumentera den är god praxis, inte en "
        "lagstadgad skyldighet. Kontrollerna här är fakta för bedömningen, inte bedömningen själv.",
    ),
    c.REQ_EDPB_UC1: (
        "Effektiv kompletterande åtgärd: stark kryptering, nycklar endast hos dataexportören",
        "Lagring hos en leverantör som omfattas av tredjelandsåtkomst kan godtas när uppgifterna är starkt "
        "krypterade innan de lämnar den personuppgiftsansvarige och endast denne har nycklarna (användningsfall 1). "
        "Där leverantören behöver klartexten (användningsfall 6) fann EDPB ingen effektiv åtgärd, därför är nivå B "
        "och C 'inte uppfyllt'. IMY:s beslut 2023 är en analogi om överföringar, inte ett avgörande om lagring i en "
        "EU-region.",
    ),
    c.REQ_PROTECTIVE_SECURITY: (
        "Säkerhetsskydd vid säkerhetskänslig utkontraktering",
        "Ingen nivå är byggd för säkerhetsskyddsklassificerade uppgifter (det kräver kryptografiska funktioner "
        "godkända av Försvarsmakten). Säkerhetskänslig utkontraktering kräver säkerhetsskyddsanalys, särskild "
        "säkerhetsskyddsbedömning och lämplighetsprövning före upphandlingen, samråd med tillsynsmyndigheten där "
        "det krävs (för kommuner länsstyrelsen), avtal, uppföljning och anmälan. Kontrollerna begränsar vem som "
        "når uppgifterna och nycklarna; stegen är kommunens.",
    ),
    c.REQ_RESIDENCY: (
        "Uppgifter och nycklar stannar i EU-regioner på tillåtelselistan",
        "Att hålla uppgifter och nycklar i en EU-region (standard eu-north-1, Stockholm) minskar men tar inte bort "
        "överföringar enligt dataskyddsförordningen kapitel V: fjärrsupport är en överföring (EDPB FAQ 23 jul 2020; "
        "riktlinjer 05/2021), och CloudTrail-händelser för globala tjänster behandlas utanför EU. Regel 8 flaggar "
        "när en organisationspolicy som nekar andra regioner och kopior mellan regioner saknas.",
    ),
    c.REQ_LOGGING: (
        "Varje nyckelanvändning och varje åtkomst till objekt loggas",
        "Utan loggar på objekt- och nyckelnivå kan kommunen inte visa vem som läst vad eller upptäcka ett röjande. "
        "CloudTrail-datahändelser för S3, KMS-hanteringshändelser och serveråtkomstloggar ger dem. Loggar sparas "
        "tills ett gallringsbeslut finns. Det är loggar på lagringsnivå (vilken identitet som läst eller skrivit vilket "
        "objekt, och nyckelanvändning); de åtkomstloggar som HSLF-FS 2016:40 4 kap. kräver (vem som läst vilken "
        "patients journal) är vårdgivarens loggar i journalsystemet, inte dessa. Bedömer kommunen att minst fem år "
        "gäller även för dessa loggar, ska ett gallringsbeslut hålla log_retention_days på minst 1827.",
    ),
    c.REQ_DELETION: (
        "Inget raderas av misstag",
        "Buckets, nycklar, logggrupper, HSM-klustret, hemligheter och tabeller finns kvar efter `cdk destroy`; "
        "raderade eller överskrivna objekt går att återställa; en nyckel som schemaläggs för radering väntar hela "
        "30 dagar. Gallring genom beslut är nästa avsnitt (arkivlagen), inte detta.",
    ),
    c.REQ_ARCHIVES: (
        "Allmänna handlingar bevaras och gallras endast efter beslut",
        "Lagrade objekt, deras äldre versioner, serveråtkomstloggar och logghändelser är sannolikt allmänna "
        "handlingar (TF 2 kap.) oavsett om de är hemliga; kommunens informationshanteringsplan och "
        "arkivmyndighet avgör. Att låta dem löpa ut är gallring, som kräver beslut av arkivmyndigheten (eller "
        "föreskrift): inget gallras som standard. Med gallring_decision satt gäller de "
        "konfigurerade tiderna och varje bucket och logggrupp märks med beslutets referens. Daterade övningar i "
        "en lokal emulering (`make drills`): att dekryptera och lämna ut (TF 2 kap.) och att återställa ur "
        "depositionsnyckeln; kommunens egen rutin och egna övningar är inte belagda här.",
    ),
    c.REQ_CYBERSECURITY: (
        "Riskhanteringsåtgärder och incidentrapportering enligt cybersäkerhetslagen",
        "Kommuner omfattas. Belagt här: loggning och larm som incidentrapporter bygger på, kvarhållet tillstånd "
        "och versionshantering (kontinuitet), nyckelpolicyer och rotation där nyckeltypen tillåter det "
        "(kryptografi, behörighet) och dessa kontroller vid varje syntes. Processbelägg daterade av testkörningen: "
        "återläsningsövning (kontinuitet), hash-låsta beroenden och en CycloneDX-SBOM (leverantörskedja), "
        "nyckelrotation och symmetrisk deposition med en daterad plan för postkvantkryptografi (kryptografi), MFA "
        "för varje roll som personer antar (behörighet); `make audit` listar larmens tidpunkter med fristerna "
        "24 h / 72 h / en månad. Inte belagt här: själva rapporteringen och vem som rapporterar.",
    ),
    c.REQ_GDPR_SECURITY: (
        "Säkerhet i behandlingen (art. 32.1 a-d); dokumentation enligt art. 28, 30 och 35",
        "Art. 32.1 a kryptering: regel 2 och standardkryptering; b konfidentialitet, riktighet, tillgänglighet: "
        "regel 3-6; c återställning: versionshantering, kvarhållet tillstånd och en daterad återläsningsövning; "
        "d regelbunden testning: kontrollerna körs vid varje syntes. Art. 28 (biträdesvillkor med "
        "AWS), art. 30 (registerförteckning) och art. 35 (konsekvensbedömning; se bilagan) är kommunens dokument.",
    ),
}

STATUS_SV = {
    "pass": "godkänd",
    "acknowledged": "kvitterad",
    "fail": "underkänd",
    "not met": "inte uppfyllt",
    "fact": "fakta",
    "not applicable": "ej tillämplig",
    "not run": "ej körd",
}

# The Swedish rendering of each legal source's note (`LegalSource.note`), for the Swedish report; a
# source may carry its own `note_sv` instead. `source_note_sv` fails closed: no rendering, no Swedish note.
NOTES_SV: dict[str, str] = {
    "the statement itself not read; its key sentence is quoted from Dagens Samhälle (6 Sep 2019)": (
        "själva uttalandet inte läst; dess nyckelmening citeras ur Dagens Samhälle (6 sep 2019)"
    ),
    "the encryption sentences read on eSam's page": "meningarna om kryptering lästa på eSams sida",
    "content from a summary of the PM and eSam's presentation (webperf.se); the PM itself not read": (
        "innehållet ur en sammanfattning av PM:et och eSams presentation (webperf.se); själva PM:et inte läst"
    ),
    "cited from REFERENCE.md only": "citerad endast ur REFERENCE.md",
    "SKL's text not read; the report says SKL asked for a national common view of the legal position": (
        "SKL:s text inte läst; enligt rapporteringen bad SKL om en nationell samsyn om rättsläget"
    ),
    "read on skr.se": "läst på skr.se",
    "the enacted SFS text not read; the wording is checked against the bill's proposal (next source)": (
        "den antagna SFS-texten inte läst; lydelsen är kontrollerad mot propositionens förslag (nästa källa)"
    ),
    "proposed wording of 10 kap. 2 a § and the in-force date read on lagen.nu/prop/2022/23:97": (
        "föreslagen lydelse av 10 kap. 2 a § och ikraftträdandet lästa på lagen.nu/prop/2022/23:97"
    ),
    "use-case content as commonly cited; not re-read for this catalogue": (
        "användningsfallens innehåll som det brukar återges; inte omläst för denna katalog"
    ),
    "paragraph numbers of the assessment, consultation and notification duties not checked": (
        "paragrafnumren för skyldigheterna att göra säkerhetsskyddsanalys, samråda och anmäla inte kontrollerade"
    ),
    "§ 1 read on data.riksdagen.se": "1 § läst på data.riksdagen.se",
    "article numbers from the regulation as commonly cited; not re-read for this catalogue": (
        "artikelnumren som de brukar återges; förordningen inte omläst för denna katalog"
    ),
    "dates from memory": "datum ur minnet",
    "the act's text not read; the paragraph-to-deadline mapping of incident reports not checked": (
        "lagtexten inte läst; vilka paragrafer som ger vilka tidsfrister för incidentrapporter inte kontrollerat"
    ),
    "secondary sources cite 4 kap. 9 § (one with the five years as point 7) and IMY cites 9 a §; the consolidated "
    "text's numbering not read": (
        "andrahandskällor hänvisar till 4 kap. 9 § (en med de fem åren som punkt 7) och IMY till 9 a §; den "
        "konsoliderade textens numrering inte läst"
    ),
    "paragraph numbers as in the consolidated text, not re-read": (
        "paragrafnumren som i den konsoliderade texten, inte omlästa"
    ),
    "chapter 2 as commonly cited; paragraph numbers not checked": (
        "2 kap. som det brukar återges; paragrafnumren inte kontrollerade"
    ),
    "proposed wording read on lagen.nu/prop/2009/10:58; its paragraph number in today's TF not checked": (
        "föreslagen lydelse läst på lagen.nu/prop/2009/10:58; paragrafnumret i dagens TF inte kontrollerat"
    ),
    "read on rkrattsbaser.gov.se (§ 6: reports to the CSIRT unit)": (
        "läst på rkrattsbaser.gov.se (6 §: rapporter till CSIRT-enheten)"
    ),
    "from REFERENCE.md section 5": "ur REFERENCE.md avsnitt 5",
}


def source_note_sv(source: LegalSource) -> str:
    """The source's note in Swedish: its own `note_sv`, else `NOTES_SV`; "" only when it has no note at all."""
    if source.note_sv:
        return source.note_sv
    if not source.note:
        return ""
    return NOTES_SV.get(source.note, "anmärkningen saknar svensk återgivning (se den engelska rapporten)")
