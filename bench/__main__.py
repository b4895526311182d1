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
    """Train (and promote) the demo models that have no production version yet."""
    import subprocess

    from modelport import store
    from modelport.cli import DEMO_RECIPES

    for recipe in DEMO_RECIPES:
        if store.production_model(recipe) is None:
            print(f"== training {recipe} (no production version yet)", flush=True)
            subprocess.run(
                [sys.executable, "-m", "modelport", "train", recipe, "--promote"], check=True
            )


def run(quick: bool) -> dict[str, Any]:
    from modelport import store

    plan = suite.Plan.make(quick)
    for name in suite.SKLEARN_MODELS:
        store.resolve(name)  # fails early, naming the model, if it was never trained
    keras = _has_keras()
    result: dict[str, Any] = {
        "meta": {
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "quick": quick,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "server_cpus": plan.server_cpus,
            "client_cpus": plan.client_cpus,
            "seconds_per_point": plan.seconds,
            "load_generator": "wrk (pinned)",
        },
    }
    print("== model limits (in-process)", flush=True)
    models = suite.SKLEARN_MODELS + ([suite.KERAS_MODEL] if keras else [])
    result["inprocess"] = suite.inprocess(models, (1, 256), plan.inprocess_seconds)
    result["inprocess"] += suite.inprocess([suite.LOAD_MODEL], (1000,), plan.inprocess_seconds)

    single, infer, batch = suite.single_body(), suite.infer_body(), suite.single_body(1000)
    print("== bare Starlette + uvicorn (the HTTP ceiling)", flush=True)
    with suite.bare_server(plan) as (url, _, _):
        result["bare"] = suite.sweep(plan, url + "/predict", single, "bare /predict")

    print("== modelport, sklearn models, one worker", flush=True)
    with suite.modelport_server(plan, ",".join(suite.SKLEARN_MODELS)) as (url, pid, ready):
        result["cold_start_sklearn_s"] = ready
        suite.post(url + "/predict", single)
        result["rss_warm"] = suite.rss_mb(pid)
        result["predict"] = suite.sweep(plan, url + "/predict", single, "modelport /predict")
        result["infer"] = suite.sweep(
            plan, f"{url}/v2/models/{suite.LOAD_MODEL}/infer", infer, "modelport OIP infer"
        )
        result["batch"] = suite.sweep(
            plan, url + "/predict", batch, "modelport /predict x1000", (2,)
        )
        result["batch_infer"] = suite.sweep(
            plan,
            f"{url}/v2/models/{suite.LOAD_MODEL}/infer",
            suite.infer_body(1000),
            "modelport OIP infer x1000",
            (2,),
        )
        result["rss_loaded"] = suite.rss_mb(pid)

    print(
        "== modelport: monitoring off, and BentoML's default tracing + access log "
        "(alternating with the default)",
        flush=True,
    )
    defaults = {"logging": {"access": {"enabled": True}}, "tracing": {"excluded_urls": []}}
    names = ",".join(suite.SKLEARN_MODELS)
    with (
        suite.modelport_server(plan, names) as (on, _, _),
        suite.modelport_server(plan, names, env={"MODELPORT_MONITORING": "false"}) as (off, _, _),
        suite.modelport_server(plan, names, config=defaults) as (full, _, _),
    ):
        variants = {
            "modelport /predict (same run)": on,
            "monitoring off /predict": off,
            "tracing+access log /predict": full,
        }
        paired = suite.alternate(
            plan, {k: u + "/predict" for k, u in variants.items()}, single, rounds=3
        )
    result["paired"] = paired["modelport /predict (same run)"]
    result["monitoring_off"] = paired["monitoring off /predict"]
    result["bentoml_defaults"] = paired["tracing+access log /predict"]

    print("== adaptive batching", flush=True)
    result["batching"] = suite.batching(plan, models)

    if keras:
        print("== modelport, Keras model: cold start and serving artifacts", flush=True)
        result["keras"] = suite.keras_service(plan, ["keras", "saved_model", "tflite"])
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
        help="3 s per load point instead of 8 (about 2 minutes in all)",
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
        result = run(args.quick)
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
