"""The Markdown report: every target of the latency work (issue 16) with its value
measured in the same run, then the figures behind them."""

from __future__ import annotations

import math
from typing import Any

# goal, and whether the measured value must be at most (True) or at least it
TARGETS: dict[str, tuple[float, bool]] = {
    "p99_over_p50_32_predict": (2.0, True),
    "p99_over_p50_32_infer": (2.0, True),
    "p99_over_p50_128_predict": (3.0, True),
    "p99_over_p50_128_infer": (3.0, True),
    "failures_at_128": (0.0, True),  # timeouts, socket errors and non-2xx, both routes
    "p99_ms_1_predict": (2.0, True),
    "p99_ms_1_infer": (2.0, True),
    "single_row_ratio": (0.8, False),  # served req/s / bare req/s, identical work, 32 clients
    "cold_start_s": (1.5, True),  # sklearn service, supervisor and worker on one CPU
    "cold_start_keras_s": (4.0, True),  # the Keras model with its default serving artifact
    "worker_mb": (250.0, True),  # sklearn service's worker after the load
    "mlserver_ratio": (1.0, False),  # 1000-row V2 rows/s / MLServer's, same run
    "monitoring_cost": (0.10, True),  # 1 - on/off throughput
}


def _at(points: list[dict[str, Any]], c: int) -> dict[str, Any]:
    return next(p for p in points if p["connections"] == c)


def _inproc(result: dict[str, Any], model: str, batch: int) -> dict[str, Any]:
    return next(r for r in result["inprocess"] if r["model"] == model and r["batch"] == batch)


def _h2h(result: dict[str, Any], c: int, label: str) -> dict[str, Any]:
    return dict(result["head_to_head"][str(c)][label])


def _failures(p: dict[str, Any]) -> int:
    return int(p["errors"]) + int(p.get("timeouts", 0))


def _ratio_range(p: dict[str, Any]) -> tuple[float, float]:
    """Lowest and highest p99 ÷ p50 over the point's runs (or its one run)."""
    p99s, p50s = p.get("runs_p99_ms") or [p["p99_ms"]], p.get("runs_p50_ms") or [p["p50_ms"]]
    ratios = [a / b for a, b in zip(p99s, p50s, strict=True)]
    return min(ratios), max(ratios)


def summary(result: dict[str, Any]) -> dict[str, float]:
    """The measured value of every target (NaN where the run could not measure it)."""
    s: dict[str, float] = {}
    for c in (32, 128):
        for label in ("predict", "infer"):
            p = _h2h(result, c, label)
            s[f"p99_over_p50_{c}_{label}"] = p["p99_ms"] / p["p50_ms"]
    s["failures_at_128"] = float(
        _failures(_h2h(result, 128, "predict")) + _failures(_h2h(result, 128, "infer"))
    )
    for label in ("predict", "infer"):
        s[f"p99_ms_1_{label}"] = _h2h(result, 1, label)["p99_ms"]
    s["single_row_ratio"] = _h2h(result, 32, "predict")["rps"] / _h2h(result, 32, "bare")["rps"]
    s["infer_ratio"] = _h2h(result, 32, "infer")["rps"] / _h2h(result, 32, "bare")["rps"]
    s["cold_start_s"] = result["cold_start_sklearn_s"]
    default = [k for k in result.get("keras") or [] if k["artifact"] == "auto"]
    s["cold_start_keras_s"] = default[0]["cold_start_s"] if default else math.nan
    s["worker_mb"] = result["rss_loaded"]["worker_mb"]
    ml = result.get("mlserver") or {}
    s["mlserver_ratio"] = (
        ml["modelport"]["rps"] / ml["MLServer"]["rps"] if "MLServer" in ml else math.nan
    )
    paired, off = result["paired"][0], result["monitoring_off"][0]
    s["monitoring_cost"] = 1 - paired["rps"] / off["rps"]
    s["bentoml_defaults_ratio"] = result["bentoml_defaults"][0]["rps"] / paired["rps"]
    s["batch_ratio"] = (
        result["batch"][0]["rps"] * 1000 / _inproc(result, "breast-cancer", 1000)["rows_per_s"]
    )
    return s


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    return [_row(header), _row(align), *(_row(r) for r in rows), ""]


def _verdict(key: str, value: float) -> str:
    goal, at_most = TARGETS[key]
    if math.isnan(value):
        return "not measured"
    ok = value <= goal if at_most else value >= goal
    return "met" if ok else "**not met**"


def _runs(values: list[float] | None, fmt: str) -> str:
    if not values or len(values) < 2:
        return ""
    return f" ({format(min(values), fmt)} to {format(max(values), fmt)})"


def _target_rows(result: dict[str, Any], s: dict[str, float]) -> list[list[Any]]:
    rows: list[list[Any]] = []

    def add(key: str, what: str, measured: str, goal: str | None = None) -> None:
        g, at_most = TARGETS[key]
        if goal is None:
            goal = f"{'≤' if at_most else '≥'} {g:g}" if g else "0"
        rows.append([what, goal, measured, _verdict(key, s[key])])

    for c in (32, 128):
        for label, name in (("predict", "/predict"), ("infer", "V2 infer")):
            lo, hi = _ratio_range(_h2h(result, c, label))
            add(
                f"p99_over_p50_{c}_{label}",
                f"p99 ÷ p50, {c} clients, {name}",
                f"{s[f'p99_over_p50_{c}_{label}']:.2f} (runs {lo:.2f} to {hi:.2f})",
            )
    add(
        "failures_at_128",
        "timeouts and errors at 128 clients (/predict + V2 infer)",
        f"{s['failures_at_128']:.0f}",
    )
    for label, name in (("predict", "/predict"), ("infer", "V2 infer")):
        p = _h2h(result, 1, label)
        add(
            f"p99_ms_1_{label}",
            f"p99 at 1 client, {name} (ms); p99.9 alongside",
            f"{p['p99_ms']:.2f}{_runs(p.get('runs_p99_ms'), '.2f')}; p99.9 {p['p999_ms']:.2f}",
        )
    bare1 = _h2h(result, 1, "bare")
    rows.append(
        [
            "the same at 1 client on the bare endpoint (the machine's floor, ms)",
            "",
            f"p99 {bare1['p99_ms']:.2f}{_runs(bare1.get('runs_p99_ms'), '.2f')}; "
            f"p99.9 {bare1['p999_ms']:.2f}",
            "",
        ]
    )
    pred, bare = _h2h(result, 32, "predict"), _h2h(result, 32, "bare")
    add(
        "single_row_ratio",
        "single-row req/s ÷ bare Starlette doing identical work (32 clients, /predict)",
        f"{s['single_row_ratio']:.2f} ({pred['rps']:.0f} ÷ {bare['rps']:.0f}); "
        f"V2 infer {s['infer_ratio']:.2f}",
    )
    add(
        "cold_start_s",
        "cold start to /readyz 200, sklearn service (s)",
        f"{s['cold_start_s']:.2f}{_runs(result.get('cold_starts_sklearn_s'), '.2f')}",
    )
    add(
        "cold_start_keras_s",
        "cold start, Keras model, default artifact (s)",
        _num(s, "cold_start_keras_s", ".2f"),
    )
    add(
        "worker_mb",
        "worker resident memory after load, sklearn service (MB)",
        f"{s['worker_mb']:.0f}",
    )
    ml = result.get("mlserver") or {}
    if "MLServer" in ml:
        measured = (
            f"{s['mlserver_ratio']:.2f} ({ml['modelport']['rps'] * 1000:.0f} ÷ "
            f"{ml['MLServer']['rps'] * 1000:.0f} rows/s)"
        )
    else:
        measured = f"not run: {ml.get('error', 'no MLServer')}"
    add("mlserver_ratio", "1000-row V2 tensor rows/s ÷ MLServer's (2 clients)", measured)
    add(
        "monitoring_cost",
        "throughput cost of monitoring (drift, predictions, latency, feedback)",
        f"{s['monitoring_cost']:.1%}",
        "≤ 10%",
    )
    return rows


def _num(s: dict[str, float], key: str, fmt: str) -> str:
    return "not measured" if math.isnan(s[key]) else format(s[key], fmt)


def _load_row(name: str, p: dict[str, Any], bare: dict[str, Any] | None) -> list[Any]:
    return [
        name,
        p["connections"],
        f"{p['rps']:.0f}{_runs(p.get('runs'), '.0f')}",
        f"{p['rps'] / bare['rps']:.2f}" if bare else "",
        f"{p['p50_ms']:.2f}",
        f"{p['p90_ms']:.2f}",
        f"{p['p99_ms']:.2f}",
        f"{p.get('p999_ms', math.nan):.2f}",
        f"{p.get('max_ms', math.nan):.1f}",
        _failures(p),
    ]


def _timeline_rows(t: dict[str, Any], span: int = 5) -> list[list[Any]]:
    windows = t["windows"]
    rows = []
    for i in range(0, len(windows), span):
        chunk = windows[i : i + span]
        rows.append(
            [
                f"{chunk[0]['t']:.0f} to {chunk[-1]['t'] + 1:.0f}",
                sum(w["requests"] for w in chunk),
                f"{sorted(w['p50_ms'] for w in chunk)[len(chunk) // 2]:.2f}",
                f"{max(w['p99_ms'] for w in chunk):.2f}",
                f"{max(w['max_ms'] for w in chunk):.1f}",
            ]
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    s = summary(result)
    meta = result["meta"]
    rounds = meta.get("rounds", 1)
    lines = [
        f"Measured {meta['when']} on {meta['cpus']} CPUs (server pinned to CPU "
        f"{meta['server_cpus']}, load generator to {meta['client_cpus']}), Python "
        f"{meta['python']}, {meta['seconds_per_point']:g} s per load point, servers "
        f"measured in turn {rounds} times (the median run; the range of the runs in "
        f"brackets){' (--quick)' if meta['quick'] else ''}. One worker everywhere.",
        "",
        "**Targets** (issue 16; every value from this run)",
        "",
    ]
    lines += _table(["target", "goal", "measured", ""], _target_rows(result, s))
    lines += [
        "**Single-row requests, in turn** (breast-cancer; bare = Starlette + uvicorn "
        "doing the identical parsing, validation and predictor call; ÷ bare at the same "
        "concurrency; failures = timeouts + socket errors + non-2xx)",
        "",
    ]
    rows = []
    for points in result["head_to_head"].values():
        bare = points["bare"]
        rows.append(_load_row("bare /predict", bare, None))
        rows.append(_load_row("modelport /predict", points["predict"], bare))
        rows.append(_load_row("modelport V2 infer", points["infer"], bare))
    header = ["endpoint", "clients", "req/s", "÷ bare", "p50 ms", "p90 ms", "p99 ms"]
    lines += _table([*header, "p99.9 ms", "max ms", "failures"], rows)
    t = result.get("timeline")
    if t:
        lines += [
            f"**Latency over time** (modelport /predict, {t['connections']} clients, "
            f"{t['seconds']:g} s, every request timed by `bench.timeline`; plot: "
            f"`{t['png']}`): {t['requests']} requests, p50 {t['p50_ms']:.2f} ms, p99 "
            f"{t['p99_ms']:.2f} ms, p99.9 {t['p999_ms']:.2f} ms, max {t['max_ms']:.1f} ms; "
            f"worst one-second p99 {t['worst_window_p99_ms']:.2f} ms against a median one "
            f"of {t['median_window_p99_ms']:.2f} ms; the server waited "
            f"{t['cpu_wait_ms']:.0f} ms for a CPU taken by other work meanwhile.",
            "",
        ]
        lines += _table(
            ["seconds", "requests", "p50 ms", "worst 1 s p99 ms", "max ms"], _timeline_rows(t)
        )
    limit = _inproc(result, "breast-cancer", 1000)["rows_per_s"]
    lines += [
        f"**1000-row requests** (2 clients; in-process limit: {limit:.0f} rows/s at batch 1000)",
        "",
    ]
    big = [
        ("modelport /predict, named features", result["batch"][0]),
        ("modelport V2 infer, one FP64 tensor", result["batch_infer"][0]),
    ]
    ml = result.get("mlserver") or {}
    if "MLServer" in ml:
        big += [
            ("MLServer V2 infer (in turn with the next)", ml["MLServer"]),
            ("modelport V2 infer (in turn with MLServer)", ml["modelport"]),
        ]
    lines += _table(
        ["request", "rows/s", "÷ in-process", "p50 ms", "p99 ms"],
        [
            [
                name,
                f"{p['rps'] * 1000:.0f}{_runs([r * 1000 for r in p.get('runs', [])], '.0f')}",
                f"{p['rps'] * 1000 / limit:.2f}",
                f"{p['p50_ms']:.2f}",
                f"{p['p99_ms']:.2f}",
            ]
            for name, p in big
        ],
    )
    lines += [
        "**What the request path costs** (/predict, 32 clients, the three servers in turn)",
        "",
    ]
    paired = result["paired"][0]
    lines += _table(
        ["server", "req/s", "÷ modelport", "p50 ms", "p99 ms", "p99.9 ms"],
        [
            [
                name,
                f"{p['rps']:.0f}{_runs(p.get('runs'), '.0f')}",
                f"{p['rps'] / paired['rps']:.2f}",
                f"{p['p50_ms']:.2f}",
                f"{p['p99_ms']:.2f}",
                f"{p.get('p999_ms', math.nan):.2f}",
            ]
            for name, p in (
                ("modelport (default)", paired),
                ("monitoring off", result["monitoring_off"][0]),
                (
                    "BentoML defaults: tracing, access log, request metrics",
                    result["bentoml_defaults"][0],
                ),
            )
        ],
    )
    lines += [
        "**Cold start and memory** (process start to `/readyz` 200; resident memory of "
        "the worker after one request and after the load, and of all processes)",
        "",
    ]
    lines += _table(
        ["service", "cold start s", "worker MB warm", "worker MB after load", "all processes MB"],
        [
            [
                "sklearn models",
                f"{result['cold_start_sklearn_s']:.2f}"
                f"{_runs(result.get('cold_starts_sklearn_s'), '.2f')}",
                f"{result['rss_warm']['worker_mb']:.0f}",
                f"{result['rss_loaded']['worker_mb']:.0f}",
                f"{result['rss_loaded']['total_mb']:.0f}",
            ]
        ],
    )
    if result.get("keras"):
        lines += ["**Keras model by serving artifact** (/predict, 32 clients)", ""]
        lines += _table(
            ["artifact", "cold start s", "worker MB", "req/s", "p50 ms", "p99 ms"],
            [
                [
                    k["artifact"] + (" (default)" if k["artifact"] == "auto" else ""),
                    f"{k['cold_start_s']:.2f}",
                    f"{k['worker_mb']:.0f}",
                    f"{k['rps']:.0f}",
                    f"{k['p50_ms']:.2f}",
                    f"{k['p99_ms']:.2f}",
                ]
                for k in result["keras"]
            ],
        )
    if result.get("batching"):
        lines += [
            "**Adaptive batching** (BentoML `batchable` API vs plain, same model and "
            "fast path, 32 clients)",
            "",
        ]
        lines += _table(
            ["model", "API", "req/s", "p50 ms", "p99 ms", "errors"],
            [
                [
                    b["model"],
                    b["route"],
                    f"{b['rps']:.0f}",
                    f"{b['p50_ms']:.2f}",
                    f"{b['p99_ms']:.2f}",
                    b["errors"],
                ]
                for b in result["batching"]
            ],
        )
    lines += ["**Model limits, in-process** (`predict` on ready arrays: no HTTP, no JSON)", ""]
    lines += _table(
        ["model", "batch", "calls/s", "rows/s"],
        [
            [r["model"], r["batch"], f"{r['calls_per_s']:.0f}", f"{r['rows_per_s']:.0f}"]
            for r in result["inprocess"]
        ],
    )
    return "\n".join(lines)
