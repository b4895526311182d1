"""Small scikit-learn models with their model cards, built in-process for explainer tests
(tree ensembles, multiclass, categorical features) without the model store."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelport.explain import reference_of
from modelport.metadata import (
    DriftReference,
    Evaluation,
    FeatureSpec,
    Integrity,
    ModelCard,
    Sample,
)
from modelport.predictors import SklearnPredictor


def frame(kind: str, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Features with a text column ``site`` tied to the target, and the target."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

    loader = {"binary": load_breast_cancer, "multiclass": load_iris, "regression": load_diabetes}
    data = loader[kind](as_frame=True)
    X = data.data.iloc[:, :6].copy()
    y = data.target.to_numpy()
    rng = np.random.default_rng(seed)
    signal = y > np.median(y) if kind == "regression" else y == y.max()
    X["site"] = np.where(
        signal & (rng.random(len(y)) < 0.7), "north", rng.choice(["a", "b"], len(y))
    )
    return X, y


def features(X: pd.DataFrame) -> list[FeatureSpec]:
    out = []
    for name in X.columns:
        if pd.api.types.is_numeric_dtype(X[name]):
            out.append(FeatureSpec(name=name, kind="numeric", dtype=str(X[name].dtype)))
        else:
            cats = sorted(X[name].astype(str).unique())
            out.append(FeatureSpec(name=name, kind="categorical", dtype="object", categories=cats))
    return out


def fitted(
    estimator: Any, X: pd.DataFrame, y: np.ndarray, task: str
) -> tuple[SklearnPredictor, ModelCard, pd.DataFrame]:
    """(predictor, card with explanation reference, held-out rows)."""
    specs = features(X)
    numeric = [f.name for f in specs if f.kind == "numeric"]
    categorical = [f.name for f in specs if f.kind == "categorical"]
    steps: list[tuple[str, Any, list[str]]] = [("numeric", StandardScaler(), numeric)]
    if categorical:
        steps.append(
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                categorical,
            )
        )
    pipeline = Pipeline([("preprocess", ColumnTransformer(steps)), ("model", estimator)])
    cut = int(len(X) * 0.8)
    X_train, X_test = X.iloc[:cut], X.iloc[cut:].reset_index(drop=True)
    classes = None if task == "regression" else sorted({int(v) for v in y})
    pipeline.fit(X_train, y[:cut])
    predictor = SklearnPredictor(pipeline, task, classes)
    rows = X_test.head(3)
    out = predictor.predict(rows)
    card = ModelCard(
        framework="sklearn",
        task=task,  # type: ignore[arg-type]
        target="y",
        classes=classes,
        features=specs,
        evaluation=Evaluation(
            test={}, train_score=0, validation_score=0, score_name="x", overfit_gap=0, overfit=False
        ),
        params={},
        drift=DriftReference(features=[]),
        sample=Sample(
            instances=[
                {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                for r in rows.to_dict(orient="records")
            ],
            predictions=out.predictions,
            probabilities=None if out.probabilities is None else out.probabilities.tolist(),
        ),
        integrity=Integrity(data_sha256="0", files={}),
        data_source="test",
        rows={"train": cut, "validation": 0, "test": len(X) - cut},
    )
    card = card.model_copy(update={"explain": reference_of(X_train, card, seed=0)})
    predictor.feature_names = card.feature_names
    return predictor, card, X_test
