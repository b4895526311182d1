"""``python -m bench.estimators [--recipe breast-cancer] [--seconds S]``: single-row
latency per estimator family, in-process and served, native and ONNX Runtime.

Each scikit-learn family is trained on the recipe (into a BentoML home of its own, so
the local store is untouched) with ``modelport train --estimator``; then, per model:
the predictor's own single-row latency exactly as the service prepares it (fast path
on when the model allows it), whether the fast path took it, the same for the model's
ONNX form (or why training refused it), what training measured for both forms (one
row, 1000 rows), which form ``MODELPORT_SKLEARN_ARTIFACT=auto`` serves, and
``/predict`` p50 and p99 at one client from one server serving every family (with
``auto``: the form in the "auto serves" column).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench.suite, modelport.store and training import bentoml, which reads BENTOML_HOME once:
# they are imported in main(), after the home is set.


def _train(recipe: str, family: str, env: dict[str, str]) -> str | None:
    name = f"{recipe}-{family}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport",
            "train",
            recipe,
            "--estimator",
            family,
            "--name",
            name,
            "--force",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"  {family}: training failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return name


def _inprocess(name: str, seconds: float, form: str = "native") -> tuple[float, bool]:
    """Mean single-row latency (µs) of the predictor as served in ``form`` (native or
    onnx), and whether the array fast path took the model."""
    from modelport import store
    from service.runtime import _enable_fast_path
    from service.validation import Schema, parse_instances

    model = store.resolve(name)
    card = store.card_of(model)
    predictor = store.predictor_of(model, card, sklearn_kind=form)
    schema = Schema(card)
    fast = schema.all_numeric and _enable_fast_path(predictor, card) is None
    batch = parse_instances(card.sample.instances[:1], schema, 1)
    X = batch.model_input
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            predictor.predict(X)
        calls += 20
    return (time.perf_counter() - start) / calls * 1e6, fast


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="breast-cancer")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelport-est-") as tmp:
        env = {"BENTOML_HOME": str(Path(tmp, "home")), "MODELPORT_REPORTS_DIR": str(Path(tmp, "r"))}
        os.environ.update(env)  # this process reads the same store
        from bench import suite
        from bench.load import wrk
        from training.estimators import FAMILIES

        plan = dataclasses.replace(suite.Plan.make(quick=True), seconds=args.seconds)
        names: dict[str, str] = {}
        for family in FAMILIES:
            print(f"== training {family}", flush=True)
            name = _train(args.recipe, family, env)
            if name:
                names[family] = name
        import sklearn

        sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
        rows: list[dict[str, Any]] = []
        for family, name in names.items():
            us, fast = _inprocess(name, args.seconds)
            entry: dict[str, Any] = {"family": family, "model": name, "inprocess_us": us}
            rows.append({**entry, "fast_path": fast, **_onnx(name, args.seconds)})
        with suite.modelport_server(plan, ",".join(names.values())) as (url, _, _):
            for row in rows:
                from modelport import store

                sample = store.card_of(store.resolve(row["model"])).sample.instances[:1]
                body = json.dumps({"model": row["model"], "instances": sample}).encode()
                load = wrk(
                    url + "/predict",
                    body,
                    connections=1,
                    seconds=plan.seconds,
                    cpu_list=plan.client_cpus,
                )
                row.update(
                    served_p50_ms=load.p50_ms, served_p99_ms=load.p99_ms, served_rps=load.rps
                )
    print(f"\n{args.recipe}, one row per request")
    print(
        "| family | fast path | in-process µs/row | ONNX in-process µs/row | ONNX test delta "
        "| at training: one row µs, native / ONNX | at training: 1000 rows ms, native / ONNX "
        "| auto serves | served p50 ms | served p99 ms | served req/s (1 client) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        onnx_us = f"{r['onnx_us']:.0f}" if r["onnx_us"] is not None else "refused"
        print(
            f"| {r['family']} | {'yes' if r['fast_path'] else 'no'} | {r['inprocess_us']:.0f} | "
            f"{onnx_us} | {r['delta']} | {r['trained_row']} | {r['trained_batch']} | {r['auto']} | "
            f"{r['served_p50_ms']:.2f} | {r['served_p99_ms']:.2f} | {r['served_rps']:.0f} |"
        )
    refused = [r for r in rows if r["onnx_us"] is None]
    for r in refused:
        print(f"\n{r['family']}: no ONNX form: {r['onnx_reason']}")
    return 0


def _onnx(name: str, seconds: float) -> dict[str, Any]:
    """The ONNX form of one model: its in-process latency as served (``None`` when
    training refused it, with the reason), what training measured, and what ``auto``
    serves."""
    from modelport import store

    card = store.card_of(store.resolve(name))
    recorded = next((a for a in card.artifacts if a.kind == "onnx"), None)
    lat = recorded.latency if recorded is not None else None
    out: dict[str, Any] = {
        "onnx_us": None,
        "onnx_reason": recorded.reason if recorded is not None else "not made (older model)",
        "trained_row": f"{lat.native_row_us:.0f} / {lat.row_us:.0f}" if lat else "-",
        "trained_batch": f"{lat.native_batch_ms:.2f} / {lat.batch_ms:.2f}" if lat else "-",
        "auto": store.sklearn_artifact(card, "auto"),
        "delta": "-" if recorded is None or recorded.delta is None else f"{recorded.delta:+.4f}",
    }
    if recorded is not None and recorded.accepted:
        out["onnx_us"], _ = _inprocess(name, seconds, "onnx")
    return out


if __name__ == "__main__":
    sys.exit(main())
