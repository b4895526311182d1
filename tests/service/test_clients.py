"""Third-party clients against a real ``bentoml serve``: the schemathesis fuzzer over
the service's own OpenAPI document, and NVIDIA's tritonclient speaking V2 with the
binary tensor extension."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelport import store
from training.recipes import RECIPES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FUZZ_EXAMPLES = 260  # per operation and phase: > 2 000 requests in all


@pytest.fixture(scope="module")
def sklearn_server(trained, tmp_path_factory):  # type: ignore[no-untyped-def]
    from tests.service.conftest import launch

    s = launch(tmp_path_factory.mktemp("clients"), "breast-cancer,diabetes")
    yield s
    s.stop()


def _codes(url: str) -> Counter[str]:
    """Requests by HTTP status, as modelport's request counters saw them (model
    routes, and the other routes)."""
    text = httpx.get(f"{url}/metrics").text
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith(("modelport_requests_total{", "modelport_http_requests_total{")):
            code = re.search(r'\bcode="(\d+)"', line)
            if code:
                counts[code.group(1)] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def test_schemathesis_finds_no_server_error(sklearn_server, tmp_path: Path) -> None:
    url = sklearn_server.url
    doc = httpx.get(f"{url}/docs.json").json()
    assert {"/predict", "/models/{name}/predict", "/feedback", "/models"} <= doc["paths"].keys()
    assert "/v2/models/{name}/infer" in doc["paths"]
    before = _codes(url)
    st = Path(sys.executable).with_name("schemathesis")
    proc = subprocess.run(
        [
            str(st),
            "run",
            f"{url}/docs.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--phases",
            "examples,fuzzing,stateful",  # its coverage phase crashes inside hypothesis
            "--max-examples",
            str(FUZZ_EXAMPLES),
            "--request-timeout",
            "10",
            "--max-response-time",
            "10",
            "--workers",
            "2",
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,  # it keeps a .schemathesis/ folder in its working directory
    )
    after = _codes(url)
    sent = {code: after[code] - before.get(code, 0) for code in after}
    total = sum(sent.values())
    print(f"fuzzed {total} requests; by status: {dict(sorted(sent.items()))}")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert total >= 2000, sent
    assert not any(code.startswith("5") for code, n in sent.items() if n), sent
    assert "Traceback" not in sklearn_server.log_text()


def _triton(url: str):  # type: ignore[no-untyped-def]
    import tritonclient.http as triton

    return triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=30)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer(sklearn_server, binary: bool) -> None:
    import tritonclient.http as triton

    client = _triton(sklearn_server.url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("breast-cancer")
    meta = client.get_model_metadata("breast-cancer")
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
        "predict": "INT64",
        "probabilities": "FP64",
    }
    frame = RECIPES["breast-cancer"].load().drop(columns=["target"]).iloc[:7]
    X = frame.to_numpy(dtype=np.float32)
    tensor = triton.InferInput("input-0", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("predict", binary_data=binary),
        triton.InferRequestedOutput("probabilities", binary_data=binary),
    ]
    result = client.infer(
        "breast-cancer", [tensor], outputs=outputs, request_id="r-7", parameters={"trace": "x"}
    )
    model = store.resolve("breast-cancer")
    expected = store.predictor_of(model, store.card_of(model)).predict(X.astype(float))
    assert result.as_numpy("predict").tolist() == expected.predictions
    assert np.allclose(result.as_numpy("probabilities"), expected.probabilities, atol=1e-6)
    response = result.get_response()
    assert response["id"] == "r-7" and response["parameters"] == {"trace": "x"}
    assert response["model_version"] == model.tag.version


def test_tritonclient_named_inputs_and_string_classes(sklearn_server) -> None:
    """One input per feature, the default outputs (binary, as tritonclient asks)."""
    import tritonclient.http as triton

    client = _triton(sklearn_server.url)
    frame = RECIPES["diabetes"].load().drop(columns=["target"]).iloc[:3]
    inputs = []
    for name in frame.columns:
        col = frame[[name]].to_numpy(dtype=np.float64)
        t = triton.InferInput(name, list(col.shape), "FP64")
        t.set_data_from_numpy(col)
        inputs.append(t)
    result = client.infer("diabetes", inputs)
    model = store.resolve("diabetes")
    expected = store.predictor_of(model, store.card_of(model)).predict(frame)
    assert np.allclose(result.as_numpy("predict"), expected.predictions)


def test_tritonclient_malformed_tensor_is_a_400(sklearn_server) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = _triton(sklearn_server.url)
    X = np.zeros((2, 29), dtype=np.float32)  # one feature short
    tensor = triton.InferInput("input-0", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    with pytest.raises(InferenceServerException) as err:
        client.infer("breast-cancer", [tensor])
    assert "expected [n, 30]" in str(err.value)
    assert err.value.status() == "400"


def test_binary_body_with_bad_framing_is_a_400(sklearn_server) -> None:
    header = b'{"inputs":[{"name":"input-0","shape":[1,30],"datatype":"FP32",'
    header += b'"parameters":{"binary_data_size":120}}]}'
    short = np.zeros(29, dtype=np.float32).tobytes()  # 116 bytes, not 120
    r = httpx.post(
        f"{sklearn_server.url}/v2/models/breast-cancer/infer",
        content=header + short,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 400 and "binary_data_size" in r.json()["error"]
