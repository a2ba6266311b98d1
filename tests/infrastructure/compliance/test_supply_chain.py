"""Supply-chain evidence: the hash-pinned lock agrees with the requirements, and an SBOM lists the lock."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kommunmoln.compliance import supply_chain
from kommunmoln.config import REPO_ROOT

_HASH = "--hash=sha256:" + "ab" * 32


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_project_lock_pins_every_requirement_with_hashes() -> None:
    # GIVEN the repository's requirements files and requirements-lock.txt
    # WHEN the lock is checked  THEN there is no gap: every pin is locked at its version, every entry hashed
    assert supply_chain.lock_gaps() == []
    entries, problems = supply_chain.parse_lock(supply_chain.LOCK_FILE.read_text())
    assert problems == [] and {"aws-cdk-lib", "cryptography", "moto", "pytest"} <= set(entries)
    assert all(entry.hashes for entry in entries.values())


def test_lock_gaps_flag_a_missing_hash_an_unhashed_option_and_version_drift(tmp_path: Path) -> None:
    # GIVEN requirements pinning a==1.0, B_c==2.0 (via -r) and d==3; a lock with a hash-less entry and a stale version
    base = _write(tmp_path / "requirements.txt", "a==1.0\nB_c[extra]==2.0 ; python_version >= '3'\n")
    dev = _write(tmp_path / "requirements-dev.txt", "-r requirements.txt\nd==3  # tool\n")
    lock = _write(
        tmp_path / "lock.txt", f"--find-links /somewhere\na==1.0 \\\n    {_HASH}\nb-c==2.1 \\\n    {_HASH}\nd==3\n"
    )
    # WHEN the lock is checked
    gaps = supply_chain.lock_gaps(lock, (base, dev))
    # THEN each defect is named
    assert any("option line" in g for g in gaps)
    assert any("d==3 carries no --hash" in g for g in gaps)
    assert any("b-c: requirements.txt pins 2.0" in g and "2.1" in g for g in gaps)
    # AND a correct lock has no gap
    good = _write(tmp_path / "good.txt", f"a==1.0 {_HASH}\nb-c==2.0 {_HASH}\nd==3 {_HASH}\n")
    assert supply_chain.lock_gaps(good, (base, dev)) == []


def test_missing_lock_and_unpinned_entries_are_gaps(tmp_path: Path) -> None:
    req = _write(tmp_path / "r.txt", "a==1.0\n")
    assert "missing" in supply_chain.lock_gaps(tmp_path / "absent.txt", (req,))[0]
    loose = _write(tmp_path / "lock.txt", f"a>=1.0 {_HASH}\n")
    gaps = supply_chain.lock_gaps(loose, (req,))
    assert any("not pinned with ==" in g for g in gaps) and any("not in lock.txt" in g for g in gaps)


def _sbom(components: list[dict]) -> dict:
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": components}


def test_sbom_gaps_flag_a_component_missing_or_at_another_version(tmp_path: Path) -> None:
    # GIVEN a lock of two distributions and SBOMs that list both, one at another version, or are not CycloneDX
    lock = _write(tmp_path / "lock.txt", f"a==1.0 {_HASH}\nb_c==2.0 {_HASH}\n")
    ok = _write(
        tmp_path / "ok.json", json.dumps(_sbom([{"name": "a", "version": "1.0"}, {"name": "B.c", "version": "2.0"}]))
    )
    stale = _write(tmp_path / "stale.json", json.dumps(_sbom([{"name": "a", "version": "0.9"}])))
    spdx = _write(tmp_path / "spdx.json", json.dumps({"spdxVersion": "SPDX-2.3"}))
    # THEN only the complete one has no gap
    assert supply_chain.sbom_gaps(ok, lock) == []
    gaps = supply_chain.sbom_gaps(stale, lock)
    assert any("a==1.0" in g and "0.9" in g for g in gaps) and any("b-c==2.0" in g and "nothing" in g for g in gaps)
    assert "not a CycloneDX" in supply_chain.sbom_gaps(spdx, lock)[0]
    assert "make sbom" in supply_chain.sbom_gaps(tmp_path / "absent.json", lock)[0]


_CYCLONEDX = REPO_ROOT / "build" / "tools-venv" / "bin" / "cyclonedx-py"


@pytest.mark.skipif(not _CYCLONEDX.exists(), reason="`make sbom` has not installed the tools venv (build/tools-venv)")
def test_cyclonedx_sbom_of_the_lock_lists_every_locked_distribution(tmp_path: Path) -> None:
    # GIVEN the pinned cyclonedx-py of requirements-tools.txt  WHEN it writes the SBOM of the lock (as `make sbom`)
    out = tmp_path / "sbom.json"
    subprocess.run(
        [str(_CYCLONEDX), "requirements", "--pyproject", "pyproject.toml", "--of", "JSON", "-o", str(out),
         str(supply_chain.LOCK_FILE)],
        cwd=REPO_ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    # THEN it is CycloneDX and lists every locked distribution at its locked version, with its hashes
    assert supply_chain.sbom_gaps(out) == []
    document = json.loads(out.read_text())
    assert document["metadata"]["component"]["name"] == "kommunmoln"
    hashed = [c for c in document["components"] if any(r.get("hashes") for r in c.get("externalReferences", []))]
    assert len(hashed) == len(document["components"])
    assert document["specVersion"] == "1.6"
