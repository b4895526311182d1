"""End to end on a real cluster, as a user runs it: install into a namespace enforcing Pod
Security "restricted", predict, `helm test`, upgrade to a new model version while a pod in
the cluster sends keep-alive requests through the Service (every one must get a 200), read
the model history, roll back with kubectl and with helm (and upgrade with helm after each
kubectl rollout), uninstall and wait until nothing is left.

Needs a reachable cluster (KUBECONFIG / current context) with both images loaded:
`make kind-up e2e-images kind-load e2e`. Skips when no cluster answers, and unless selected
with `-m e2e`: a plain `pytest` must never install into whatever cluster the context points
at. The default run still collects this module and resolves its fixtures
(tests/chart/test_chart_e2e_offline.py), and tests its helpers (tests/chart/e2e.py).

Registry mode (model.source=registry) runs too when MODELPORT_E2E_REGISTRY names an S3
endpoint reachable from the cluster (e.g. http://minio.minio.svc:9000), with
MODELPORT_E2E_REGISTRY_BUCKET (an existing bucket, default modelport-e2e),
MODELPORT_E2E_REGISTRY_PUSH_URL (the same endpoint as this machine reaches it; default
MODELPORT_E2E_REGISTRY) and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: both model versions
are pushed from MODELPORT_E2E_BENTOML_HOME (default .tools/e2e-bentoml) and served from
one image, `helm upgrade --set model.version=NEXT` rolling the model alone.

Environment: MODELPORT_E2E_IMAGE and MODELPORT_E2E_IMAGE_NEXT (repo:tag; default
modelport:e2e and modelport:e2e-next), MODELPORT_E2E_MODEL (default breast-cancer),
MODELPORT_E2E_MODEL_VERSION and MODELPORT_E2E_MODEL_VERSION_NEXT (the model version in each
image; `make e2e-images` prints them), MODELPORT_E2E_LOAD_SECONDS (default 240: longer than
the upgrade's rollout).
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
from dataclasses import dataclass

import pytest

from .chartlib import CHART, find_tool
from .e2e import (
    KEEPALIVE,
    LOAD_NAME,
    apply_flags,
    helm_major,
    load_objects,
    load_summary,
    wait_gone,
)

pytestmark = [pytest.mark.chart, pytest.mark.e2e]

IMAGE = os.environ.get("MODELPORT_E2E_IMAGE", "modelport:e2e")
REPOSITORY, _, TAG = IMAGE.rpartition(":")
IMAGE_NEXT = os.environ.get("MODELPORT_E2E_IMAGE_NEXT", f"{REPOSITORY}:e2e-next")
NEXT_TAG = IMAGE_NEXT.rpartition(":")[2]
MODEL = os.environ.get("MODELPORT_E2E_MODEL", "breast-cancer")
VERSION = os.environ.get("MODELPORT_E2E_MODEL_VERSION", "")
VERSION_NEXT = os.environ.get("MODELPORT_E2E_MODEL_VERSION_NEXT", "")
LOAD_SECONDS = int(os.environ.get("MODELPORT_E2E_LOAD_SECONDS", "240"))
RELEASE = "modelport-e2e"
DEPLOYMENT = f"deployment/{RELEASE}"
TIMEOUT = "10m"
# preStopSleepSeconds + the drain, with slack: how long deleted pods may take to go.
POD_GONE_SECONDS = 120


@dataclass(frozen=True)
class Tools:
    helm: str
    kubectl: str
    helm_flags: tuple[str, ...]  # for every helm upgrade/rollback (apply_flags)


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


def run(*args: str, timeout: int = 900, stdin: str | None = None) -> str:
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, input=stdin
    )
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def tools(request: pytest.FixtureRequest) -> Tools:
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
    major = helm_major(run(helm, "version", "--template", "{{.Version}}"))
    return Tools(helm, kubectl, tuple(apply_flags(major)))


@pytest.fixture(scope="module")
def namespace(tools: Tools) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security "restricted"; uninstalled and deleted after."""
    name = f"modelport-e2e-{uuid.uuid4().hex[:6]}"
    run(tools.kubectl, "create", "namespace", name)
    run(
        tools.kubectl,
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    yield name
    subprocess.run(
        [tools.helm, "uninstall", RELEASE, "-n", name, "--wait", "--timeout", "5m"],
        capture_output=True,
        check=False,
        timeout=400,
    )
    subprocess.run(
        [tools.kubectl, "delete", "namespace", name, "--wait=false"],
        capture_output=True,
        check=False,
        timeout=60,
    )


def helm_upgrade(t: Tools, namespace: str, tag: str, version: str) -> None:
    """`helm upgrade --install` of the chart as `make deploy` runs it."""
    run(
        t.helm,
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
        f"model.name={MODEL}",
        "--set",
        f"model.version={version}",
        "--set",
        "replicaCount=2",
        *t.helm_flags,
        "--wait",
        "--timeout",
        TIMEOUT,
    )


def kubectl(t: Tools, namespace: str, *args: str, timeout: int = 900) -> str:
    return run(t.kubectl, "-n", namespace, *args, timeout=timeout)


def rollout_done(t: Tools, namespace: str) -> None:
    kubectl(t, namespace, "rollout", "status", DEPLOYMENT, "--timeout=10m")


def deployed_image(t: Tools, namespace: str) -> str:
    return kubectl(
        t, namespace, "get", DEPLOYMENT, "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    )


def change_cause(t: Tools, namespace: str) -> str:
    return kubectl(
        t,
        namespace,
        "get",
        DEPLOYMENT,
        "-o",
        r"jsonpath={.metadata.annotations.kubernetes\.io/change-cause}",
    )


def cause(version: str, image: str) -> str:
    if not version:  # the image's pinned models, untouched by the chart
        return f"model {MODEL} as pinned in image {image}"
    return f"model {MODEL}:{version} (image {image})"


def port_forward(t: Tools, namespace: str, path: str, body: dict | None = None) -> dict:
    """GET (or POST ``body`` to) ``path`` through `kubectl port-forward` to the Service,
    once /readyz answers."""
    proc = subprocess.Popen(
        [t.kubectl, "-n", namespace, "port-forward", f"service/{RELEASE}", ":3000"],
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
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{base}{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 200
            out: dict = json.load(resp)
            return out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def predict(t: Tools, namespace: str) -> tuple[dict, dict]:
    """The served model's sample and the prediction for it."""
    models = port_forward(t, namespace, "/models")["models"]
    model = next(m for m in models if m["name"] == MODEL)
    return model["sample"], port_forward(t, namespace, "/predict", model["sample"])


def served_version(t: Tools, namespace: str, expected: str) -> None:
    _, out = predict(t, namespace)
    assert out["predictions"], out
    if expected:
        assert out["model_version"] == expected, out


def start_load(t: Tools, namespace: str, body: dict) -> None:
    objects = load_objects(
        namespace=namespace,
        fullname=RELEASE,
        image=IMAGE,
        pull_policy="IfNotPresent",
        seconds=LOAD_SECONDS,
        clients=8,
        body=json.dumps(body),
        script=KEEPALIVE.read_text(),
    )
    run(
        t.kubectl,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )
    kubectl(t, namespace, "wait", "--for=condition=Ready", f"pod/{LOAD_NAME}", "--timeout=5m")


def load_phase(t: Tools, namespace: str) -> str:
    return kubectl(t, namespace, "get", f"pod/{LOAD_NAME}", "-o", "jsonpath={.status.phase}")


def finish_load(t: Tools, namespace: str) -> None:
    """Wait for the load pod to end; every request it sent must have had a 2xx."""
    deadline = time.monotonic() + LOAD_SECONDS + 300
    phase = load_phase(t, namespace)
    while phase not in ("Succeeded", "Failed"):
        assert time.monotonic() < deadline, f"load pod still {phase}"
        time.sleep(5)
        phase = load_phase(t, namespace)
    log = kubectl(t, namespace, "logs", f"pod/{LOAD_NAME}")
    summary = load_summary(log)
    assert summary.sent > 0, log[-2000:]
    assert summary.lost == 0 and summary.resets == 0 and summary.non2xx == 0, summary
    assert phase == "Succeeded", log[-2000:]
    kubectl(t, namespace, "delete", "pod,configmap", "-l", "modelport.io/e2e=load", "--wait")


def warning_events(t: Tools, namespace: str) -> list[str]:
    out = json.loads(
        kubectl(t, namespace, "get", "events", "--field-selector", "type=Warning", "-o", "json")
    )
    return [
        f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}: "
        f"{e.get('reason')}: {e.get('message')}"
        for e in out["items"]
        if e["involvedObject"].get("name", "").startswith(RELEASE)
    ]


def release_pods(t: Tools, namespace: str) -> list[str]:
    out = kubectl(
        t, namespace, "get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name"
    )
    return out.split()


def test_install_upgrade_under_load_rollbacks_uninstall(tools: Tools, namespace: str) -> None:
    t, ns = tools, namespace

    # Install into a namespace enforcing "restricted": admission rejects any pod that
    # does not meet it, so reaching Ready proves the chart's pods do.
    helm_upgrade(t, ns, TAG, VERSION)
    rollout_done(t, ns)
    sample, out = predict(t, ns)
    assert out["predictions"], out
    if VERSION:
        assert out["model_version"] == VERSION, out
    run(t.helm, "test", RELEASE, "-n", ns, "--logs", "--timeout", "5m")

    # Upgrade to the next model version while keep-alive clients in the cluster send
    # requests through the Service: none may be lost (preStop drain, maxUnavailable 0).
    start_load(t, ns, sample)
    helm_upgrade(t, ns, NEXT_TAG, VERSION_NEXT)
    rollout_done(t, ns)
    assert load_phase(t, ns) == "Running", (
        f"the load ended before the rollout did: raise MODELPORT_E2E_LOAD_SECONDS ({LOAD_SECONDS})"
    )
    finish_load(t, ns)
    assert deployed_image(t, ns) == IMAGE_NEXT
    served_version(t, ns, VERSION_NEXT)
    hist = kubectl(t, ns, "rollout", "history", DEPLOYMENT)
    assert cause(VERSION, IMAGE) in hist, hist
    assert cause(VERSION_NEXT, IMAGE_NEXT) in hist, hist

    # Roll back with kubectl: the previous model, its change-cause restored.
    kubectl(t, ns, "rollout", "undo", DEPLOYMENT)
    rollout_done(t, ns)
    assert deployed_image(t, ns) == IMAGE
    assert change_cause(t, ns) == cause(VERSION, IMAGE)
    served_version(t, ns, VERSION)
    # ... and helm upgrades afterwards (Helm 4 takes the fields back from kubectl).
    helm_upgrade(t, ns, NEXT_TAG, VERSION_NEXT)
    rollout_done(t, ns)
    assert deployed_image(t, ns) == IMAGE_NEXT

    # Roll back with helm, to the first revision.
    run(t.helm, "rollback", RELEASE, "1", "-n", ns, *t.helm_flags, "--wait", "--timeout", TIMEOUT)
    rollout_done(t, ns)
    assert deployed_image(t, ns) == IMAGE
    served_version(t, ns, VERSION)

    # A kubectl rollout forward (set image, set env, change-cause), then helm again.
    models = f"{MODEL}:{VERSION_NEXT}" if VERSION_NEXT else MODEL
    kubectl(t, ns, "set", "image", DEPLOYMENT, f"modelport={IMAGE_NEXT}")
    kubectl(t, ns, "set", "env", DEPLOYMENT, f"MODELPORT_MODELS={models}")
    kubectl(
        t,
        ns,
        "annotate",
        "--overwrite",
        DEPLOYMENT,
        f"kubernetes.io/change-cause={cause(VERSION_NEXT, IMAGE_NEXT)} via kubectl",
    )
    rollout_done(t, ns)
    served_version(t, ns, VERSION_NEXT)
    helm_upgrade(t, ns, TAG, VERSION)
    rollout_done(t, ns)
    assert deployed_image(t, ns) == IMAGE
    served_version(t, ns, VERSION)

    # Normal starts and stops: no probe failures, no other warnings about our objects.
    assert not warning_events(t, ns), "\n".join(warning_events(t, ns))

    # Uninstall: `--wait` returns once the Deployment is gone; its pods are still in their
    # preStop pause, so wait for them before checking that nothing is left.
    run(t.helm, "uninstall", RELEASE, "-n", ns, "--wait", "--timeout", TIMEOUT)
    wait_gone(lambda: release_pods(t, ns), POD_GONE_SECONDS)
    left = kubectl(
        t,
        ns,
        "get",
        "all,pdb,serviceaccount,configmap,networkpolicy,ingress",
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
        "-o",
        "name",
    )
    assert not left.strip(), f"left behind after uninstall: {left}"
    tests = kubectl(t, ns, "get", "pods", "-l", f"modelport.io/test-of={RELEASE}", "-o", "name")
    assert not tests.strip(), f"helm test pods left behind: {tests}"


REGISTRY_ENDPOINT = os.environ.get("MODELPORT_E2E_REGISTRY", "")
REGISTRY_BUCKET = os.environ.get("MODELPORT_E2E_REGISTRY_BUCKET", "modelport-e2e")
REGISTRY_PREFIX = f"e2e-{uuid.uuid4().hex[:6]}"


def push_to_registry() -> None:
    """Both e2e model versions into the registry, from the e2e store, via the real client."""
    from pathlib import Path

    from modelport.registry import Registry, RegistrySettings

    home = Path(
        os.environ.get("MODELPORT_E2E_BENTOML_HOME", CHART.parents[1] / ".tools" / "e2e-bentoml")
    )
    registry = Registry(
        RegistrySettings(
            registry=f"s3://{REGISTRY_BUCKET}/{REGISTRY_PREFIX}",
            registry_endpoint_url=os.environ.get(
                "MODELPORT_E2E_REGISTRY_PUSH_URL", REGISTRY_ENDPOINT
            ),
        )
    )
    for version in (VERSION, VERSION_NEXT):
        if registry.marker(MODEL, version) is None:
            registry.push(home / "models" / MODEL / version)


def helm_registry(t: Tools, namespace: str, version: str) -> None:
    run(
        t.helm,
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        f"image.repository={REPOSITORY}",
        "--set",
        f"image.tag={TAG}",
        "--set",
        "image.pullPolicy=IfNotPresent",
        "--set",
        "model.source=registry",
        "--set",
        f"model.name={MODEL}",
        "--set",
        f"model.version={version}",
        "--set",
        f"registry.bucket={REGISTRY_BUCKET}",
        "--set",
        f"registry.prefix={REGISTRY_PREFIX}",
        "--set",
        f"registry.endpointUrl={REGISTRY_ENDPOINT}",
        "--set",
        "registry.credentialsSecret=modelport-e2e-registry",
        "--set",
        "replicaCount=2",
        *t.helm_flags,
        "--wait",
        "--timeout",
        TIMEOUT,
    )


def test_registry_mode_rolls_a_model_without_a_new_image(tools: Tools, namespace: str) -> None:
    if not REGISTRY_ENDPOINT:
        pytest.skip(
            "e2e registry mode: set MODELPORT_E2E_REGISTRY to an S3 endpoint the cluster reaches"
        )
    assert VERSION and VERSION_NEXT, "MODELPORT_E2E_MODEL_VERSION(_NEXT) are needed (make e2e)"
    t, ns = tools, namespace
    push_to_registry()
    kubectl(
        t,
        ns,
        "create",
        "secret",
        "generic",
        "modelport-e2e-registry",
        f"--from-literal=AWS_ACCESS_KEY_ID={os.environ['AWS_ACCESS_KEY_ID']}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={os.environ['AWS_SECRET_ACCESS_KEY']}",
    )
    helm_registry(t, ns, VERSION)
    rollout_done(t, ns)
    served_version(t, ns, VERSION)
    start = time.monotonic()
    helm_registry(t, ns, VERSION_NEXT)  # same image: only the model changes
    rollout_done(t, ns)
    seconds = time.monotonic() - start
    print(f"registry mode: helm upgrade to {MODEL}:{VERSION_NEXT} ready in {seconds:.0f}s")
    assert deployed_image(t, ns) == IMAGE
    served_version(t, ns, VERSION_NEXT)
    hist = kubectl(t, ns, "rollout", "history", DEPLOYMENT)
    for version in (VERSION, VERSION_NEXT):
        assert f"model {MODEL}:{version} from registry" in hist, hist
    run(t.helm, "rollback", RELEASE, "-n", ns, *t.helm_flags, "--wait", "--timeout", TIMEOUT)
    rollout_done(t, ns)
    served_version(t, ns, VERSION)
    run(t.helm, "uninstall", RELEASE, "-n", ns, "--wait", "--timeout", TIMEOUT)
    wait_gone(lambda: release_pods(t, ns), POD_GONE_SECONDS)
