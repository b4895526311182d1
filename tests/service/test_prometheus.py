"""A real Prometheus scrapes the running service; the documented PromQL runs on it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import httpx
import pytest

from modelport import server as srv
from tests.conftest import IN_CI, ROOT
from training.recipes import RECIPES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def documented_promql() -> dict[str, str]:
    """The ```promql blocks of docs/metrics.md, by their <!-- promql:NAME --> marker."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    return dict(re.findall(r"<!-- promql:(\w+) -->\s*```promql\n(.*?)```", text, re.S))


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):  # type: ignore[no-untyped-def]
    binary = shutil.which("prometheus")
    if binary is None:
        if IN_CI:
            pytest.fail("prometheus is not installed: run `make tools`")
        pytest.skip("prometheus not installed (make tools installs it)")
    work = tmp_path_factory.mktemp("prometheus")
    target = server.url.removeprefix("http://")
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: modelport\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = srv.free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(work / "log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(
            lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200,
            60,
            lambda: (work / "log").read_text(),
        )
        _wait(lambda: _query(url, 'up{job="modelport"}') == [1.0], 30, lambda: "no scrape")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait(check, seconds: float, why) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out: {why()[-2000:]}")


def _vector(url: str, promql: str) -> list[dict]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _query(url: str, promql: str) -> list[float]:
    return [float(x["value"][1]) for x in _vector(url, promql)]


def _wave(server) -> None:  # type: ignore[no-untyped-def]
    diabetes = json.loads(
        RECIPES["diabetes"].load().drop(columns=["target"]).head(20).to_json(orient="records")
    )
    drifted = [row | {"bmi": 1000.0} for row in diabetes]
    with server.client() as c:
        c.post("/predict", json={"model": "diabetes", "instances": drifted}).raise_for_status()
        c.post(
            "/feedback",
            json={
                "model": "breast-cancer-keras",
                "items": [
                    {"prediction": 1, "label": 1},
                    {"prediction": 0, "label": 0},
                    {"prediction": 1, "label": 1},
                    {"prediction": 1, "label": 0},
                ],
            },
        ).raise_for_status()
        c.post(
            "/feedback",
            json={
                "model": "diabetes",
                "items": [{"prediction": 100, "label": 103}, {"prediction": 50, "label": 46}],
            },
        ).raise_for_status()


def test_prometheus_scrapes_drift_and_feedback(server, prometheus) -> None:
    queries = documented_promql()
    assert {"psi", "accuracy", "f1", "rmse", "mae", "p99", "error_ratio"} <= queries.keys()
    for _ in range(3):  # increments spread over several scrapes, so rate() sees them
        _wave(server)
        time.sleep(1.5)
    _wait(
        lambda: bool(
            _query(prometheus, 'modelport_drift_bin_total{model_name="diabetes",feature="bmi"}')
        ),
        30,
        lambda: "no drift series",
    )
    time.sleep(2.5)

    psi = {
        x["metric"]["feature"]: float(x["value"][1])
        for x in _vector(prometheus, queries["psi"])
        if x["metric"]["model_name"] == "diabetes"
    }
    assert psi["bmi"] > 2.0, psi  # every live bmi is above the training range
    assert set(psi) >= {"age", "bmi", "s6"}

    acc = {
        x["metric"]["model_name"]: float(x["value"][1])
        for x in _vector(prometheus, queries["accuracy"])
    }
    assert acc["breast-cancer-keras"] == pytest.approx(0.75)

    f1 = {
        (x["metric"]["model_name"], x["metric"]["class"]): float(x["value"][1])
        for x in _vector(prometheus, queries["f1"])
    }
    # Class 1: precision 2/3, recall 1 -> F1 0.8. Class 0: precision 1, recall 1/2 -> 2/3.
    assert f1[("breast-cancer-keras", "1")] == pytest.approx(0.8)
    assert f1[("breast-cancer-keras", "0")] == pytest.approx(2 / 3)

    rmse = {
        x["metric"]["model_name"]: float(x["value"][1])
        for x in _vector(prometheus, queries["rmse"])
    }
    mae = {
        x["metric"]["model_name"]: float(x["value"][1]) for x in _vector(prometheus, queries["mae"])
    }
    assert rmse["diabetes"] == pytest.approx(12.5**0.5)
    assert mae["diabetes"] == pytest.approx(3.5)

    p99 = {
        x["metric"]["model_name"]: float(x["value"][1]) for x in _vector(prometheus, queries["p99"])
    }
    assert 0 < p99["diabetes"] < 5
    err = _vector(prometheus, queries["error_ratio"])
    assert all(float(x["value"][1]) == 0 for x in err if x["metric"]["model_name"] == "diabetes")
