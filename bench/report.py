"""The Markdown report: figures, ratios to their limits in the same run, targets."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "single_row_ratio": 0.5,  # served req/s / bare req/s at 32 clients
    "batch_ratio": 0.8,  # served rows/s / in-process rows/s at 1000 rows
    "p99_over_p50": 3.0,  # at 32 clients
    "cold_start_s": 3.0,  # sklearn-only service
    "monitoring_cost": 0.10,  # 1 - on/off throughput
}


def _at(points: list[dict[str, Any]], c: int) -> dict[str, Any]:
    return next(p for p in points if p["connections"] == c)


def _inproc(result: dict[str, Any], model: str, batch: int) -> dict[str, Any]:
    return next(r for r in result["inprocess"] if r["model"] == model and r["batch"] == batch)


def summary(result: dict[str, Any]) -> dict[str, float]:
    """The headline ratios the targets are set on."""
    bare32 = _at(result["bare"], 32)["rps"]
    pred32 = _at(result["predict"], 32)
    batch = result["batch"][0]
    limit = _inproc(result, "breast-cancer", 1000)["rows_per_s"]
    off = result["monitoring_off"][0]["rps"]
    paired = result.get("paired", [pred32])[0]  # same-run partner of the two variants
    return {
        "single_row_ratio": pred32["rps"] / bare32,
        "infer_ratio": _at(result["infer"], 32)["rps"] / bare32,
        "batch_ratio": batch["rps"] * 1000 / limit,
        "p99_over_p50": pred32["p99_ms"] / pred32["p50_ms"],
        "errors_at_128": float(
            _at(result["predict"], 128)["errors"] + _at(result["infer"], 128)["errors"]
        ),
        "cold_start_s": result["cold_start_sklearn_s"],
        "monitoring_cost": 1 - paired["rps"] / off,
        "bentoml_defaults_ratio": result["bentoml_defaults"][0]["rps"] / paired["rps"],
    }


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    return [_row(header), _row(align), *(_row(r) for r in rows), ""]


def _load_rows(points: list[dict[str, Any]], bare: list[dict[str, Any]] | None) -> list[list[Any]]:
    rows = []
    for p in points:
        ratio = ""
        if bare is not None:
            ratio = f"{p['rps'] / _at(bare, p['connections'])['rps']:.2f}"
        rows.append(
            [
                p["label"],
                p["connections"],
                f"{p['rps']:.0f}",
                ratio,
                f"{p['p50_ms']:.2f}",
                f"{p['p90_ms']:.2f}",
                f"{p['p99_ms']:.2f}",
                p["errors"],
            ]
        )
    return rows


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def markdown(result: dict[str, Any]) -> str:
    s = summary(result)
    meta = result["meta"]
    lines = [
        f"Measured {meta['when']} on {meta['cpus']} CPUs (server pinned to CPU "
        f"{meta['server_cpus']}, wrk to {meta['client_cpus']}), Python {meta['python']}, "
        f"{meta['seconds_per_point']:g} s per load point"
        f"{' (--quick)' if meta['quick'] else ''}. One worker everywhere.",
        "",
        "**Targets**",
        "",
    ]
    lines += _table(
        ["target", "goal", "measured", ""],
        [
            [
                "served single-row req/s ÷ bare ASGI (32 clients)",
                f"≥ {TARGETS['single_row_ratio']}",
                f"{s['single_row_ratio']:.2f}",
                _verdict(s["single_row_ratio"] >= TARGETS["single_row_ratio"]),
            ],
            [
                "served 1000-row rows/s ÷ in-process rows/s",
                f"≥ {TARGETS['batch_ratio']}",
                f"{s['batch_ratio']:.2f}",
                _verdict(s["batch_ratio"] >= TARGETS["batch_ratio"]),
            ],
            [
                "p99 ÷ p50 at 32 clients (/predict)",
                f"≤ {TARGETS['p99_over_p50']:g}",
                f"{s['p99_over_p50']:.2f}",
                _verdict(s["p99_over_p50"] <= TARGETS["p99_over_p50"]),
            ],
            [
                "errors at 128 clients (/predict + infer)",
                "0",
                f"{s['errors_at_128']:.0f}",
                _verdict(s["errors_at_128"] == 0),
            ],
            [
                "cold start, sklearn-only service (s)",
                f"≤ {TARGETS['cold_start_s']:g}",
                f"{s['cold_start_s']:.2f}",
                _verdict(s["cold_start_s"] <= TARGETS["cold_start_s"]),
            ],
            [
                "throughput cost of monitoring metrics",
                f"≤ {TARGETS['monitoring_cost']:.0%}",
                f"{s['monitoring_cost']:.1%}",
                _verdict(s["monitoring_cost"] <= TARGETS["monitoring_cost"]),
            ],
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
    lines += [
        "**Single-row requests** (breast-cancer; ratio = ÷ bare ASGI at the same concurrency)",
        "",
    ]
    header = ["endpoint", "clients", "req/s", "÷ bare", "p50 ms", "p90 ms", "p99 ms", "errors"]
    lines += _table(
        header,
        _load_rows(result["bare"], None)
        + _load_rows(result["predict"], result["bare"])
        + _load_rows(result["infer"], result["bare"])
        + _load_rows(result.get("paired", []), result["bare"])
        + _load_rows(result["monitoring_off"], result["bare"])
        + _load_rows(result["bentoml_defaults"], result["bare"]),
    )
    limit = _inproc(result, "breast-cancer", 1000)["rows_per_s"]
    lines += ["**1000-row request** (2 clients; ratio = ÷ in-process rows/s at batch 1000)", ""]
    lines += _table(
        ["request", "rows/s served", "rows/s in-process", "ratio", "p50 ms", "p99 ms"],
        [
            [
                name,
                f"{b['rps'] * 1000:.0f}",
                f"{limit:.0f}",
                f"{b['rps'] * 1000 / limit:.2f}",
                f"{b['p50_ms']:.2f}",
                f"{b['p99_ms']:.2f}",
            ]
            for name, b in (
                ("/predict, named features", result["batch"][0]),
                ("OIP infer, one FP64 tensor", result.get("batch_infer", [None])[0]),
            )
            if b is not None
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
    lines += [
        "**Cold start and memory** (process start to `/readyz` 200; resident memory of the worker)",
        "",
    ]
    rows = [
        [
            "sklearn models",
            f"{result['cold_start_sklearn_s']:.2f}",
            f"{result['rss_warm']['worker_mb']:.0f}",
            f"{result['rss_loaded']['worker_mb']:.0f}",
            f"{result['rss_loaded']['total_mb']:.0f}",
        ]
    ]
    lines += _table(
        ["service", "cold start s", "worker MB warm", "worker MB after load", "all processes MB"],
        rows,
    )
    if result.get("keras"):
        lines += ["**Keras model by serving artifact** (/predict, 32 clients)", ""]
        lines += _table(
            ["artifact", "cold start s", "worker MB", "req/s", "p50 ms", "p99 ms"],
            [
                [
                    k["artifact"],
                    f"{k['cold_start_s']:.2f}",
                    f"{k['worker_mb']:.0f}",
                    f"{k['rps']:.0f}",
                    f"{k['p50_ms']:.2f}",
                    f"{k['p99_ms']:.2f}",
                ]
                for k in result["keras"]
            ],
        )
    return "\n".join(lines)
