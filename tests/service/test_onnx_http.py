"""scikit-learn models served in their ONNX Runtime form over real HTTP: chosen by
MODELPORT_SKLEARN_ARTIFACT (auto: only when training measured it faster), self-tested
against its own recorded sample, refused ones keeping the service unready."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from modelport import store
from tests.service.test_ops import _assert_unready

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ONNX = {"MODELPORT_SKLEARN_ARTIFACT": "onnx"}


def _served_forms(s) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """model name -> the serving form the server lists it with."""
    with s.client() as c:
        return {m["name"]: m["artifact"] for m in c.get("/models").json()["models"]}


@pytest.fixture(scope="module")
def forest(trained, settings) -> str:  # type: ignore[no-untyped-def]
    """A small random forest on breast-cancer: ONNX Runtime answers a row in microseconds
    where scikit-learn's forest spends milliseconds, so ``auto`` picks it."""
    from training.data import Dataset, frame_sha256, validate_frame
    from training.estimators import parse_params
    from training.recipes import RECIPES
    from training.run import Choice, train

    recipe = RECIPES["breast-cancer"]
    frame = recipe.load()
    X, y, task = validate_frame(
        frame, recipe.target, source="forest", task=None, min_rows=30, max_categories=50
    )
    choice = Choice(estimator="random-forest", params=parse_params(["n_estimators=20"]))
    result = train(
        Dataset(X, y, task, "forest", frame_sha256(frame)),
        name="cancer-forest",
        framework="sklearn",
        settings=settings,
        console=Console(quiet=True),
        choice=choice,
    )
    assert result.registered
    (onnx,) = result.card.artifacts
    assert onnx.accepted and onnx.latency is not None and onnx.latency.faster, onnx
    return result.tag


def _rows(name: str, n: int) -> list[dict]:
    from training.recipes import RECIPES

    recipe = RECIPES[name]
    frame = recipe.load().drop(columns=[recipe.target]).sample(n, random_state=2)
    return frame.to_dict("records")


def test_auto_serves_the_onnx_form_only_where_training_found_it_faster(
    forest, start_server
) -> None:
    s = start_server(f"{forest},breast-cancer")
    forms = _served_forms(s)
    linear = store.card_of(store.resolve("breast-cancer"))
    assert forms == {
        "cancer-forest": "onnx",
        "breast-cancer": store.sklearn_artifact(linear, "auto"),
    }, s.log_text()[-2000:]
    model = store.resolve(forest)
    card = store.card_of(model)
    rows = _rows("breast-cancer", 40)
    with s.client() as c:
        r = c.post("/predict", json={"model": "cancer-forest", "instances": rows})
        assert r.status_code == 200, r.text
        got = r.json()
        data = pd.DataFrame(rows[:5])[card.feature_names].to_numpy(dtype=float)
        tensor = {"name": "input-0", "shape": [5, 30], "datatype": "FP64", "data": data.tolist()}
        v2 = c.post("/v2/models/cancer-forest/infer", json={"inputs": [tensor]})
        assert v2.status_code == 200, v2.text
    native = store.predictor_of(model, card).predict(pd.DataFrame(rows)[card.feature_names])
    assert got["predictions"] == native.predictions
    assert np.allclose(got["probabilities"], native.probabilities, atol=1e-6)
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert outputs["predict"] == native.predictions[:5]


def test_onnx_by_name_serves_both_recipes_and_explains_through_the_pipeline(
    trained, start_server
) -> None:
    s = start_server("breast-cancer,diabetes", env=ONNX)
    assert _served_forms(s) == {"breast-cancer": "onnx", "diabetes": "onnx"}
    with s.client(timeout=60) as c:
        for name in ("breast-cancer", "diabetes"):
            model = store.resolve(name)
            card = store.card_of(model)
            rows = _rows(name, 25)
            r = c.post(f"/models/{name}/predict", json={"instances": rows})
            assert r.status_code == 200, r.text
            native = store.predictor_of(model, card).predict(pd.DataFrame(rows)[card.feature_names])
            if card.task == "classification":
                assert r.json()["predictions"] == native.predictions
                assert np.allclose(r.json()["probabilities"], native.probabilities, atol=1e-5)
            else:
                assert np.allclose(r.json()["predictions"], native.predictions, rtol=1e-5)
        # Explanations: exact, from the pipeline the ONNX form was converted from.
        sample = {"model": "breast-cancer", "instances": _rows("breast-cancer", 3)}
        explained = c.post("/explain", json=sample)
        predicted = c.post("/predict", json=sample).json()
    assert explained.status_code == 200, explained.text
    assert explained.json()["method"] == "linear-exact"
    for i, row in enumerate(explained.json()["explanations"]):
        (out,) = row["explanations"]
        assert out["value"] == pytest.approx(max(predicted["probabilities"][i]), abs=1e-6)
    assert "Traceback" not in s.log_text()


def test_onnx_by_name_without_an_accepted_one_keeps_the_service_unready(
    trained, settings, tmp_path: Path, start_server
) -> None:
    from training.data import load_csv
    from training.run import train

    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    frame["y"] = (frame["a"] > frame["b"]).astype(int)
    frame.loc[::7, "b"] = np.nan  # imputed: a pipeline step skl2onnx cannot convert
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    data = load_csv(path, "y", task=None, min_rows=30, max_categories=50)
    result = train(
        data,
        name="gaps-served",
        framework="sklearn",
        settings=settings,
        console=Console(quiet=True),
    )
    assert result.registered
    s = start_server(result.tag, env=ONNX, wait=False)
    _assert_unready(
        s,
        f"model not ready: model {result.tag}: cannot load: no accepted 'onnx' artifact; "
        "this model has: onnx (skl2onnx has no converter for RawFeatures",
    )
