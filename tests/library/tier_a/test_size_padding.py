"""Padmé size padding (`--pad`): lengths, overhead bounds, streaming round trip, refusals."""

from __future__ import annotations

import io
import os

import pytest

from kommunmoln.tier_a.errors import DecryptionError
from kommunmoln.tier_a.size_padding import PaddedSource, Unpadder, overhead, padded_length, padme


def test_padme_lengths_follow_the_paper() -> None:
    # GIVEN lengths from the PURBs paper's construction: keep the top floor(log2 E) + 1 bits of L
    # THEN small lengths stay, and 1025 (E=10, S=4: the low 6 bits cleared) rounds up to 1088
    assert [padme(n) for n in (0, 1, 2, 3, 8, 9)] == [0, 1, 2, 3, 8, 10]
    assert padme(1025) == 1088 and padme(1088) == 1088 and padme(2**20) == 2**20


@pytest.mark.parametrize(("low", "high", "bound"), [(256, 65536, 0.0625), (65536, 2**22, 0.03125)])
def test_overhead_stays_within_the_stated_bounds(low: int, high: int, bound: float) -> None:
    # THEN beyond the 1-byte marker, the padding never exceeds what the help text states
    assert max((padded_length(n) - n - 1) / n for n in range(low, high, 7)) <= bound
    assert overhead(0) == 0.0


@pytest.mark.parametrize("size", [0, 1, 15, 1000, 4096, 70_001])
def test_padding_round_trips_in_any_chunking(size: int) -> None:
    # GIVEN content that itself ends like padding (0x80 then zeros)
    content = os.urandom(size)[:-2] + b"\x80\x00" if size >= 2 else os.urandom(size)
    padded = PaddedSource(io.BytesIO(content)).read()
    assert len(padded) == padded_length(len(content))
    # WHEN fed to the unpadder in odd chunks  THEN exactly the content comes out
    sink = io.BytesIO()
    unpadder = Unpadder(sink)
    for start in range(0, len(padded), 333):
        unpadder.write(padded[start : start + 333])
    assert unpadder.finish() == len(content) and sink.getvalue() == content


def test_missing_or_wrong_padding_is_refused() -> None:
    # GIVEN a message claiming padding whose plaintext has none, or padding of the wrong length
    for plaintext in (b"no marker here", b"abc" + b"\x80" + bytes(40)):
        unpadder = Unpadder(io.BytesIO())
        unpadder.write(plaintext)
        # THEN it is refused (no output is kept by the caller's atomic file)
        with pytest.raises(DecryptionError):
            unpadder.finish()
