"""The suite's moving parts against real servers, in seconds (``make bench`` runs it all)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bare_and_served_endpoints_agree_and_take_load(trained) -> None:
    from bench import suite

    plan = dataclasses.replace(
        suite.Plan.make(quick=True), seconds=1.0, warmup=0.5, concurrency=(4,)
    )
    body = suite.single_body(3)
    with suite.bare_server(plan) as (bare_url, _, _):
        bare = suite.post(bare_url + "/predict", body)
        [bare_load] = suite.sweep(plan, bare_url + "/predict", body, "bare")
    with suite.modelport_server(plan, suite.LOAD_MODEL) as (url, pid, ready):
        served = suite.post(url + "/predict", body)
        [load] = suite.sweep(plan, url + "/predict", body, "served")
        memory = suite.rss_mb(pid)
    assert served["predictions"] == bare["predictions"]
    assert np.allclose(served["probabilities"], bare["probabilities"])
    for r in (bare_load, load):
        assert r["errors"] == 0 and r["requests"] > 0 and r["p50_ms"] <= r["p99_ms"]
    assert 0 < ready < 120 and memory["worker_mb"] > 50
    assert json.loads(suite.infer_body(2))["inputs"][0]["shape"] == [2, 30]


def test_batching_service_answers_like_the_model(trained) -> None:
    from bench import suite

    plan = suite.Plan.make(quick=True)
    rows, card = suite.rows_for("diabetes", 3)
    X = suite._matrix(rows, card.feature_names)
    body = json.dumps({"rows": X.tolist()}).encode()
    expected = suite.load_fast_predictor("diabetes").scores(X)
    with suite.batching_server(plan, "diabetes") as url:
        for route in ("plain", "batched", "batched_tight"):
            assert np.allclose(suite.post(f"{url}/{route}", body), expected), route
