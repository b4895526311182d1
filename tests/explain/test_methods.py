"""Explainers on in-process scikit-learn pipelines: which method each model gets, and
that attributions add up to the model's own output for every kind of model."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.tree import DecisionTreeRegressor

from modelport.explain import (
    BudgetExceededError,
    ExplainUnavailableError,
    explainer_for,
)
from tests.explain.models import fitted, frame

pytestmark = pytest.mark.unit

CASES: list[tuple[str, str, Any, str]] = [
    ("logistic-binary", "binary", LogisticRegression(max_iter=5000), "linear-exact"),
    ("logistic-multiclass", "multiclass", LogisticRegression(max_iter=5000), "linear-exact"),
    ("ridge", "regression", Ridge(), "linear-exact"),
    ("forest-binary", "binary", RandomForestClassifier(30, random_state=0), "tree-shap"),
    ("forest-multiclass", "multiclass", RandomForestClassifier(30, random_state=0), "tree-shap"),
    ("boosting-binary", "binary", GradientBoostingClassifier(random_state=0), "tree-shap"),
    (
        "boosting-multiclass",
        "multiclass",
        GradientBoostingClassifier(n_estimators=30, random_state=0),
        "permutation",  # shap 0.51's TreeSHAP takes binary boosting only
    ),
    ("hist-boosting-binary", "binary", HistGradientBoostingClassifier(random_state=0), "tree-shap"),
    ("forest-regression", "regression", RandomForestRegressor(30, random_state=0), "tree-shap"),
    ("boosting-regression", "regression", GradientBoostingRegressor(random_state=0), "tree-shap"),
    ("tree-regression", "regression", DecisionTreeRegressor(max_depth=5), "tree-shap"),
    ("knn-binary", "binary", KNeighborsClassifier(), "permutation"),
    ("knn-regression", "regression", KNeighborsRegressor(), "permutation"),
]


@pytest.mark.parametrize(("name", "kind", "estimator", "method"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("all_classes", [False, True])
def test_attributions_add_up_to_the_models_output(
    name: str, kind: str, estimator: Any, method: str, all_classes: bool
) -> None:
    X, y = frame(kind)
    task = "regression" if kind == "regression" else "classification"
    predictor, card, X_test = fitted(estimator, X, y, task)
    explainer = explainer_for(predictor, card)
    assert explainer.method == method
    rows = X_test.head(6 if explainer.sampled else 40)
    ex = explainer.explain(rows, all_classes=all_classes)
    n, F = len(rows), len(card.feature_names)
    k = len(card.classes or []) if all_classes and task == "classification" else 1
    assert ex.attributions.shape == (n, k, F)  # one per original feature: one-hot summed
    assert ex.feature_names == card.feature_names
    assert ex.additivity_error() <= ex.tolerance
    reference = predictor.predict(rows)
    assert ex.predictions == reference.predictions
    scores = predictor.scores(rows).reshape(n, -1)
    if task == "classification":
        assert ex.output == "probability"
        cls = np.array([[card.classes.index(c) for c in row] for row in ex.classes])  # type: ignore[union-attr]
        explained = np.take_along_axis(scores, cls, axis=1)
    else:
        assert ex.output == "value"
        explained = scores
    np.testing.assert_allclose(ex.values, explained, rtol=0, atol=ex.tolerance)
    # The base value does not depend on the row.
    if all_classes or task == "regression":
        assert np.ptp(ex.base_values, axis=0).max() < 1e-9
    # The text feature tied to the target gets a share.
    assert np.abs(ex.attributions[:, :, F - 1]).sum() > 0


def test_linear_margin_matches_shap_linear_explainer() -> None:
    import shap

    X, y = frame("binary")
    predictor, card, X_test = fitted(LogisticRegression(max_iter=5000), X, y, "classification")
    ours = explainer_for(predictor, card, space="margin")
    assert ours.output == "log-odds"
    ex = ours.explain(X_test, all_classes=True)
    assert ex.additivity_error() <= 1e-9
    pipeline = predictor.estimator
    Z = pipeline[:-1].transform(X_test)
    layout = ours.layout  # type: ignore[attr-defined]
    reference = shap.LinearExplainer(pipeline[-1], shap.maskers.Independent(layout.mean[None, :]))
    theirs = reference(Z).values @ layout.groups  # summed back to features
    np.testing.assert_allclose(ex.attributions[:, 1, :], theirs, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ex.attributions[:, 0, :], -theirs, rtol=1e-9, atol=1e-9)


def test_linear_probability_keeps_the_margins_signs_and_ranking() -> None:
    X, y = frame("binary")
    predictor, card, X_test = fitted(LogisticRegression(max_iter=5000), X, y, "classification")
    p = explainer_for(predictor, card).explain(X_test, all_classes=True).attributions
    m = explainer_for(predictor, card, space="margin").explain(X_test, all_classes=True)
    same = (np.sign(p) == np.sign(m.attributions)) | (np.abs(p) < 1e-15)
    assert same.all()
    assert (np.argsort(-np.abs(p), axis=2) == np.argsort(-np.abs(m.attributions), axis=2)).all()


def test_numeric_array_input_gives_the_frame_result() -> None:
    X, y = frame("regression")
    X = X.drop(columns=["site"])
    predictor, card, X_test = fitted(Ridge(), X, y, "regression")
    explainer = explainer_for(predictor, card)
    a = explainer.explain(X_test.to_numpy(dtype=float))
    b = explainer.explain(X_test)
    np.testing.assert_allclose(a.attributions, b.attributions, rtol=1e-12, atol=1e-12)


def test_sampled_budget_overrun_is_a_clear_error_not_a_hang() -> None:
    X, y = frame("binary")
    predictor, card, X_test = fitted(KNeighborsClassifier(), X, y, "classification")
    explainer = explainer_for(predictor, card, budget_seconds=30)
    start = time.perf_counter()
    with pytest.raises(BudgetExceededError, match=r"over its budget of 0\.01 s") as info:
        explainer.explain(X_test.head(200), budget_seconds=0.01)
    assert time.perf_counter() - start < 2
    assert info.value.budget_seconds == 0.01
    assert info.value.rows_done < 200


def test_sampled_needs_background_rows() -> None:
    X, y = frame("binary")
    predictor, card, _ = fitted(KNeighborsClassifier(), X, y, "classification")
    with pytest.raises(ExplainUnavailableError, match="no background rows"):
        explainer_for(predictor, card.model_copy(update={"explain": None}))


def test_unseen_category_is_explained() -> None:
    X, y = frame("binary")
    predictor, card, X_test = fitted(KNeighborsClassifier(), X, y, "classification")
    rows = X_test.head(2).copy()
    rows["site"] = ["never-seen", "north"]
    ex = explainer_for(predictor, card).explain(rows)
    assert ex.additivity_error() <= ex.tolerance


def test_rows_are_json_ready() -> None:
    import json

    X, y = frame("multiclass")
    predictor, card, X_test = fitted(LogisticRegression(max_iter=5000), X, y, "classification")
    rows = explainer_for(predictor, card).explain(X_test.head(2), all_classes=True).rows()
    decoded = json.loads(json.dumps(rows))
    assert [len(r["explanations"]) for r in decoded] == [3, 3]
    first = decoded[0]["explanations"][0]
    assert set(first) == {"class", "value", "base_value", "attributions"}
    assert list(first["attributions"]) == card.feature_names
    assert abs(first["base_value"] + sum(first["attributions"].values()) - first["value"]) < 1e-9
