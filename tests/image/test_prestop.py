"""The chart's preStop hook and the e2e suite's load generator, run inside the service image
the way the cluster runs them: `podman exec` into a container started from the chart's
Deployment (uid 1034, read-only root, the chart's writable dirs, its env and working dir),
which is what the kubelet's exec hook does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.chart.e2e import load_summary

from .conftest import Container

pytestmark = [pytest.mark.image, pytest.mark.integration, pytest.mark.slow]

KEEPALIVE = Path(__file__).resolve().parents[1] / "keepalive.py"


def _exec(
    c: Container, *command: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "exec", *(["-i"] if stdin is not None else []), c.name, *command],
        env=c.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _body(c: Container) -> str:
    model = httpx.get(f"{c.url}/models", timeout=10).json()["models"][0]
    return json.dumps(model["sample"])


def test_load_generator_runs_on_the_image_python(container: Container) -> None:
    """The e2e load pod's command: the image's `python` with tests/keepalive.py (mounted
    from a ConfigMap there, fed on stdin here), keep-alive requests to the server."""
    proc = _exec(
        container,
        "python",
        "-",
        "--url",
        "http://127.0.0.1:3000",
        "--clients",
        "2",
        "--seconds",
        "2",
        "--body",
        _body(container),
        stdin=KEEPALIVE.read_text(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = load_summary(proc.stdout)
    assert summary.sent > 0 and summary.lost == 0, summary


def test_prestop_hook_drains_as_the_chart_runs_it(container: Container, deployment: dict) -> None:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["python", "-m", "modelport.drain"]
    proc = _exec(container, *command[:-1], "0")  # the chart's command, without the wait
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "draining" in proc.stdout
    marker = next(e["value"] for e in c["env"] if e["name"] == "MODELPORT_DRAIN_FILE")
    owner = _exec(container, "stat", "-c", "%u", marker)
    assert owner.stdout.strip() == "1034", owner.stderr
    # Every worker sees the marker within its poll interval: responses now close the
    # connection, and the readiness path the kubelet probes stays 200 (no Unhealthy event).
    probe = c["readinessProbe"]["httpGet"]["path"]
    for _ in range(50):
        resp = httpx.post(f"{container.url}/predict", content=_body(container), timeout=10)
        if resp.headers.get("connection") == "close":
            break
    assert resp.status_code == 200
    assert resp.headers.get("connection") == "close", resp.headers
    assert httpx.get(f"{container.url}{probe}", timeout=10).status_code == 200
    # ...while /readyz, what a load balancer or a client-side health check asks, says 503.
    assert httpx.get(f"{container.url}/readyz", timeout=10).status_code == 503
