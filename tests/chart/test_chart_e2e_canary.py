"""A canary release on a real cluster with `modelport rollout`, as a user runs it: install
stable (MODELPORT_E2E_MODEL_VERSION), `rollout start` the next version as a canary, send
predictions and feedback to a stable pod and the canary pod, `rollout analyze` with a
Prometheus that scrapes both pods (the Debian binary on this machine, through `kubectl
port-forward`: no Prometheus needed in the cluster), check the verdict's annotation on the
canary Deployment and its Event, `rollout status`, `rollout promote` (stable serves the next
version, the canary is gone); then a second canary and `rollout abort`.

Same requirements, images and environment as tests/chart/test_chart_e2e.py (whose fixtures
and helpers it reuses), plus `prometheus` on PATH (`make tools`). Run with `pytest -m e2e`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelport import server as srv

from .chartlib import CHART
from .test_chart_e2e import (
    MODEL,
    NEXT_TAG,
    RELEASE,
    TAG,
    VERSION,
    VERSION_NEXT,
    Tools,
    helm_upgrade,
    kubectl,
    namespace,  # noqa: F401 - a fixture: a fresh "restricted" namespace
    port_forward,
    served_version,
    tools,  # noqa: F401 - a fixture: helm, kubectl, a reachable cluster
)

pytestmark = [pytest.mark.chart, pytest.mark.e2e]

CANARY = f"{RELEASE}-canary"
ROWS = 150
THRESHOLDS = ("p99_slack_seconds=0.1", "min_requests=100", "min_feedback=100")


def rollout(t: Tools, ns: str, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "modelport", "rollout", *args, "--namespace", ns],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=_env(t),
    )
    assert proc.returncode in ok, f"rollout {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _env(t: Tools) -> dict[str, str]:
    # helm from .tools/bin when not on PATH, and the chart from this checkout.
    path = f"{Path(t.helm).parent}:{Path(t.kubectl).parent}:{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "MODELPORT_ROLLOUT_CHART": str(CHART)}


def pod_of(t: Tools, ns: str, track: str) -> str:
    out = kubectl(
        t,
        ns,
        "get",
        "pods",
        "-l",
        f"app.kubernetes.io/instance={RELEASE},track={track}",
        "--field-selector=status.phase=Running",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    )
    assert out, f"no running {track} pod"
    return out


def forward(t: Tools, ns: str, pod: str, stack: ExitStack) -> str:
    proc = subprocess.Popen(
        [t.kubectl, "-n", ns, "port-forward", f"pod/{pod}", ":3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stack.callback(lambda: (proc.terminate(), proc.wait(timeout=10)))
    assert proc.stdout is not None
    match = re.search(r"127\.0\.0\.1:(\d+)", proc.stdout.readline())
    assert match
    return f"127.0.0.1:{match.group(1)}"


def post(base: str, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://{base}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, {}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    """Starts a local Prometheus scraping the given targets as job RELEASE."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("e2e canary: prometheus is not installed: run `make tools`")
    procs: list[subprocess.Popen[bytes]] = []

    def start(targets: list[str], ns: str) -> str:
        config = {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": RELEASE,
                    "static_configs": [{"targets": targets, "labels": {"namespace": ns}}],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = srv.free_port()
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=(tmp_path / "log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                q = urllib.request.urlopen(f"{url}/api/v1/query?query=count(up%3D%3D1)", timeout=5)
                result = json.load(q)["data"]["result"]
                if result and float(result[0]["value"][1]) == len(targets):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()[-2000:]
            time.sleep(1)
        time.sleep(2.5)  # two scrapes: traffic from now on is counted
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def traffic(stable: str, canary: str, sample: dict) -> None:
    """Predictions to both pods, interleaved, then their predictions back as feedback."""
    answered: dict[str, list[tuple[str, Any]]] = {stable: [], canary: []}
    for _ in range(ROWS):
        for base in (stable, canary):
            code, body = post(base, "/predict", sample)
            assert code == 200, (base, code)
            answered[base].append((body["model_version"], body["predictions"][0]))
    for base, pairs in answered.items():
        items = [{"prediction": p, "label": p} for _, p in pairs]
        code, _ = post(
            base, "/feedback", {"model": MODEL, "model_version": pairs[0][0], "items": items}
        )
        assert code == 200
    time.sleep(4)


def deployment(t: Tools, ns: str, name: str) -> dict | None:
    proc = subprocess.run(
        [t.kubectl, "-n", ns, "get", "deployment", name, "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def test_canary_start_analyze_promote_then_abort(
    tools: Tools,  # noqa: F811
    namespace: str,  # noqa: F811
    prometheus: Any,
) -> None:
    t, ns = tools, namespace
    if not VERSION_NEXT:
        pytest.skip("e2e canary: MODELPORT_E2E_MODEL_VERSION_NEXT is not set (make e2e)")
    helm_upgrade(t, ns, TAG, VERSION)

    rollout(t, ns, "start", RELEASE, "--version", VERSION_NEXT, "--image-tag", NEXT_TAG)
    canary = deployment(t, ns, CANARY)
    assert canary is not None
    env = {
        e["name"]: e.get("value")
        for e in canary["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MODELPORT_VARIANT"] == "canary"

    models = port_forward(t, ns, "/models")["models"]
    sample = next(m for m in models if m["name"] == MODEL)["sample"]
    with ExitStack() as stack:
        stable_addr = forward(t, ns, pod_of(t, ns, "stable"), stack)
        canary_addr = forward(t, ns, pod_of(t, ns, "canary"), stack)
        url = prometheus([stable_addr, canary_addr], ns)
        before = json.loads(
            rollout(t, ns, "analyze", RELEASE, "--prometheus", url, "-o", "json", ok=(4,))
        )
        assert before["verdict"] == "inconclusive"
        traffic(stable_addr, canary_addr, sample)
        args = [a for th in THRESHOLDS for a in ("--threshold", th)]
        report = json.loads(
            rollout(
                t,
                ns,
                "analyze",
                RELEASE,
                "--prometheus",
                url,
                "--window",
                "5m",
                *args,
                "-o",
                "json",
            )
        )
    assert report["verdict"] == "pass", report
    assert report["canary_version"] == VERSION_NEXT

    # The verdict where a team looks: the canary Deployment's annotation and an Event.
    notes = (deployment(t, ns, CANARY) or {})["metadata"]["annotations"]
    assert notes["modelport.io/rollout-verdict"] == "pass"
    assert json.loads(notes["modelport.io/rollout-evidence"])["canary_version"] == VERSION_NEXT
    events = json.loads(
        kubectl(
            t,
            ns,
            "get",
            "events",
            "--field-selector",
            f"involvedObject.name={CANARY}",
            "-o",
            "json",
        )
    )["items"]
    assert any(e["reason"] == "CanaryPassed" for e in events), events
    status = json.loads(rollout(t, ns, "status", RELEASE, "-o", "json"))
    assert status["canary"]["model_version"] == VERSION_NEXT
    assert status["canary"]["verdict"] == "pass"

    rollout(t, ns, "promote", RELEASE)
    assert deployment(t, ns, CANARY) is None
    stable = deployment(t, ns, RELEASE)
    assert stable is not None
    labels = stable["spec"]["template"]["metadata"]["labels"]
    assert labels["modelport.io/model-version"] == VERSION_NEXT
    served_version(t, ns, VERSION_NEXT)

    # A second canary, aborted: stable is left as promoted.
    rollout(t, ns, "start", RELEASE, "--version", VERSION, "--image-tag", TAG)
    assert deployment(t, ns, CANARY) is not None
    rollout(t, ns, "abort", RELEASE)
    assert deployment(t, ns, CANARY) is None
    served_version(t, ns, VERSION_NEXT)
    assert json.loads(rollout(t, ns, "status", RELEASE, "-o", "json"))["canary"] is None
