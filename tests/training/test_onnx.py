"""The ONNX Runtime form of scikit-learn pipelines: converted, judged and timed at
training, refused (never a training failure) when it cannot be made or loses too much,
chosen at serving by MODELPORT_SKLEARN_ARTIFACT; old cards still load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from modelport import store
from modelport.metadata import Artifact, Latency, ModelCard
from modelport.onnx_predictor import ONNX_FILE, OnnxPredictor, session
from modelport.predictors import SklearnPredictor
from training import optimize
from training.data import feature_specs, load_csv
from training.estimators import build_sklearn
from training.run import train

QUIET = Console(quiet=True)


def _latency(row_us: float, batch_ms: float) -> Latency:
    return Latency(
        row_us=row_us, native_row_us=100.0, batch_rows=1000, batch_ms=batch_ms, native_batch_ms=1.0
    )


def _onnx(accepted: bool, latency: Latency | None) -> Artifact:
    return Artifact(
        kind="onnx",
        path=ONNX_FILE,
        metric="accuracy",
        score=0.97 if accepted else None,
        delta=0.0 if accepted else None,
        accepted=accepted,
        reason="test accuracy 0.97 vs 0.97 (+0.0000); within tolerance 0.01"
        if accepted
        else "skl2onnx cannot convert it: MissingShapeCalculator: no shape calculator",
        size_bytes=1000 if accepted else 0,
        latency=latency,
    )


@pytest.mark.unit
def test_faster_means_one_row_ten_percent_quicker_and_the_batch_quicker() -> None:
    assert _latency(50.0, 0.5).faster
    assert not _latency(95.0, 0.5).faster  # within the noise at one row
    assert not _latency(50.0, 1.5).faster  # slower for batches
    assert not _latency(50.0, 0.95).faster  # within the noise for batches


@pytest.mark.integration
def test_serving_form_choice(trained) -> None:
    card: ModelCard = trained["breast-cancer"].card
    # Without a linear form (served without scikit-learn), which auto keeps native.
    base = card.model_copy(update={"linear": None})
    fast = base.model_copy(update={"artifacts": [_onnx(True, _latency(10.0, 0.2))]})
    slow = base.model_copy(update={"artifacts": [_onnx(True, _latency(99.0, 2.0))]})
    refused = base.model_copy(update={"artifacts": [_onnx(False, None)]})
    assert store.sklearn_artifact(fast, "auto") == "onnx"
    assert store.sklearn_artifact(slow, "auto") == "native"
    assert store.sklearn_artifact(slow, "onnx") == "onnx"  # asked for by name: served
    assert store.sklearn_artifact(refused, "auto") == "native"
    assert store.sklearn_artifact(fast, "native") == "native"
    with pytest.raises(store.StoreError, match=r"no accepted 'onnx' artifact.*MissingShape"):
        store.sklearn_artifact(refused, "onnx")
    bare = base.model_copy(update={"artifacts": []})
    with pytest.raises(store.StoreError, match=r"this model has: none"):
        store.sklearn_artifact(bare, "onnx")
    assert card.linear is not None  # the logistic regression has one
    linear = card.model_copy(update={"artifacts": fast.artifacts})
    assert store.sklearn_artifact(linear, "auto") == "native"
    assert store.sklearn_artifact(linear, "onnx") == "onnx"


@pytest.mark.integration
@pytest.mark.parametrize("name", ["breast-cancer", "diabetes"])
def test_recipes_store_a_judged_and_timed_onnx_form(trained, name: str) -> None:
    model = store.resolve(name)
    card = store.card_of(model)
    (onnx,) = [a for a in card.artifacts if a.kind == "onnx"]
    assert onnx.accepted, onnx.reason
    assert onnx.metric == ("accuracy" if name == "breast-cancer" else "r2")
    assert onnx.delta is not None and abs(onnx.delta) <= 0.01 and "within tolerance" in onnx.reason
    assert onnx.path in card.integrity.files  # hashed with the model's other files
    assert (Path(model.path) / ONNX_FILE).stat().st_size == onnx.size_bytes > 0
    lat = onnx.latency
    assert lat is not None and lat.batch_rows == 1000
    assert min(lat.row_us, lat.native_row_us, lat.batch_ms, lat.native_batch_ms) > 0
    # The stored form gives its own recorded sample, and the native model's within float32.
    predictor = store.predictor_of(model, card, sklearn_kind="onnx")
    assert isinstance(predictor, OnnxPredictor) and predictor.artifact == "onnx"
    rows = pd.DataFrame(card.sample.instances, columns=card.feature_names)
    out = predictor.predict(rows.to_numpy(dtype=float))  # the service's array input
    native = store.predictor_of(model, card).predict(rows)
    assert onnx.sample is not None
    if name == "breast-cancer":
        assert out.predictions == native.predictions == onnx.sample.predictions
        assert np.allclose(out.probabilities, onnx.sample.probabilities, atol=1e-7)
        assert np.allclose(out.probabilities, native.probabilities, atol=1e-5)
    else:
        assert np.allclose(out.predictions, onnx.sample.predictions, rtol=1e-6)
        assert np.allclose(out.predictions, native.predictions, rtol=1e-4)
    # The frame input (models with text columns get one) answers the same.
    assert predictor.predict(rows).predictions == out.predictions
    # Explanations of the ONNX form go through the pipeline it was converted from.
    assert predictor.native.predict(rows).predictions == native.predictions


@pytest.mark.integration
def test_categorical_pipeline_converts_with_one_input_per_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 240
    X = pd.DataFrame({"a": rng.normal(size=n), "colour": rng.choice(["red", "green", "blue"], n)})
    y = ((X["a"] + (X["colour"] == "red") * 1.5) > 0.5).astype(int).to_numpy()
    pipeline, _ = build_sklearn("classification", feature_specs(X), 0, "random-forest")
    pipeline.set_params(model__n_estimators=10).fit(X, y)
    native = SklearnPredictor(pipeline, "classification", [0, 1])
    artifacts = optimize.sklearn_artifacts(
        native, X, y, 0.01, tmp_path, lambda p: _own_sample(p, X), QUIET
    )
    (onnx,) = artifacts
    assert onnx.accepted, onnx.reason
    predictor = OnnxPredictor(
        session(tmp_path / ONNX_FILE), "classification", [0, 1], ["a", "colour"]
    )
    assert {i.name for i in predictor.session.get_inputs()} == {"a", "colour"}
    assert predictor.enable_fast_path(["a", "colour"], X.head(3)) is not None  # frames only
    unseen = X.head(4).assign(colour=["red", "mauve", "blue", "green"])  # ignored like one-hot
    assert np.allclose(predictor.scores(unseen), native.scores(unseen), atol=1e-6)
    assert onnx.latency is not None and onnx.latency.native_row_us > 0


def _own_sample(predictor, X: pd.DataFrame):  # type: ignore[no-untyped-def]
    from training.run import _sample

    return _sample(predictor, X, 3)


@pytest.mark.unit
def test_a_step_without_a_converter_is_a_conversion_error() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    X = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
    y = (X["a"] > 20).astype(int)
    pipeline = Pipeline(
        [
            ("pre", ColumnTransformer([("log", FunctionTransformer(np.log1p), ["a", "b"])])),
            ("model", LogisticRegression()),
        ]
    ).fit(X, y)
    with pytest.raises(optimize.ConversionError, match=r"^skl2onnx cannot convert it: \w+"):
        optimize.convert(pipeline, X, classifier=True)


@pytest.mark.integration
def test_refusals_are_recorded_and_training_goes_on(tmp_path: Path, settings) -> None:
    rng = np.random.default_rng(1)
    n = 200
    # Missing values: the pipeline starts with modelport's imputing step.
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["y"] = (frame["a"] - frame["b"] > 0).astype(int)
    frame.loc[::11, "a"] = np.nan
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    data = load_csv(path, "y", task=None, min_rows=30, max_categories=50)
    result = train(data, name="gaps", framework="sklearn", settings=settings, console=QUIET)
    assert result.registered
    (onnx,) = result.card.artifacts
    assert not onnx.accepted and onnx.score is None and onnx.latency is None
    assert onnx.reason.startswith("skl2onnx has no converter for RawFeatures")
    model = store.resolve(result.tag)
    assert not (Path(model.path) / ONNX_FILE).exists()
    assert store.sklearn_artifact(store.card_of(model), "auto") == "native"

    # float32 cannot hold the variation of values near 1e9 (its step there is 64): the
    # converted regressor loses most of its R², so it is refused and not kept.
    u = rng.uniform(0, 100, n)
    X = pd.DataFrame({"t": 1e9 + u})
    y = u
    pipeline, _ = build_sklearn("regression", feature_specs(X), 0, "linear")
    pipeline.fit(X, y)
    work = tmp_path / "work"
    work.mkdir()
    (far,) = optimize.sklearn_artifacts(
        SklearnPredictor(pipeline, "regression", None),
        X,
        y,
        0.01,
        work,
        lambda p: _own_sample(p, X),
        QUIET,
    )
    assert not far.accepted and far.delta is not None and far.delta < -0.01
    assert "beyond tolerance 0.01" in far.reason and far.sample is None
    assert not (work / ONNX_FILE).exists()


@pytest.mark.integration
def test_cards_without_the_new_fields_still_load(trained) -> None:
    raw = trained["breast-cancer"].card.to_metadata()["modelport"]
    # An artifact as cards recorded it before ONNX (no latency), then no artifacts at all.
    raw["artifacts"] = [
        {
            "kind": "tflite",
            "path": "model.tflite",
            "metric": "accuracy",
            "score": 0.95,
            "delta": -0.005,
            "accepted": True,
            "reason": "within tolerance",
            "size_bytes": 8000,
        }
    ]
    card = ModelCard.from_metadata({"modelport": raw})
    assert card.artifacts[0].latency is None and card.artifact("onnx") is None
    assert store.sklearn_artifact(card, "auto") == "native"
    del raw["artifacts"]
    assert ModelCard.from_metadata({"modelport": raw}).artifacts == []
    # A refused ONNX form has no score: it round-trips through BentoML's metadata,
    # which refuses None values.
    refused = card.model_copy(update={"artifacts": [_onnx(False, None)]})
    again = ModelCard.from_metadata(refused.to_metadata())
    assert (
        again.artifacts == refused.artifacts
        and "score" not in refused.to_metadata()["modelport"]["artifacts"][0]
    )
    timed = card.model_copy(update={"artifacts": [_onnx(True, _latency(10.0, 0.2))]})
    assert ModelCard.from_metadata(timed.to_metadata()).artifacts[0].latency == _latency(10.0, 0.2)
