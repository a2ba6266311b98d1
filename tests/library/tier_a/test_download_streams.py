"""A download keeps at most two GETs per usable core in flight besides the first (ranged.streams_for_cores).

Reading TLS costs CPU per record in Python, so streams beyond what the cores can decrypt only
add GIL hand-offs (measurements in the function's docstring and docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os

import pytest

from kommunmoln.tier_a import ranged
from kommunmoln.tier_a.transfer import TransferSettings, download_decrypted


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("cores", "wanted", "expected"), [(1, 8, 3), (2, 8, 5), (4, 8, 8), (2, 3, 3)])
def test_download_streams_are_capped_by_the_usable_cores(monkeypatch, tmp_path, cores, wanted, expected) -> None:
    # GIVEN `cores` usable cores and a client configured for `wanted` transfers in flight
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)

    class Opening:
        length = 0

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

    monkeypatch.setattr(ranged.ObjectRange, "opening", classmethod(lambda cls, *args, **kwargs: Opening()))
    seen: dict[str, int] = {}

    def parallel_body(stream, *, concurrency, segment_frames, on_bytes):
        seen["concurrency"] = concurrency
        raise _Stop

    monkeypatch.setattr(ranged, "parallel_body", parallel_body)
    # WHEN a download starts
    with pytest.raises(_Stop):
        download_decrypted(object(), bucket="b", key="k", dest=tmp_path / "out", key_provider=None,
                           settings=TransferSettings(concurrency=wanted))  # fmt: skip
    # THEN it runs at most two streams per core besides the first, and never more than configured
    assert ranged.streams_for_cores() == 2 * cores + 1
    assert seen["concurrency"] == expected
    # AND nothing was written
    assert not (tmp_path / "out").exists()
