"""The kill switch: a small state file, re-read whenever it changes, checked on every request.

`python -m usecases.external_key_store kill --config FILE --all` (or `--key ID`) writes the file
atomically; the running proxy notices the change on its next request (it stats the file each
time) and refuses. Fail closed: a state file that exists but cannot be read or parsed refuses
every request until it is fixed.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KillState:
    all_keys: bool = False
    keys: frozenset[str] = frozenset()
    broken: bool = False

    def refuses(self, external_key_id: str | None) -> bool:
        return self.broken or self.all_keys or (external_key_id is not None and external_key_id in self.keys)


def read_state(path: Path) -> KillState:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return KillState()
    except (OSError, ValueError):
        return KillState(broken=True)
    if not isinstance(data, dict) or not isinstance(data.get("all", False), bool):
        return KillState(broken=True)
    keys = data.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return KillState(broken=True)
    return KillState(all_keys=data.get("all", False), keys=frozenset(keys))


def write_state(path: Path, state: KillState) -> None:
    """Replace the state file atomically (write a temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"all": state.all_keys, "keys": sorted(state.keys)}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".killswitch-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class KillSwitch:
    """Caches the parsed state and re-reads the file when its inode, size or mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._state = KillState()

    def state(self) -> KillState:
        try:
            st = os.stat(self.path)
            stamp: tuple | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        except OSError:
            return KillState(broken=True)
        with self._lock:
            if stamp != self._stamp or self._stamp is None:
                self._state = read_state(self.path)
                self._stamp = stamp
            return self._state
