"""Append-only, hash-chained JSON Lines audit log of every XKS request the proxy answers.

Each line records the request metadata KMS sent (who, which KMS key and request, via which
service and VPC), the proxy's decision and timing, and `prev`: the SHA-256 of the previous line.
Plaintext, ciphertext, AAD and secrets are never written. The file is opened O_APPEND and each
line is written with one write() and flushed, so concurrent writers never interleave and a line
cannot be edited or removed without breaking the chain (`verify_chain`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

# Only these requestMetadata fields are copied into the log (spec: "Logging", Appendix B).
METADATA_FIELDS = (
    "awsPrincipalArn",
    "awsSourceVpc",
    "awsSourceVpce",
    "kmsKeyArn",
    "kmsOperation",
    "kmsRequestId",
    "kmsViaService",
)
GENESIS = "0" * 64


def _last_hash(path: Path) -> str:
    if not path.exists() or path.stat().st_size == 0:
        return GENESIS
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 65536))
        lines = handle.read().splitlines()
    return hashlib.sha256(lines[-1]).hexdigest() if lines else GENESIS


class AuditLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._prev = _last_hash(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, record: dict) -> None:
        with self._lock:
            line = json.dumps({**record, "prev": self._prev}, separators=(",", ":"), sort_keys=True).encode()
            os.write(self._fd, line + b"\n")
            self._prev = hashlib.sha256(line).hexdigest()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


def metadata_fields(metadata: object) -> dict[str, str]:
    """The loggable requestMetadata fields, strings only, each cut to 2048 characters."""
    if not isinstance(metadata, dict):
        return {}
    return {k: metadata[k][:2048] for k in METADATA_FIELDS if isinstance(metadata.get(k), str)}


def verify_chain(path: Path) -> tuple[int, int | None]:
    """(number of lines, 1-based number of the first line whose `prev` breaks the chain, or None)."""
    prev = GENESIS
    count = 0
    with path.open("rb") as handle:
        for count, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\n")
            try:
                claimed = json.loads(line)["prev"]
            except (ValueError, KeyError, TypeError):
                return count, count
            if claimed != prev:
                return count, count
            prev = hashlib.sha256(line).hexdigest()
    return count, None
