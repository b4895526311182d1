"""Held-out metrics and the over-fitting check."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm

from modelport.predictors import Output


def classification_metrics(y_true: np.ndarray, out: Output, classes: list[Any]) -> dict[str, Any]:
    """accuracy, precision, recall, F1 (binary: of the second class; else macro), ROC-AUC."""
    assert out.probabilities is not None
    y_pred = np.asarray(out.predictions)
    binary = len(classes) == 2
    avg: Any = "binary" if binary else "macro"
    kw: dict[str, Any] = {"average": avg, "zero_division": 0}
    if binary:
        kw["pos_label"] = classes[1]
    proba = out.probabilities
    if binary:
        auc = skm.roc_auc_score(y_true == classes[1], proba[:, 1])
    else:
        auc = skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, **kw)),
        "recall": float(skm.recall_score(y_true, y_pred, **kw)),
        "f1": float(skm.f1_score(y_true, y_pred, **kw)),
        "roc_auc": float(auc),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "per_class": per_class(y_true, y_pred, classes),
    }


def per_class(y_true: np.ndarray, y_pred: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    """Class -> precision, recall, F1 and support on the given rows."""
    p, r, f, n = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    return {
        str(c): {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": float(n[i]),
        }
        for i, c in enumerate(classes)
    }


def regression_metrics(y_true: np.ndarray, out: Output) -> dict[str, float]:
    y_pred = np.asarray(out.predictions, dtype=float)
    mse = float(skm.mean_squared_error(y_true, y_pred))
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }


def headline_score(task: str, y_true: np.ndarray, out: Output) -> tuple[str, float]:
    """The one score used for train-vs-validation gaps and production comparisons."""
    if task == "classification":
        return "accuracy", float(skm.accuracy_score(y_true, np.asarray(out.predictions)))
    return "r2", float(skm.r2_score(y_true, np.asarray(out.predictions, dtype=float)))
