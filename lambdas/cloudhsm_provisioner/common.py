"""What every tier B custom resource handler shares: errors, the retrying call, property parsing,
describe helpers. Small on purpose; one module per resource type sits on top of it.

Every AWS call goes through `call()`, which retries throttling with a bounded exponential backoff
(the key store management APIs and CreateKey allow 5 requests per second). Every other error
becomes a `ProvisioningError` whose text names the call, the error code and what to do.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

LOG = logging.getLogger(__name__)
Sleep = Callable[[float], None]


# --- Hints for API errors ------------------------------------------------------------------
_ERROR_HINTS: Mapping[str, str] = {
    "CloudHsmClusterNotActiveException": "initialize and activate the cluster first (python -m usecases.cloudhsm_kms init)",
    "CloudHsmClusterInvalidConfigurationException": (
        "the cluster needs private subnets in at least two zones, a security group allowing TCP 2223-2225 to itself, "
        "and at least two ACTIVE HSMs in different zones to create a key store or key"
    ),
    "CloudHsmClusterNotRelatedException": "a key store can only move to a cluster restored from a backup of its original cluster",
    "CloudHsmClusterInUseException": "the cluster already backs another custom key store (set tier_b_existing_key_store_id to reuse it)",
    "CloudHsmClusterNotFoundException": "check the cluster id (DescribeClusters)",
    "IncorrectTrustAnchorException": "TrustAnchorCertificate must be the exact issuing certificate (customerCA.crt) given to InitializeCluster",
    "CustomKeyStoreNameInUseException": "another key store has this name; choose another or adopt it with tier_b_existing_key_store_id",
    "CustomKeyStoreInvalidStateException": "the key store must be CONNECTED to create keys and DISCONNECTED to be updated or deleted",
    "CustomKeyStoreHasCMKsException": "delete (schedule deletion of) every KMS key in the key store and wait for the waiting period first",
    "CustomKeyStoreNotFoundException": "check the key store id (aws kms describe-custom-key-stores)",
    "CloudHsmResourceLimitExceededException": "an HSM or cluster quota is reached; request a quota increase or lower tier_b_hsm_count",
    "CloudHsmAccessDeniedException": "the provisioner role lacks a CloudHSM permission",
    "AccessDeniedException": "the provisioner role lacks a permission",
    "LimitExceededException": "a KMS quota is reached (10 custom key stores per account and Region)",
}

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException", "RequestLimitExceeded"}
)
RETRYABLE_CODES = THROTTLING_CODES | {"KMSInternalException", "CloudHsmInternalFailureException", "InternalFailure"}
MAX_ATTEMPTS = 6
# The longest one invocation may wait (sleeps in call() retries and in a bounded state wait); the stack's
# function timeout must exceed it with room for the calls themselves (checked against the template).
MAX_WAIT_IN_INVOCATION_SECONDS = 180
BASE_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0
_JITTER = secrets.SystemRandom()


class ProvisioningError(RuntimeError):
    """A failure CloudFormation shows to the operator: one clear sentence with what to do."""


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", "Unknown"))


def explain(err: ClientError) -> str:
    """One line: which call failed, the AWS error code and message, and a hint when we know one."""
    code = error_code(err)
    message = err.response.get("Error", {}).get("Message", "")
    hint = _ERROR_HINTS.get(code)
    return f"{err.operation_name} failed with {code}: {message}" + (f" ({hint})" if hint else "")


def call(operation: Callable[..., dict[str, Any]], *, sleep: Sleep, **kwargs: Any) -> dict[str, Any]:
    """Call one AWS API operation; retry throttling and internal failures with bounded backoff."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return operation(**kwargs)
        except ClientError as err:
            code = error_code(err)
            if code not in RETRYABLE_CODES:
                raise
            if attempt == MAX_ATTEMPTS:
                raise ProvisioningError(
                    f"{err.operation_name} still failed with {code} after {MAX_ATTEMPTS} attempts (key store "
                    "management calls and CreateKey allow 5 requests per second); retry the deployment later"
                ) from err
            delay = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** (attempt - 1))
            LOG.warning("%s returned %s; retry %d of %d", err.operation_name, code, attempt, MAX_ATTEMPTS - 1)
            sleep(delay * _JITTER.uniform(0.5, 1.0))
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Clients:
    """The boto3 clients the provisioner uses (created by the handler, stubbed in tests)."""

    cloudhsm: Any
    kms: Any
    secrets: Any


# --- Property parsing ------------------------------------------------------------------------
CLUSTER_ID = r"cluster-[2-7a-zA-Z]{11,16}"
KEY_STORE_ID = r"cks-[a-z0-9]{17}"


def prop(props: Mapping[str, Any], key: str, *, pattern: str | None = None, allow_empty: bool = False) -> str:
    value = props.get(key, "")
    if not isinstance(value, str):
        raise ProvisioningError(f"property {key} must be a string")
    if not value and not allow_empty:
        raise ProvisioningError(f"property {key} is required")
    if value and pattern and not re.fullmatch(pattern, value):
        raise ProvisioningError(f"property {key}={value!r} does not match {pattern}")
    return value


def flag(props: Mapping[str, Any], key: str) -> bool:
    value = str(props.get(key, "false")).lower()
    if value not in ("true", "false"):
        raise ProvisioningError(f"property {key} must be 'true' or 'false'")
    return value == "true"


# --- Describe helpers (shared by every resource type) ----------------------------------------
HSM_GONE_STATES = frozenset({"DELETE_IN_PROGRESS", "DELETED"})


def describe_one(operation: Callable[..., Any], result_key: str, filters: dict[str, list[str]], sleep: Sleep):
    """The one CloudHSM item a describe call filters for, or None when it does not exist."""
    try:
        response = call(operation, sleep=sleep, Filters=filters)
    except ClientError as err:
        if error_code(err) in ("CloudHsmResourceNotFoundException", "CloudHsmInvalidRequestException"):
            return None
        raise
    items = response.get(result_key, [])
    return items[0] if items else None


def describe_cluster(cloudhsm: Any, cluster_id: str, *, sleep: Sleep) -> dict[str, Any] | None:
    """The cluster description, or None when no such cluster exists."""
    return describe_one(cloudhsm.describe_clusters, "Clusters", {"clusterIds": [cluster_id]}, sleep)


def live_hsms(cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    """HSMs that exist or are being created (not being deleted)."""
    return [h for h in cluster.get("Hsms", []) if h.get("State") not in HSM_GONE_STATES]
