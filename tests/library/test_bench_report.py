"""The benchmark report renders ratios and targets from fake numbers (no benchmark is run)."""

from __future__ import annotations

from bench.peers import parse_openssl_speed
from bench.report import (
    AES_REFERENCE,
    DOWNLOAD,
    ENCRYPT,
    ENCRYPT_MEMORY,
    FAST_HTTP,
    MEMORY_UPLOAD,
    MIB,
    README_BEGIN,
    README_END,
    SWEEP,
    UPLOAD,
    BenchResults,
    Measurement,
    ProfileSummary,
    ValidatorResult,
    chart_bars,
    check_fast_targets,
    check_targets,
    openssl_ratio,
    ratio,
    render_markdown,
    update_readme,
)

GIB = 1024 * MIB


def _results() -> BenchResults:
    results = BenchResults(date="2026-01-01", commands=["make bench"], machine={"cores": "2"}, runs=3)
    results.measurements += [
        Measurement(UPLOAD, "boto3", 256 * MIB, seconds=[10.0, 9.0, 11.0], max_rss_kib=[80_000] * 3),
        Measurement(UPLOAD, "kommunmoln", 256 * MIB, seconds=[10.0, 12.0, 11.0], max_rss_kib=[120_000] * 3),
        Measurement(DOWNLOAD, "boto3", 256 * MIB, seconds=[5.0, 5.0, 5.0]),
        Measurement(DOWNLOAD, "kommunmoln", 256 * MIB, seconds=[4.0, 5.0, 6.0]),
        Measurement(ENCRYPT, "kommunmoln", 256 * MIB, seconds=[1.0, 1.0, 1.0]),
        Measurement(MEMORY_UPLOAD, "kommunmoln", GIB, seconds=[40.0], max_rss_kib=[150_000]),
        Measurement(MEMORY_UPLOAD, "kommunmoln", 4 * GIB, seconds=[160.0], max_rss_kib=[250_000]),
    ]
    results.openssl_bytes_per_s = [1024 * MIB, 2048 * MIB, 3072 * MIB]
    results.validator = [ValidatorResult(MIB, 65536, (0.01, 0.02, 0.03), "validated")]
    results.synthesis_seconds = [40.0, 42.0, 41.0]
    return results


def test_ratio_is_baseline_median_time_over_peer_median_time():
    # GIVEN boto3 with a median of 10 s and our client with a median of 11 s for the same size
    results = _results()
    # WHEN the upload ratio is computed
    value = ratio(results, UPLOAD, "kommunmoln", 256 * MIB)
    # THEN it is 10/11 (throughput relative to the baseline), and missing peers give None
    assert value is not None and abs(value - 10 / 11) < 1e-9
    assert ratio(results, UPLOAD, "rclone-crypt", 256 * MIB) is None


def test_encrypt_ratio_uses_the_median_openssl_figure():
    # GIVEN 256 MiB encrypted in 1 s and OpenSSL figures whose median is 2048 MiB/s
    results = _results()
    # WHEN the ratio to OpenSSL is computed
    value = openssl_ratio(results, "kommunmoln", 256 * MIB)
    # THEN it is 256/2048
    assert value is not None and abs(value - 0.125) < 1e-9


def test_targets_pass_and_fail_from_the_numbers():
    # GIVEN an upload ratio of 0.91, a download ratio of 1.0 and a memory peak that grows past 200 MB
    results = _results()
    # WHEN the targets are checked
    checks = {c.target.split(" (")[0]: c for c in check_targets(results)}
    # THEN upload and download pass, upload memory fails, and unmeasured download memory says so
    assert checks["encrypted upload >= 0.9 x plain boto3"].passed is True
    assert checks["encrypted upload >= 0.9 x plain boto3"].measured == "0.91"
    assert checks["encrypted download >= 0.9 x plain boto3"].passed is True
    memory = [c for c in check_targets(results) if c.target.startswith("upload peak RSS")]
    assert memory[0].passed is False and "4 GiB: 256 MB" in memory[0].measured
    assert next(c for c in check_targets(results) if c.target.startswith("memory-download")).passed is None


def test_markdown_shows_medians_ratios_and_verdicts():
    # GIVEN fake results
    results = _results()
    # WHEN the page is rendered
    page = render_markdown(results)
    # THEN it has the commands, the median row with its ratio, the OpenSSL figure and the verdicts
    assert "make bench" in page
    assert (
        "| 256 MiB | kommunmoln tier A (ESDK, this project) | 11.00 | 23.3 | 0.91 | – | 123 | 10.00 12.00 11.00 |"
        in page
    )
    assert "**2048 MiB/s**" in page
    assert "**FAIL**" in page and "**pass**" in page
    assert "| 1 MiB | 65536 | 20.0 | validated |" in page
    assert "median **41.0 s**" in page


def _fast_results() -> BenchResults:
    results = _results()
    gib = GIB
    results.measurements += [
        Measurement(UPLOAD, "boto3", gib, seconds=[2.0, 2.0, 2.0], cpu_seconds=[1.0, 1.2, 1.1], endpoint=FAST_HTTP),
        Measurement(
            UPLOAD, "kommunmoln", gib, seconds=[2.0, 2.1, 2.2], cpu_seconds=[1.6, 1.7, 1.5], endpoint=FAST_HTTP
        ),
        Measurement(DOWNLOAD, "boto3", gib, seconds=[2.0], endpoint=FAST_HTTP),
        Measurement(DOWNLOAD, "boto3-get", gib, seconds=[1.5], endpoint=FAST_HTTP),
        Measurement(DOWNLOAD, "kommunmoln", gib, seconds=[1.6], endpoint=FAST_HTTP),
        Measurement(ENCRYPT_MEMORY, AES_REFERENCE, gib, seconds=[0.1]),
        Measurement(ENCRYPT_MEMORY, "kommunmoln", gib, seconds=[0.5]),
    ]
    return results


def test_fast_endpoint_targets_use_same_endpoint_peers_and_cpu_per_gib():
    # GIVEN on the fast HTTP endpoint: upload 2.0 s vs 2.1 s (median), CPU 1.1 vs 1.6 s per GiB,
    # download 1.6 s vs download_file 2.0 s and get_object 1.5 s; encrypt-only 0.5 s vs AES 0.1 s
    results = _fast_results()
    # WHEN issue 15's targets are checked
    checks = {c.target: c for c in check_fast_targets(results)}
    # THEN each compares like with like and says pass or fail
    upload = checks["HTTP upload >= 0.95 x boto3 upload_file (1 GiB)"]
    assert upload.measured == "0.95" and upload.passed is True
    cpu = next(c for t, c in checks.items() if t.startswith("HTTP upload CPU-s/GiB"))
    assert cpu.measured == "0.50" and cpu.passed is False
    assert checks["HTTP download >= 1.0 x boto3 download_file (1 GiB)"].passed is True
    assert checks["HTTP download >= 0.9 x one get_object stream (1 GiB)"].measured == "0.94"
    encrypt = checks["encrypt-only in memory >= 0.25 x cryptography AES-256-GCM (1 GiB)"]
    assert encrypt.measured == "0.20" and encrypt.passed is False
    # AND the moto targets do not see the fast endpoint's 1 GiB figures
    assert not any("1 GiB" in c.target for c in check_targets(results) if "peak RSS" not in c.target)


def test_markdown_has_one_table_per_endpoint_with_cpu_per_gib():
    # GIVEN results on moto and the fast HTTP endpoint
    page = render_markdown(_fast_results())
    # THEN both endpoints have their own upload table and the CPU-s/GiB column is filled
    assert "## Upload (encrypt + upload): fast local endpoint (bench/fast_s3.py), HTTP" in page
    assert "## Upload (encrypt + upload): moto server" in page
    assert "| 1 GiB | kommunmoln tier A (ESDK, this project) | 2.10 | 487.6 | 0.95 | 1.60 |" in page
    assert "## Targets on the fast endpoint (issue 15)" in page


def test_sweep_rows_name_the_download_streams_and_their_ratio_to_one_get_object_stream():
    # GIVEN a sweep with our download at 1 and 5 streams and the single-stream reference, over HTTPS
    https = "fast-https"
    results = _results()
    results.measurements += [
        Measurement(SWEEP, "download", GIB, variant="1 download stream", seconds=[2.0] * 3, endpoint=https,
                    cpu_seconds=[1.9] * 3, load=[2.0, 2.5, 3.0]),
        Measurement(SWEEP, "download", GIB, variant="5 download streams", seconds=[1.6] * 3, endpoint=https),
        Measurement(SWEEP, "download", GIB, variant="get_object, one stream (reference)", seconds=[1.2] * 3,
                    endpoint=https),
    ]  # fmt: skip
    # WHEN rendered
    page = render_markdown(results)
    # THEN every row names its number of streams and endpoint, with the reference's time over its own
    assert "| download | 1 download stream | fast-https | 1 GiB | 2.00 | 512.0 | 1.90 | 0.60 | – | 2.0-3.0 |" in page
    assert "| download | 5 download streams | fast-https | 1 GiB | 1.60 | 640.0 | – | 0.75 |" in page
    assert "| download | get_object, one stream (reference) | fast-https | 1 GiB | 1.20 | 853.3 | – | 1.00 |" in page


def test_chart_bars_leave_out_the_baseline():
    # GIVEN fake results
    # WHEN the chart's bars are listed
    bars = chart_bars(_results())
    # THEN the baseline has no bar of its own and encrypt-only compares against OpenSSL
    assert all(peer != "boto3" for _, peer, _ in bars)
    assert any(group.startswith("encrypt only") and abs(value - 0.125) < 1e-9 for group, _, value in bars)


def test_openssl_speed_output_is_parsed_from_the_16384_byte_column():
    # GIVEN the table printed by `openssl speed -evp aes-256-gcm`
    output = (
        "The 'numbers' are in 1000s of bytes per second processed.\n"
        "type             16 bytes     64 bytes    256 bytes   1024 bytes   8192 bytes  16384 bytes\n"
        "AES-256-GCM      19763.05k    90552.06k   449342.01k   837928.70k  2034541.71k  2247236.27k\n"
    )
    # WHEN it is parsed
    # THEN the 16384-byte column is returned in bytes per second
    assert parse_openssl_speed(output) == 2247236.27 * 1000


def test_openssl_output_without_the_row_is_refused():
    # GIVEN output without an AES-256-GCM row
    # WHEN it is parsed THEN a ValueError names what is missing
    try:
        parse_openssl_speed("type 16384 bytes\n")
    except ValueError as error:
        assert "aes-256-gcm" in str(error)
    else:
        raise AssertionError("expected ValueError")


def test_load_average_is_shown_next_to_every_figure_and_target():
    # GIVEN fast-endpoint uploads whose runs ended at load averages 2.0-3.5, and a download profile
    results = _results()
    results.measurements += [
        Measurement(UPLOAD, "boto3", GIB, seconds=[2.0] * 3, endpoint=FAST_HTTP, load=[2.0, 2.5, 3.0]),
        Measurement(UPLOAD, "kommunmoln", GIB, seconds=[2.1] * 3, endpoint=FAST_HTTP, load=[3.5, 2.2, 2.4]),
    ]
    results.profiles.append(
        ProfileSummary("py-spy", 256 * MIB, 3.0, (("f", 0.5),), (("MainThread", 1.0),), (("HTTP", 0.7),),
                       operation="download+decrypt, fast-http")
    )  # fmt: skip
    # WHEN rendered
    text = render_markdown(results)
    upload = next(c for c in check_fast_targets(results) if "HTTP upload >=" in c.target and "1 GiB" in c.target)
    # THEN the target names the load range of both peers' runs, the table lists each run's load,
    # and the download profile has its own section
    assert upload.measured == "0.95 (load 2.0-3.5)" and upload.passed is True
    assert "| 3.5 2.2 2.4 |" in text and "load avg per run" in text
    assert "## Profile: our download+decrypt, fast-http of 256 MiB" in text


def test_readme_block_is_rewritten_from_the_same_results_with_failed_and_met_targets(tmp_path):
    # GIVEN a README with a stale targets block between the markers, and text around it
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold figures\n{README_END}\noutro\n")
    results = _fast_results()
    results.machine.update({"date": "2026-01-01 10:00 UTC", "load average at start": "1.5 1.0 0.5"})
    # WHEN it is updated
    assert update_readme(readme, results) is True
    text = readme.read_text()
    # THEN the block holds this run's targets, met and not met, with their figures, and nothing else changed
    assert text.startswith(f"intro\n{README_BEGIN}\n") and text.endswith(f"{README_END}\noutro\n")
    assert "old figures" not in text and "Run of 2026-01-01 10:00 UTC" in text and "load average 1.5" in text
    assert "| HTTP upload >= 0.95 x boto3 upload_file (1 GiB) | 0.95 | **pass** |" in text
    assert "| HTTP upload CPU-s/GiB <= boto3's + 0.3 (1 GiB; measured: the excess) | 0.50 | **FAIL** |" in text


def test_readme_without_markers_is_left_alone(tmp_path):
    # GIVEN a README without the markers
    readme = tmp_path / "README.md"
    readme.write_text("no block here\n")
    # WHEN an update is attempted THEN it reports so and the file is unchanged
    assert update_readme(readme, _fast_results()) is False
    assert readme.read_text() == "no block here\n"
