"""Explanations over real HTTP: POST /explain and OIP ``parameters.explain`` on every
demo model, through the same pipeline, limits and metrics as predictions."""

from __future__ import annotations

import numpy as np
import pytest

from tests.service.test_ops import samples, value

pytestmark = [pytest.mark.integration, pytest.mark.slow]

METHODS = {
    "breast-cancer": "linear-exact",
    "diabetes": "linear-exact",
    "breast-cancer-keras": "permutation",
}


def _sample(c, name: str) -> dict:  # type: ignore[no-untyped-def]
    models = c.get("/models").json()["models"]
    return next(m for m in models if m["name"] == name)["sample"]


@pytest.mark.parametrize("name", list(METHODS))
def test_explain_adds_up_to_the_prediction(server, name: str) -> None:
    with server.client(timeout=120) as c:
        sample = _sample(c, name)
        rows = sample["instances"] * 3
        body = {"model": name, "instances": rows}
        r = c.post("/explain", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        predicted = c.post("/predict", json=body).json()
    assert got["method"] == METHODS[name]
    tol = got["tolerance"]
    assert len(got["explanations"]) == len(rows)
    for i, row in enumerate(got["explanations"]):
        (out,) = row["explanations"]
        attributions = out["attributions"]
        assert list(attributions) == list(rows[0])  # one per input feature, in order
        assert out["base_value"] + sum(attributions.values()) == pytest.approx(
            out["value"], abs=tol
        )
        assert row["prediction"] == predicted["predictions"][i]
        if predicted["probabilities"] is None:
            assert out["value"] == pytest.approx(predicted["predictions"][i], abs=1e-9)
        else:
            assert out["value"] == pytest.approx(max(predicted["probabilities"][i]), abs=1e-6)


def test_explain_all_classes_and_by_path(server) -> None:
    with server.client() as c:
        sample = _sample(c, "breast-cancer")
        r = c.post(
            "/models/breast-cancer/explain",
            json={"instances": sample["instances"], "all_classes": True},
        )
    assert r.status_code == 200, r.text
    outputs = r.json()["explanations"][0]["explanations"]
    assert len(outputs) == 2 and sum(o["value"] for o in outputs) == pytest.approx(1.0)


def test_oip_explain_parameter_adds_attribution_tensors(server) -> None:
    with server.client() as c:
        sample = _sample(c, "diabetes")
        row = sample["instances"][0]
        data = [list(row.values())]
        payload = {
            "parameters": {"explain": True},
            "inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP64", "data": data}],
        }
        r = c.post("/v2/models/diabetes/infer", json=payload)
        assert r.status_code == 200, r.text
        outs = {o["name"]: o for o in r.json()["outputs"]}
        assert outs["attributions"]["shape"] == [1, len(row)]
        total = outs["base_values"]["data"][0] + sum(outs["attributions"]["data"])
        assert total == pytest.approx(outs["predict"]["data"][0], abs=1e-6)
        assert r.json()["parameters"]["explain_method"] == "linear-exact"
        plain = c.post("/v2/models/diabetes/infer", json={**payload, "parameters": {}})
        assert {o["name"] for o in plain.json()["outputs"]} == {"predict"}
        bad = c.post("/v2/models/diabetes/infer", json={**payload, "parameters": {"explain": 1}})
        assert bad.status_code == 400 and "parameters.explain" in bad.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"model": "diabetes", "instances": [{"age": 1}]}, 400, "missing feature"),
        ({"model": "nope", "instances": [{}]}, 404, "not served"),
        ({"model": "diabetes", "instances": []}, 400, "empty batch"),
        ({"model": "diabetes", "instances": [{}], "all_classes": "yes"}, 400, "all_classes"),
    ],
)
def test_explain_bad_input_gets_the_predict_4xx(server, body, status, words) -> None:
    with server.client() as c:
        r = c.post("/explain", json=body)
    assert r.status_code == status and words in r.json()["error"], r.text


def test_sampled_explanations_have_a_lower_row_cap_and_count_in_metrics(server) -> None:
    with server.client(timeout=120) as c:
        sample = _sample(c, "breast-cancer-keras")
        before = c.get("/metrics").text
        too_many = {"model": "breast-cancer-keras", "instances": sample["instances"] * 17}
        r = c.post("/explain", json=too_many)
        assert r.status_code == 413 and "MODELPORT_EXPLAIN_MAX_ROWS" in r.json()["error"]
        assert c.post("/explain", json={**too_many, "instances": sample["instances"]}).is_success
        after = c.get("/metrics").text
    labels = {"model_name": "breast-cancer-keras", "endpoint": "explain"}
    for code in ("200", "413"):
        assert (
            value(after, "modelport_requests_total", code=code, **labels)
            - value(before, "modelport_requests_total", code=code, **labels)
            == 1
        )
    rows = value(after, "modelport_explained_rows_total", model_name="breast-cancer-keras")
    assert (
        rows - value(before, "modelport_explained_rows_total", model_name="breast-cancer-keras")
        == 1
    )
    importance = [
        v
        for n, lab, v in samples(after)
        if n == "modelport_feature_importance" and lab["model_name"] == "breast-cancer-keras"
    ]
    assert len(importance) == 30 and np.sum(importance) > 0


def test_an_explanation_past_its_budget_is_a_503_with_the_reason(trained, start_server) -> None:
    s = start_server(
        "breast-cancer-keras",
        env={"MODELPORT_EXPLAIN_BUDGET_SECONDS": "0.0001", "MODELPORT_EXPLAIN_MAX_ROWS": "64"},
    )
    with s.client(timeout=120) as c:
        sample = _sample(c, "breast-cancer-keras")
        r = c.post("/explain", json={"instances": sample["instances"] * 10})
        assert r.status_code == 503 and "budget" in r.json()["error"], r.text
        assert c.post("/predict", json=sample).status_code == 200
    assert "Traceback" not in s.log_text()


def test_concurrent_sampled_explanations_and_predictions_all_succeed(server) -> None:
    """Sampled explanations call the model from worker threads while predictions call
    it on the event loop: the TFLite interpreter must never be used by two at once."""
    from concurrent.futures import ThreadPoolExecutor

    with server.client() as c:
        sample = _sample(c, "breast-cancer-keras")

    def call(i: int) -> int:
        with server.client(timeout=60) as c:
            return c.post("/explain" if i % 2 else "/predict", json=sample).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, range(120)))
    assert codes == [200] * 120
