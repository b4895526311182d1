"""Optimised serving artifacts for Keras models, made and judged at training time.

Two forms, each scored on the test split against the original network:
- ``saved_model``: the exported TensorFlow signature (the same float32 graph,
  without Keras' per-call Python overhead);
- ``tflite``: TensorFlow Lite with dynamic-range quantization (int8 weights).

An artifact that loses more than ``MODELPORT_ARTIFACT_TOLERANCE`` of the test score
is refused: recorded in the model card with the reason, never stored or served.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from modelport.metadata import Artifact, Sample
from modelport.predictors import (
    SAVED_MODEL_DIR,
    TFLITE_FILE,
    KerasPredictor,
    Output,
    Predictor,
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
