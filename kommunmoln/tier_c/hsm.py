"""AES-256-GCM inside the HSM over PKCS#11, through a pool of logged-in sessions.

Every key operation happens in the token: the proxy holds only object handles, never key
material. IVs are 12 random bytes drawn from the HSM's own generator for each encryption (the
spec fixes the IV at 96 bits; a random 96-bit IV per message is within NIST SP 800-38D's limits
for the message counts a key store sees). The AAD given to the HSM binds the lengths
(spec, Encrypt "ciphertextMetadata"): 2-byte big-endian len(AAD) || AAD || 1-byte len(metadata) || metadata.

One PKCS#11 call at a time: python-pkcs11 initialises the library with C_Initialize(NULL_PTR), which
tells the library that "the application won't be accessing the Cryptoki library from multiple threads
simultaneously" (PKCS#11 v2.40 base spec, 5.4 C_Initialize), and SoftHSM2 then runs without its own
locks (it needs CKF_OS_LOCKING_OK for that: OpenSC/libp11 issue 91). python-pkcs11 releases the GIL
during each call, so calls from several executor threads raced inside SoftHSM2 and the proxy died of
SIGSEGV under concurrent load. Every call into the library therefore holds `_LIBRARY_CALLS`.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IV_BYTES = 12
TAG_BYTES = 16


# One per process: python-pkcs11 keeps one initialised library per path, shared by every pool.
_LIBRARY_CALLS = threading.Lock()


class HsmError(Exception):
    """The HSM failed or is unreachable (the proxy answers InternalException)."""


class KeyMissing(Exception):
    """No AES key with that label on the token."""


class TagMismatch(Exception):
    """AES-GCM authentication failed: ciphertext, IV, tag, AAD or metadata was altered."""


class PoolExhausted(Exception):
    """No HSM session became free in time (the proxy answers ThrottlingException)."""


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes
    iv: bytes
    tag: bytes


def hsm_aad(aad: bytes, metadata: bytes) -> bytes:
    """The AAD given to the HSM, with both lengths so that AAD and metadata cannot be shifted into each other."""
    return len(aad).to_bytes(2, "big") + aad + len(metadata).to_bytes(1, "big") + metadata


class _Session:
    def __init__(self, session) -> None:
        self.session = session
        self.keys: dict[str, object] = {}

    def key(self, label: str):
        import pkcs11

        if label not in self.keys:
            try:
                self.keys[label] = self.session.get_key(
                    object_class=pkcs11.ObjectClass.SECRET_KEY, key_type=pkcs11.KeyType.AES, label=label
                )
            except pkcs11.exceptions.NoSuchKey:
                raise KeyMissing(label) from None
            except pkcs11.exceptions.MultipleObjectsReturned:
                raise HsmError(f"more than one AES key labelled {label!r} on the token") from None
            key = self.keys[label]
            # Fail closed on a key that could leave the HSM or is not AES-256 (XKS v1: AES_256 only).
            if key.key_length != 256 or key[pkcs11.Attribute.EXTRACTABLE] or not key[pkcs11.Attribute.SENSITIVE]:
                del self.keys[label]
                raise HsmError(f"key {label!r} must be AES-256, sensitive and non-extractable")
        return self.keys[label]


class HsmPool:
    """A fixed pool of PKCS#11 sessions on one token; each request borrows one session."""

    def __init__(self, *, library: Path, token_label: str, pin: str, size: int, acquire_timeout: float = 0.2) -> None:
        import pkcs11

        self._pkcs11 = pkcs11
        self._library_path = str(library)
        self._token_label = token_label
        self._pin = pin
        self._size = size
        self._timeout = acquire_timeout
        self._idle: queue.LifoQueue[_Session] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._open = 0
        self._closed = False
        try:
            with _LIBRARY_CALLS:
                self._init_sessions(size)
        except pkcs11.exceptions.PKCS11Error as error:
            self.close()
            raise HsmError(f"cannot open {size} sessions on token {token_label!r}: {type(error).__name__}") from None

    def _init_sessions(self, size: int) -> None:
        self._token = self._pkcs11.lib(self._library_path).get_token(token_label=self._token_label)
        self.model = f"{self._token.manufacturer_id.strip()} {self._token.model.strip()}".strip()
        self.serial = self._token.serial.strip() if isinstance(self._token.serial, str) else str(self._token.serial)
        for _ in range(size):
            self._idle.put(self._new_session())

    def _new_session(self) -> _Session:
        pkcs11 = self._pkcs11
        try:
            session = self._token.open(user_pin=self._pin)
        except pkcs11.exceptions.UserAlreadyLoggedIn:  # login is per application, not per session
            session = self._token.open()
        with self._lock:
            self._open += 1
        return _Session(session)

    @contextlib.contextmanager
    def session(self) -> Iterator[_Session]:
        if self._closed:
            raise HsmError("the HSM pool is closed (shutting down)")
        deadline = time.monotonic() + self._timeout
        try:
            borrowed = self._idle.get(timeout=self._timeout)
        except queue.Empty:
            raise PoolExhausted() from None
        if not _LIBRARY_CALLS.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self._idle.put(borrowed)
            raise PoolExhausted()
        healthy = True
        try:
            yield borrowed
        except self._pkcs11.exceptions.PKCS11Error as error:
            # A session-level failure: drop the session and open a fresh one for the next request.
            if isinstance(error, (self._pkcs11.exceptions.EncryptedDataInvalid,)):
                raise TagMismatch() from None
            healthy = False
            raise HsmError(f"PKCS#11 {type(error).__name__}") from None
        finally:
            try:
                if healthy:
                    self._idle.put(borrowed)
                else:
                    self._replace(borrowed)
            finally:
                _LIBRARY_CALLS.release()

    def _replace(self, broken: _Session) -> None:
        with contextlib.suppress(Exception):
            broken.session.close()
        with self._lock:
            self._open -= 1
        # If no new session opens, the pool shrinks; health then reports DEGRADED or fails.
        with contextlib.suppress(self._pkcs11.exceptions.PKCS11Error):
            self._idle.put(self._new_session())

    @property
    def open_sessions(self) -> int:
        return self._open

    def encrypt(self, label: str, plaintext: bytes, aad: bytes) -> Sealed:
        pkcs11 = self._pkcs11
        with self.session() as s:
            key = s.key(label)
            iv = s.session.generate_random(IV_BYTES * 8)
            out = key.encrypt(
                plaintext, mechanism=pkcs11.Mechanism.AES_GCM, mechanism_param=pkcs11.GCMParams(iv, aad, TAG_BYTES * 8)
            )
        return Sealed(ciphertext=out[:-TAG_BYTES], iv=iv, tag=out[-TAG_BYTES:])

    def decrypt(self, label: str, sealed: Sealed, aad: bytes) -> bytes:
        pkcs11 = self._pkcs11
        with self.session() as s:
            key = s.key(label)
            try:
                return key.decrypt(
                    sealed.ciphertext + sealed.tag,
                    mechanism=pkcs11.Mechanism.AES_GCM,
                    mechanism_param=pkcs11.GCMParams(sealed.iv, aad, TAG_BYTES * 8),
                )
            except (pkcs11.exceptions.EncryptedDataInvalid, pkcs11.exceptions.FunctionFailed):
                raise TagMismatch() from None
            except pkcs11.exceptions.GeneralError:
                # SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR. Tell it from a failing HSM by
                # asking the same session for random bytes: if that works, the input was at fault.
                s.session.generate_random(64)
                raise TagMismatch() from None

    def has_key(self, label: str) -> bool:
        try:
            with self.session() as s:
                s.key(label)
            return True
        except KeyMissing:
            return False

    def deep_check(self, health_label: str) -> None:
        """Encrypt and decrypt with the health key; raises HsmError if the token cannot do both."""
        probe = b"xks-health-probe"
        try:
            sealed = self.encrypt(health_label, probe, b"health")
            if self.decrypt(health_label, sealed, b"health") != probe:
                raise HsmError("health key round trip returned other bytes")
        except KeyMissing:
            raise HsmError(f"health key {health_label!r} is missing on the token") from None
        except TagMismatch:
            raise HsmError("health key round trip failed authentication") from None

    def close(self) -> None:
        """Close every idle session and log out (graceful shutdown)."""
        self._closed = True
        with _LIBRARY_CALLS:
            self._close_idle()

    def _close_idle(self) -> None:
        while True:
            try:
                s = self._idle.get_nowait()
            except queue.Empty:
                break
            with contextlib.suppress(Exception):
                s.session.close()
            with self._lock:
                self._open -= 1


def create_aes_key(*, library: Path, token_label: str, pin: str, label: str) -> bool:
    """Generate a non-extractable, sensitive AES-256 key in the token; False if the label already exists.

    Uses tier A's token handle, which generates with the same protective template
    (sensitive, non-extractable, encrypt/decrypt only) that tier A's wrapping keys get.
    """
    from kommunmoln.tier_a.errors import HsmError as TokenError
    from kommunmoln.tier_a.pkcs11_key import Pkcs11AesKey

    existing = Pkcs11AesKey(lib_path=str(library), token_label=token_label, pin=pin, key_label=label)
    try:
        existing.find_key()
        return False
    except TokenError:
        pass  # not there yet (find_key closed its session)
    finally:
        existing.close()
    fresh = Pkcs11AesKey(lib_path=str(library), token_label=token_label, pin=pin, key_label=label)
    try:
        fresh.generate_key()
        return True
    finally:
        fresh.close()
