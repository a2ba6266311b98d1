"""The proxy app in-process: GetHealthStatus reports the HSM's real state, and the audit log keeps KMS's metadata.

Health: ACTIVE, DEGRADED, UNAVAILABLE (a 200 answer), busy (429).

The rules encoded (XKS Proxy API spec, aws/aws-kms-xksproxy-api-spec, xks_proxy_api_spec.md, "GetHealthStatus"):
`ekmFleetDetails.healthStatus` is ACTIVE ("healthy"), DEGRADED ("unhealthy but can still serve traffic") or
UNAVAILABLE ("unable to serve traffic"), the check SHOULD be deep, and a cached result MUST NOT be older than
one minute. KMS acts on UNAVAILABLE in a successful answer (KMS API Reference, XksProxyUriUnreachableException:
"thrown when the external key store proxy response to a GetHealthStatus request indicates that all external key
manager instances are unavailable"), so a failed deep check is reported as that state, not as an error.

Audit (spec, "Logging" and the requestMetadata of each API): the proxy records who asked (awsPrincipalArn),
for which KMS key and request (kmsKeyArn, kmsOperation, kmsRequestId), via which service (kmsViaService) and
from which VPC (awsSourceVpc, awsSourceVpce, present when KMS is called through a VPC endpoint).

The app runs in-process on a stand-in for the PKCS#11 session pool (the HSM itself is covered against SoftHSM2
in test_proxy.py); requests are signed with botocore as KMS signs them.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from kommunmoln.tier_c import hsm, sigv4
from kommunmoln.tier_c.app import XksProxy
from kommunmoln.tier_c.config import load_config
from kommunmoln.tier_c.killswitch import KillState, write_state
from tests.library.tier_c.test_cli import CONFIG as CLI_CONFIG

SECRET = "C" * 43
ACCESS_KEY_ID = "ABCDEFGHIJKLMNOPQRST"  # the one credential of test_cli's configuration
CONFIG = CLI_CONFIG.replace('token_label = "t"', 'token_label = "t"\nsession_pool_size = 2')


class Pool:
    """What XksProxy uses of hsm.SessionPool for health: deep_check, open_sessions, model."""

    model = "SoftHSM 2.6"

    def __init__(self, open_sessions: int = 2) -> None:
        self.open_sessions = open_sessions
        self.failure: Exception | None = None
        self.checks = 0

    def deep_check(self, label: str) -> None:
        self.checks += 1
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def app(tmp_path):
    (tmp_path / "proxy.toml").write_text(CONFIG)
    config = load_config(tmp_path / "proxy.toml", {"XKS_TEST_SECRET": SECRET})
    pool = Pool()
    return XksProxy(config, pool), pool, tmp_path


def health(proxy: XksProxy) -> tuple[int, dict]:
    """One POST /health, as KMS's periodic KmsHealthCheck sends it."""
    return post(proxy, "/health", {"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "h-1"}})


def post(proxy: XksProxy, api_path: str, payload: dict) -> tuple[int, dict]:
    """One SigV4-signed POST through the ASGI entry point; returns (HTTP status, JSON body)."""
    body = json.dumps(payload).encode()
    path = "/kms/xks/v1" + api_path
    signed = sigv4.sign(url=f"http://127.0.0.1:8443{path}", body=body, access_key_id=ACCESS_KEY_ID,
                        secret_access_key=SECRET, region="eu-north-1")  # fmt: skip
    headers = [(k.lower().encode(), v.encode()) for k, v in signed.items()]
    headers += [(b"host", b"127.0.0.1:8443"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "headers": headers,
             "client": ("127.0.0.1", 50000)}  # fmt: skip
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(proxy(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def audit_lines(root) -> list[dict]:
    return [json.loads(line) for line in (root / "audit.jsonl").read_text().splitlines()]


def test_a_healthy_hsm_is_active_and_a_shrunken_session_pool_is_degraded(app) -> None:
    proxy, pool, _ = app
    # GIVEN every configured HSM session open WHEN KMS asks for health THEN the deep check ran and says ACTIVE
    status, body = health(proxy)
    assert status == 200 and body["ekmFleetDetails"][0]["healthStatus"] == "ACTIVE" and pool.checks == 1
    assert body["ekmFleetDetails"][0]["model"] == "SoftHSM 2.6" and body["xksProxyFleetSize"] == 1
    # GIVEN a session lost (the pool could not reopen it) and the cached result discarded
    pool.open_sessions = 1
    proxy._health = None
    # WHEN KMS asks again THEN the HSM still serves, with less capacity: DEGRADED
    assert health(proxy)[1]["ekmFleetDetails"][0]["healthStatus"] == "DEGRADED"


def test_a_failed_deep_check_is_reported_unavailable_not_cached_and_recovers(app) -> None:
    proxy, pool, root = app
    # GIVEN an HSM whose health key round trip fails
    pool.failure = hsm.HsmError("health key 'xks-health-check' is missing on the token")
    # WHEN KMS asks for health THEN a 200 answer with every instance UNAVAILABLE (what KMS acts on)
    status, body = health(proxy)
    assert status == 200 and [e["healthStatus"] for e in body["ekmFleetDetails"]] == ["UNAVAILABLE"]
    # AND the audit log records the state and why, as one decision line
    last = audit_lines(root)[-1]
    assert (last["operation"], last["status"], last["ekmHealth"]) == ("GetHealthStatus", 200, "UNAVAILABLE")
    assert "missing on the token" in last["reason"]
    # WHEN the HSM is repaired THEN the next request checks again (a failure is never cached) and says ACTIVE
    pool.failure = None
    assert health(proxy)[1]["ekmFleetDetails"][0]["healthStatus"] == "ACTIVE"
    assert pool.checks == 2


def test_a_busy_session_pool_is_throttling_not_an_unavailable_hsm(app) -> None:
    proxy, pool, _ = app
    # GIVEN every HSM session in use
    pool.failure = hsm.PoolExhausted("all sessions busy")
    # WHEN KMS asks for health THEN 429 ThrottlingException (KMS retries), not a claim that the HSM is down
    status, body = health(proxy)
    assert (status, body["errorName"]) == (429, "ThrottlingException")


def test_the_kill_switch_answers_health_with_invalid_state(app) -> None:
    proxy, pool, root = app
    # GIVEN the whole key store killed
    write_state(root / "kill.json", KillState(all_keys=True))
    # WHEN KMS asks for health THEN InvalidStateException (spec: "key store is disabled") and no HSM call
    status, body = health(proxy)
    assert (status, body["errorName"]) == (400, "InvalidStateException") and pool.checks == 0


def test_the_audit_line_keeps_kms_metadata_with_vpc_ids_and_drops_the_rest(app) -> None:
    proxy, _, root = app
    # GIVEN a request shaped as KMS sends it through a VPC endpoint, with a field the spec does not define
    # and an overlong principal
    metadata = {"awsPrincipalArn": "arn:aws:iam::111122223333:role/" + "r" * 3000, "kmsOperation": "Encrypt",
                "kmsKeyArn": "arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae", "kmsViaService": "s3",
                "awsSourceVpc": "vpc-0123456789abcdef0", "awsSourceVpce": "vpce-0123456789abcdef0",
                "notInTheSpec": "x", "kmsOperationCount": 3}  # fmt: skip
    # WHEN it names a key the proxy does not have
    status, body = post(proxy, "/keys/not-configured/metadata", {"requestMetadata": metadata})
    assert (status, body["errorName"]) == (404, "KeyNotFoundException")
    # THEN the audit line records the refusal with every spec field, VPC ids included, the principal cut to
    # 2048 characters, and nothing else from the request
    line = audit_lines(root)[-1]
    assert (line["status"], line["errorName"]) == (404, "KeyNotFoundException")
    logged = line["requestMetadata"]
    assert logged["awsSourceVpc"] == "vpc-0123456789abcdef0" and logged["awsSourceVpce"] == "vpce-0123456789abcdef0"
    assert logged["awsPrincipalArn"] == metadata["awsPrincipalArn"][:2048]
    assert set(logged) == {"awsPrincipalArn", "kmsOperation", "kmsKeyArn", "kmsRequestId", "kmsViaService",
                           "awsSourceVpc", "awsSourceVpce"}  # fmt: skip
