"""A download keeps at most two GETs per usable core in flight besides the first (ranged.streams_for_cores),
unless the caller sets `TransferSettings.download_streams` (`kommunmoln download --download-streams N`).

Reading TLS costs CPU per record in Python, so streams beyond what the cores can decrypt only
add GIL hand-offs (measurements in the function's docstring and docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os

import pytest

from kommunmoln.tier_a import ranged
from kommunmoln.tier_a.cli import build_parser
from kommunmoln.tier_a.errors import UsageError
from kommunmoln.tier_a.transfer import TransferSettings, download_decrypted


class _Stop(Exception):
    pass


@pytest.mark.parametrize(
    ("cores", "wanted", "streams", "expected"),
    [(1, 8, None, 3), (2, 8, None, 5), (4, 8, None, 8), (2, 3, None, 3), (2, 8, 1, 1), (2, 8, 2, 2), (2, 3, 12, 12)],
)  # fmt: skip
def test_download_streams_are_capped_by_the_usable_cores(monkeypatch, tmp_path, cores, wanted, streams,
                                                         expected) -> None:  # fmt: skip
    # GIVEN `cores` usable cores and a client configured for `wanted` transfers in flight
    # (and, where `streams` is set, that many download streams asked for explicitly)
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
                           settings=TransferSettings(concurrency=wanted, download_streams=streams))  # fmt: skip
    # THEN it runs at most two streams per core besides the first, and never more than configured;
    # an explicit number of download streams is taken as it is
    assert ranged.streams_for_cores() == 2 * cores + 1
    assert seen["concurrency"] == expected
    # AND nothing was written
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("streams", [0, -1, 65])
def test_a_number_of_download_streams_outside_1_to_64_is_refused(streams) -> None:
    # GIVEN a number of download streams outside 1-64  WHEN the settings are made
    # THEN a usage error says which range is allowed and what was given
    with pytest.raises(UsageError, match=rf"download streams must be between 1 and 64, not {streams}"):
        TransferSettings(download_streams=streams)


def test_the_download_command_takes_the_number_of_streams() -> None:
    # GIVEN the download command with and without --download-streams
    parse = build_parser().parse_args
    # WHEN parsed  THEN the number is passed on, and leaving it out keeps the default (None: core-capped)
    assert parse(["download", "s3://b/k", "out", "--download-streams", "3"]).download_streams == 3
    assert parse(["download", "s3://b/k", "out"]).download_streams is None


@pytest.mark.parametrize("text", ["0", "65", "two", "1.5"])
def test_the_download_command_refuses_a_bad_number_of_streams(text, capsys) -> None:
    # GIVEN --download-streams that is not a whole number from 1 to 64
    # WHEN parsed  THEN the command stops with a usage error naming the option and the range
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["download", "s3://b/k", "out", "--download-streams", text])
    assert stopped.value.code != 0
    err = capsys.readouterr().err
    assert "--download-streams" in err and "between 1 and 64" in err
