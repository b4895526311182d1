"""Training each recipe into a temporary store, then loading it back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from modelport import store
from modelport.metadata import verify_model_files
from training.data import Dataset, frame_sha256, validate_frame
from training.recipes import RECIPES
from training.run import split, train

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("recipe", "floors"),
    [
        ("breast-cancer", {"accuracy": 0.95, "roc_auc": 0.98}),
        ("diabetes", {"r2": 0.40}),
        pytest.param("breast-cancer-keras", {"accuracy": 0.93}, marks=pytest.mark.slow),
    ],
)
def test_recipe_meets_quality_floor(trained, recipe: str, floors: dict[str, float]) -> None:
    test = trained[recipe].card.evaluation.test
    for metric, floor in floors.items():
        assert test[metric] >= floor, f"{recipe} {metric} {test[metric]:.4f} < {floor}"


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_stored_model_carries_card_and_reproduces_predictions(trained, settings, recipe) -> None:
    result = trained[recipe]
    model = store.resolve(recipe)
    assert str(model.tag) == result.tag
    assert model.info.labels["stage"] == "production"
    assert model.info.labels["framework"] == RECIPES[recipe].framework
    assert model.info.labels["task"] == RECIPES[recipe].task
    card = store.card_of(model)
    assert card == result.card.model_copy(update={"integrity": card.integrity})
    assert card.integrity.files and verify_model_files(Path(model.path), card.integrity.files) == []
    assert len(card.integrity.data_sha256) == 64
    assert [f.name for f in card.features] == list(RECIPES[recipe].load().columns.drop("target"))
    assert all(f.min is not None and f.max is not None for f in card.features)
    assert {b.feature for b in card.drift.features} == set(card.feature_names)
    for bins in card.drift.features:
        assert sum(bins.ratios) == pytest.approx(1.0, abs=1e-4)
        assert len(bins.ratios) == len(bins.edges) + 1
    if card.task == "classification":
        assert card.classes == [0, 1]
        assert card.drift.class_ratios is not None
        assert sum(card.drift.class_ratios.values()) == pytest.approx(1.0, abs=1e-4)
        assert card.evaluation.confusion_matrix is not None
        assert set(card.evaluation.test) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    else:
        assert card.drift.prediction_buckets
        assert set(card.evaluation.test) == {"mse", "rmse", "mae", "r2"}
        assert card.evaluation.test["rmse"] == pytest.approx(card.evaluation.test["mse"] ** 0.5)

    # The loaded model predicts exactly what the trained one did, on the whole test split.
    frame = RECIPES[recipe].load()
    X, y, task = validate_frame(
        frame, "target", source=recipe, task=RECIPES[recipe].task, min_rows=30, max_categories=50
    )
    s = split(Dataset(X, y, task, recipe, frame_sha256(frame)), settings)
    loaded = store.predictor_of(model, card).predict(s.X_test)
    again = store.predictor_of(model, card).predict(s.X_test.head(len(card.sample.instances)))
    assert again.predictions == pytest.approx(card.sample.predictions)
    if task == "classification":
        acc = float(np.mean(np.asarray(loaded.predictions) == s.y_test))
        assert acc == pytest.approx(card.evaluation.test["accuracy"])
    else:
        resid = np.asarray(loaded.predictions) - s.y_test
        assert float(np.mean(resid**2)) == pytest.approx(card.evaluation.test["mse"])


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_report_has_the_pictures(trained, recipe) -> None:
    report = trained[recipe].report
    assert report.name == "report.html" and report.stat().st_size > 10_000
    names = {p.name for p in report.parent.glob("*.png")}
    expected = (
        {"confusion_matrix.png", "roc_curve.png"}
        if "cancer" in recipe
        else {"predicted_vs_actual.png", "residuals.png"}
    )
    if recipe.endswith("keras"):
        expected.add("loss_curve.png")
    assert expected <= names
    assert "data:image/png;base64," in report.read_text()


def _cancer() -> Dataset:
    frame = RECIPES["breast-cancer"].load()
    X, y, task = validate_frame(
        frame, "target", source="bc", task="classification", min_rows=30, max_categories=50
    )
    return Dataset(X, y, task, "bc", frame_sha256(frame))


@pytest.mark.slow
def test_gate_refuses_a_model_worse_than_production(trained, settings) -> None:
    quiet = Console(quiet=True)
    loose = settings.model_copy(update={"gate_min_metrics": {}})
    first = train(_cancer(), name="gated", framework="sklearn", settings=loose, console=quiet)
    store.promote(first.tag)
    # A one-epoch network is far worse than the production logistic regression.
    weak = loose.model_copy(update={"keras_epochs": 1, "keras_patience": 1})
    before = {str(m.tag) for m in store.list_models("gated")}
    rejected = train(_cancer(), name="gated", framework="keras", settings=weak, console=quiet)
    assert not rejected.registered
    assert any("worse than production gated:" in f for f in rejected.gate.failures)
    assert {str(m.tag) for m in store.list_models("gated")} == before
    forced = train(
        _cancer(), name="gated", framework="keras", settings=weak, console=quiet, force=True
    )
    assert forced.registered and forced.gate.failures
    assert store.resolve("gated").tag == store.production_model("gated").tag  # type: ignore[union-attr]
    assert str(store.resolve("gated").tag) == first.tag


def test_gate_minimums_block_registration(settings) -> None:
    strict = settings.model_copy(update={"gate_min_metrics": {"accuracy": 0.9999}})
    result = train(
        _cancer(),
        name="too-strict",
        framework="sklearn",
        settings=strict,
        console=Console(quiet=True),
    )
    assert not result.registered
    assert result.gate.failures == [
        f"test accuracy {result.card.evaluation.test['accuracy']:.4f} is below the minimum 0.9999"
    ]
    assert store.list_models() and not any(m.tag.name == "too-strict" for m in store.list_models())


def test_promote_archives_the_previous_production(settings) -> None:
    quiet = Console(quiet=True)
    a = train(_cancer(), name="promo", framework="sklearn", settings=settings, console=quiet)
    # The same data and parameters again make no new version unless forced.
    same = train(_cancer(), name="promo", framework="sklearn", settings=settings, console=quiet)
    assert same.existing and same.tag == a.tag and not same.registered
    assert f"same data (sha256 {same.card.integrity.data_sha256[:12]})" in same.notes[0]
    b = train(
        _cancer(), name="promo", framework="sklearn", settings=settings, console=quiet, force=True
    )
    store.promote(a.tag)
    model, demoted = store.promote(b.tag)
    assert str(model.tag) == b.tag and [str(m.tag) for m in demoted] == [a.tag]
    stages = {str(m.tag): m.info.labels["stage"] for m in store.list_models("promo")}
    assert stages == {a.tag: "archived", b.tag: "production"}
    # Labels live in model.yaml, outside the hashed files: integrity still holds.
    card = store.card_of(model)
    assert verify_model_files(Path(model.path), card.integrity.files) == []


def test_categorical_csv_trains_with_one_hot(tmp_path: Path, settings) -> None:
    rng = np.random.default_rng(3)
    n = 300
    colour = rng.choice(["red", "green", "blue"], n)
    x = rng.normal(size=n)
    y = np.where((colour == "red") | (x > 1), "pos", "neg")
    path = tmp_path / "cat.csv"
    pd.DataFrame({"x": x, "colour": colour, "y": y}).to_csv(path, index=False)
    from training.data import load_csv

    data = load_csv(path, "y", task=None, min_rows=30, max_categories=50)
    result = train(
        data, name="cat", framework="sklearn", settings=settings, console=Console(quiet=True)
    )
    assert result.registered
    assert result.card.evaluation.test["accuracy"] > 0.9
    assert result.card.classes == ["neg", "pos"]
    spec = {f.name: f for f in result.card.features}["colour"]
    assert spec.kind == "categorical" and spec.categories == ["blue", "green", "red"]
