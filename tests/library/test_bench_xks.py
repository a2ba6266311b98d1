"""The XKS bench's bookkeeping, on made-up samples (no timings are measured here).

A run in which requests fail must never be published: the committed docs/BENCHMARKS-xks.md once showed
every request as an error (the proxy had crashed) and still named a table of rates. The rules checked
here: a rung is sustained only at >= 98 % of the offered rate with p99 < 35 ms for both operations and
nothing failed or throttled (KMS times a proxy request out after 250 ms and recommends round trips of at
most 35 ms: aws/aws-kms-xksproxy-api-spec); more than 1 % failed requests in any rung makes `main` exit
non-zero and write no doc.
"""

from __future__ import annotations

import pytest

from bench import xks


def _samples(ok: int, *, ms: float = 2.0, failed: int = 0, throttled: int = 0, late: int = 0) -> list:
    good = [("encrypt" if i % 2 == 0 else "decrypt", ms, 200) for i in range(ok)]
    return good + [("encrypt", 1.0, 0)] * failed + [("decrypt", 1.0, 429)] * throttled + [("pending", 3e3, -1)] * late


def test_a_rung_at_the_offered_rate_under_35_ms_is_sustained():
    # GIVEN 1,000 answered requests in 10 s at 100 req/s offered, all at 2 ms
    row = xks.summarise(100, 10.0, _samples(1000))
    # THEN it is sustained, with both operations' percentiles
    assert row["sustained"] and row["achieved"] == 100.0
    assert row["encrypt"] == {"p50": 2.0, "p99": 2.0} and row["decrypt"] == {"p50": 2.0, "p99": 2.0}


@pytest.mark.parametrize(
    ("samples", "why"),
    [
        (_samples(970), "achieved 97 % of offered"),
        (_samples(1000, ms=35.0), "p99 not under 35 ms"),
        (_samples(999, failed=1), "one request failed"),
        (_samples(999, throttled=1), "one request throttled"),
        (_samples(999, late=1), "one request not answered by the end of the drain"),
    ],
)
def test_a_rung_is_not_sustained_when_any_rule_fails(samples, why):
    # GIVEN a rung at 100 req/s for 10 s that breaks one rule; WHEN summarised; THEN it is not sustained
    assert not xks.summarise(100, 10.0, samples)["sustained"], why


def test_highest_sustained_is_the_highest_offered_rate_that_passes():
    rows = [xks.summarise(100, 10.0, _samples(1000)), xks.summarise(200, 10.0, _samples(2000)),
            xks.summarise(400, 10.0, _samples(4000, ms=80.0))]  # fmt: skip
    assert xks.highest_sustained(rows)["offered"] == 200
    assert xks.highest_sustained(rows[2:]) is None


def test_throttling_and_late_answers_are_overload_not_a_broken_run():
    # GIVEN a rung where a third of the requests were throttled (429) and a third not answered in time
    rows = [xks.summarise(1800, 10.0, _samples(6000, throttled=6000, late=6000))]
    # WHEN checked; THEN the run is not broken (it is just not sustained)
    xks.check_not_broken(rows)
    assert not rows[0]["sustained"] and rows[0]["late"] == 6000 and rows[0]["over_kms_timeout"] == 6000


@pytest.mark.parametrize(("ok", "failed"), [(0, 1000), (980, 20), (0, 0)])
def test_more_than_one_percent_failed_or_no_requests_is_a_broken_run(ok, failed):
    # GIVEN a rung with 2 % or all failed, or with no requests at all
    rows = [xks.summarise(100, 10.0, _samples(ok, failed=failed))]
    # WHEN checked; THEN the run is broken
    with pytest.raises(xks.BrokenRun):
        xks.check_not_broken(rows)


def test_one_percent_failed_is_still_published_but_not_sustained():
    rows = [xks.summarise(100, 10.0, _samples(990, failed=10))]
    xks.check_not_broken(rows)
    assert not rows[0]["sustained"]


def test_main_exits_non_zero_and_writes_no_doc_when_the_run_is_broken(tmp_path, monkeypatch):
    # GIVEN a measurement whose only rung failed every request (the proxy refused every connection)
    def broken(*_args, **_kwargs):
        xks.check_not_broken([{**xks.summarise(100, 10.0, _samples(0, failed=500)), "mode": "http"}])

    monkeypatch.setattr(xks, "measure", broken)
    monkeypatch.setattr(xks.local, "available", lambda: True)
    out = tmp_path / "BENCHMARKS-xks.md"
    # WHEN the bench runs; THEN it exits 2 and writes neither the doc nor its JSON
    assert xks.main(["--quick", "--out", str(out)]) == 2
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_main_writes_the_doc_with_the_sustained_rate(tmp_path, monkeypatch):
    # GIVEN a measurement with one sustained and one overloaded rung
    rows = [{**xks.summarise(r, 10.0, _samples(n, ms=ms)), "mode": "http", "load_average": 1.5,
             "client_cpu_share": 0.1, "proxy_cpu_share": 0.2} for r, n, ms in ((100, 1000, 2.0), (800, 8000, 90.0))]  # fmt: skip
    result = {"date": "d", "machine": "m", "seconds_per_rate": 10.0, "session_pool_size": 4, "client_processes": 2,
              "rows": rows, "sustained": {"http": xks.highest_sustained(rows)}}  # fmt: skip
    monkeypatch.setattr(xks, "measure", lambda *_a, **_k: result)
    monkeypatch.setattr(xks.local, "available", lambda: True)
    out = tmp_path / "BENCHMARKS-xks.md"
    # WHEN the bench runs; THEN it exits 0 and the doc names 100 req/s as sustained, with its load average
    assert xks.main(["--quick", "--out", str(out)]) == 0
    assert "- http: **100 requests/s** (load average 1.5)" in out.read_text()
