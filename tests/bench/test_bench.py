"""The benchmark suite's own logic: reading wrk, and the ratios and verdicts it reports."""

from __future__ import annotations

import pytest

from bench.load import parse_wrk
from bench.report import markdown, summary

pytestmark = pytest.mark.unit

WRK = """Running 8s test @ http://127.0.0.1:35969/predict
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   176.62ms  149.65ms   1.51s    94.45%
    Req/Sec   209.01     36.13   232.00     94.87%
  Latency Distribution
     50%  145.82ms
     75%  148.79ms
     90%  232.14ms
     99%    1.01s
  1637 requests in 8.01s, 524.35KB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:    204.47
Transfer/sec:     65.49KB
"""


def test_parse_wrk_reads_percentiles_units_and_errors() -> None:
    padded = WRK.replace("1.01s\n", "1.01s \n")  # wrk pads some values with a space
    r = parse_wrk(padded, connections=32, seconds=8)
    assert (r.requests, r.rps) == (1637, 204.47)
    assert (r.p50_ms, r.p90_ms, r.p99_ms) == (145.82, 232.14, 1010.0)
    assert r.errors == 2 + 3 + 7


def test_parse_wrk_refuses_output_it_does_not_understand() -> None:
    with pytest.raises(ValueError, match="unexpected wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n", 1, 1)


def _point(
    label: str,
    c: int,
    rps: float,
    p50: float = 1.0,
    p99: float = 1.5,
    errors: int = 0,
    timeouts: int = 0,
) -> dict:
    return {
        "label": label,
        "connections": c,
        "seconds": 1,
        "requests": int(rps),
        "rps": rps,
        "p50_ms": p50,
        "p90_ms": p50,
        "p99_ms": p99,
        "p999_ms": p99 * 2,
        "max_ms": p99 * 3,
        "errors": errors,
        "timeouts": timeouts,
        "runs": [rps * 0.9, rps, rps * 1.1],
        "runs_p99_ms": [p99, p99 * 1.2, p99 * 0.9],
        "runs_p50_ms": [p50, p50, p50],
    }


def _result(served32: float, timeouts128: int = 0, mlserver: bool = True) -> dict:
    head = {
        str(c): {
            "bare": _point("bare", c, 1000),
            "predict": _point("predict", c, served32, timeouts=timeouts128 if c == 128 else 0),
            "infer": _point("infer", c, served32),
        }
        for c in (1, 8, 32, 128)
    }
    timeline = {
        "connections": 32,
        "seconds": 10,
        "png": "timeline.png",
        "requests": 100,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "p999_ms": 3.0,
        "max_ms": 4.0,
        "worst_window_p99_ms": 2.5,
        "median_window_p99_ms": 2.0,
        "cpu_wait_ms": 12.0,
        "windows": [
            {"t": float(t), "requests": 10, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 4.0}
            for t in range(10)
        ],
    }
    return {
        "meta": {
            "when": "now",
            "quick": True,
            "python": "3.11",
            "cpus": 2,
            "server_cpus": [0],
            "client_cpus": [1],
            "seconds_per_point": 1,
            "rounds": 3,
            "load_generator": "wrk",
        },
        "inprocess": [
            {"model": "breast-cancer", "batch": 1000, "calls_per_s": 100, "rows_per_s": 100_000}
        ],
        "head_to_head": head,
        "timeline": timeline,
        "batch": [_point("batch", 2, 90)],
        "batch_infer": [_point("batch infer", 2, 200)],
        "mlserver": (
            {"MLServer": _point("MLServer", 2, 150), "modelport": _point("modelport", 2, 180)}
            if mlserver
            else {"error": "not installed"}
        ),
        "paired": [_point("on", 32, served32)],
        "monitoring_off": [_point("off", 32, served32 * 1.05)],
        "bentoml_defaults": [_point("defaults", 32, served32 / 2)],
        "cold_start_sklearn_s": 1.2,
        "cold_starts_sklearn_s": [1.1, 1.2, 1.4],
        "rss_warm": {"worker_mb": 200, "total_mb": 300},
        "rss_loaded": {"worker_mb": 210, "total_mb": 310},
        "keras": [
            {**_point("keras", 32, 900), "artifact": "auto", "cold_start_s": 3.5, "worker_mb": 600}
        ],
    }


def test_summary_ratios_are_against_the_same_run() -> None:
    s = summary(_result(900))
    assert s["single_row_ratio"] == pytest.approx(0.9)
    assert s["batch_ratio"] == pytest.approx(0.9)  # 90 req/s x 1000 rows / 100 000
    assert s["monitoring_cost"] == pytest.approx(1 - 1 / 1.05)
    assert s["p99_over_p50_32_predict"] == 1.5
    assert s["mlserver_ratio"] == pytest.approx(1.2)
    assert s["cold_start_keras_s"] == 3.5


def test_markdown_flags_missed_targets_and_shows_ranges() -> None:
    good = markdown(_result(900))
    assert "**not met**" not in good
    assert "| 0.90 (900 ÷ 1000); V2 infer 0.90 | met |" in good
    assert "1.50 (runs 1.35 to 1.80)" in good  # p99 ÷ p50 of each run
    assert "| 0 to 5 | 50 | 1.00 | 2.00 | 4.0 |" in good  # the timeline, 5 s per row
    bad = markdown(_result(700, timeouts128=3, mlserver=False))
    assert bad.count("**not met**") == 2  # single-row ratio, failures at 128
    assert "not run: not installed | not measured |" in bad
