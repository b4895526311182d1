"""The service image, run by podman under the chart's default security context: user 1034,
read-only root file system with tmpfs only at the chart's emptyDir mounts, no
capabilities, no privilege escalation, the chart's resource limits."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelport import store
from tests.inflight import drain_check
from training.recipes import RECIPES

from .conftest import IMAGE_MODELS, Container, ServiceImage, start_container

pytestmark = [pytest.mark.image, pytest.mark.integration, pytest.mark.slow]


def _rows(recipe: str, n: int) -> list[dict[str, Any]]:
    frame = RECIPES[recipe].load().drop(columns=[RECIPES[recipe].target]).head(n)
    rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return rows


def test_ready_within_the_startup_probe_budget(container: Container) -> None:
    assert 0 < container.ready_seconds <= container.spec.startup_budget
    with httpx.Client(base_url=container.url, timeout=10) as c:
        assert c.get(container.spec.startup_path).status_code == 200
        assert c.get(container.spec.readiness_path).status_code == 200


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_prediction_matches_the_in_process_result(
    container: Container, service_image: ServiceImage, name: str
) -> None:
    rows = _rows(name, 8)
    with httpx.Client(base_url=container.url, timeout=30) as c:
        answer = c.post("/predict", json={"model": name, "instances": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"]) == (name, service_image.models[name])

    model = store.resolve(f"{name}:{service_image.models[name]}")
    card = store.card_of(model)
    local = store.predictor_of(model, card).predict(pd.DataFrame(rows)[card.feature_names])
    if card.task == "classification":
        assert body["predictions"] == local.predictions
        np.testing.assert_allclose(body["probabilities"], local.probabilities, rtol=1e-6)
    else:
        np.testing.assert_allclose(body["predictions"], local.predictions, rtol=1e-6)


def test_metrics_carry_the_modelport_series(container: Container) -> None:
    with httpx.Client(base_url=container.url, timeout=10) as c:
        c.post("/predict", json={"model": "diabetes", "instances": _rows("diabetes", 1)})
        text = c.get("/metrics").text
    names = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert {"modelport_requests_total", "modelport_model_info"} <= names, sorted(names)[:40]
    served = {
        s.labels.get("model_name")
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "modelport_model_info"
    }
    assert served == set(IMAGE_MODELS)


def test_runs_as_the_chart_user_on_a_read_only_root(container: Container) -> None:
    def sh(script: str) -> subprocess.CompletedProcess[str]:
        return container.podman("exec", container.name, "sh", "-c", script, check=False)

    assert sh("id -u").stdout.strip() == container.spec.user.split(":")[0]
    assert sh("grep CapEff /proc/self/status").stdout.split()[-1] == "0000000000000000"
    assert sh("touch /home/bentoml/bento/probe").returncode != 0
    assert sh("touch /usr/local/probe").returncode != 0
    for path in container.spec.writable:
        assert sh(f"touch {path}/probe && rm {path}/probe").returncode == 0, path


def test_image_is_lean_and_holds_no_build_tools_data_or_secrets(
    service_image: ServiceImage, podman_env: dict[str, str]
) -> None:
    def inside(script: str) -> str:
        # As root, only to look: /root is private to root.
        return subprocess.run(
            [
                "podman",
                "run",
                "--rm",
                "--pull=never",
                "--user",
                "0",
                "--entrypoint",
                "sh",
                service_image.tag,
                "-c",
                script,
            ],
            env=podman_env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout

    tools = inside("for t in gcc cc g++ c++ make git uv; do command -v $t; done; true")
    assert tools.strip() == "", tools
    bento = "/home/bentoml/bento"
    src = set(inside(f"ls {bento}/src").split())
    assert src == {"bentofile.yaml", "modelport", "service"}, src  # no training code, tests
    data = inside(f"find {bento} \\( -name '*.csv' -o -name '*.parquet' -o -name '*.npz' \\)")
    assert data.strip() == "", data  # the models only, no training data
    secrets = inside(
        "find / -xdev \\( -name .netrc -o -name .pypirc -o -name pip.conf "
        "-o -name uv.toml \\) -print"
    )
    assert secrets.strip() == "", secrets  # no index credentials or build configuration
    caches = set(inside("ls -A /root").split()) - {".bashrc", ".profile"}
    assert not caches, caches  # the build's download caches stayed on the host
    env = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{json .Config.Env}}", service_image.tag],
        env=podman_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not any(
        word in env.upper() for word in ("PASSWORD", "TOKEN", "SECRET", "PIP_", "INDEX_URL")
    ), env
    # The sklearn stack on the base is ~0.5 GB; TensorFlow would add ~1 GB.
    assert service_image.size < 800e6, service_image.size


def test_sigterm_drains_in_flight_requests(
    deployment: dict[str, Any], podman_env: dict[str, str]
) -> None:
    c = start_container(deployment, podman_env, "modelport-image-drain")
    try:
        body = {"model": "breast-cancer", "instances": _rows("breast-cancer", 1) * 1500}
        stopped: list[subprocess.CompletedProcess[str]] = []
        # SIGTERM; SIGKILL only after the chart's budget.
        results = drain_check(
            c.url, body, lambda: stopped.append(c.podman("stop", c.name, check=False))
        )
        stop = stopped[0]
        assert stop.returncode == 0, stop.stderr
        assert results == [200] * 8, results
        state = c.state()
        assert state["ExitCode"] == 0, (state, c.logs())  # drained, not killed
    finally:
        c.remove()
