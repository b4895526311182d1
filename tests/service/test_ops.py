"""Operations: /metrics contents, honest readiness, SIGTERM drain, multi-worker counters."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from modelport import store
from tests.inflight import drain_check
from training.recipes import RECIPES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    return sum(
        v
        for n, lab, v in samples(text)
        if n == name and all(lab.get(k) == x for k, x in labels.items())
    )


def _instances(recipe: str, n: int) -> list[dict]:
    frame = RECIPES[recipe].load().drop(columns=["target"]).head(n)
    return json.loads(frame.to_json(orient="records"))


def _after_drift_flush(c: httpx.Client, before: str, feature: str, rows: int) -> str:
    """/metrics once ``rows`` more values of ``feature`` reached the drift counters,
    which are flushed every MODELPORT_DRIFT_FLUSH_SECONDS (0.5 s), not per request."""
    deadline = time.monotonic() + 10
    while True:
        text = c.get("/metrics").text
        added = value(text, "modelport_drift_bin_total", feature=feature) - value(
            before, "modelport_drift_bin_total", feature=feature
        )
        if added >= rows or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_metrics_carry_every_documented_series(server) -> None:
    bc = store.resolve("breast-cancer").tag.version
    db = store.resolve("diabetes").tag.version
    with server.client() as c:
        before = c.get("/metrics").text
        c.post(
            "/predict",
            json={"model": "breast-cancer", "instances": _instances("breast-cancer", 10)},
        ).raise_for_status()
        c.post("/predict", json={"model": "diabetes", "instances": _instances("diabetes", 4)})
        c.post("/predict", json={"model": "breast-cancer", "instances": [{"x": 1}]})
        c.post("/predict", json={"model": "nope", "instances": [{"x": 1}]})
        odd = _instances("diabetes", 1)[0] | {"bmi": 1000.0}
        c.post("/predict", json={"model": "diabetes", "instances": [odd]}).raise_for_status()
        c.post(
            "/feedback",
            json={
                "model": "breast-cancer",
                "items": [{"prediction": 1, "label": 1}, {"prediction": 1, "label": 0}],
            },
        ).raise_for_status()
        c.post(
            "/feedback",
            json={
                "model": "diabetes",
                "items": [{"prediction": 100.0, "label": 110.0}, {"prediction": 50, "label": 47}],
            },
        )
        text = _after_drift_flush(c, before, "bmi", 5)

    def delta(name: str, **labels: str) -> float:
        return value(text, name, **labels) - value(before, name, **labels)

    m = {"model_name": "breast-cancer", "model_version": bc}
    d = {"model_name": "diabetes", "model_version": db}
    assert value(text, "modelport_model_info", framework="sklearn", task="classification", **m) == 1
    assert value(text, "modelport_model_test_metric", metric="accuracy", **m) >= 0.95
    assert value(text, "modelport_model_test_metric", metric="r2", **d) >= 0.4
    assert delta("modelport_requests_total", endpoint="predict", code="200", **m) == 1
    assert delta("modelport_requests_total", endpoint="predict", code="400", **m) == 1
    assert delta("modelport_requests_total", model_name="_unknown", code="404") == 1
    assert delta("modelport_request_duration_seconds_count", endpoint="predict", **m) == 1
    assert delta("modelport_inference_duration_seconds_count", **m) == 1
    assert delta("modelport_batch_size_sum", **m) == 10
    assert delta("modelport_predictions_total", **m) == 10
    assert {
        lab["class"]
        for n, lab, _ in samples(text)
        if n == "modelport_predictions_total" and lab["model_name"] == "breast-cancer"
    } <= {"0", "1"}
    assert delta("modelport_prediction_value_count", **d) == 5
    # Drift: every monitored feature saw each row once; bmi=1000 is out of range.
    assert delta("modelport_drift_bin_total", feature="mean radius", **m) == 10
    assert delta("modelport_drift_bin_total", feature="bmi", **d) == 5
    assert delta("modelport_drift_out_of_range_total", feature="bmi", **d) == 1
    ref = [
        v
        for n, lab, v in samples(text)
        if n == "modelport_drift_reference_ratio"
        and lab["feature"] == "bmi"
        and lab["model_name"] == "diabetes"
    ]
    assert sum(ref) == pytest.approx(1.0, abs=1e-3) and len(ref) >= 5
    assert delta("modelport_missing_values_total", feature="mean radius", **m) == 1
    assert delta("modelport_feedback_total", predicted="1", actual="0", correct="false", **m) == 1
    assert delta("modelport_feedback_total", predicted="1", actual="1", correct="true", **m) == 1
    assert delta("modelport_feedback_observations_total", **d) == 2
    assert delta("modelport_feedback_absolute_error_total", **d) == pytest.approx(13.0)
    assert delta("modelport_feedback_squared_error_total", **d) == pytest.approx(109.0)
    # BentoML's request metrics are off (modelport's cover them), other routes count here.
    assert not any(n.startswith("bentoml_service_request") for n, _, _ in samples(text))
    with server.client() as c:
        c.get("/models").raise_for_status()
        routes = c.get("/metrics").text
    assert value(routes, "modelport_http_requests_total", route="/models", code="200") >= 1
    # Gauges aggregate without a pid label (multiprocess mode "max").
    assert all("pid" not in lab for n, lab, _ in samples(text) if n.startswith("modelport_"))


def _train_csv_model(tmp_path: Path, name: str, settings) -> str:  # type: ignore[no-untyped-def]
    from training.data import load_csv
    from training.run import train

    frame = RECIPES["breast-cancer"].load()[["mean radius", "mean texture", "target"]]
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    data = load_csv(path, "target", task=None, min_rows=30, max_categories=50)
    result = train(
        data, name=name, framework="sklearn", settings=settings, console=Console(quiet=True)
    )
    assert result.registered
    return result.tag


def test_tampered_model_keeps_the_service_unready(tmp_path, settings, start_server) -> None:
    tag = _train_csv_model(tmp_path, "tampered", settings)
    path = Path(store.resolve(tag).path) / "saved_model.pkl"
    path.write_bytes(path.read_bytes() + b"\0")
    s = start_server(tag, wait=False)
    _assert_unready(
        s, f"model not ready: model {tag}: integrity check failed: saved_model.pkl: sha256 mismatch"
    )


def test_failed_self_test_keeps_the_service_unready(tmp_path, settings, start_server) -> None:
    tag = _train_csv_model(tmp_path, "selftest", settings)
    model = store.resolve(tag)
    card = store.card_of(model)
    flipped = [1 - int(p) for p in card.sample.predictions]
    bad = card.model_copy(
        update={"sample": card.sample.model_copy(update={"predictions": flipped})}
    )
    model.info.metadata.update(bad.to_metadata())
    store.write_info(model)
    s = start_server(tag, wait=False)
    _assert_unready(s, f"model not ready: model {tag}: self-test failed")


def test_unknown_model_keeps_the_service_unready(start_server) -> None:
    s = start_server("no-such-model", wait=False)
    _assert_unready(s, "model not ready: model 'no-such-model' is not in the model store")


def _assert_unready(s, line: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    with s.client(timeout=5) as c:
        while time.monotonic() < deadline:
            try:
                if c.get("/livez").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError(f"server never came up:\n{s.log_text()[-2000:]}")
        for _ in range(3):  # stays unready, not just "not yet"
            assert c.get("/readyz").status_code == 503
            assert c.get("/v2/health/ready").status_code == 503
            time.sleep(0.3)
    log = s.log_text()
    assert log.count(line) == 1, log[-3000:]


def test_sigterm_drains_in_flight_requests(start_server) -> None:
    s = start_server("breast-cancer")
    body = {"instances": _instances("breast-cancer", 1) * 1500}
    results = drain_check(s.url, body, lambda: os.killpg(s.proc.pid, signal.SIGTERM))
    assert results == [200] * 8, results
    assert s.proc.wait(timeout=60) is not None


def test_two_workers_sum_their_counters(start_server) -> None:
    s = start_server("diabetes", workers=2)
    rows = _instances("diabetes", 1)
    n = 120
    pids_seen = set()
    version = store.resolve("diabetes").tag.version
    lab = {"model_name": "diabetes", "model_version": version}
    with s.client() as c:
        for _ in range(n):
            c.post("/predict", json={"instances": rows}).raise_for_status()
        # Each worker adds its summed observations every MODELPORT_DRIFT_FLUSH_SECONDS;
        # a scrape flushes only the worker that answers it.
        deadline = time.monotonic() + 10
        while True:
            text = c.get("/metrics").text
            if value(text, "modelport_prediction_value_count", **lab) >= n:
                break
            assert time.monotonic() < deadline, "observations never reached the series"
            time.sleep(0.2)
    assert value(text, "modelport_requests_total", endpoint="predict", code="200", **lab) == n
    assert value(text, "modelport_prediction_value_count", **lab) == n
    assert value(text, "modelport_model_info", **lab) == 1  # max, not one per worker
    pids_seen = {p.pid for p in __import__("psutil").Process(s.proc.pid).children(recursive=True)}
    assert len(pids_seen) >= 2


def test_monitoring_off_keeps_request_counts_and_drops_the_per_request_series(
    trained,
    start_server,
) -> None:
    s = start_server("breast-cancer", env={"MODELPORT_MONITORING": "false"})
    rows = _instances("breast-cancer", 3)
    with s.client() as c:
        r = c.post("/predict", json={"instances": rows})
        text = c.get("/metrics").text
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    lab = {
        "model_name": "breast-cancer",
        "model_version": store.resolve("breast-cancer").tag.version,
    }
    assert value(text, "modelport_requests_total", endpoint="predict", code="200", **lab) == 1
    assert value(text, "modelport_model_info", **lab) == 1
    assert value(text, "modelport_drift_bin_total", **lab) == 0
    assert value(text, "modelport_predictions_total", **lab) == 0
    assert value(text, "modelport_inference_duration_seconds_count", **lab) == 0


def test_access_log_is_off_by_default_and_can_be_turned_on(trained, start_server) -> None:
    rows = _instances("breast-cancer", 1)
    logged = {"logging": {"access": {"enabled": True}}}
    for config, expected in ((None, False), (logged, True)):
        s = start_server("breast-cancer", service_config=config)
        with s.client() as c:
            for _ in range(3):
                c.post("/predict", json={"instances": rows}).raise_for_status()
        s.stop()
        assert ("/predict" in s.log_text()) is expected, s.log_text()[-2000:]


def test_pending_drift_counts_are_flushed_at_shutdown(trained, start_server) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    # A flush interval far longer than the test: only the shutdown flush can count them.
    s = start_server("diabetes", env={"MODELPORT_DRIFT_FLUSH_SECONDS": "600"})
    with s.client() as c:
        c.post("/predict", json={"instances": _instances("diabetes", 7)}).raise_for_status()
        # The worker that answers a scrape flushes first: exact with one worker.
        assert value(c.get("/metrics").text, "modelport_drift_bin_total", feature="bmi") == 7
        c.post("/predict", json={"instances": _instances("diabetes", 5)}).raise_for_status()
    s.stop()  # the last five wait for the shutdown flush
    registry = CollectorRegistry()
    MultiProcessCollector(
        registry, path=str(s.log.parent / "bentoml-home" / "prometheus_multiproc_dir")
    )
    counted = sum(
        sample.value
        for fam in registry.collect()
        for sample in fam.samples
        if sample.name == "modelport_drift_bin_total" and sample.labels.get("feature") == "bmi"
    )
    assert counted == 12
