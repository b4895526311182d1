"""End to end on a real cluster: install, predict through a port-forward, upgrade to a new
image tag, read the model history, roll back, uninstall.

Needs a reachable cluster (KUBECONFIG / current context) with the images loaded:
`make kind-up image kind-load e2e`. Skips when no cluster answers, and unless selected with
`-m e2e`: a plain `pytest` must never install into whatever cluster the context points at.

Environment: MODELPORT_E2E_IMAGE (repo:tag, default modelport:latest) and
MODELPORT_E2E_IMAGE_NEXT (a second tag of it, default <repo>:e2e-next).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from .chartlib import CHART, find_tool

pytestmark = [pytest.mark.chart, pytest.mark.e2e]

IMAGE = os.environ.get("MODELPORT_E2E_IMAGE", "modelport:latest")
REPOSITORY, _, TAG = IMAGE.rpartition(":")
NEXT_TAG = os.environ.get("MODELPORT_E2E_IMAGE_NEXT", f"{REPOSITORY}:e2e-next").rpartition(":")[2]
RELEASE = "modelport-e2e"
TIMEOUT = "10m"


def cluster_reachable(kubectl: str) -> str | None:
    """None when a cluster answers, else why not."""
    try:
        proc = subprocess.run(
            [kubectl, "cluster-info", "--request-timeout=5s"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "kubectl cluster-info timed out"
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture(scope="module")
def tools(request: pytest.FixtureRequest) -> tuple[str, str]:
    if "e2e" not in (request.config.getoption("markexpr") or ""):
        pytest.skip(
            "e2e: installs into the current cluster; run it with `pytest -m e2e` (make e2e)"
        )
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("e2e: kubectl not found")
    reason = cluster_reachable(kubectl)
    if reason is not None:
        pytest.skip(f"e2e: no reachable Kubernetes cluster (KUBECONFIG): {reason}")
    helm = find_tool("helm")
    if helm is None:
        pytest.fail("e2e: a cluster is reachable but helm is missing: run `make tools`")
    return helm, kubectl


def run(*args: str, timeout: int = 900) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def deployed_image(kubectl: str, namespace: str) -> str:
    return run(
        kubectl,
        "-n",
        namespace,
        "get",
        f"deployment/{RELEASE}",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )


def namespace(tools: tuple[str, str]) -> Iterator[str]:
    helm, kubectl = tools
    name = f"modelport-e2e-{uuid.uuid4().hex[:6]}"
    run(kubectl, "create", "namespace", name)
    run(kubectl, "label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    subprocess.run(
        [helm, "uninstall", RELEASE, "-n", name, "--wait"],
        capture_output=True,
        check=False,
        timeout=300,
    )
    subprocess.run(
        [kubectl, "delete", "namespace", name, "--wait=false"],
        capture_output=True,
        check=False,
        timeout=60,
    )


def helm_deploy(helm: str, namespace: str, tag: str) -> None:
    run(
        helm,
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        f"image.repository={REPOSITORY}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=IfNotPresent",
        "--set",
        "replicaCount=2",
        "--wait",
        "--timeout",
        TIMEOUT,
    )


def port_forward_predict(kubectl: str, namespace: str) -> dict:
    """POST the first model's sample to /predict through `kubectl port-forward`."""
    proc = subprocess.Popen(
        [kubectl, "-n", namespace, "port-forward", f"service/{RELEASE}", ":3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 3000"
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, f"port-forward said: {line!r}"
        base = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=10) as resp:
                    assert resp.status == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        with urllib.request.urlopen(f"{base}/models", timeout=30) as resp:
            model = json.load(resp)["models"][0]
        request = urllib.request.Request(
            f"{base}/predict",
            data=json.dumps(model["sample"]).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 200
            return json.load(resp)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def history(kubectl: str, namespace: str) -> str:
    return run(kubectl, "-n", namespace, "rollout", "history", f"deployment/{RELEASE}")


def test_install_predict_upgrade_rollback_uninstall(tools: tuple[str, str], namespace: str) -> None:
    helm, kubectl = tools

    helm_deploy(helm, namespace, TAG)
    run(kubectl, "-n", namespace, "rollout", "status", f"deployment/{RELEASE}", "--timeout=10m")
    out = port_forward_predict(kubectl, namespace)
    assert out["predictions"], out
    run(helm, "test", RELEASE, "-n", namespace, "--logs", "--timeout", "5m")

    helm_deploy(helm, namespace, NEXT_TAG)
    run(kubectl, "-n", namespace, "rollout", "status", f"deployment/{RELEASE}", "--timeout=10m")
    image = deployed_image(kubectl, namespace)
    assert image == f"{REPOSITORY}:{NEXT_TAG}"
    hist = history(kubectl, namespace)
    assert f"(image {REPOSITORY}:{TAG})" in hist, hist
    assert f"(image {REPOSITORY}:{NEXT_TAG})" in hist, hist
    assert "model " in hist

    run(helm, "rollback", RELEASE, "1", "-n", namespace, "--wait", "--timeout", TIMEOUT)
    run(kubectl, "-n", namespace, "rollout", "status", f"deployment/{RELEASE}", "--timeout=10m")
    image = deployed_image(kubectl, namespace)
    assert image == IMAGE
    assert port_forward_predict(kubectl, namespace)["predictions"]

    # kubectl's own rollback moves to the previous revision again.
    run(kubectl, "-n", namespace, "rollout", "undo", f"deployment/{RELEASE}")
    run(kubectl, "-n", namespace, "rollout", "status", f"deployment/{RELEASE}", "--timeout=10m")

    run(helm, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", TIMEOUT)
    left = run(
        kubectl,
        "-n",
        namespace,
        "get",
        "all,pdb,serviceaccount",
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
        "-o",
        "name",
    )
    assert not left.strip(), f"left behind after uninstall: {left}"
