"""The XKS proxy as a small ASGI application (served by uvicorn, see server.py).

Order of checks for every request (each failure ends the request with the spec's error):
method (GET -> 405) -> body size -> SigV4 (401) -> URI (404 InvalidUriPathException) -> JSON and
fields (400 ValidationException, 501 for sizes beyond what this proxy supports) -> kill switch
and key status (400 InvalidStateException) -> key (404 KeyNotFoundException) -> secondary
authorization (403 AccessDeniedException) -> allowed operation (400 InvalidKeyUsageException)
-> HSM. Every answered request is written to the audit log, with its metadata and decision.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fnmatch
import hashlib
import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kommunmoln.tier_c import hsm as hsm_module
from kommunmoln.tier_c import sigv4
from kommunmoln.tier_c.audit import AuditLog, metadata_fields
from kommunmoln.tier_c.config import ProxyConfig
from kommunmoln.tier_c.killswitch import KillSwitch

VENDOR = "kommunmoln"
MODEL = "kommunmoln XKS proxy 1.0 (Python, uvicorn)"
MAX_PLAINTEXT = 4300  # the spec's required minimum, and this proxy's maximum (larger: 501)
MAX_AAD = 8192
MAX_METADATA = 20
HEALTH_CACHE_SECONDS = 10.0  # spec allows a cached deep health result up to one minute old
_KEY_OP = re.compile(r"^/keys/(?P<key>[^/]+)/(?P<op>metadata|encrypt|decrypt)$")

MESSAGES = {
    "ValidationException": 400,
    "InvalidStateException": 400,
    "InvalidCiphertextException": 400,
    "InvalidKeyUsageException": 400,
    "AuthenticationFailedException": 401,
    "AccessDeniedException": 403,
    "KeyNotFoundException": 404,
    "InvalidUriPathException": 404,
    "ThrottlingException": 429,
    "UnsupportedOperationException": 501,
    "DependencyTimeoutException": 503,
    "InternalException": 500,
}


class XksError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        # spec: errorMessage < 512 printable ASCII characters
        self.message = "".join(c for c in message if " " <= c <= "~")[:511]

    @property
    def status(self) -> int:
        return MESSAGES[self.name]


@dataclass
class Outcome:
    status: int
    body: dict
    audit: dict


def _b64(body: dict, name: str, *, required: bool, limit: int, limit_error: str = "UnsupportedOperationException"):
    value = body.get(name)
    if value is None:
        if required:
            raise XksError("ValidationException", f"{name} is required")
        return None
    if not isinstance(value, str):
        raise XksError("ValidationException", f"{name} must be a Base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise XksError("ValidationException", f"{name} is not valid Base64") from None
    if len(raw) > limit:
        raise XksError(limit_error, f"{name} is longer than {limit} bytes")
    return raw


def ciphertext_data_integrity_value(aad: bytes, metadata: bytes, iv: bytes, ciphertext: bytes, tag: bytes) -> bytes:
    """Spec Appendix C: SHA-256 over AAD || ciphertextMetadata || IV || ciphertext || tag (absent fields empty)."""
    return hashlib.sha256(aad + metadata + iv + ciphertext + tag).digest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _enc(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class XksProxy:
    """Holds the config, HSM pool, audit log and kill switch; `__call__` is the ASGI entry point."""

    def __init__(self, config: ProxyConfig, pool, *, clock=None) -> None:
        self.config = config
        self.pool = pool
        self.audit = AuditLog(config.audit_log)
        self.kill = KillSwitch(config.kill_switch_file)
        self._clock = clock
        # One HSM thread: every PKCS#11 call holds one process-wide lock (hsm.py), so more threads would only
        # wait for it and fight the event loop for the GIL (measured: ~20 % more proxy CPU per request with
        # four). The thread keeps a slow network HSM's round trip off the event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsm")
        self._inflight = asyncio.Semaphore(config.max_concurrent_requests)
        self._health: tuple[float, str, str] | None = None  # (checked at, status, detail)

    # ---- ASGI -------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        outcome = await self._handle(scope, receive)
        outcome.audit["ms"] = round((time.perf_counter() - started) * 1000, 2)
        self.audit.write(outcome.audit)
        payload = json.dumps(outcome.body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if outcome.status == 405:
            headers.append((b"allow", b"POST"))
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.audit.write({"time": _now(), "event": "startup", "model": MODEL, "keys": sorted(self.config.keys)})
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """Graceful shutdown: finish HSM work in flight, close the sessions, sync the audit log."""
        self._executor.shutdown(wait=True)
        self.pool.close()
        self.audit.write({"time": _now(), "event": "shutdown"})
        self.audit.close()

    async def _read_body(self, receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _handle(self, scope, receive) -> Outcome:
        path = scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0] or scope["path"]
        audit: dict = {
            "time": _now(),
            "proxyRequestId": str(uuid.uuid4()),
            "path": path[:300],
            "method": scope["method"],
            "client": (scope.get("client") or ["?"])[0],
        }

        def fail(error: XksError) -> Outcome:
            audit.update(status=error.status, errorName=error.name, reason=error.message)
            return Outcome(error.status, {"errorName": error.name, "errorMessage": error.message}, audit)

        if scope["method"] != "POST":
            # Spec: GET on an API URI MUST be answered 405 Method Not Allowed; other methods likewise.
            if path.startswith(self.config.api_base + "/"):
                audit.update(status=405, errorName="MethodNotAllowed")
                return Outcome(405, {"errorName": "ValidationException", "errorMessage": "use POST"}, audit)
            return fail(XksError("InvalidUriPathException", "unknown path"))
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            headers[key] = f"{headers[key]},{value.decode('latin-1')}" if key in headers else value.decode("latin-1")
        declared = headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > self.config.max_body_bytes:
            return fail(XksError("UnsupportedOperationException", "request body too large"))
        body = await self._read_body(receive)
        if body is None:
            return fail(XksError("UnsupportedOperationException", "request body too large or incomplete"))
        try:
            audit["accessKeyId"] = sigv4.verify(
                method="POST",
                path=path,
                headers=headers,
                body=body,
                credentials=self.config.credentials,
                region=self.config.region,
                now=self._clock() if self._clock else None,
            )
        except sigv4.AuthenticationFailed as error:
            return fail(XksError("AuthenticationFailedException", str(error)))
        try:
            async with self._bounded():
                return await self._dispatch(path, body, audit)
        except XksError as error:
            return fail(error)

    @contextlib.asynccontextmanager
    async def _bounded(self):
        """Hold one of `max_concurrent_requests` slots; none free: ThrottlingException at once."""
        if self._inflight.locked():
            raise XksError("ThrottlingException", "too many requests in flight")
        await self._inflight.acquire()
        try:
            yield
        finally:
            self._inflight.release()

    # ---- API ---------------------------------------------------------------------------------
    async def _dispatch(self, path: str, raw: bytes, audit: dict) -> Outcome:
        base = self.config.api_base
        if not path.startswith(base + "/"):
            raise XksError("InvalidUriPathException", "the URI path does not start with this proxy's prefix")
        rest = path[len(base) :]
        match = _KEY_OP.match(rest)
        if rest != "/health" and not match:
            raise XksError("InvalidUriPathException", "no such XKS API")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise XksError("ValidationException", "the body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("requestMetadata"), dict):
            raise XksError("ValidationException", "requestMetadata is required")
        metadata = body["requestMetadata"]
        audit["requestMetadata"] = metadata_fields(metadata)
        required = ("kmsOperation", "kmsRequestId") + (() if rest == "/health" else ("awsPrincipalArn",))
        if match and match["op"] != "metadata":
            required += ("kmsKeyArn",)
        missing = [f for f in required if not isinstance(metadata.get(f), str) or not metadata[f]]
        if missing:
            raise XksError("ValidationException", f"requestMetadata lacks {', '.join(missing)}")
        if rest == "/health":
            audit["operation"] = "GetHealthStatus"
            return await self._health_status(audit)
        key_id, op = match["key"], match["op"]
        audit.update(operation={"metadata": "GetKeyMetadata", "encrypt": "Encrypt", "decrypt": "Decrypt"}[op])
        audit["externalKeyId"] = key_id[:128]
        rule = self.config.keys.get(key_id)
        if rule is None:
            raise XksError("KeyNotFoundException", "no such external key")
        kill = self.kill.state()
        if kill.refuses(key_id):
            raise XksError("InvalidStateException", "the key store or this key is disabled by the kill switch")
        self._authorize(rule, metadata, op)
        if op == "metadata":
            if not await self._run(self.pool.has_key, rule.label):
                raise XksError("KeyNotFoundException", "the external key is not on the HSM")
            usage = [u for u in ("ENCRYPT", "DECRYPT") if u in rule.operations]
            audit["status"] = 200
            return Outcome(200, {"keySpec": "AES_256", "keyUsage": usage, "keyStatus": rule.status}, audit)
        if rule.status != "ENABLED":
            raise XksError("InvalidStateException", "the external key is disabled")
        if body.get("encryptionAlgorithm") != "AES_GCM":
            raise XksError("ValidationException", "encryptionAlgorithm must be AES_GCM")
        aad = _b64(body, "additionalAuthenticatedData", required=False, limit=MAX_AAD) or b""
        if op == "encrypt":
            return await self._encrypt(rule, body, aad, audit)
        return await self._decrypt(rule, body, aad, audit)

    def _authorize(self, rule, metadata: dict, op: str) -> None:
        principal = metadata.get("awsPrincipalArn", "")
        if rule.principals and not any(fnmatch.fnmatchcase(principal, p) for p in rule.principals):
            raise XksError("AccessDeniedException", "secondary authorization: principal not allowed for this key")
        if op == "metadata":
            return
        via = metadata.get("kmsViaService")
        if via is None and rule.require_via_service:
            raise XksError("AccessDeniedException", "secondary authorization: this key is only used via a service")
        if via is not None and rule.via_services and via not in rule.via_services:
            raise XksError("AccessDeniedException", "secondary authorization: kmsViaService not allowed for this key")

    async def _run(self, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except hsm_module.PoolExhausted:
            raise XksError("ThrottlingException", "all HSM sessions are busy") from None
        except hsm_module.KeyMissing:
            raise XksError("KeyNotFoundException", "the external key is not on the HSM") from None
        except hsm_module.HsmError as error:
            self._health = None
            raise XksError("InternalException", f"HSM failure: {error}") from None
        except RuntimeError:  # executor shut down: the proxy is stopping
            raise XksError("InternalException", "the proxy is shutting down") from None

    async def _encrypt(self, rule, body: dict, aad: bytes, audit: dict) -> Outcome:
        if "ENCRYPT" not in rule.operations:
            raise XksError("InvalidKeyUsageException", "this key does not allow ENCRYPT")
        plaintext = _b64(body, "plaintext", required=True, limit=MAX_PLAINTEXT)
        cdiv_algorithm = body.get("ciphertextDataIntegrityValueAlgorithm")
        if cdiv_algorithm is not None and cdiv_algorithm != "SHA_256":
            raise XksError("ValidationException", "ciphertextDataIntegrityValueAlgorithm must be SHA_256")
        hsm_aad = hsm_module.hsm_aad(aad, b"")
        sealed = await self._run(self.pool.encrypt, rule.label, plaintext, hsm_aad)
        response = {
            "ciphertext": _enc(sealed.ciphertext),
            "initializationVector": _enc(sealed.iv),
            "authenticationTag": _enc(sealed.tag),
        }
        if cdiv_algorithm:
            # Spec Appendix C: hash first, then prove the output decrypts, then answer.
            digest = ciphertext_data_integrity_value(aad, b"", sealed.iv, sealed.ciphertext, sealed.tag)
            try:
                again = await self._run(self.pool.decrypt, rule.label, sealed, hsm_aad)
            except (XksError, hsm_module.TagMismatch):
                again = None
            if again != plaintext:
                raise XksError("InternalException", "the HSM's ciphertext did not decrypt (integrity check)")
            response["ciphertextDataIntegrityValue"] = _enc(digest)
        audit["status"] = 200
        return Outcome(200, response, audit)

    async def _decrypt(self, rule, body: dict, aad: bytes, audit: dict) -> Outcome:
        if "DECRYPT" not in rule.operations:
            raise XksError("InvalidKeyUsageException", "this key does not allow DECRYPT")
        ciphertext = _b64(body, "ciphertext", required=True, limit=MAX_PLAINTEXT)
        metadata = _b64(
            body, "ciphertextMetadata", required=False, limit=MAX_METADATA, limit_error="ValidationException"
        )
        iv = _b64(body, "initializationVector", required=True, limit=16, limit_error="ValidationException")
        tag = _b64(body, "authenticationTag", required=True, limit=16, limit_error="ValidationException")
        if len(iv) != hsm_module.IV_BYTES:
            # Spec change log: the IV is exactly 96 bits; this proxy only ever issues 12-byte IVs.
            raise XksError("InvalidCiphertextException", "initializationVector must be 12 bytes")
        if len(tag) != hsm_module.TAG_BYTES:
            raise XksError("InvalidCiphertextException", "authenticationTag must be 16 bytes")
        sealed = hsm_module.Sealed(ciphertext=ciphertext, iv=iv, tag=tag)
        try:
            plaintext = await self._run(self.pool.decrypt, rule.label, sealed, hsm_module.hsm_aad(aad, metadata or b""))
        except hsm_module.TagMismatch:
            raise XksError(
                "InvalidCiphertextException", "authentication failed: ciphertext, IV, tag or AAD altered"
            ) from None
        audit["status"] = 200
        return Outcome(200, {"plaintext": _enc(plaintext)}, audit)

    async def _health_status(self, audit: dict) -> Outcome:
        if self.kill.state().refuses(None):
            raise XksError("InvalidStateException", "the key store is disabled by the kill switch")
        now = time.monotonic()
        if self._health is None or now - self._health[0] > HEALTH_CACHE_SECONDS:
            try:
                await self._run(self.pool.deep_check, self.config.health_key_label)
                status = "ACTIVE" if self.pool.open_sessions == self.config.session_pool_size else "DEGRADED"
                self._health = (now, status, "")
            except XksError as error:
                if error.name != "InternalException":
                    raise  # ThrottlingException: every session busy, which is load, not a broken HSM
                # A failed deep check is the spec's healthStatus UNAVAILABLE ("unable to serve traffic") in a
                # 200 answer, not an error: KMS acts on it as documented (KMS API Reference,
                # XksProxyUriUnreachableException: thrown "when the external key store proxy response to a
                # GetHealthStatus request indicates that all external key manager instances are unavailable")
                # and publishes XksExternalKeyManagerStates Unavailable for the alarms. Not cached: the next
                # health request checks the HSM again.
                self._health = None
                audit.update(
                    status=200, ekmHealth="UNAVAILABLE", reason=f"the HSM cannot serve requests ({error.message})"
                )
                return self._health_answer("UNAVAILABLE", audit)
        audit.update(status=200, ekmHealth=self._health[1])
        return self._health_answer(self._health[1], audit)

    def _health_answer(self, status: str, audit: dict) -> Outcome:
        return Outcome(
            200,
            {
                "xksProxyFleetSize": self.config.fleet_size,
                "xksProxyVendor": VENDOR,
                "xksProxyModel": MODEL,
                "ekmVendor": getattr(self.pool, "model", "PKCS#11").split(" ")[0] or "PKCS#11",
                "ekmFleetDetails": [
                    {
                        "id": f"{self.config.token_label}",
                        "model": getattr(self.pool, "model", "PKCS#11"),
                        "healthStatus": status,
                    }
                ],
            },
            audit,
        )
