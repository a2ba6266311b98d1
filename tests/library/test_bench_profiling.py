"""bench/profiling.py summarizes py-spy's collapsed stacks (fake samples; nothing is profiled)."""

from __future__ import annotations

from bench.profiling import STARTUP, parse_pyspy_raw

RAW = "\n".join(
    [
        "thread (1): MainThread;<module> (x.py:1);_find_and_load (<frozen importlib._bootstrap>:1) 30",
        "thread (1): MainThread;upload (kommunmoln/tier_a/transfer.py:9);_Counting.readinto (kommunmoln/tier_a/transfer.py:218) 20",
        "thread (2): kommunmoln-range_0;_decrypt_run (kommunmoln/tier_a/ranged.py:171) 50",
        "thread (2): kommunmoln-range_0;run (a.py:1);SSLSocket.read (ssl.py:1100) 25",
        "thread (1) 5",
    ]
)


def test_stages_threads_and_own_lines_are_counted_and_start_up_and_exit_left_out():
    # GIVEN samples in imports, in file reads, in pwrite, in TLS reads, and with no Python frame
    summary = parse_pyspy_raw(RAW)
    # WHEN summarized  THEN imports (30) and frameless samples (5) are left out of the total
    assert summary.startup == 35 and summary.total == 95
    assert summary.stages["writing the file (pwrite into the page cache)"] == 50
    assert (
        summary.stages["reading the file, and its SHA-256 for the manifest"] == 20
        and summary.stages["HTTP send/receive (sockets, TLS)"] == 25
    )
    assert STARTUP not in summary.stages
    # AND threads are named without their pool index, and this project's own lines keep their line number
    assert summary.threads["kommunmoln-range"] == 75
    assert summary.own["_decrypt_run (kommunmoln/tier_a/ranged.py:171)"] == 50
    assert summary.own["SSLSocket.read (ssl.py)"] == 25
