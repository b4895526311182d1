"""The linear serving form: a pipeline stored as arrays at training, served without
scikit-learn, checked against the recorded outputs; and the linear head that the
ordinary fast path uses in place of scikit-learn's predict_proba."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from modelport.metadata import LinearForm
from modelport.predictors import SklearnPredictor, linear_form, linear_head


def _never() -> None:
    raise AssertionError("the pickled estimator was loaded")


def _pipeline(head: object, n: int, passthrough: int = 0) -> Pipeline:
    scaled = [f"f{i}" for i in range(passthrough, n)]
    parts = [("numeric", StandardScaler(), scaled)]
    if passthrough:
        parts.append(("raw", "passthrough", [f"f{i}" for i in range(passthrough)]))
    return Pipeline([("preprocess", ColumnTransformer(parts)), ("model", head)])


def _frame(X: np.ndarray):  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])


CASES = {
    "binary logistic": (load_breast_cancer, LogisticRegression(max_iter=5000), "classification"),
    "multinomial logistic": (load_iris, LogisticRegression(max_iter=5000), "classification"),
    "linear regression": (load_breast_cancer, LinearRegression(), "regression"),
    "ridge": (load_iris, Ridge(), "regression"),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", CASES)
def test_linear_form_reproduces_the_pipeline_without_loading_it(case: str) -> None:
    loader, head, task = CASES[case]
    X, y = loader(return_X_y=True)
    if task == "regression":
        y = X[:, 0] * 3 + y  # any continuous target
        X = X[:, 1:]
    pipe = _pipeline(head, X.shape[1], passthrough=2).fit(_frame(X), y)
    names = [f"f{i}" for i in range(X.shape[1])]
    form = linear_form(pipe, names)
    assert form is not None
    stored = LinearForm.model_validate(json.loads(json.dumps(form)))  # as the card keeps it
    expected = pipe.predict(_frame(X)) if task == "regression" else pipe.predict_proba(_frame(X))
    recorded = np.round(expected, 8)  # as the card records sample outputs
    classes = None if task == "regression" else [str(c) for c in np.unique(y)]
    predictor = SklearnPredictor(None, task, classes, loader=_never)
    assert predictor.use_linear_form(stored.model_dump(), names, X, recorded) is None
    assert np.allclose(predictor.scores(X), expected, rtol=1e-9, atol=1e-12)
    assert not predictor.loaded


@pytest.mark.unit
def test_a_form_that_does_not_reproduce_the_outputs_is_refused() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    names = [f"f{i}" for i in range(X.shape[1])]
    pipe = _pipeline(LogisticRegression(max_iter=5000), X.shape[1]).fit(_frame(X), y)
    form = linear_form(pipe, names)
    assert form is not None
    recorded = pipe.predict_proba(_frame(X))
    predictor = SklearnPredictor(None, "classification", ["0", "1"], loader=_never)
    tampered = {**form, "intercept": [form["intercept"][0] + 0.5]}
    assert "does not reproduce" in str(predictor.use_linear_form(tampered, names, X, recorded))
    assert "failed" in str(
        predictor.use_linear_form({**form, "link": "probit"}, names, X, recorded)
    )
    assert "does not fit" in str(
        predictor.use_linear_form({**form, "link": "identity"}, names, X, recorded)
    )
    assert predictor._fast is None and not predictor.loaded


@pytest.mark.unit
def test_only_understood_layouts_get_a_linear_form() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    names = [f"f{i}" for i in range(X.shape[1])]
    other_scaler = Pipeline(
        [
            ("preprocess", ColumnTransformer([("n", MinMaxScaler(), names)])),
            ("model", LogisticRegression(max_iter=5000)),
        ]
    ).fit(_frame(X), y)
    assert linear_form(other_scaler, names) is None
    from sklearn.ensemble import RandomForestClassifier

    forest = _pipeline(RandomForestClassifier(n_estimators=3), X.shape[1]).fit(_frame(X), y)
    assert linear_form(forest, names) is None
    assert linear_head(RandomForestClassifier()) is None


@pytest.mark.integration
def test_trained_linear_models_serve_without_sklearn_or_scipy(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A worker serving the trained demo models from their linear form never imports
    scikit-learn or SciPy, passes its self-tests and predicts like the pipeline."""
    from modelport import store

    for name in ("breast-cancer", "diabetes"):
        assert store.card_of(store.resolve(name)).linear is not None, name
    script = """
import json, sys
from modelport.settings import ServiceSettings
from service.runtime import ModelSet
models = ModelSet.load(ServiceSettings())
assert models.ready, models.failures
out = {}
for name, served in models.models.items():
    card = served.card
    from service.validation import parse_instances
    batch = parse_instances(card.sample.instances, served.schema, 100)
    result = served.predictor.predict(batch.model_input)
    out[name] = {"predictions": [str(p) for p in result.predictions],
                 "probabilities": None if result.probabilities is None
                 else result.probabilities.tolist()}
heavy = sorted(m for m in ("sklearn", "scipy", "pandas") if m in sys.modules)
print(json.dumps({"heavy": heavy, "out": out}))
"""
    env = {
        **os.environ,
        "MODELPORT_MODELS": "breast-cancer,diabetes",
        "MODELPORT_MONITORING": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["heavy"] == []
    for name in ("breast-cancer", "diabetes"):
        model = store.resolve(name)
        card = store.card_of(model)
        pipeline = store.predictor_of(model, card)
        expected = pipeline.predict(_frame_of(card))
        assert got["out"][name]["predictions"] == [str(p) for p in expected.predictions]
        if expected.probabilities is not None:
            assert np.allclose(got["out"][name]["probabilities"], expected.probabilities)


def _frame_of(card):  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.DataFrame(card.sample.instances, columns=card.feature_names)
