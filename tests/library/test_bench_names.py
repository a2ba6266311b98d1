"""bench/names.py measures real mappings (figures only; no timing is asserted)."""

from __future__ import annotations

from bench import names as name_bench


def test_mapping_bench_round_trips_and_reports_sizes() -> None:
    # WHEN the mapping bench runs on a few names  THEN it decrypted every name back (asserted inside)
    result = name_bench.bench_mapping(200)
    assert result["names"] == 200
    # AND the stored keys are longer than the plaintext ones (the overhead the report states)
    assert result["mean_stored_key_bytes"] > result["mean_plain_key_bytes"]


def test_summary_states_requests_and_content_bytes() -> None:
    mapping = name_bench.bench_mapping(50)
    rerun = {"files": 10, "ours_requests": 3, "ours_requests_per_file": 0.3, "ours_content_bytes_read": 0,
             "peer_requests": 1, "peer_requests_per_file": 0.1, "ours_seconds": 0.1, "peer_seconds": 0.1}  # fmt: skip
    text = name_bench.summary(mapping, rerun)
    assert "3 S3 requests" in text and "0 content bytes read" in text
