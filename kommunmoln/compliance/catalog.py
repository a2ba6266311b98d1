"""The requirements the pack serves and the rules (controls) that implement them.

One catalogue, read by the cdk-nag pack (rule text in findings), the evidence report and
`docs/compliance.md`. Every requirement's sources carry their date, reference and whether they were
checked against the source text (`legal_sources.LegalSource`); see `docs/compliance.md`. This is engineering documentation, not legal advice.
"""

from __future__ import annotations

from dataclasses import dataclass

from kommunmoln import names
from kommunmoln.compliance import legal_sources as s
from kommunmoln.compliance.legal_sources import LegalSource

PACK_NAME = names.COMPLIANCE_PACK


@dataclass(frozen=True)
class Requirement:
    """A legal or policy requirement that controls serve."""

    id: str
    title: str
    sources: tuple[LegalSource, ...]  # each with date, reference and checked flag
    summary: str
    # True for a requirement the municipality itself must assess (OSL 10 kap. 2 a §): its section of
    # the report lists facts for that assessment, never pass/fail.
    assessment: bool = False

    @property
    def source(self) -> str:
        """The sources on one line (name, date, reference), as the report's source line prints them."""
        return "; ".join(source.citation() for source in self.sources)


@dataclass(frozen=True)
class Rule:
    """One rule of the pack: its id suffix, what it checks, why, and how to fix a finding."""

    number: int
    title: str
    requirements: tuple[str, ...]  # Requirement ids
    explanation: str  # why the rule exists, naming the requirement
    fix: str  # the fix hint, printed with every finding
    resource_types: tuple[str, ...]
    findings: tuple[str, ...] = ()  # sub-findings, acknowledged one by one as RULE[finding]
    tests: tuple[str, ...] = ()  # test node ids (file::name) that prove the rule
    # Per sub-finding, the requirements it evidences (when they differ by finding): the report then shows
    # one row per finding, under its own requirements only. Empty: every row goes under `requirements`.
    finding_requirements: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def suffix(self) -> str:
        return str(self.number)

    @property
    def rule_id(self) -> str:
        """The id in findings, e.g. `KommunmolnOSL-2`."""
        return f"{PACK_NAME}-{self.number}"

    @property
    def acknowledgment_id(self) -> str:
        """What `stacks.compliance.acknowledge(resource, ...)` takes, e.g. `KommunmolnOSL::KommunmolnOSL-2`."""
        return f"{PACK_NAME}::{self.rule_id}"


REQ_DISCLOSURE = "disclosure"
REQ_OSL_10_2A = "osl-10-2a"
REQ_EDPB_UC1 = "edpb-uc1"
REQ_PROTECTIVE_SECURITY = "protective-security"
REQ_RESIDENCY = "residency"
REQ_LOGGING = "logging"
REQ_DELETION = "deletion-protection"
REQ_ARCHIVES = "archives"
REQ_CYBERSECURITY = "cybersecurity"
REQ_GDPR_SECURITY = "gdpr-security"

REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        REQ_DISCLOSURE,
        "No disclosure (röjande) of secret information to the provider",
        (
            s.ESAM_STATEMENT_2018,
            s.ESAM_NEWS_2018,
            s.ESAM_PM_2023,
            s.SOU_2021_1,
            LegalSource(
                "Kammarkollegiet, pre-study on web-based office services",
                "2019 (day not verified)",
                "dnr 23.2-6283-18",
                False,
                "cited from REFERENCE.md only",
            ),
            LegalSource(
                "SKL, position on cloud services with foreign ownership (reported by Computer Sweden)",
                s.NOT_VERIFIED,
                "Computer Sweden article 2.2683/1.717532; SKL's own text not found",
                False,
                "SKL's text not read; the report says SKL asked for a national common view of the legal position",
            ),
            LegalSource(
                "SKR, debate reply 'Replik: Välkommet att Göteborgs molntjänster granskas'",
                "27 Jan 2020",
                "skr.se debate article (no reference number)",
                True,
                "read on skr.se",
            ),
        ),
        "eSam's legal expert group (statement of Nov 2018): secret information made technically available to a "
        "provider bound by foreign law that can oblige it to hand information over may be considered disclosed "
        "('får uppgifterna anses vara röjda', quoted from a secondary source). On encryption the group 'utesluter "
        "inte att det skulle kunna gå' (does not rule out that it could work) but points out that it 'i praktiken "
        "inte har kunnat verifieras' (has not been verified in practice; eSam news of 14 Dec 2018): not an exception the "
        "municipality can rely on without its own evidence. SOU 2021:1 reads the opposite way (a hand-over is a "
        "disclosure whether or not it is encrypted); OSL 10 kap. 2 a § is the test that applies. Tier A is "
        "designed to provide that evidence (the provider holds only ciphertext); tier B and tier C are 'not met'.",
    ),
    Requirement(
        REQ_OSL_10_2A,
        "Handing information to a technical provider is not inappropriate (OSL 10 kap. 2 a §)",
        (
            LegalSource(
                "Offentlighets- och sekretesslagen (2009:400) 10 kap. 2 a §",
                "in force 1 Jul 2023",
                "amending SFS number not verified",
                False,
                "the enacted SFS text not read; the wording is checked against the bill's proposal (next source)",
            ),
            LegalSource(
                "Prop. 2022/23:97 Sekretessgenombrott vid utlämnande för teknisk bearbetning eller teknisk lagring "
                "av uppgifter",
                "23 Mar 2023",
                "prop. 2022/23:97",
                True,
                "proposed wording of 10 kap. 2 a § and the in-force date read on lagen.nu/prop/2022/23:97",
            ),
            s.SOU_2021_1,
            LegalSource(
                "Lag (2020:914) om tystnadsplikt vid utkontraktering av teknisk bearbetning eller lagring av uppgifter",
                "prop. 2019/20:201 dated 3 Sep 2020; in force 1 Jan 2021",
                "SFS 2020:914; prop. 2019/20:201",
                True,
                "the bill's date (3 Sep 2020), the proposed § 1 and the proposed in-force date 1 Jan 2021 read on "
                "lagen.nu/prop/2019/20:201 and rkrattsbaser.gov.se; that it entered into force on 1 Jan 2021 is "
                "from a secondary source (timedanowsky.se); the enacted SFS text not read",
                "propositionens datum (3 sep 2020), förslagets 1 § och det föreslagna ikraftträdandet 1 jan 2021 "
                "lästa på lagen.nu/prop/2019/20:201 och rkrattsbaser.gov.se; att lagen trädde i kraft 1 jan 2021 "
                "enligt en andrahandskälla (timedanowsky.se); den antagna SFS-texten inte läst",
            ),
        ),
        "Secrecy does not prevent handing information to a party that 'för den utlämnande myndighetens räkning' "
        "has been engaged to 'endast tekniskt bearbeta eller tekniskt lagra' it, unless that is inappropriate "
        "(olämpligt) in the circumstances. The municipality makes that assessment; recording it is good practice, "
        "not a statutory duty. These controls are facts for the assessment, not the assessment itself.",
        assessment=True,
    ),
    Requirement(
        REQ_EDPB_UC1,
        "Effective supplementary measure: strong encryption, keys held only by the data exporter",
        (
            LegalSource(
                "EDPB Recommendations 01/2020 on supplementary measures, version 2.0, Use Cases 1 and 6",
                "18 Jun 2021",
                "EDPB Recommendations 01/2020 v2.0",
                False,
                "use-case content as commonly cited; not re-read for this catalogue",
            ),
            LegalSource(
                "IMY, decision on Tele2 Sverige AB (Google Analytics): 12 million SEK administrative fine; upheld "
                "by Kammarrätten (IMY news 16 Oct 2025)",
                "decided 30 Jun 2023; Kammarrätten's judgment reported 16 Oct 2025",
                "DI-2020-11373 (per gdprhub.eu, not read on IMY's decision); imy.se/tillsyner/tele2-sverige-ab-tele2.se",
                True,
                "decision date and fine read on imy.se; IMY news of 16 Oct 2025 read: förvaltningsrätten and then "
                "Kammarrätten dismissed Tele2's appeals; the case number only from gdprhub.eu; the decision PDF "
                "itself not read",
                "beslutsdatum och sanktionsavgift lästa på imy.se; IMY:s nyhet 16 okt 2025 läst: förvaltningsrätten "
                "och sedan kammarrätten avslog Tele2:s överklaganden; diarienumret bara från gdprhub.eu; själva "
                "beslutet (pdf) inte läst",
            ),
            LegalSource(
                "IMY, the three other Google Analytics decisions of 2023 (CDON AB: 300,000 SEK fine; Coop Sverige "
                "AB and Dagens Industri AB: orders)",
                "decided 30 Jun 2023 (per secondary reports), announced 3 Jul 2023",
                "case numbers not verified",
                False,
                "parties and outcomes from secondary reports (DataGuidance, Mobile World Live); not read on imy.se",
                "parter och utfall enligt andrahandskällor (DataGuidance, Mobile World Live); inte lästa på imy.se",
            ),
        ),
        "Storage with a provider subject to third-country access can be acceptable when data is strongly encrypted "
        "before it leaves the controller and only the controller holds the keys (Use Case 1). Where the provider "
        "needs the plaintext (Use Case 6) no effective measure was found, which is why tier B and tier C are 'not "
        "met'. IMY's 2023 decisions are an analogy about transfers, not a ruling on storage in an EU region.",
    ),
    Requirement(
        REQ_PROTECTIVE_SECURITY,
        "Protective security for security-sensitive outsourcing",
        (s.SAKERHETSSKYDDSLAGEN, s.SAKERHETSSKYDDSFORORDNINGEN),
        "Neither tier is designed for security-classified information (it needs cryptographic functions approved "
        "by the Swedish Armed Forces). Security-sensitive outsourcing needs a security-protection analysis, a "
        "special security assessment and a suitability assessment before procurement, consultation with the "
        "supervisory authority where required (for municipalities the County Administrative Board), an agreement, "
        "follow-up and notification. The controls limit who can reach the data and keys; those steps remain the "
        "municipality's.",
    ),
    Requirement(
        REQ_RESIDENCY,
        "Data and keys stay in EU regions from the allow-list",
        (
            s.GDPR,
            LegalSource(
                "EDPB, FAQ on the Schrems II judgment; EDPB Guidelines 05/2021 (Art. 3 and chapter V), v2.0",
                "23 Jul 2020; 14 Feb 2023",
                "EDPB FAQ (no number); Guidelines 05/2021",
                False,
                "dates from memory",
            ),
            LegalSource(
                "Commission Implementing Decision (EU) 2023/1795 (EU-US Data Privacy Framework)",
                "10 Jul 2023",
                "CELEX 32023D1795",
                False,
            ),
            LegalSource(
                "General Court, T-553/23 Latombe v Commission (dismissed); appeal C-703/25 P pending",
                "3 Sep 2025",
                "T-553/23; C-703/25 P",
                False,
            ),
        ),
        "Keeping data and keys in an EU region (default eu-north-1, Stockholm) reduces, does not eliminate, "
        "transfers under GDPR chapter V: remote support access is a transfer (EDPB FAQ, 23 Jul 2020; Guidelines "
        "05/2021), and CloudTrail events of global services are processed outside the EU. The Data Privacy "
        "Framework does not remove the CLOUD Act question, so residency is necessary but not sufficient. Rule 8 "
        "flags the absence of an organisation policy that denies other regions and cross-region copies.",
    ),
    Requirement(
        REQ_LOGGING,
        "Every key use and every object access is logged",
        (
            s.SAKERHETSSKYDDSLAGEN,
            s.CYBERSAKERHETSLAGEN,
            s.GDPR,
            LegalSource(
                "HSLF-FS 2016:40 (Socialstyrelsen, journalföring och behandling av personuppgifter i hälso- och "
                "sjukvården) 4 kap.: the care provider's access logs, kept at least five years",
                "2016, consolidated through HSLF-FS 2020:56 (in force 10 Dec 2020)",
                "HSLF-FS 2016:40 4 kap.; paragraph and point not verified",
                False,
                "secondary sources cite 4 kap. 9 § (one with the five years as point 7) and IMY cites 9 a §; the "
                "consolidated text's numbering not read",
            ),
        ),
        "Without object-level and key-level logs the municipality cannot show who read what, nor detect a "
        "disclosure. CloudTrail S3 data events, KMS management events and server access logs provide them. "
        "Logs are kept until a gallring decision. These are storage-level logs (which principal read or wrote which "
        "object, and key use); the access logs HSLF-FS 2016:40 4 kap. requires (who read which patient's record) "
        "are the care provider's application logs, not these. If the municipality finds a five-year minimum "
        "applies to these logs too, a gallring decision must keep log_retention_days at 1827 or more.",
    ),
    Requirement(
        REQ_DELETION,
        "Nothing is deleted by accident",
        (s.SAKERHETSSKYDDSLAGEN, s.CYBERSAKERHETSLAGEN, s.GDPR),
        "Buckets, keys, log groups, the HSM cluster, secrets and tables survive a `cdk destroy`; deleted or "
        "overwritten objects stay recoverable; a key scheduled for deletion waits the full 30 days. Destruction "
        "by decision is the next section (arkivlagen), not this one.",
    ),
    Requirement(
        REQ_ARCHIVES,
        "Public records are preserved, and destroyed (gallrade) only by decision",
        (
            s.ARKIVLAGEN,
            s.TRYCKFRIHETSFORORDNINGEN,
            LegalSource(
                "Prop. 2009/10:58 Säkerhetskopiors rättsliga status: a backup kept only to restore lost information "
                "(säkerhetskopia) is not an allmän handling",
                "26 Nov 2009; in force 1 Jan 2011",
                "prop. 2009/10:58 (then TF 2 kap. 10 § second paragraph)",
                True,
                "proposed wording read on lagen.nu/prop/2009/10:58; its paragraph number in today's TF not checked",
            ),
        ),
        "Stored objects, their old versions, server access logs and log events are likely to be public records "
        "(allmänna handlingar, TF 2 kap.) whether or not they are secret; the municipality's "
        "informationshanteringsplan and archives authority decide. Expiring them is gallring, which needs a "
        "decision of the archives authority (or a regulation): no default expires them. With "
        "gallring_decision set, the configured periods apply and every bucket and log group carries the "
        "decision's reference in the tag kommunmoln:gallring-decision. Dated drills on a local emulation (`make "
        "drills`): decrypt-and-deliver (TF 2 kap.: prompt delivery) and escrow recovery (losing a tier A key "
        "destroys the records it encrypts); the municipality's own routine and exercises are not evidenced here.",
    ),
    Requirement(
        REQ_CYBERSECURITY,
        "Cybersecurity risk-management measures and incident reporting",
        (
            s.CYBERSAKERHETSLAGEN,
            s.CYBERSAKERHETSFORORDNINGEN,
            LegalSource("Directive (EU) 2022/2555 (NIS2) Art. 21(2) and 23", "14 Dec 2022", "CELEX 32022L2555", False),
            LegalSource(
                "Myndigheten för civilt försvar (replacing MSB; hosts CERT-SE)",
                "from 1 Jan 2026",
                "reference not verified",
                False,
                "from REFERENCE.md section 5",
            ),
        ),
        "Municipalities are covered. Evidenced here: logging and alarms that incident reports rest on, retained "
        "state and versioning (continuity), key policies and rotation where the key type allows (cryptography, "
        "access control), and these checks on every synthesis. Process evidence, dated by the test run: a restore "
        "drill (continuity), hash-pinned dependencies and a CycloneDX SBOM (supply chain), key rotation and "
        "symmetric escrow with a dated post-quantum plan in docs/compliance.md 7.1 (cryptography), MFA on every "
        "role people assume (access control); `make audit` lists alarm timestamps with the 24 h / 72 h / "
        "one-month deadlines they start. Not evidenced here: the reporting itself and who reports.",
    ),
    Requirement(
        REQ_GDPR_SECURITY,
        "Security of processing (GDPR Art. 32(1)(a)-(d)); Art. 28, 30 and 35 documentation",
        (s.GDPR,),
        "Art. 32(1)(a) encryption: rule 2 and default encryption; (b) confidentiality, integrity, availability: "
        "rules 3-6; (c) restore: versioning, retained state and a dated restore drill; (d) "
        "regular testing: this pack runs on every synthesis. Art. 35: the DPIA annex of `make report` gives what "
        "AWS sees per tier, a data-flow diagram and the exported key policies; the DPIA itself, Art. 28 "
        "(processor terms with AWS) and Art. 30 (records of processing) are the municipality's documents.",
    ),
)

_TEST_RULES = "tests/infrastructure/compliance/test_rules.py"
_TEST_GUARDRAILS = "tests/infrastructure/compliance/test_guardrails.py"
_TEST_GALLRING = "tests/infrastructure/compliance/test_gallring.py"
_TEST_REPORT = "tests/infrastructure/compliance/test_report.py"

RULES: tuple[Rule, ...] = (
    Rule(
        1,
        "Data and keys only in allowed EU regions",
        (REQ_RESIDENCY, REQ_PROTECTIVE_SECURITY),
        "Data residency (GDPR chapter V; Decision (EU) 2023/1795, T-553/23, C-703/25 P pending): every stack that "
        "holds data or keys must be deployed to a resolved region on the EU allow-list, keys must not be "
        "multi-Region (a replica could be created in any region), and a protected bucket's enabled replication "
        "rules must copy only to a bucket of the app provably in an allowed region (fail closed).",
        "set `region` on the stack (cdk.Environment(region=...)) to a region in allowed_regions; do not use "
        "environment-agnostic stacks for data or keys; set MultiRegion to false; replicate a protected bucket "
        "only to a bucket of the app in an allowed region (or disable the rule)",
        (
            "AWS::S3::Bucket",
            "AWS::KMS::Key",
            names.RESOURCE_KMS_HSM_KEY,
            names.RESOURCE_KMS_XKS_KEY,  # tier C: a key in the external key store
            "AWS::CloudHSM::Cluster",
            names.RESOURCE_CLOUDHSM_CLUSTER,  # a cluster restored from a backup
            "AWS::Logs::LogGroup",
            "AWS::DynamoDB::Table",
            "AWS::DynamoDB::GlobalTable",
            "AWS::SecretsManager::Secret",
            "AWS::CloudTrail::Trail",
            "AWS::SQS::Queue",
        ),
        tests=(
            f"{_TEST_RULES}::test_osl1_stack_in_allowed_region_passes",
            f"{_TEST_RULES}::test_osl1_region_outside_allow_list_fails",
            f"{_TEST_RULES}::test_osl1_environment_agnostic_stack_with_data_fails",
            f"{_TEST_RULES}::test_osl1_multi_region_key_fails",
        ),
    ),
    Rule(
        2,
        "A protected bucket is tier A (client-side encryption + validator) or tier B (HSM-backed key)",
        (REQ_DISCLOSURE, REQ_OSL_10_2A, REQ_EDPB_UC1, REQ_GDPR_SECURITY),
        "eSam legal expert group statement (Nov 2018) and OSL 10 kap. 2 a § (prop. 2022/23:97); EDPB Recommendations 01/2020 v2.0 Use "
        "Case 1: a bucket tagged as holding OSL-protected information must either receive only client-side "
        "encrypted objects (tier A: the bucket policy denies PutObject without the encryption object tag, and a "
        "validator Lambda checks every new object) or be encrypted with a KMS key whose material lives in the "
        "municipality's CloudHSM or external key store (tier B). SSE-S3 or a key of origin AWS_KMS means AWS alone "
        "holds the key material.",
        "tier A: tag the bucket "
        f"{names.TAG_TIER}={names.TIER_A}, add a Deny s3:PutObject statement for principal * with condition "
        f"StringNotEquals s3:RequestObjectTag/{names.OBJECT_TAG_ENCRYPTION}={names.OBJECT_TAG_ENCRYPTION_VALUE} "
        "and attach the validator (bucket.add_event_notification(OBJECT_CREATED, LambdaDestination(validator))); "
        f"tier B: tag {names.TAG_TIER}={names.TIER_B} and set encryption=KMS with encryption_key = the "
        f"{names.RESOURCE_KMS_HSM_KEY} key (CustomKeyStoreId set). A key the template cannot show (an imported "
        "ARN) must be verified with `aws kms describe-key` (Origin AWS_CLOUDHSM or EXTERNAL_KEY_STORE) and the "
        "finding acknowledged on the bucket with that evidence",
        ("AWS::S3::Bucket",),
        tests=(
            f"{_TEST_RULES}::test_osl2_tier_a_bucket_passes",
            f"{_TEST_RULES}::test_osl2_tier_b_bucket_with_hsm_key_raises_no_rule_2_finding",
            f"{_TEST_REPORT}::test_tier_b_bucket_is_not_met_under_no_disclosure_and_edpb_use_case_1",
            f"{_TEST_REPORT}::test_tier_c_bucket_shows_its_b_plus_facts_in_the_report",
            f"{_TEST_RULES}::test_osl2_sse_s3_protected_bucket_fails_synthesis_with_rule_id_and_fix",
            f"{_TEST_RULES}::test_osl2_aws_kms_origin_key_fails",
            f"{_TEST_RULES}::test_osl2_tier_a_without_validator_fails",
            f"{_TEST_RULES}::test_osl2_imported_key_arn_fails_and_can_be_acknowledged",
        ),
    ),
    Rule(
        3,
        "Protected buckets: TLS only, Block Public Access, versioning, retention, access logging",
        (REQ_OSL_10_2A, REQ_PROTECTIVE_SECURITY, REQ_LOGGING, REQ_DELETION, REQ_ARCHIVES, REQ_GDPR_SECURITY),
        "OSL 10 kap. 2 a § (prop. 2022/23:97), Säkerhetsskyddslagen (2018:585) and arkivlagen (1990:782): the "
        "storage a municipality relies on must not leak in transit or to the public, must keep overwritten and "
        "deleted objects (versions expire only under a gallring decision), and must log every request.",
        "enforce_ssl=True, block_public_access=BlockPublicAccess.BLOCK_ALL, versioned=True, no "
        "noncurrent_version_expiration unless the bucket carries the gallring decision tag (or Object Lock with a "
        "default retention), server_access_logs_bucket=...",
        ("AWS::S3::Bucket",),
        findings=("TLS", "PublicAccessBlock", "Versioning", "Retention", "AccessLogging"),
        # Retention (versions kept unless a gallring decision) is arkivlagen's "preserved, destroyed only by
        # decision", not "nothing is deleted by accident" (which versioning and deletion policies evidence).
        finding_requirements=(
            ("TLS", (REQ_OSL_10_2A, REQ_PROTECTIVE_SECURITY, REQ_GDPR_SECURITY)),
            ("PublicAccessBlock", (REQ_OSL_10_2A, REQ_PROTECTIVE_SECURITY, REQ_GDPR_SECURITY)),
            ("Versioning", (REQ_OSL_10_2A, REQ_DELETION)),
            ("Retention", (REQ_ARCHIVES,)),
            ("AccessLogging", (REQ_OSL_10_2A, REQ_LOGGING)),
        ),
        tests=(
            f"{_TEST_RULES}::test_osl3_hardened_protected_bucket_passes",
            f"{_TEST_RULES}::test_osl3_bare_protected_bucket_reports_each_missing_control",
        ),
    ),
    Rule(
        4,
        "No principal outside the account in the policies of protected buckets and their keys",
        # Access control against other accounts: not evidence that the provider cannot read the data.
        (REQ_PROTECTIVE_SECURITY, REQ_OSL_10_2A, REQ_GDPR_SECURITY, REQ_CYBERSECURITY),
        "eSam legal expert group statement (Nov 2018) and Säkerhetsskyddslagen (2018:585): granting another account, the public (`*` "
        "without an account condition), a federated or a canonical user access to a protected bucket or its key "
        "discloses the information beyond the municipality. Deny statements may use `*`.",
        "grant only principals of this account (roles of the app, arn:...:iam::<this account>:root); restrict "
        "`*` and service principals with aws:PrincipalAccount / aws:SourceAccount / kms:CallerAccount = this "
        "account; set `account` in cdk.json so literal account ids can be verified",
        ("AWS::S3::BucketPolicy", "AWS::KMS::Key", names.RESOURCE_KMS_HSM_KEY, names.RESOURCE_KMS_XKS_KEY),
        tests=(
            f"{_TEST_RULES}::test_osl4_own_account_principals_pass",
            f"{_TEST_RULES}::test_osl4_other_account_in_bucket_policy_fails",
            f"{_TEST_RULES}::test_osl4_public_principal_in_protected_key_policy_fails",
        ),
    ),
    Rule(
        5,
        "Key policies grant no wildcard actions (kms:*, *) except the account root on ordinary keys",
        (REQ_PROTECTIVE_SECURITY, REQ_OSL_10_2A, REQ_GDPR_SECURITY, REQ_CYBERSECURITY),
        "EDPB Recommendations 01/2020 v2.0 Use Case 1 and eSam legal expert group statement (Nov 2018): who can use a key must be "
        "decided by the key policy, not by any IAM policy in the account. Keys of protected buckets and HSM-backed "
        "keys: no `kms:*` or `*` for any principal (administration and use are granted as named actions). Other "
        "keys: `kms:*` only for the account root (the CDK default lockout guard).",
        "list the actions: administration (kms:Create*, kms:Describe*, kms:Enable*, kms:List*, kms:Put*, "
        "kms:Update*, kms:Revoke*, kms:Disable*, kms:Get*, kms:Delete*, kms:TagResource, kms:UntagResource, "
        "kms:ScheduleKeyDeletion, kms:CancelKeyDeletion) for the account root/key administrators, and "
        "kms:Encrypt/Decrypt/GenerateDataKey* for the users; never NotAction in an Allow",
        ("AWS::KMS::Key", names.RESOURCE_KMS_HSM_KEY, names.RESOURCE_KMS_XKS_KEY),
        tests=(
            f"{_TEST_RULES}::test_osl5_default_key_policy_on_ordinary_key_passes",
            f"{_TEST_RULES}::test_osl5_strict_hsm_key_policy_passes",
            f"{_TEST_RULES}::test_osl5_root_kms_star_on_protected_bucket_key_fails",
            f"{_TEST_RULES}::test_osl5_role_with_kms_star_fails",
        ),
    ),
    Rule(
        6,
        "Deletion protection: stateful resources retained, KMS pending window 30 days",
        (REQ_DELETION, REQ_GDPR_SECURITY, REQ_CYBERSECURITY),
        "Public documents and the keys that decrypt them must not disappear with a stack deletion or replacement "
        "(OSL, arkivlagen 1990:782; Säkerhetsskyddslagen (2018:585) availability). Not checked in workshop mode.",
        "removal_policy=RemovalPolicy.RETAIN (stacks.components.lifecycle.removal_policy) so that DeletionPolicy "
        "and UpdateReplacePolicy are Retain; KMS keys pending_window=Duration.days(30) (or leave the default)",
        (
            "AWS::S3::Bucket",
            "AWS::KMS::Key",
            names.RESOURCE_KMS_HSM_KEY,
            names.RESOURCE_KMS_XKS_KEY,  # tier C: a key in the external key store
            "AWS::Logs::LogGroup",
            "AWS::CloudHSM::Cluster",
            names.RESOURCE_CLOUDHSM_CLUSTER,  # a cluster restored from a backup
            "AWS::SecretsManager::Secret",
            "AWS::DynamoDB::Table",
            "AWS::DynamoDB::GlobalTable",
        ),
        tests=(
            f"{_TEST_RULES}::test_osl6_retained_resources_pass",
            f"{_TEST_RULES}::test_osl6_destroyable_resources_and_short_pending_window_fail",
            f"{_TEST_RULES}::test_osl6_not_applicable_in_workshop_mode",
        ),
    ),
    Rule(
        7,
        "Object access and key use are logged (CloudTrail data events or an organization trail)",
        (REQ_LOGGING, REQ_OSL_10_2A, REQ_PROTECTIVE_SECURITY, REQ_CYBERSECURITY),
        "Säkerhetsskyddslagen (2018:585) and the OSL 10 kap. 2 a § assessment (prop. 2022/23:97): every read and "
        "write of a protected object and every use of its key must be logged. A CloudTrail trail in the app must "
        "log S3 data events (read and write) for the bucket and KMS management events, or the bucket is tagged as "
        "covered by the organization trail.",
        "add a trail: cloudtrail.Trail(...).add_s3_event_selector([S3EventSelector(bucket=...)], "
        "read_write_type=ReadWriteType.ALL) keeping management events (KMS) included; or, if an organization "
        f"trail logs the data events, tag the bucket {names.TAG_ORGANIZATION_TRAIL}={names.ORGANIZATION_TRAIL_TRUE}",
        ("AWS::S3::Bucket",),
        tests=(
            f"{_TEST_RULES}::test_osl7_trail_with_data_events_passes",
            f"{_TEST_RULES}::test_osl7_organization_trail_tag_passes",
            f"{_TEST_RULES}::test_osl7_no_trail_fails",
        ),
    ),
    Rule(
        8,
        "Residency guardrails for the account: an organisation policy denies other regions and cross-region copies",
        (REQ_RESIDENCY,),
        "Data residency (GDPR chapter V): rule 1 shows where the app's own resources live, but any principal of the "
        "account could still copy an HSM backup to another region (cloudhsm:CopyBackupToRegion), replicate a key "
        "(kms:ReplicateKey) or a bucket (s3:PutReplicationConfiguration), or create resources in another region. "
        "Only a service control policy (or resource control policy) attached by the organisation's management "
        "account prevents that. Checked once per app, not per resource: the app either contains an "
        "AWS::Organizations::Policy that denies all of it, or the configuration names the policy ids the "
        "organisation has attached (declared, not verified from the templates).",
        "write the set with `make guardrails` (build/residency-scp.json, from allowed_regions), attach it in the "
        "management account to the OU or account (aws organizations create-policy --type SERVICE_CONTROL_POLICY; "
        "attach-policy), and set residency_guardrail_policy_ids in cdk.json to the attached policy ids",
        (),  # app-wide: evaluated by Evaluator.residency_guardrails, reported as one row
        tests=(
            f"{_TEST_GUARDRAILS}::test_rule8_flags_an_app_without_guardrails",
            f"{_TEST_GUARDRAILS}::test_rule8_passes_an_app_with_the_generated_scp",
            f"{_TEST_GUARDRAILS}::test_rule8_flags_an_incomplete_scp",
            f"{_TEST_GUARDRAILS}::test_rule8_declared_policy_ids_pass_as_declared",
        ),
    ),
    Rule(
        9,
        "Records expire only under a gallring decision named on the resource",
        (REQ_ARCHIVES,),
        "Arkivlagen (1990:782) 10 §: destroying public records (gallring) needs a decision. A bucket lifecycle rule "
        "that expires objects or noncurrent versions, or a log group with a retention period, destroys records, "
        f"so the resource must carry the tag {names.TAG_GALLRING_DECISION} with the decision's reference.",
        "keep records (the default: leave gallring_decision empty, so nothing expires), or set gallring_decision in "
        "cdk.json to the reference of the municipality's gallring decision, which tags every bucket and log group",
        ("AWS::S3::Bucket", "AWS::Logs::LogGroup"),
        tests=(
            f"{_TEST_GALLRING}::test_default_app_expires_nothing",
            f"{_TEST_GALLRING}::test_gallring_decision_expires_and_tags_every_bucket_and_log_group",
            f"{_TEST_RULES}::test_rule9_expiry_under_a_named_decision_passes",
            f"{_TEST_RULES}::test_rule9_flags_expiry_without_a_decision_tag",
        ),
    ),
)

RULES_BY_NUMBER = {rule.number: rule for rule in RULES}
REQUIREMENTS_BY_ID = {req.id: req for req in REQUIREMENTS}


def rules_for_type(resource_type: str) -> tuple[Rule, ...]:
    """The rules that look at resources of this CloudFormation type."""
    return _RULES_BY_TYPE.get(resource_type, ())


_RULES_BY_TYPE: dict[str, tuple[Rule, ...]] = {}
for _rule in RULES:
    for _type in _rule.resource_types:
        _RULES_BY_TYPE[_type] = (*_RULES_BY_TYPE.get(_type, ()), _rule)
