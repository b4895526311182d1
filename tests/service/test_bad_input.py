"""Every bad input the fuzzer found is a prompt 4xx with the one error body, and the
documentation routes answer. Real HTTP against the session's server."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIG = int("9" * 400)
DEEP = "[" * 3000 + "]" * 3000
JSON = {"Content-Type": "application/json"}


def _infer(tensor: dict) -> dict:
    return {"inputs": [{"name": "input-0", "shape": [1, 30], "datatype": "FP64", **tensor}]}


CASES = [
    # (id, method, path, raw body or JSON, headers, status, words in the message)
    ("deep json predict", "/predict", '{"instances": ' + DEEP + "}", JSON, 400, "nested"),
    (
        "deep json infer",
        "/v2/models/diabetes/infer",
        '{"inputs": ' + DEEP + "}",
        JSON,
        400,
        "nested",
    ),
    ("deep json feedback", "/feedback", '{"items": ' + DEEP + "}", JSON, 400, "nested"),
    (
        "huge int in tensor data",
        "/v2/models/breast-cancer/infer",
        _infer({"data": [BIG] + [0] * 29}),
        None,
        400,
        "inputs[0].data",
    ),
    (
        "huge int in feedback",
        "/feedback",
        {"model": "diabetes", "items": [{"prediction": BIG, "label": 1}]},
        None,
        400,
        "items[0].prediction",
    ),
    (
        "datatype object",
        "/v2/models/breast-cancer/infer",
        _infer({"datatype": {"a": 1}, "data": [0] * 30}),
        None,
        400,
        "inputs[0].datatype",
    ),
    (
        "datatype list",
        "/v2/models/breast-cancer/infer",
        _infer({"datatype": ["FP64"], "data": [0] * 30}),
        None,
        400,
        "inputs[0].datatype",
    ),
    (
        "input name list",
        "/v2/models/breast-cancer/infer",
        {"inputs": [{"name": ["x"], "shape": [1, 30], "datatype": "FP64", "data": [0] * 30}]},
        None,
        400,
        "inputs[0].name",
    ),
    (
        "output name list",
        "/v2/models/breast-cancer/infer",
        {**_infer({"data": [0] * 30}), "outputs": [{"name": ["predict"]}]},
        None,
        400,
        "outputs[0]",
    ),
    (
        "multipart feedback without boundary",
        "/feedback",
        "a",
        {"Content-Type": "multipart/form-data"},
        415,
        "application/json",
    ),
    (
        "text/plain predict",
        "/predict",
        '{"instances": []}',
        {"Content-Type": "text/plain"},
        415,
        "application/json",
    ),
    (
        "form predict",
        "/predict",
        "x=1",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "application/json",
    ),
    (
        "form infer",
        "/v2/models/diabetes/infer",
        "x=1",
        {"Content-Type": "text/plain"},
        415,
        "binary",
    ),
    ("feedback not an object", "/feedback", [1, 2], None, 400, "JSON object"),
    (
        "feedback items not objects",
        "/feedback",
        {"model": "diabetes", "items": [3]},
        None,
        400,
        "items[0]",
    ),
    (
        "feedback bad version",
        "/feedback",
        {"model": "diabetes", "items": [], "model_version": ["x"]},
        None,
        400,
        "model_version",
    ),
    ("model not a string", "/predict", {"model": ["x"], "instances": []}, None, 400, "model"),
    (
        "unknown version",
        "/v2/models/diabetes/versions/nope/infer",
        _infer({"data": [0] * 30}),
        None,
        404,
        "version",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_bad_input_is_a_prompt_4xx_with_the_error_body(
    server, path, body, headers, status, words
) -> None:
    start = time.monotonic()
    with server.client(timeout=10) as c:
        if isinstance(body, str):
            r = c.post(path, content=body, headers=headers or {})
        else:
            r = c.post(path, json=body, headers=headers or {})
    assert time.monotonic() - start < 5
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"error"} and words in r.json()["error"], r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/feedback"),
        ("DELETE", "/predict"),
        ("PUT", "/v2/models/diabetes/infer"),
        ("POST", "/models"),
    ],
)
def test_wrong_method_is_a_405_naming_the_allowed_ones(server, method, path) -> None:
    with server.client() as c:
        r = c.request(method, path)
    assert r.status_code == 405 and "allowed" in r.json()["error"], r.text
    assert r.headers["allow"]


def test_docs_and_swagger_ui_are_served(server) -> None:
    with server.client() as c:
        doc = c.get("/docs.json").json()
        assert doc["openapi"].startswith("3.")
        for path in (
            "/predict",
            "/models/{name}/predict",
            "/models",
            "/feedback",
            "/v2/models/{name}/infer",
        ):
            assert path in doc["paths"], path
        example = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
            "example"
        ]
        assert c.post("/predict", json=example).status_code == 200
        ui = c.get("/")
        assert ui.status_code == 200 and "html" in ui.headers["content-type"]


def test_server_log_has_no_traceback_for_bad_input(server) -> None:
    assert "Traceback" not in server.log_text()
