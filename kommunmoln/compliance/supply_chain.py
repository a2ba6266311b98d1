"""Supply-chain evidence (cybersäkerhetslagen 2025:1506; NIS2 Art. 21(2)(d)): hash pins and an SBOM.

    python -m kommunmoln.compliance.supply_chain [--sbom build/sbom.json]

`requirements-lock.txt` is written by `make lock` (pip-compile --generate-hashes over
requirements-dev.txt, which includes requirements.txt): every distribution the project installs,
transitive ones included, pinned to one version with the SHA-256 of each file PyPI publishes for
it. `make sbom` writes a CycloneDX 1.6 SBOM (build/sbom.json) from that lock with cyclonedx-py.

`lock_gaps` fails closed: the lock must exist, pin every entry with `==` and at least one
`--hash=sha256:`, and agree with every `==` pin of the requirements files (a requirement the lock
lacks or pins to another version is a gap, so a bumped pin without `make lock` is caught).
`sbom_gaps` checks that an SBOM is CycloneDX and lists every locked distribution at its locked
version. `make install` still installs from the requirements files without --require-hashes (see
docs/compliance.md, "Supply chain"): the lock is evidence and an opt-in install path.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kommunmoln.config import REPO_ROOT

LOCK_FILE = REPO_ROOT / "requirements-lock.txt"
REQUIREMENT_FILES = (REPO_ROOT / "requirements.txt", REPO_ROOT / "requirements-dev.txt")
SBOM_FILE = REPO_ROOT / "build" / "sbom.json"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})\b")


def canonical(name: str) -> str:
    """PEP 503 normalised name: `Foo_Bar.baz` -> `foo-bar-baz`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class LockEntry:
    name: str  # canonical
    version: str
    hashes: list[str] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\r?\n", " ", text)
    lines = []
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            lines.append(line)
    return lines


def parse_lock(text: str) -> tuple[dict[str, LockEntry], list[str]]:
    """(entries by canonical name, problems): every requirement line must be `name==version --hash=...`."""
    entries: dict[str, LockEntry] = {}
    problems: list[str] = []
    for line in _logical_lines(text):
        if line.startswith("-"):
            problems.append(f"option line in the lock (only pinned, hashed requirements belong there): {line[:80]}")
            continue
        match = _PIN.match(line)
        if not match:
            problems.append(f"not pinned with ==: {line[:80]}")
            continue
        name, version = canonical(match.group(1)), match.group(3)
        hashes = _HASH.findall(line)
        if not hashes:
            problems.append(f"{name}=={version} carries no --hash=sha256")
        if name in entries:
            problems.append(f"{name} appears twice in the lock")
        entries[name] = LockEntry(name, version, hashes)
    if not entries:
        problems.append("the lock pins nothing")
    return entries, problems


def requirement_pins(path: Path, seen: set[Path] | None = None) -> dict[str, str]:
    """`==` pins of a requirements file and the files it includes with -r (canonical name -> version)."""
    seen = seen if seen is not None else set()
    path = path.resolve()
    if path in seen:
        return {}
    seen.add(path)
    pins: dict[str, str] = {}
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        if line.startswith(("-r ", "--requirement ")):
            pins.update(requirement_pins(path.parent / line.split(None, 1)[1], seen))
            continue
        match = _PIN.match(line)
        if match:
            pins[canonical(match.group(1))] = match.group(3)
    return pins


def lock_gaps(lock: Path = LOCK_FILE, requirement_files: tuple[Path, ...] = REQUIREMENT_FILES) -> list[str]:
    """What keeps the lock from being evidence of hash-pinned dependencies (empty: none)."""
    if not lock.is_file():
        return [f"{lock.name} is missing: run `make lock`"]
    entries, problems = parse_lock(lock.read_text(encoding="utf-8"))
    for requirements in requirement_files:
        for name, version in sorted(requirement_pins(requirements).items()):
            entry = entries.get(name)
            if entry is None:
                problems.append(f"{name}=={version} ({requirements.name}) is not in {lock.name}: run `make lock`")
            elif entry.version != version:
                problems.append(
                    f"{name}: {requirements.name} pins {version}, {lock.name} pins {entry.version}: run `make lock`"
                )
    return problems


def sbom_gaps(sbom: Path = SBOM_FILE, lock: Path = LOCK_FILE) -> list[str]:
    """What keeps the SBOM from describing the locked dependencies (empty: none)."""
    try:
        document = json.loads(sbom.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return [f"no readable SBOM at {sbom} ({type(error).__name__}): run `make sbom`"]
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        return [f"{sbom.name} is not a CycloneDX document"]
    components = {
        canonical(str(c.get("name", ""))): str(c.get("version", ""))
        for c in document.get("components", [])
        if isinstance(c, dict)
    }
    entries, problems = parse_lock(lock.read_text(encoding="utf-8")) if lock.is_file() else ({}, ["no lock"])
    for name, entry in sorted(entries.items()):
        if components.get(name) != entry.version:
            problems.append(f"{name}=={entry.version} is locked but the SBOM lists {components.get(name, 'nothing')}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the hash-pinned lock (and an SBOM) of the project.")
    parser.add_argument("--sbom", type=Path, help="also check this CycloneDX SBOM against the lock")
    args = parser.parse_args(argv)
    gaps = lock_gaps() + (sbom_gaps(args.sbom) if args.sbom else [])
    for gap in gaps:
        print(f"gap: {gap}")
    entries, _ = parse_lock(LOCK_FILE.read_text(encoding="utf-8")) if LOCK_FILE.is_file() else ({}, [])
    print(f"{len(entries)} locked distributions, {sum(len(e.hashes) for e in entries.values())} hashes; "
          f"{len(gaps)} gaps")  # fmt: skip
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())
