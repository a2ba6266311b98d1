"""The one module of names shared by stacks, Lambda handlers, use cases and tests.

Anything that two of those parts must spell the same way lives here: environment
variables, CloudFormation output keys, tag keys and values, metric names. Keep this
module free of third-party imports: it is packaged into every Lambda asset.
"""

from __future__ import annotations

PROJECT = "kommunmoln"


# --- Stack names -------------------------------------------------------------------------
def stack_prefix(municipality_id: str) -> str:
    """Prefix for every stack and physical name of one municipality's deployment."""
    return f"{PROJECT}-{municipality_id}"


def network_stack_name(municipality_id: str) -> str:
    return f"{stack_prefix(municipality_id)}-network"


def tier_a_stack_name(municipality_id: str) -> str:
    return f"{stack_prefix(municipality_id)}-tier-a"


def tier_b_stack_name(municipality_id: str) -> str:
    return f"{stack_prefix(municipality_id)}-tier-b"


def tier_c_stack_name(municipality_id: str) -> str:
    return f"{stack_prefix(municipality_id)}-tier-c"


def trail_name(municipality_id: str, purpose: str) -> str:
    """Name of a CloudTrail trail (`purpose`: "management", "tier-a-data", "tier-b-data", "tier-c-data"); unique per
    account and Region.

    Fixed so that the trail bucket's policy can name the trail ARN (`aws:SourceArn`) without
    a reference to the trail, which itself depends on that policy.
    """
    return f"{stack_prefix(municipality_id)}-{purpose}"


def tier_a_bucket_name(municipality_id: str, purpose: str, account: str, region: str) -> str:
    """Physical name of a tier A bucket (`purpose` is "data" or "logs"); at most 63 characters."""
    return f"{stack_prefix(municipality_id)}-tier-a-{purpose}-{account}-{region}"


# --- Use cases (values of the `use_cases` setting) ----------------------------------------
USE_CASE_CLIENT_SIDE = "client-side-encryption"
USE_CASE_CLOUDHSM = "cloudhsm-kms"
USE_CASE_EXTERNAL_KEY_STORE = "external-key-store"  # tier C: KMS XKS, keys in the municipality's own HSM
USE_CASES = (USE_CASE_CLIENT_SIDE, USE_CASE_CLOUDHSM, USE_CASE_EXTERNAL_KEY_STORE)
# What a config without `use_cases` deploys: tier C is opt-in (it needs the municipality's running proxy).
DEFAULT_USE_CASES = (USE_CASE_CLIENT_SIDE, USE_CASE_CLOUDHSM)

# --- Resource tags (on stacks, buckets, keys) ------------------------------------------------
TAG_PROJECT = "kommunmoln:project"
TAG_MUNICIPALITY = "kommunmoln:municipality"
TAG_TIER = "kommunmoln:tier"
# The reference of the gallring decision under which a bucket or log group expires records.
TAG_GALLRING_DECISION = "kommunmoln:gallring-decision"
TAG_INFORMATION_TYPE = "kommunmoln:information-type"  # optional: the information type a protected bucket holds
TAG_CLASSIFICATION = "kommunmoln:classification"
CLASSIFICATION_PROTECTED = "osl-protected"  # holds information under the Secrecy Act (OSL)
TIER_A = "A-client-side"
TIER_B = "B-cloudhsm-sse-kms"
TIER_C = "C-external-key-store-sse-kms"
# A protected bucket whose object-level events are logged by an organization trail outside
# this app (the compliance pack cannot see that trail, so the tag records the claim).
TAG_ORGANIZATION_TRAIL = "kommunmoln:organization-trail"
ORGANIZATION_TRAIL_TRUE = "true"
# On a CloudHSM cluster the tier B provisioner restored from a backup: the source backup id.
TAG_RESTORED_FROM_BACKUP = "kommunmoln:restored-from-backup"

# --- Compliance pack (cdk-nag plugin name; acknowledge findings as "<PACK>::<PACK>-<n>") ------
COMPLIANCE_PACK = "KommunmolnOSL"

# --- Object tags (on S3 objects; condition keys s3:RequestObjectTag/... and s3:ExistingObjectTag/...) ---
# The tier A client sets this tag on every upload; the bucket policy denies PutObject without it.
OBJECT_TAG_ENCRYPTION = "kommunmoln-encryption"
OBJECT_TAG_ENCRYPTION_VALUE = "esdk-client-side"
# Set by the validators. Quarantined objects are kept, readable only by the security role.
OBJECT_TAG_STATUS = "kommunmoln-status"
STATUS_VALIDATED = "validated"
STATUS_QUARANTINED = "quarantined"
# Why an object was quarantined (a short reason code, never object content).
OBJECT_TAG_REASON = "kommunmoln-reason"
# The object version the status tag was written for: a status tag copied to another version
# (CopyObject copies tags by default) does not match it, so the validator checks that copy again.
OBJECT_TAG_CHECKED_VERSION = "kommunmoln-checked-version"
# The only object tag keys a request may set (the bucket policy refuses any other key).
OBJECT_TAG_KEYS_ALLOWED = (OBJECT_TAG_ENCRYPTION, OBJECT_TAG_STATUS, OBJECT_TAG_REASON, OBJECT_TAG_CHECKED_VERSION)
# The status tags only the validator and the security role may write.
OBJECT_TAG_KEYS_STATUS = (OBJECT_TAG_STATUS, OBJECT_TAG_REASON, OBJECT_TAG_CHECKED_VERSION)

# --- Lambda environment variables --------------------------------------------------------
ENV_ALLOWED_NAMESPACES = "KOMMUNMOLN_ALLOWED_KEY_NAMESPACES"  # comma-separated
ENV_REQUIRED_CONTEXT_KEYS = "KOMMUNMOLN_REQUIRED_CONTEXT_KEYS"  # comma-separated
ENV_HEADER_READ_BYTES = "KOMMUNMOLN_HEADER_READ_BYTES"
# Tier A client: "frames" (default) or "esdk" (the ESDK's own stream, the reference in tests)
ENV_TIER_A_CODEC = "KOMMUNMOLN_TIER_A_CODEC"
ENV_ALARM_TOPIC_ARN = "KOMMUNMOLN_ALARM_TOPIC_ARN"
ENV_EXPECTED_KMS_KEY_ARN = "KOMMUNMOLN_EXPECTED_KMS_KEY_ARN"
ENV_CUSTOM_KEY_STORE_ID = "KOMMUNMOLN_CUSTOM_KEY_STORE_ID"
ENV_CLUSTER_ID = "KOMMUNMOLN_CLOUDHSM_CLUSTER_ID"
ENV_MIN_HSMS = "KOMMUNMOLN_MIN_ACTIVE_HSMS"
ENV_EXPECTED_KEY_POLICY = "KOMMUNMOLN_EXPECTED_KEY_POLICY"  # the template's key policy (JSON)
ENV_WORKSHOP_MODE = "KOMMUNMOLN_WORKSHOP_MODE"  # "true" in workshop mode (the key provisioner's deletion)
# AWS_CLOUDHSM (default) or EXTERNAL_KEY_STORE: which key store the monitor checks (CustomKeyStoreType values).
ENV_KEY_STORE_TYPE = "KOMMUNMOLN_KEY_STORE_TYPE"
# Tier C monitor: the external key id and proxy URI the key store must still point at.
ENV_XKS_KEY_ID = "KOMMUNMOLN_XKS_KEY_ID"
ENV_XKS_PROXY_URI = "KOMMUNMOLN_XKS_PROXY_URI"
ENV_METRIC_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
ENV_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
# Tier A client (use case 1): never the secret itself, only where to find it.
ENV_KEY_FILE = "KOMMUNMOLN_KEY_FILE"  # default for --key (workshop key file)
ENV_PKCS11_LIB = "KOMMUNMOLN_PKCS11_LIB"  # defaults for --pkcs11-lib/--pkcs11-token/--pkcs11-key-label
ENV_PKCS11_TOKEN = "KOMMUNMOLN_PKCS11_TOKEN"
ENV_PKCS11_KEY_LABEL = "KOMMUNMOLN_PKCS11_KEY_LABEL"
ENV_PKCS11_PIN = "KOMMUNMOLN_PKCS11_PIN"  # default variable holding the HSM user PIN
ENV_ESCROW_PASSPHRASE = "KOMMUNMOLN_ESCROW_PASSPHRASE"  # passphrase of an encrypted escrow private key
ENV_DEMO_LARGE_MIB = "KOMMUNMOLN_DEMO_LARGE_MIB"  # size of the demo's large file (tests shrink it)

# --- Encryption context keys the tier A client always sets (plaintext in the header: no secrets) ---
CONTEXT_BUCKET = "kommunmoln:bucket"
CONTEXT_KEY = "kommunmoln:key"
CONTEXT_MUNICIPALITY = "kommunmoln:municipality"
REQUIRED_CONTEXT_KEYS = (CONTEXT_BUCKET, CONTEXT_KEY)
CONTEXT_PADDING = "kommunmoln:padding"  # set on `upload --pad` objects: the padding scheme, never a size
# Set by `kommunmoln rotate`: the ESDK message ID (base64) of the message a rotated one replaces.
CONTEXT_ROTATED_FROM = "kommunmoln:rotated-from"

# --- Metrics ---------------------------------------------------------------------------
METRIC_NAMESPACE = "Kommunmoln"
METRIC_OBJECTS_VALIDATED = "ObjectsValidated"
METRIC_OBJECTS_QUARANTINED = "ObjectsQuarantined"
METRIC_KEYSTORE_CONNECTED = "CustomKeyStoreConnected"
METRIC_ACTIVE_HSMS = "ActiveHsms"
METRIC_MIN_HSMS_PER_AZ = "MinActiveHsmsPerAz"
METRIC_KEY_USABLE = "KmsKeyUsable"
METRIC_KEY_POLICY_AS_TEMPLATE = "KmsKeyPolicyAsTemplate"  # 1: the live key policy is the template's
# Powertools adds the service name as this metric dimension; alarms must select it.
METRIC_DIMENSION_SERVICE = "service"
SERVICE_TIER_A_VALIDATOR = "tier-a-validator"

# --- CloudFormation output keys (read by the use-case clients via --stack-name) ------------
OUTPUT_VPC_ID = "VpcId"
OUTPUT_S3_ENDPOINT_ID = "S3GatewayEndpointId"
OUTPUT_DATA_BUCKET = "DataBucketName"
OUTPUT_ACCESS_LOG_BUCKET = "AccessLogBucketName"
OUTPUT_ALARM_TOPIC = "AlarmTopicArn"
OUTPUT_VALIDATOR_FUNCTION = "ValidatorFunctionName"
OUTPUT_SECURITY_ROLE = "SecurityRoleArn"
OUTPUT_BREAK_GLASS_ROLE = "BreakGlassRoleArn"
OUTPUT_TRAIL_BUCKET = "TrailBucketName"  # the Object Lock bucket of the stack's CloudTrail trail
OUTPUT_TRAIL_BREAK_GLASS_ROLE = "TrailBreakGlassRoleArn"  # the one role that may reconfigure that bucket (MFA)
# S3 Batch Operations (`kommunmoln batch-verify`): the job role, the job bucket, the function to invoke.
OUTPUT_BATCH_ROLE = "BatchVerifyRoleArn"
OUTPUT_BATCH_BUCKET = "BatchVerifyBucketName"
OUTPUT_VALIDATOR_FUNCTION_ARN = "ValidatorFunctionArn"
BATCH_INVENTORY_ID = "kommunmoln-batch-verify"  # the data bucket's S3 Inventory configuration
BATCH_INVENTORY_PREFIX = "inventory"  # where it delivers, in the job bucket
BATCH_REPORT_PREFIX = "reports"  # completion reports (job-<id>/manifest.json and results/*.csv)
BATCH_MANIFEST_PREFIX = "manifests"  # manifests generated by CreateJob's ManifestGenerator
OUTPUT_SSE_BUCKET = "SseKmsBucketName"
OUTPUT_CLUSTER_ID = "CloudHsmClusterId"
OUTPUT_CUSTOM_KEY_STORE_ID = "CustomKeyStoreId"
OUTPUT_KMS_KEY_ARN = "KmsKeyArn"
OUTPUT_KMS_ALIAS = "KmsKeyAlias"
OUTPUT_ADMIN_HOST_ID = "AdminHostInstanceId"
OUTPUT_KMSUSER_SECRET = "KmsUserPasswordSecretArn"  # Secrets Manager secret with the kmsuser password
OUTPUT_XKS_PRIVATE_DNS_TXT_NAME = "XksPrivateDnsVerificationName"  # TXT record name the operator publishes
OUTPUT_XKS_PRIVATE_DNS_TXT_VALUE = "XksPrivateDnsVerificationValue"
OUTPUT_XKS_ENDPOINT_SERVICE = "XksVpcEndpointServiceName"
OUTPUT_KMS_USAGE_ROLE = "KmsKeyUsageRoleArn"  # the one role the key policy lets use the tier B key (via S3)

# --- Custom resource types served by lambdas.cloudhsm_provisioner (tier B) ----------------
RESOURCE_CLOUDHSM_CLUSTER = "Custom::CloudHsmCluster"  # a cluster restored from a backup
RESOURCE_CLOUDHSM_HSMS = "Custom::CloudHsmHsms"
RESOURCE_KMS_CUSTOM_KEY_STORE = "Custom::KmsCustomKeyStore"
RESOURCE_KMS_HSM_KEY = "Custom::KmsHsmKey"

# --- Custom resource types served by lambdas.xks_provisioner (tier C) -------------------------
RESOURCE_XKS_ENDPOINT_SERVICE_DNS = "Custom::XksEndpointServicePrivateDns"  # waits for a verified private DNS name
RESOURCE_KMS_EXTERNAL_KEY_STORE = "Custom::KmsExternalKeyStore"
RESOURCE_KMS_XKS_KEY = "Custom::KmsXksKey"
