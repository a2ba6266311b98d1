"""Facts for the OSL 10 kap. 2 a § assessment and the DPIA, per tier and per protected bucket.

One protected bucket holds one kind of information (an information type, in KLASSA's sense), so
there is one fact sheet per protected bucket: contracting AWS entity, jurisdiction, tier, region,
what the provider can see, logs and exit. The tier is read from the synthesized template (the
bucket's policy and its key's origin), not from its tag. What this module cannot verify from the
templates (the account's agreement, the contracting entity's name) it says is `not checked`.
Every text is given in Swedish (`sv`) and English (`en`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kommunmoln import names
from kommunmoln.compliance.checks import COMPLIANT, Evaluator
from kommunmoln.compliance.model import AppModel, ResourceRef, properties, tags

Text = dict[str, str]  # language -> text
TIER_A, TIER_B, TIER_C, TIER_UNVERIFIED = "A", "B", "C", "?"

CONTRACTING_ENTITY: Text = {
    "en": "Set by the AWS account's Account Country (AWS Contracting Party page, aws.amazon.com/legal/"
    "aws-contracting-party/). Customers in Europe contract with the European-based AWS Contracting Party since "
    "1 Jul 2018 (AWS Customer Agreement, section 14). Its name for a Swedish account (Amazon Web Services EMEA "
    "SARL, Luxembourg): not checked here; read it from the account's agreement.",
    "sv": "Bestäms av AWS-kontots Account Country (sidan AWS Contracting Party, aws.amazon.com/legal/"
    "aws-contracting-party/). Kunder i Europa har sedan 1 juli 2018 avtal med den europeiska AWS-avtalsparten "
    "(AWS Customer Agreement, avsnitt 14). Dess namn för ett svenskt konto (Amazon Web Services EMEA SARL, "
    "Luxemburg): inte kontrollerat här; läs det i kontots avtal.",
}
JURISDICTION: Text = {
    "en": "Governing law and courts: as the agreement states for that party (not checked here). The group's parent, "
    "Amazon.com, Inc., is a US company: the CLOUD Act (18 U.S.C. 2713) lets US courts order the provider to "
    "produce data in its possession, custody or control wherever stored; FISA section 702 (reauthorised to 20 Apr "
    "2026; later status not checked) is a risk whose reach to data held in the EU by an EU subsidiary is "
    "contested; the EU e-Evidence Regulation (EU) 2023/1543 applies from 18 Aug 2026; the Data Act "
    "(EU) 2023/2854 Art. 28 (published jurisdiction statement) and Art. 32 (third-country access). See "
    "docs/compliance.md, section 1.",
    "sv": "Tillämplig lag och domstol: enligt avtalet för den avtalsparten (inte kontrollerat här). Koncernens "
    "moderbolag Amazon.com, Inc. är ett amerikanskt bolag: enligt CLOUD Act (18 U.S.C. 2713) kan amerikanska "
    "domstolar förelägga leverantören att lämna ut uppgifter i dess besittning eller kontroll var de än lagras; "
    "FISA avsnitt 702 (förlängd till 20 apr 2026; senare status inte kontrollerad) är en risk vars räckvidd för "
    "uppgifter som ett EU-dotterbolag har i EU är omstridd; EU:s e-bevisförordning (EU) 2023/1543 gäller från 18 aug 2026; "
    "dataförordningen (EU) 2023/2854 art. 28 (publicerad jurisdiktionsförklaring) och art. 32 "
    "(tredjelandsåtkomst). Se docs/compliance.md, avsnitt 1.",
}


@dataclass(frozen=True)
class TierFacts:
    """What the provider can see, where the keys are, how to leave: one tier."""

    name: Text
    keys: Text
    sees: Text
    does_not_see: Text
    exit: Text


_COMMON_METADATA = {
    "en": "bucket and object names, object sizes, times, tags and metadata, requesting principals and IP addresses, "
    "request rates",
    "sv": "bucket- och objektnamn, objektstorlekar, tidpunkter, taggar och metadata, anropande principaler och "
    "IP-adresser, anropsfrekvens",
}

TIERS: dict[str, TierFacts] = {
    TIER_A: TierFacts(
        {"en": "Tier A: client-side encryption", "sv": "Nivå A: kryptering hos kommunen (klientsidan)"},
        {
            "en": "the municipality's key file or HSM; with RSA escrow (--escrow-public-key) each data key is also "
            "wrapped under the escrow's RSA public key and that wrapping is stored at AWS in every object header (not "
            "quantum-resistant: 'harvest now, decrypt later'); with the symmetric --escrow-key option, under a second "
            "AES-256 key kept offline, and only the AES-wrapped data key is at AWS",
            "sv": "kommunens nyckelfil eller HSM; med RSA-deposition (--escrow-public-key) är varje datanyckel också "
            "inslagen under depositionens publika RSA-nyckel och den inslagningen lagras hos AWS i varje objekthuvud "
            "(inte kvantsäker: 'samla nu, dekryptera senare'); med det symmetriska alternativet --escrow-key under en "
            "andra AES-256-nyckel som förvaras offline, och endast den AES-inslagna datanyckeln finns hos AWS",
        },
        {
            "en": f"ciphertext only; {_COMMON_METADATA['en']} (tier A can encrypt object names, docs/use-case-1.md)",
            "sv": f"endast chiffertext; {_COMMON_METADATA['sv']} (nivå A kan kryptera objektnamn, docs/use-case-1.md)",
        },
        {
            "en": "the plaintext and any unwrapped data key",
            "sv": "klartexten och oinslagna datanycklar",
        },
        {
            "en": "copy the ciphertext out with any S3 client and decrypt outside AWS with the municipality's keys; "
            "no AWS key is needed",
            "sv": "kopiera ut chiffertexten med valfri S3-klient och dekryptera utanför AWS med kommunens nycklar; "
            "ingen AWS-nyckel behövs",
        },
    ),
    TIER_B: TierFacts(
        {"en": "Tier B: SSE-KMS with a CloudHSM key", "sv": "Nivå B: SSE-KMS med nyckel i CloudHSM"},
        {
            "en": "the municipality's CloudHSM cluster in its VPC (hardware operated by AWS)",
            "sv": "kommunens CloudHSM-kluster i dess VPC (hårdvara som AWS driver)",
        },
        {
            "en": f"the plaintext and data key while S3 processes each request; {_COMMON_METADATA['en']}; every key use",
            "sv": f"klartexten och datanyckeln medan S3 behandlar varje anrop; {_COMMON_METADATA['sv']}; varje "
            "nyckelanvändning",
        },
        {
            "en": "the HSM key material outside the HSM (but see the cached data keys under S3 Bucket Keys)",
            "sv": "nyckelmaterialet utanför HSM:en (men se cachade datanycklar med S3 Bucket Keys)",
        },
        {
            "en": "read the objects through S3 while the key store is connected (S3 decrypts them) and store them "
            "elsewhere; disconnecting the key store stops new KMS calls, but a data key S3 already holds under S3 "
            "Bucket Keys keeps working until S3 next calls KMS (AWS KMS Developer Guide, 'Disconnect an AWS CloudHSM "
            "key store')",
            "sv": "läs objekten via S3 medan nyckellagret är anslutet (S3 dekrypterar) och lagra dem på annat håll; "
            "frånkoppling av nyckellagret stoppar nya KMS-anrop, men en datanyckel som S3 redan har med S3 Bucket "
            "Keys fungerar tills S3 nästa gång anropar KMS",
        },
    ),
    TIER_C: TierFacts(
        {"en": "Tier C: SSE-KMS with an external key store", "sv": "Nivå C: SSE-KMS med externt nyckellager (XKS)"},
        {
            "en": "the municipality's own HSM on premises, behind its XKS proxy (it can refuse every request and logs "
            "each one)",
            "sv": "kommunens egen HSM i egna lokaler, bakom dess XKS-proxy (den kan vägra varje anrop och loggar "
            "vart och ett)",
        },
        {
            "en": f"the plaintext and data key while S3 processes each request; {_COMMON_METADATA['en']}; every key use",
            "sv": f"klartexten och datanyckeln medan S3 behandlar varje anrop; {_COMMON_METADATA['sv']}; varje "
            "nyckelanvändning",
        },
        {"en": "the key material (it never exists in AWS)", "sv": "nyckelmaterialet (det finns aldrig i AWS)"},
        {
            "en": "read the objects through S3 while the proxy answers and store them elsewhere; refusing at the proxy "
            "stops new KMS calls, but a data key S3 already holds under S3 Bucket Keys keeps working until S3 next "
            "calls KMS",
            "sv": "läs objekten via S3 medan proxyn svarar och lagra dem på annat håll; att vägra i proxyn stoppar nya "
            "KMS-anrop, men en datanyckel som S3 redan har med S3 Bucket Keys fungerar tills S3 nästa gång anropar KMS",
        },
    ),
    TIER_UNVERIFIED: TierFacts(
        {"en": "Tier not verified from the templates", "sv": "Nivån kunde inte verifieras ur mallarna"},
        {"en": "not checked", "sv": "inte kontrollerat"},
        {
            "en": f"assume the plaintext; {_COMMON_METADATA['en']}",
            "sv": f"räkna med klartexten; {_COMMON_METADATA['sv']}",
        },
        {"en": "not checked", "sv": "inte kontrollerat"},
        {"en": "not checked", "sv": "inte kontrollerat"},
    ),
}


@dataclass(frozen=True)
class FactSheet:
    """The facts for one information type (one protected bucket)."""

    resource: str  # construct path
    stack: str
    region: str
    tier: str
    information_type: str  # the bucket's tag if set, else "" (the municipality names it)
    logging: Text
    retention: Text


def tier_of(evaluator: Evaluator, ref: ResourceRef, bucket: dict[str, Any]) -> str:
    """A, B or C from what the template shows; `?` when it shows neither (fail closed)."""
    if evaluator.is_client_side(ref, bucket):
        return TIER_A
    if evaluator.tier_b_problems(ref, bucket):
        return TIER_UNVERIFIED
    for rule in ((properties(bucket).get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")) or []:
        key = ((rule or {}).get("ServerSideEncryptionByDefault") or {}).get("KMSMasterKeyID")
        target = evaluator.model.target(ref.stack, key)
        if target is not None and properties(evaluator.model.resource(target)).get("Origin") == "EXTERNAL_KEY_STORE":
            return TIER_C
    return TIER_B


def fact_sheets(model: AppModel, evaluator: Evaluator, paths: dict[ResourceRef, str], config: Any) -> list[FactSheet]:
    """One sheet per protected bucket, in stack and path order."""
    from kommunmoln.compliance.catalog import RULES_BY_NUMBER

    sheets = []
    for ref, bucket in sorted(evaluator.protected_buckets.items(), key=lambda item: paths.get(item[0], "")):
        stack = model.stacks[ref.stack]
        logged = evaluator.evaluate(RULES_BY_NUMBER[7], ref).status == COMPLIANT
        decision = tags(bucket).get(names.TAG_GALLRING_DECISION, "")
        sheets.append(
            FactSheet(
                resource=paths.get(ref, f"{ref.stack}/{ref.logical_id}"),
                stack=stack.display_name,
                region=stack.region or "not resolved (environment-agnostic stack)",
                tier=tier_of(evaluator, ref, bucket),
                information_type=tags(bucket).get(names.TAG_INFORMATION_TYPE, ""),
                logging=_logging_text(logged),
                retention=_retention_text(decision, getattr(config, "log_retention_days", None)),
            )
        )
    return sheets


def _logging_text(logged: bool) -> Text:
    if logged:
        return {
            "en": "CloudTrail logs every object read and write (S3 data events) and every KMS call (rule 7 passes); "
            "server access logs are kept in a separate bucket. The logs are themselves stored at AWS, and events of "
            "global services are processed outside the EU.",
            "sv": "CloudTrail loggar varje läsning och skrivning av objekt (S3-datahändelser) och varje KMS-anrop "
            "(regel 7 godkänd); serveråtkomstloggar sparas i en separat bucket. Loggarna lagras själva hos AWS, och "
            "händelser för globala tjänster behandlas utanför EU.",
        }
    return {
        "en": "No trail in the app logs this bucket's data events (rule 7 does not pass): not evidenced.",
        "sv": "Inget spår i appen loggar denna buckets datahändelser (regel 7 ej godkänd): inte belagt.",
    }


def _retention_text(decision: str, days: Any) -> Text:
    if decision:
        return {
            "en": f"Expiry under gallring decision {decision} (log retention {days} days).",
            "sv": f"Gallring enligt beslut {decision} (loggar sparas {days} dagar).",
        }
    return {
        "en": "Nothing expires: no gallring decision is configured (arkivlagen 10 §).",
        "sv": "Inget gallras: inget gallringsbeslut är konfigurerat (arkivlagen 10 §).",
    }
