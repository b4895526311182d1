"""``python -m bench [--quick] [--out DIR]``: run the whole suite, print the tables,
write ``DIR/latest.json`` and ``DIR/latest.md``.

Uses the production models in the local store, training the demo ones if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench import report, suite


def _has_keras() -> bool:
    import importlib.util

    from modelport import store

    try:
        store.resolve(suite.KERAS_MODEL)
    except store.StoreError:
        return False
    return importlib.util.find_spec("tensorflow") is not None


def ensure_models() -> None:
    """Train (and promote) the demo models that have no production version yet, and
    retrain scikit-learn ones whose card predates the linear serving form (the
    benchmark measures what training makes today)."""
    import subprocess

    from modelport import store
    from modelport.cli import DEMO_RECIPES

    for recipe in DEMO_RECIPES:
        model = store.production_model(recipe)
        args = [sys.executable, "-m", "modelport", "train", recipe, "--promote"]
        if model is None:
            print(f"== training {recipe} (no production version yet)", flush=True)
            subprocess.run(args, check=True)
            continue
        card = store.card_of(model)
        if card.framework == "sklearn" and card.linear is None:
            print(f"== retraining {recipe} (its card has no linear serving form)", flush=True)
            subprocess.run([*args, "--force"], check=True)


def run(quick: bool, out: Path) -> dict[str, Any]:
    from modelport import store

    plan = suite.Plan.make(quick)
    for name in suite.SKLEARN_MODELS:
        store.resolve(name)  # fails early, naming the model, if it was never trained
    keras = _has_keras()
    rounds = 2 if quick else 3
    result: dict[str, Any] = {
        "meta": {
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "quick": quick,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "server_cpus": plan.server_cpus,
            "client_cpus": plan.client_cpus,
            "seconds_per_point": plan.seconds,
            "rounds": rounds,
            "load_generator": "wrk (pinned)",
        },
    }
    print("== model limits (in-process)", flush=True)
    models = suite.SKLEARN_MODELS + ([suite.KERAS_MODEL] if keras else [])
    result["inprocess"] = suite.inprocess(models, (1, 256), plan.inprocess_seconds)
    result["inprocess"] += suite.inprocess([suite.LOAD_MODEL], (1000,), plan.inprocess_seconds)

    print("== cold start, sklearn models (process start to /readyz 200)", flush=True)
    names = ",".join(suite.SKLEARN_MODELS)
    result["cold_starts_sklearn_s"] = suite.cold_starts(plan, names, 2 if quick else 3)
    result["cold_start_sklearn_s"] = sorted(result["cold_starts_sklearn_s"])[
        len(result["cold_starts_sklearn_s"]) // 2
    ]

    single, infer = suite.single_body(), suite.infer_body()
    infer_path = f"/v2/models/{suite.LOAD_MODEL}/infer"
    print(
        "== bare Starlette + uvicorn (identical work) against modelport /predict and "
        "V2 infer, in turn",
        flush=True,
    )
    with (
        suite.bare_server(plan) as (bare, _, _),
        suite.modelport_server(plan, names) as (url, pid, _),
    ):
        suite.post(url + "/predict", single)
        result["rss_warm"] = suite.rss_mb(pid)
        result["head_to_head"] = {}
        for c in plan.concurrency:
            got = suite.alternate(
                plan,
                {"bare": bare + "/predict", "predict": url + "/predict", "infer": url + infer_path},
                {"bare": single, "predict": single, "infer": infer},
                rounds,
                c,
            )
            result["head_to_head"][str(c)] = {k: v[0] for k, v in got.items()}
        print("== latency over time, modelport /predict, 32 clients", flush=True)
        result["timeline"] = suite.timeline(
            plan, url + "/predict", single, 32, 10.0 if quick else 60.0, out / "timeline.png", pid
        )
        print("== 1000-row requests", flush=True)
        result["batch"] = suite.sweep(
            plan, url + "/predict", suite.single_body(1000), "modelport /predict x1000", (2,)
        )
        result["batch_infer"] = suite.sweep(
            plan, url + infer_path, suite.infer_body(1000), "modelport V2 infer x1000", (2,)
        )
        result["rss_loaded"] = suite.rss_mb(pid)
        result["mlserver"] = suite.against_mlserver(plan, url + infer_path, rounds)

    print(
        "== modelport: monitoring off, and BentoML's defaults (tracing, access log, request "
        "metrics) (alternating with the default)",
        flush=True,
    )
    defaults = {
        "logging": {"access": {"enabled": True}},
        "tracing": {"excluded_urls": []},
        "metrics": {"enabled": True, "namespace": "bentoml_service"},
    }
    with (
        suite.modelport_server(plan, names) as (on, _, _),
        suite.modelport_server(plan, names, env={"MODELPORT_MONITORING": "false"}) as (off, _, _),
        suite.modelport_server(plan, names, config=defaults) as (full, _, _),
    ):
        variants = {
            "modelport /predict (same run)": on,
            "monitoring off /predict": off,
            "BentoML defaults /predict": full,
        }
        paired = suite.alternate(
            plan, {k: u + "/predict" for k, u in variants.items()}, single, rounds=rounds
        )
    result["paired"] = paired["modelport /predict (same run)"]
    result["monitoring_off"] = paired["monitoring off /predict"]
    result["bentoml_defaults"] = paired["BentoML defaults /predict"]

    print("== adaptive batching", flush=True)
    result["batching"] = suite.batching(plan, models)

    if keras:
        print("== modelport, Keras model: cold start and serving artifacts", flush=True)
        result["keras"] = suite.keras_service(plan, ["auto", "keras", "saved_model", "tflite"])
    return result


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def update_readme(readme: Path, table: str) -> None:
    """Replace the README's benchmark block (between the markers) with ``table``."""
    text = readme.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return
    readme.write_text(text[: start + len(BEGIN)] + "\n" + table + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 s per load point instead of 8, 2 rounds instead of 3, a 10 s timeline",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench/results"),
        help="where latest.json and latest.md go (default: bench/results)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=Path("README.md"),
        help="README whose benchmark block a full run refreshes",
    )
    args = parser.parse_args(argv)
    from modelport import store

    try:
        ensure_models()
        args.out.mkdir(parents=True, exist_ok=True)
        result = run(args.quick, args.out)
    except store.StoreError as exc:
        print(f"bench: {exc}; train the demo models first (make train)", file=sys.stderr)
        return 2
    table = report.markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "latest.md").write_text(table)
    if not args.quick and args.readme.exists():
        update_readme(args.readme, table)
    print()
    print(table)
    print(f"written: {args.out / 'latest.json'}, {args.out / 'latest.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
