"""The served API over real HTTP: predictions, OIP V2, feedback, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modelport import store
from training.recipes import RECIPES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _rows(recipe: str, n: int) -> pd.DataFrame:
    frame = RECIPES[recipe].load().drop(columns=["target"])
    return frame.sample(n=n, random_state=7)


def _instances(rows: pd.DataFrame) -> list[dict]:
    return json.loads(rows.to_json(orient="records"))


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_predict_matches_in_process(server, recipe) -> None:
    rows = _rows(recipe, 25)
    model = store.resolve(recipe)
    card = store.card_of(model)
    expected = store.predictor_of(model, card).predict(rows)
    with server.client() as c:
        r = c.post("/predict", json={"model": recipe, "instances": _instances(rows)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == recipe and body["model_version"] == model.tag.version
    if card.task == "classification":
        assert body["predictions"] == expected.predictions
        assert np.allclose(body["probabilities"], expected.probabilities, atol=1e-6)
    else:
        assert np.allclose(body["predictions"], expected.predictions)
        assert body["probabilities"] is None


def test_predict_by_path_and_models_listing(server) -> None:
    with server.client() as c:
        listed = c.get("/models").json()
        names = {m["name"] for m in listed["models"]}
        assert names == set(RECIPES) and listed["failed"] == {}
        sample = next(m for m in listed["models"] if m["name"] == "diabetes")["sample"]
        r = c.post("/models/diabetes/predict", json={"instances": sample["instances"]})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1
        assert c.post("/models/nope/predict", json={"instances": []}).status_code == 404


def test_oip_v2_metadata_and_health(server) -> None:
    with server.client() as c:
        assert c.get("/v2").json()["name"] == "modelport"
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        meta = c.get("/v2/models/breast-cancer").json()
        assert meta["name"] == "breast-cancer" and len(meta["inputs"]) == 30
        assert {o["name"] for o in meta["outputs"]} == {"predict", "probabilities"}
        assert c.get("/v2/models/breast-cancer/ready").json()["ready"] is True
        missing = c.get("/v2/models/nope/ready")
        assert missing.status_code == 404 and "nope" in missing.json()["error"]


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_oip_v2_tensor_infer_matches_json(server, datatype) -> None:
    rows = _rows("breast-cancer", 4)
    data = rows.to_numpy(dtype=float)
    payload = {
        "id": "req-1",
        "inputs": [
            {
                "name": "input-0",
                "shape": list(data.shape),
                "datatype": datatype,
                "data": data.tolist(),
            }
        ],
    }
    with server.client() as c:
        r = c.post("/v2/models/breast-cancer/infer", json=payload)
        j = c.post("/predict", json={"model": "breast-cancer", "instances": _instances(rows)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "req-1" and body["model_name"] == "breast-cancer"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predict"]["shape"] == [4]
    assert outputs["predict"]["data"] == j.json()["predictions"]
    assert outputs["probabilities"]["shape"] == [4, 2]
    proba = np.asarray(outputs["probabilities"]["data"]).reshape(4, 2)
    assert np.allclose(proba, j.json()["probabilities"], atol=1e-5)


def test_oip_v2_named_inputs_and_output_selection(server) -> None:
    rows = _rows("diabetes", 3)
    inputs = [
        {"name": name, "shape": [3], "datatype": "FP64", "data": rows[name].tolist()}
        for name in rows.columns
    ]
    with server.client() as c:
        r = c.post(
            "/v2/models/diabetes/infer", json={"inputs": inputs, "outputs": [{"name": "predict"}]}
        )
        j = c.post("/predict", json={"model": "diabetes", "instances": _instances(rows)})
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["name"] == "predict" and out["datatype"] == "FP64"
    assert np.allclose(out["data"], j.json()["predictions"])


def _cancer_row() -> dict:
    return _instances(_rows("breast-cancer", 1))[0]


def _bad_predict_cases() -> list[tuple[str, object, int, str]]:
    row = _cancer_row()
    missing = {k: v for k, v in row.items() if k != "mean radius"}
    extra = {**row, "bogus": 1}
    text = {**row, "mean area": "big"}
    null = {**row, "mean area": None}
    boolean = {**row, "mean area": True}
    small = _instances(_rows("diabetes", 1))[0]
    return [
        ("unknown model", {"model": "nope", "instances": [row]}, 404, "'nope' is not served here"),
        ("no model with several served", {"instances": [row]}, 400, "model: required"),
        (
            "missing feature",
            {"model": "breast-cancer", "instances": [missing]},
            400,
            "instances[0]: missing feature(s) 'mean radius'",
        ),
        (
            "extra feature",
            {"model": "breast-cancer", "instances": [row, extra]},
            400,
            "instances[1]: unknown feature(s) 'bogus'",
        ),
        (
            "wrong type",
            {"model": "breast-cancer", "instances": [text]},
            400,
            "instances[0].mean area: expected a number, got a string 'big'",
        ),
        (
            "boolean",
            {"model": "breast-cancer", "instances": [boolean]},
            400,
            "instances[0].mean area: expected a number, got a boolean",
        ),
        (
            "null",
            {"model": "breast-cancer", "instances": [null]},
            400,
            "instances[0].mean area: missing value (null)",
        ),
        ("empty batch", {"model": "breast-cancer", "instances": []}, 400, "empty batch"),
        (
            "batch over limit",
            {"model": "diabetes", "instances": [small] * 2001},
            413,
            "2001 instances exceed the limit of 2000",
        ),
        ("instances not a list", {"model": "breast-cancer", "instances": 5}, 400, "instances"),
    ]


@pytest.mark.parametrize(
    ("case", "body", "status", "message"),
    _bad_predict_cases(),
    ids=[c[0] for c in _bad_predict_cases()],
)
def test_bad_predict_input(server, case, body, status, message) -> None:
    with server.client() as c:
        r = c.post("/predict", json=body)
    assert r.status_code == status, r.text
    assert message in r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(server, literal) -> None:
    row = json.dumps(_cancer_row()).replace('"mean area": ', f'"mean area": {literal}, "x": ', 1)
    row = json.loads(row)  # keeps the non-finite value, drops the placeholder below
    row.pop("x")
    raw = json.dumps({"model": "breast-cancer", "instances": [row]})
    with server.client() as c:
        r = c.post("/predict", content=raw, headers={"Content-Type": "application/json"})
        v2 = c.post(
            "/v2/models/breast-cancer/infer",
            content=json.dumps(
                {
                    "inputs": [
                        {
                            "name": "t",
                            "shape": [1, 30],
                            "datatype": "FP64",
                            "data": [float(literal.replace("Infinity", "inf"))] * 30,
                        }
                    ]
                }
            ),
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 400, r.text
    assert "instances[0].mean area: must be a finite number" in r.json()["error"]
    assert v2.status_code == 400 and "must be a finite number" in v2.json()["error"]


def test_body_over_size_limit_is_413(server) -> None:
    big = json.dumps({"model": "breast-cancer", "instances": [_cancer_row()] * 1900})
    assert len(big) > 1_000_000
    with server.client() as c:
        r = c.post("/predict", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "exceeds 1000000 bytes" in r.json()["error"]

        def chunks():  # no Content-Length: the guard must count the bytes itself
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536].encode()

        r = c.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413

        # A body within the limit in several chunks (several ASGI messages) is read whole.
        small = json.dumps({"model": "breast-cancer", "instances": [_cancer_row()] * 40})

        def pieces():
            for i in range(0, len(small), 1000):
                yield small[i : i + 1000].encode()

        r = c.post("/predict", content=pieces(), headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 40
        whole = c.post("/predict", content=small, headers={"Content-Type": "application/json"})
        assert whole.json() == r.json()


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (
            {"inputs": [{"name": "t", "shape": [1, 29], "datatype": "FP32", "data": [0.0] * 29}]},
            400,
            "inputs[0].shape: expected [n, 30]",
        ),
        (
            {"inputs": [{"name": "t", "shape": [2, 30], "datatype": "FP32", "data": [0.0] * 30}]},
            400,
            "has 30 elements, the shape needs 60",
        ),
        (
            {"inputs": [{"name": "t", "shape": [1, 30], "datatype": "BYTES", "data": ["a"] * 30}]},
            400,
            "inputs[0].datatype: 'BYTES' is not a numeric type",
        ),
        ({"inputs": []}, 400, "inputs: expected a non-empty list"),
        (
            {"inputs": [{"name": "mean radius", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
            400,
            "missing input(s) for feature(s)",
        ),
        (
            {"inputs": [{"name": "t", "shape": [1, 30], "datatype": "FP32", "data": ["x"] * 30}]},
            400,
            "inputs[0].data: expected a (nested) list of numbers",
        ),
    ],
)
def test_bad_infer_input(server, payload, status, message) -> None:
    with server.client() as c:
        r = c.post("/v2/models/breast-cancer/infer", json=payload)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_infer_unknown_model_and_invalid_json(server) -> None:
    with server.client() as c:
        r = c.post("/v2/models/nope/infer", json={"inputs": []})
        assert r.status_code == 404 and "nope" in r.json()["error"]
        r = c.post(
            "/v2/models/diabetes/infer",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]


def test_feedback_validation(server) -> None:
    with server.client() as c:
        ok = c.post(
            "/feedback", json={"model": "breast-cancer", "items": [{"prediction": 1, "label": 0}]}
        )
        assert ok.status_code == 200 and ok.json()["accepted"] == 1
        bad = c.post(
            "/feedback",
            json={"model": "breast-cancer", "items": [{"prediction": 1, "label": "cat"}]},
        )
        assert bad.status_code == 400
        assert "items[0].label: unknown class 'cat'" in bad.json()["error"]
        bad = c.post(
            "/feedback", json={"model": "diabetes", "items": [{"prediction": "x", "label": 3}]}
        )
        assert bad.status_code == 400 and "items[0].prediction: expected a number" in bad.text
        bad = c.post(
            "/feedback",
            json={
                "model": "diabetes",
                "model_version": "Robert'); --",
                "items": [{"prediction": 1, "label": 3}],
            },
        )
        assert bad.status_code == 400 and "model_version" in bad.text
        assert c.post("/feedback", json={"model": "diabetes", "items": []}).status_code == 400


def test_wrong_method_on_a_hot_route_is_405(server) -> None:
    with server.client() as c:
        r = c.get("/predict")
        v2 = c.get("/v2/models/breast-cancer/infer")
    assert r.status_code == 405 and v2.status_code == 405
