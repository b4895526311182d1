"""Shadow mirroring between real servers on loopback: agreement counted per canary
version, drops when the canary is slow, failures when it is down, and the stable
answers unaffected."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from service.shadow import agreement
from tests.service.test_ops import value

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.unit
def test_agreement_rule() -> None:
    assert agreement("classification", [1, 0, "a"], [1, 1, "a"], 0.0) == ([True, False, True], [])
    agree, diff = agreement("regression", [1.0, 2.0], [1.005, 2.5], 0.01)
    assert agree == [True, False] and diff == pytest.approx([0.005, 0.5])


def _metric(url: str, name: str, **labels: str) -> float:
    return value(httpx.get(f"{url}/metrics").text, name, **labels)


def _wait_for(url: str, name: str, at_least: float, **labels: str) -> float:
    deadline = time.monotonic() + 20
    while True:
        got = _metric(url, name, **labels)
        if got >= at_least or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


@pytest.fixture(scope="module")
def other_version(trained) -> str:  # type: ignore[no-untyped-def]
    """A second, cruder breast-cancer version (a depth-1 tree): it disagrees sometimes."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport",
            "train",
            "breast-cancer",
            "--estimator",
            "decision-tree",
            "--param",
            "max_depth=1",
            "--force",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MODELPORT_REPORTS_DIR": os.environ.get("TMPDIR", "/tmp")},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def _rows(url: str, n: int) -> list[dict]:
    from training.recipes import RECIPES

    frame = RECIPES["breast-cancer"].load().drop(columns=["target"]).sample(n, random_state=1)
    return frame.to_dict("records")


def test_mirrored_predictions_are_compared_with_the_canary(other_version, start_server) -> None:
    canary = start_server(other_version, env={"MODELPORT_VARIANT": "canary"})
    stable = start_server(
        "breast-cancer",
        env={"MODELPORT_SHADOW_URL": canary.url, "MODELPORT_SHADOW_FRACTION": "1"},
    )
    rows = _rows(stable.url, 40)
    with stable.client() as c:
        for row in rows[:30]:
            assert c.post("/predict", json={"instances": [row]}).status_code == 200
        assert c.post("/predict", json={"instances": rows[30:]}).status_code == 200
    version = other_version.split(":")[1]
    labels = {"model_name": "breast-cancer", "variant": "stable", "canary_version": version}
    assert _wait_for(stable.url, "modelport_shadow_mirrored_total", 31, outcome="compared") == 31
    agreed = _metric(stable.url, "modelport_shadow_agreement_total", agree="true", **labels)
    disagreed = _metric(stable.url, "modelport_shadow_agreement_total", agree="false", **labels)
    assert agreed + disagreed == 40 and agreed > 20 and disagreed > 0
    # The canary predicted every mirrored row, as its own traffic under its variant (what
    # queued up together went in one request).
    canary_requests = _metric(
        canary.url, "modelport_requests_total", variant="canary", endpoint="predict", code="200"
    )
    assert 1 <= canary_requests <= 31
    assert _metric(canary.url, "modelport_batch_size_sum", variant="canary") == 40


def test_a_slow_canary_drops_and_a_dead_one_fails_without_touching_stable(
    trained, start_server
) -> None:
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)  # accepts into the backlog, never answers
    port = hanging.getsockname()[1]
    try:
        stable = start_server(
            "breast-cancer",
            env={
                "MODELPORT_SHADOW_URL": f"http://127.0.0.1:{port}",
                "MODELPORT_SHADOW_FRACTION": "1",
                "MODELPORT_SHADOW_QUEUE": "2",
            },
        )
        row = _rows(stable.url, 1)[0]
        start = time.monotonic()
        with stable.client() as c:
            codes = [c.post("/predict", json={"instances": [row]}).status_code for _ in range(40)]
        elapsed = time.monotonic() - start
        assert codes == [200] * 40 and elapsed < 10  # the 5 s canary timeout never waited on
        dropped = _metric(stable.url, "modelport_shadow_mirrored_total", outcome="dropped")
        assert dropped >= 30
    finally:
        hanging.close()
    # Now the port refuses: what was queued fails, counted.
    assert _wait_for(stable.url, "modelport_shadow_mirrored_total", 1, outcome="failed") >= 1
