"""MLServer on the same machine, for the 1000-row V2 tensor comparison.

MLServer lives in a virtual environment of its own (its pins differ from BentoML's):
``bash hack/install-mlserver.sh`` makes ``.tools/mlserver`` (PyPI ``mlserver``,
``mlserver-sklearn``); ``MODELPORT_BENCH_MLSERVER`` may name another ``mlserver``
executable. It serves the same fitted model: the pipeline's scaler and linear model
as an array pipeline (MLServer hands scikit-learn arrays, not named columns), one
process (``parallel_workers: 0``), pinned to the server CPU like modelport.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelport import server, store

ROOT = Path(__file__).resolve().parents[1]


def executable() -> Path | None:
    named = os.environ.get("MODELPORT_BENCH_MLSERVER")
    path = Path(named) if named else ROOT / ".tools" / "mlserver" / "bin" / "mlserver"
    return path if path.exists() else None


def _array_pipeline(name: str) -> object:
    """The served model as ``Pipeline([scaler, linear model])`` over feature-ordered
    arrays: the same fitted objects, without the ColumnTransformer's name lookup."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    model = store.resolve(name)
    card = store.card_of(model)
    pipeline = store.predictor_of(model, card).estimator  # type: ignore[attr-defined]
    ct, head = pipeline.steps[0][1], pipeline.steps[-1][1]
    if not isinstance(ct, ColumnTransformer) or len(ct.transformers_) < 1:
        raise RuntimeError(f"{name}: not a ColumnTransformer pipeline")
    _, scaler, columns = ct.transformers_[0]
    if list(columns) != card.feature_names:
        raise RuntimeError(f"{name}: the scaler does not take every feature in order")
    scaler = copy.copy(scaler)
    if hasattr(scaler, "feature_names_in_"):
        del scaler.feature_names_in_  # arrays in the same order; the check only warns
    return Pipeline([("scale", scaler), ("model", head)])


@contextmanager
def mlserver(plan_cpus: list[int], name: str) -> Iterator[str]:
    """MLServer serving ``name`` on a free port: yields its base URL."""
    import joblib

    from bench.load import pin

    exe = executable()
    if exe is None:
        raise RuntimeError("MLServer is not installed (bash hack/install-mlserver.sh)")
    with tempfile.TemporaryDirectory(prefix="modelport-mlserver-") as tmp:
        folder = Path(tmp)
        model_dir = folder / name
        model_dir.mkdir()
        joblib.dump(_array_pipeline(name), model_dir / "model.joblib")
        (model_dir / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib"},
                }
            )
        )
        port, grpc, metrics = server.free_port(), server.free_port(), server.free_port()
        (folder / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": port,
                    "grpc_port": grpc,
                    "metrics_port": metrics,
                    "parallel_workers": 0,  # inference in the server process: one worker
                }
            )
        )
        log = Path(tempfile.mkstemp(prefix="modelport-mlserver-", suffix=".log")[1])
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*pin(plan_cpus), str(exe), "start", str(folder)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=folder,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"MLServer exited; see {log}")
                try:
                    with urllib.request.urlopen(f"{url}/v2/models/{name}/ready", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"MLServer not ready in 120 s; see {log}") from None
                    time.sleep(0.1)
            yield url
        finally:
            from bench.suite import _stop

            _stop(proc)
