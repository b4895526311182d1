"""``python -m bench.explain [--seconds S]``: what explanations cost, per demo model.

For each model: ``/explain`` and ``/predict`` single-row throughput and p50/p99 at 1
and 8 clients, measured in turn on one server, and the ratio explain ÷ predict; the
server's cold start (explainers are built on first use, so it should not move); the
worker's memory before and after its first explanation; and the installed size of
what explanations add to an image (shap and its numba stack), which `modelport build`
leaves out when every model is linear.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import suite
from bench.load import wrk

MODELS = [*suite.SKLEARN_MODELS, suite.KERAS_MODEL]


def _body(name: str) -> bytes:
    rows, _ = suite.rows_for(name, 1)
    return json.dumps({"model": name, "instances": rows}).encode()


def installed_mb(dist: str) -> float:
    """Size on disk of an installed distribution's files."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        return 0.0
    total = 0
    for f in files:
        path = Path(str(f.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total / 2**20


def run(plan: suite.Plan, models: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with suite.modelport_server(plan, ",".join(models)) as (url, pid, ready):
        print(f"  ready in {ready:.2f}s; worker {suite.rss_mb(pid)['worker_mb']} MB", flush=True)
        for name in models:
            body = _body(name)
            before = suite.rss_mb(pid)["worker_mb"]
            start = time.perf_counter()
            first = suite.post(f"{url}/explain", body)
            first_s = time.perf_counter() - start
            after = suite.rss_mb(pid)["worker_mb"]
            method = first["method"]
            print(
                f"  {name}: {method}; first explanation {first_s:.2f}s, worker "
                f"{before} -> {after} MB",
                flush=True,
            )
            for clients in (1, 8):
                got: dict[str, Any] = {}
                for _ in range(2):  # in turn, twice; each keeps its better run
                    for path in ("/predict", "/explain"):
                        r = wrk(
                            url + path,
                            body,
                            connections=clients,
                            seconds=plan.seconds,
                            cpu_list=plan.client_cpus,
                        )
                        if path not in got or r.rps > got[path].rps:
                            got[path] = r
                p, e = got["/predict"], got["/explain"]
                row = {
                    "model": name,
                    "method": method,
                    "clients": clients,
                    "predict_rps": round(p.rps),
                    "explain_rps": round(e.rps),
                    "explain_p50_ms": e.p50_ms,
                    "explain_p99_ms": e.p99_ms,
                    "predict_p50_ms": p.p50_ms,
                    "cost_x": round(p.rps / e.rps, 2) if e.rps else float("inf"),
                    "errors": e.errors,
                    "first_explain_s": round(first_s, 2),
                    "worker_mb_before": before,
                    "worker_mb_after": after,
                    "ready_s": round(ready, 2),
                }
                rows.append(row)
                print(
                    f"    c={clients}: predict {p.rps:7.0f} req/s, explain {e.rps:7.0f} req/s "
                    f"(p50 {e.p50_ms:.2f} ms, p99 {e.p99_ms:.2f} ms, errors {e.errors}); "
                    f"an explanation costs {row['cost_x']}x a prediction",
                    flush=True,
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    plan = dataclasses.replace(suite.Plan.make(quick=True), seconds=args.seconds)
    rows = run(plan, [m for m in args.models.split(",") if m])
    extra = {d: round(installed_mb(d), 1) for d in ("shap", "numba", "llvmlite", "slicer")}
    print(
        f"  image: explanations by shap add {sum(extra.values()):.0f} MB installed ({extra}); "
        "left out of images whose models are all linear",
        flush=True,
    )
    print(
        "\n| model | method | clients | /predict req/s | /explain req/s | explain p50 ms | "
        "explain p99 ms | explain ÷ predict cost |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['method']} | {r['clients']} | {r['predict_rps']} | "
            f"{r['explain_rps']} | {r['explain_p50_ms']:.2f} | {r['explain_p99_ms']:.2f} | "
            f"{r['cost_x']}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
