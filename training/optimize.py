"""Optimised serving artifacts, made and judged at training time.

Keras models get two forms, each scored on the test split against the original network:
- ``saved_model``: the exported TensorFlow signature (the same float32 graph,
  without Keras' per-call Python overhead);
- ``tflite``: TensorFlow Lite with dynamic-range quantization (int8 weights).

scikit-learn pipelines get one: ``onnx``, converted by skl2onnx and run by ONNX
Runtime, with its in-process latency measured against the native model as the service
runs it (the service's ``auto`` takes it only when it was faster). A pipeline skl2onnx
cannot convert is recorded as refused, with the converter's reason.

An artifact that loses more than ``MODELPORT_ARTIFACT_TOLERANCE`` of the test score
is refused: recorded in the model card with the reason, never stored or served.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from modelport.metadata import Artifact, Latency, Sample
from modelport.onnx_predictor import ARRAY_INPUT, ONNX_FILE, OnnxPredictor, session
from modelport.predictors import (
    SAVED_MODEL_DIR,
    TFLITE_FILE,
    KerasPredictor,
    Output,
    Predictor,
    SklearnPredictor,
    load_keras_artifact,
)
from training import evaluate


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def export(predictor: KerasPredictor, workdir: Path) -> dict[str, Path]:
    """Write both forms into ``workdir``; returns kind -> path."""
    import tensorflow as tf

    saved = workdir / SAVED_MODEL_DIR
    predictor.model.export(str(saved), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 weights
    tflite = workdir / TFLITE_FILE
    tflite.write_bytes(converter.convert())
    return {"saved_model": saved, "tflite": tflite}


def judge(
    kind: str,
    path: Path,
    score: float,
    base: float,
    metric: str,
    tolerance: float,
    sample: Sample | None,
) -> Artifact:
    """Accept an artifact whose test score is at most ``tolerance`` below the original."""
    delta = score - base
    accepted = delta >= -tolerance
    reason = (
        f"test {metric} {score:.4f} vs original {base:.4f} ({delta:+.4f}); "
        f"{'within' if accepted else 'beyond'} tolerance {tolerance}"
    )
    return Artifact(
        kind=kind,
        path=path.name,
        metric=metric,
        score=score,
        delta=delta,
        accepted=accepted,
        reason=reason,
        size_bytes=_size(path),
        sample=sample if accepted else None,
    )


def keras_artifacts(
    predictor: KerasPredictor,
    X_test: pd.DataFrame,
    y_test: np.ndarray,
    tolerance: float,
    workdir: Path,
    sample_of: Callable[[Predictor], Sample],
    console: Console,
) -> list[Artifact]:
    """Export, score and judge each optimised form; accepted ones stay in ``workdir``."""
    import shutil

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    console.print("exporting serving artifacts (SavedModel, TFLite dynamic-range int8)")
    task = "classification" if predictor.classes is not None else "regression"
    metric, base = evaluate.headline_score(task, y_test, predictor.predict(X_test))
    artifacts = []
    for kind, path in export(predictor, workdir).items():
        candidate = KerasPredictor(
            predictor.preprocessor,
            load_keras_artifact(workdir, kind),
            predictor.task,
            predictor.classes,
        )
        candidate.feature_names = predictor.feature_names
        out: Output = candidate.predict(X_test)
        _, score = evaluate.headline_score(task, y_test, out)
        artifact = judge(kind, path, score, base, metric, tolerance, sample_of(candidate))
        artifacts.append(artifact)
        console.print(
            f"  {kind}: {artifact.reason}, {artifact.size_bytes / 1024:.0f} KiB"
            f"{'' if artifact.accepted else ' [red]refused[/]'}"
        )
        if not artifact.accepted:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return artifacts


class ConversionError(ValueError):
    """skl2onnx cannot convert the pipeline; the message says why, in one line."""


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.split(" and attributes=")[0]  # skl2onnx dumps every node attribute
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _array_layout(pipeline: Any, names: list[str]) -> Any | None:
    """A copy of the pipeline whose first step selects columns by position, so the
    graph takes one float array in feature order; ``None`` when it does not start with
    a ColumnTransformer over named columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or not isinstance(
        pipeline.steps[0][1], ColumnTransformer
    ):
        return None
    fitted = copy.deepcopy(pipeline)
    ct = fitted.steps[0][1]
    layout = []
    for label, trans, cols in ct.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        cols = [cols] if isinstance(cols, str | int) else list(cols)
        if not all(isinstance(c, int) or c in names for c in cols):
            return None
        layout.append((label, trans, [c if isinstance(c, int) else names.index(c) for c in cols]))
    ct.transformers_ = layout
    return fitted


def convert(pipeline: Any, X: pd.DataFrame, classifier: bool) -> bytes:
    """The fitted pipeline as an ONNX graph (see :mod:`modelport.onnx_predictor` for
    its inputs and outputs); raises :class:`ConversionError`."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    names = [str(c) for c in X.columns]
    numeric = all(pd.api.types.is_numeric_dtype(X[c]) for c in X.columns)
    steps = dict(getattr(pipeline, "steps", []))
    if "raw" in steps:  # say it in our terms: skl2onnx would name the class only
        raise ConversionError(
            f"skl2onnx has no converter for {type(steps['raw']).__name__}, the step that "
            "imputes missing values and expands dates; the native pipeline serves"
        )
    model, inputs = (_array_layout(pipeline, names) if numeric else None), []
    if model is not None:
        inputs = [(ARRAY_INPUT, FloatTensorType([None, len(names)]))]
    else:
        model = pipeline
        inputs = [
            (
                c,
                FloatTensorType([None, 1])
                if pd.api.types.is_numeric_dtype(X[c])
                else StringTensorType([None, 1]),
            )
            for c in names
        ]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # converter chatter; the result is judged below
            onx = convert_sklearn(
                model,
                initial_types=inputs,
                # Probabilities as a plain (n, k) tensor, not a list of dicts per row.
                options={"zipmap": False} if classifier else None,
            )
    except Exception as exc:  # any converter failure: refused with its reason
        cause = exc.__cause__ or exc.__context__
        why = _one_line(exc) + (f" ({_one_line(cause)})" if cause is not None else "")
        raise ConversionError(f"skl2onnx cannot convert it: {why}") from None
    return bytes(onx.SerializeToString())


def _per_call(fn: Callable[[], object]) -> Callable[[], float]:
    """A timer of ``fn``: each call runs it in a chunk of about 10 ms and returns
    seconds per call (chunks amortise the timer; a slow ``fn`` runs once)."""
    start = time.perf_counter()
    fn()  # warm-up, and the size of a chunk
    first = time.perf_counter() - start
    n = max(1, min(1000, int(0.01 / max(first, 1e-7))))

    def chunk() -> float:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n

    return chunk


def _paired(
    a: Callable[[], object], b: Callable[[], object], budget_s: float
) -> tuple[float, float]:
    """Median seconds per call of ``a`` and of ``b``, timed in alternating chunks
    (so load from other processes falls on both alike), within about ``budget_s``."""
    ta, tb = _per_call(a), _per_call(b)
    xs: list[float] = []
    ys: list[float] = []
    start = time.perf_counter()
    while len(xs) < 15 and (len(xs) < 3 or time.perf_counter() - start < budget_s):
        xs.append(ta())
        ys.append(tb())
        if time.perf_counter() - start > 4 * budget_s:  # very slow calls: enough
            break
    return float(np.median(xs)), float(np.median(ys))


def measure(
    native: Predictor,
    artifact: Predictor,
    X: pd.DataFrame,
    all_numeric: bool,
    batch_rows: int = 1000,
    budget_s: float = 0.3,
) -> Latency:
    """Single-row and ``batch_rows``-row latency of both forms, each given the input
    the service gives it (float arrays for all-numeric models, else a frame)."""
    import sklearn

    names = list(X.columns)
    batch = X.iloc[np.arange(batch_rows) % len(X)]
    row: pd.DataFrame | np.ndarray = X.head(1)
    rows: pd.DataFrame | np.ndarray = batch
    if all_numeric:
        row, rows = X.head(1).to_numpy(dtype=float), batch[names].to_numpy(dtype=float)
    # As the service sets it (service.runtime): no finiteness or parameter checks.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        native_row, onnx_row = _paired(
            lambda: native.predict(row), lambda: artifact.predict(row), budget_s
        )
        native_batch, onnx_batch = _paired(
            lambda: native.predict(rows), lambda: artifact.predict(rows), budget_s
        )
    return Latency(
        row_us=round(onnx_row * 1e6, 2),
        native_row_us=round(native_row * 1e6, 2),
        batch_rows=batch_rows,
        batch_ms=round(onnx_batch * 1e3, 4),
        native_batch_ms=round(native_batch * 1e3, 4),
    )


def served_native(predictor: SklearnPredictor, X: pd.DataFrame, all_numeric: bool) -> Predictor:
    """The native model as the service runs it: array fast path on when it takes it."""
    native = SklearnPredictor(predictor.estimator, predictor.task, predictor.classes)
    native.feature_names = list(X.columns)
    if all_numeric:
        native.enable_fast_path(list(X.columns), X.head(20))
    return native


def sklearn_artifacts(
    predictor: SklearnPredictor,
    X_test: pd.DataFrame,
    y_test: np.ndarray,
    tolerance: float,
    workdir: Path,
    sample_of: Callable[[Predictor], Sample],
    console: Console,
) -> list[Artifact]:
    """Convert, score, judge and time the ONNX form; an accepted one stays in
    ``workdir``. Never raises for a pipeline that cannot be converted."""
    task = predictor.task
    out = predictor.predict(X_test)
    metric, base = evaluate.headline_score(task, y_test, out)
    path = workdir / ONNX_FILE
    names = [str(c) for c in X_test.columns]
    all_numeric = all(pd.api.types.is_numeric_dtype(X_test[c]) for c in X_test.columns)
    try:
        onx = convert(predictor.estimator, X_test, classifier=task == "classification")
        candidate = OnnxPredictor(session(onx), task, predictor.classes, names)
    except Exception as exc:  # conversion or loading: refused, training goes on
        why = str(exc) if isinstance(exc, ConversionError) else _one_line(exc)
        console.print(f"  onnx: [red]refused[/]: {why}")
        return [
            Artifact(
                kind="onnx",
                path=ONNX_FILE,
                metric=metric,
                accepted=False,
                reason=why,
                size_bytes=0,
            )
        ]
    path.write_bytes(onx)
    _, score = evaluate.headline_score(task, y_test, candidate.predict(X_test))
    artifact = judge("onnx", path, score, base, metric, tolerance, sample_of(candidate))
    if not artifact.accepted:
        path.unlink()
        console.print(f"  onnx: {artifact.reason} [red]refused[/]")
        return [artifact]
    latency = measure(served_native(predictor, X_test, all_numeric), candidate, X_test, all_numeric)
    console.print(
        f"  onnx: {artifact.reason}, {artifact.size_bytes / 1024:.0f} KiB; one row "
        f"{latency.row_us:.0f} µs vs native {latency.native_row_us:.0f} µs, "
        f"{latency.batch_rows} rows {latency.batch_ms:.2f} ms vs {latency.native_batch_ms:.2f} ms"
        f" ({'faster' if latency.faster else 'not faster'})"
    )
    return [artifact.model_copy(update={"latency": latency})]
