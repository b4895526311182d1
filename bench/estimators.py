"""``python -m bench.estimators [--recipe breast-cancer] [--seconds S]``: single-row
latency per estimator family, in-process and served.

Each scikit-learn family is trained on the recipe (into a BentoML home of its own, so
the local store is untouched) with ``modelport train --estimator``; then, per model:
the predictor's own single-row latency exactly as the service prepares it (fast path
on when the model allows it), whether the fast path took it, and ``/predict`` p50 and
p99 at one client from one server serving every family.
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


def _inprocess(name: str, seconds: float) -> tuple[float, bool]:
    """Mean single-row latency (µs) of the predictor as served, and whether the array
    fast path took the model."""
    from modelport import store
    from service.runtime import _enable_fast_path
    from service.validation import Schema, parse_instances

    model = store.resolve(name)
    card = store.card_of(model)
    predictor = store.predictor_of(model, card)
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
            rows.append({"family": family, "model": name, "inprocess_us": us, "fast_path": fast})
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
        "| family | fast path | in-process µs/row | served p50 ms | served p99 ms "
        "| served req/s (1 client) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['family']} | {'yes' if r['fast_path'] else 'no'} | {r['inprocess_us']:.0f} | "
            f"{r['served_p50_ms']:.2f} | {r['served_p99_ms']:.2f} | {r['served_rps']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
