"""A real Prometheus scrapes the running service; the documented PromQL runs on it."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests import prom
from tests.conftest import ROOT
from training.recipes import RECIPES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def documented_promql() -> dict[str, str]:
    """The ```promql blocks of docs/metrics.md, by their <!-- promql:NAME --> marker."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    return dict(re.findall(r"<!-- promql:(\w+) -->\s*```promql\n(.*?)```", text, re.S))


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):  # type: ignore[no-untyped-def]
    target = server.url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "modelport", "static_configs": [{"targets": [target]}]}],
    }
    with prom.running(tmp_path_factory.mktemp("prometheus"), config) as url:
        prom.wait_for(
            lambda: prom.query(url, 'up{job="modelport"}') == [1.0], 30, lambda: "no scrape"
        )
        yield url


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
    prom.wait_for(
        lambda: bool(
            prom.query(prometheus, 'modelport_drift_bin_total{model_name="diabetes",feature="bmi"}')
        ),
        30,
        lambda: "no drift series",
    )
    time.sleep(2.5)

    psi = {
        x["metric"]["feature"]: float(x["value"][1])
        for x in prom.vector(prometheus, queries["psi"])
        if x["metric"]["model_name"] == "diabetes"
    }
    assert psi["bmi"] > 2.0, psi  # every live bmi is above the training range
    assert set(psi) >= {"age", "bmi", "s6"}

    acc = {
        x["metric"]["model_name"]: float(x["value"][1])
        for x in prom.vector(prometheus, queries["accuracy"])
    }
    assert acc["breast-cancer-keras"] == pytest.approx(0.75)

    f1 = {
        (x["metric"]["model_name"], x["metric"]["class"]): float(x["value"][1])
        for x in prom.vector(prometheus, queries["f1"])
    }
    # Class 1: precision 2/3, recall 1 -> F1 0.8. Class 0: precision 1, recall 1/2 -> 2/3.
    assert f1[("breast-cancer-keras", "1")] == pytest.approx(0.8)
    assert f1[("breast-cancer-keras", "0")] == pytest.approx(2 / 3)

    rmse = {
        x["metric"]["model_name"]: float(x["value"][1])
        for x in prom.vector(prometheus, queries["rmse"])
    }
    mae = {
        x["metric"]["model_name"]: float(x["value"][1])
        for x in prom.vector(prometheus, queries["mae"])
    }
    assert rmse["diabetes"] == pytest.approx(12.5**0.5)
    assert mae["diabetes"] == pytest.approx(3.5)

    p99 = {
        x["metric"]["model_name"]: float(x["value"][1])
        for x in prom.vector(prometheus, queries["p99"])
    }
    assert 0 < p99["diabetes"] < 5
    err = prom.vector(prometheus, queries["error_ratio"])
    assert all(float(x["value"][1]) == 0 for x in err if x["metric"]["model_name"] == "diabetes")
