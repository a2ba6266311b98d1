"""SigV4 verification of XKS requests with botocore's own signer (service `kms-xks-proxy`).

The proxy recomputes the signature exactly as KMS computed it (xks_proxy_api_spec.md, Appendix A):
canonical request over the signed headers and the SHA-256 of the body, string to sign with the
credential scope from the Authorization header, signing key derived from the secret for the
access key id. Any mismatch, an unknown access key id, another service or region, or a timestamp
more than five minutes away fails with AuthenticationFailedException.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kommunmoln.tier_c.config import Credential

SERVICE = "kms-xks-proxy"
MAX_SKEW = dt.timedelta(minutes=5)  # spec, Appendix A task 4
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


class AuthenticationFailed(Exception):
    """The request's SigV4 signature does not verify; the message says why (no secrets)."""


def verify(
    *,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    credentials: tuple[Credential, ...],
    region: str,
    now: dt.datetime | None = None,
) -> str:
    """Return the access key id that signed the request, or raise AuthenticationFailed.

    `headers` maps lower-case header names to values as received.
    """
    match = _AUTH.match(headers.get("authorization", ""))
    if not match:
        raise AuthenticationFailed("missing or malformed SigV4 Authorization header")
    if match["service"] != SERVICE:
        raise AuthenticationFailed(f"credential scope names service {match['service'][:40]!r}, not {SERVICE}")
    if match["region"] != region:
        raise AuthenticationFailed(f"credential scope names region {match['region'][:40]!r}, not {region}")
    secret = next((c.secret_access_key for c in credentials if c.access_key_id == match["akid"]), None)
    if secret is None:
        raise AuthenticationFailed("unknown access key id")
    signed = match["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        raise AuthenticationFailed("SignedHeaders must include host and x-amz-date")
    if any(name not in headers for name in signed):
        raise AuthenticationFailed("a signed header is missing from the request")
    amz_date = headers["x-amz-date"]
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise AuthenticationFailed("X-Amz-Date is not YYYYMMDD'T'HHMMSS'Z'") from None
    if amz_date[:8] != match["date"]:
        raise AuthenticationFailed("credential scope date differs from X-Amz-Date")
    now = now or dt.datetime.now(dt.UTC)
    if abs(now - when) > MAX_SKEW:
        raise AuthenticationFailed("request timestamp is more than 5 minutes from the proxy's clock")
    if "x-amz-content-sha256" in signed and headers["x-amz-content-sha256"] != hashlib.sha256(body).hexdigest():
        raise AuthenticationFailed("X-Amz-Content-SHA256 does not match the body")
    # Rebuild the request with exactly the signed headers; botocore computes the rest.
    request = AWSRequest(
        method=method, url=f"https://{headers['host']}{path}", headers={n: headers[n] for n in signed}, data=body
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(match["akid"], secret), SERVICE, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["sig"]):
        raise AuthenticationFailed("signature does not match")
    return match["akid"]


def sign(
    *, url: str, body: bytes, access_key_id: str, secret_access_key: str, region: str, service: str = SERVICE
) -> dict[str, str]:
    """Headers for a POST signed as KMS signs XKS requests (host;x-amz-date); for the demo, tests and bench."""
    request = AWSRequest(method="POST", url=url, data=body)
    SigV4Auth(Credentials(access_key_id, secret_access_key), service, region).add_auth(request)
    headers = dict(request.headers.items())
    headers["Content-Type"] = "application/json"  # not signed, as in the spec's example
    return headers
