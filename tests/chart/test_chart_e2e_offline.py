"""What the e2e suite relies on, checked without a cluster in the default run: the module
collects and its fixtures resolve (a broken fixture fails here, not first on a cluster), no
fixture is called as a function, its helpers behave, and every object it applies renders
and validates against the real Kubernetes schemas and Pod Security "restricted"."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from . import test_chart_e2e as e2e_suite
from .chartlib import KUBE_VERSIONS, REPO, KubeValidate, Renderer, find, one
from .e2e import (
    KEEPALIVE,
    LOAD_NAME,
    apply_flags,
    helm_major,
    load_objects,
    load_summary,
    wait_gone,
)

pytestmark = pytest.mark.chart

SUITE = Path(e2e_suite.__file__)


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_e2e_suite_collects_and_its_fixtures_resolve() -> None:
    # --setup-plan resolves every fixture of every test without running any of them:
    # "fixture 'namespace' not found" is an error here, exit code 1.
    proc = _pytest("-m", "e2e", "--setup-plan", str(SUITE))
    assert proc.returncode == 5 or proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout, proc.stdout
    assert "test_install_upgrade_under_load_rollbacks_uninstall" in proc.stdout
    assert "test_registry_mode_rolls_a_model_without_a_new_image" in proc.stdout
    assert "SETUP    M namespace" in proc.stdout, proc.stdout


def test_e2e_suite_skips_without_the_marker() -> None:
    proc = _pytest("-rs", str(SUITE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 skipped" in proc.stdout and "run it with `pytest -m e2e`" in proc.stdout


def test_no_fixture_is_called_directly() -> None:
    tree = ast.parse(SUITE.read_text())
    fixtures = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any("fixture" in ast.unparse(d) for d in node.decorator_list)
    }
    assert {"tools", "namespace"} <= fixtures
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not fixtures & called, f"fixtures called as functions: {fixtures & called}"


# --- helpers --------------------------------------------------------------------------------


def _keepalive_log(summary: dict) -> str:
    return "keepalive: 10s\nkeepalive: 20s\n" + json.dumps(summary) + "\n"


def test_load_summary_reads_the_last_json_line() -> None:
    counts = {"sent": 10, "answered": 10, "ok": 9, "non2xx": 1, "resets": 0, "errors": ["x"]}
    summary = load_summary(_keepalive_log(counts))
    assert (summary.sent, summary.ok, summary.non2xx, summary.lost) == (10, 9, 1, 1)
    assert summary.errors == ["x"]
    # Extra keys the script adds (reconnects, lost, ...) are fine; trailing noise too.
    later = {**counts, "ok": 10, "non2xx": 0, "reconnects": 3, "lost": 0}
    assert load_summary(_keepalive_log(counts) + json.dumps(later) + "\n\n").lost == 0


def test_load_summary_without_a_summary_names_the_log_tail() -> None:
    with pytest.raises(ValueError, match=r"(?s)no JSON summary line.*Killed"):
        load_summary("keepalive: 10s\n{not json\nKilled\n")
    with pytest.raises(ValueError, match="lacks a count"):
        load_summary('{"sent": 3}\n')


def test_load_summary_parses_the_real_scripts_output() -> None:
    """tests/keepalive.py's own summary line, from a run against nothing listening."""
    proc = subprocess.run(
        [
            sys.executable,
            str(KEEPALIVE),
            "--url",
            "http://127.0.0.1:9",
            "--clients",
            "1",
            "--seconds",
            "0.3",
            "--body",
            "{}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    summary = load_summary(proc.stdout)
    assert summary.sent == 0 and proc.returncode == 1  # nothing sent is a failure too


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_gone_waits_for_pods_in_their_prestop_pause() -> None:
    clock = FakeClock()
    listings = [["pod/a", "pod/b"], ["pod/a", "pod/b"], ["pod/b"], []]
    waited = wait_gone(lambda: listings.pop(0), 60, interval=5, clock=clock, sleep=clock.sleep)
    assert waited == 15 and not listings


def test_wait_gone_times_out_naming_what_is_left() -> None:
    clock = FakeClock()
    with pytest.raises(TimeoutError, match=r"after 30s: pod/a, pod/b"):
        wait_gone(lambda: ["pod/a", "pod/b"], 30, interval=10, clock=clock, sleep=clock.sleep)
    assert clock.now == 30


def test_helm_major_and_apply_flags(helm: str) -> None:
    assert helm_major("v4.1.4") == 4
    assert helm_major("v3.17.3+ge4da497") == 3
    with pytest.raises(ValueError, match="not a helm version"):
        helm_major("unknown")
    version = subprocess.run(
        [helm, "version", "--template", "{{.Version}}"], capture_output=True, text=True, check=True
    ).stdout
    major = helm_major(version)
    assert major in (3, 4)
    assert apply_flags(4) == ["--force-conflicts"] and apply_flags(3) == []
    # The flag exists exactly where the suite passes it.
    upgrade_help = subprocess.run(
        [helm, "upgrade", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(flag in upgrade_help for flag in apply_flags(major))


# --- what the suite applies -----------------------------------------------------------------


def _load() -> list[dict]:
    return load_objects(
        namespace="ns",
        fullname=e2e_suite.RELEASE,
        image="modelport:e2e",
        pull_policy="IfNotPresent",
        seconds=240,
        clients=8,
        body=json.dumps({"model": "breast-cancer", "instances": [{"a": 1}]}),
        script=KEEPALIVE.read_text(),
    )


def test_load_objects_valid_on_all_versions(kube_validate: KubeValidate) -> None:
    for version in KUBE_VERSIONS:
        for doc in _load():
            kube_validate(doc, version)


def test_load_pod_is_restricted_and_runs_the_mounted_script() -> None:
    config_map, pod = _load()
    spec = pod["spec"]
    (c,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsUser"] == 1034
    assert spec["restartPolicy"] == "Never"
    mount = c["volumeMounts"][0]["mountPath"]
    assert c["command"][:3] == ["python", "-B", f"{mount}/keepalive.py"]
    args = dict(zip(c["command"][3::2], c["command"][4::2], strict=True))
    assert args["--url"] == f"http://{e2e_suite.RELEASE}:3000"
    assert args["--body"] == f"@{mount}/body.json"
    assert set(config_map["data"]) == {"keepalive.py", "body.json"}
    assert config_map["metadata"]["name"] == spec["volumes"][0]["configMap"]["name"] == LOAD_NAME
    compile(config_map["data"]["keepalive.py"], "keepalive.py", "exec")
    # Let in by the chart's NetworkPolicy, and not mistaken for a release pod.
    assert pod["metadata"]["labels"][f"{e2e_suite.RELEASE}-client"] == "true"
    assert "app.kubernetes.io/instance" not in pod["metadata"]["labels"]


def test_release_the_suite_installs_validates(helm: str, kube_validate: KubeValidate) -> None:
    """The chart with the suite's exact values, as `helm upgrade --install` renders it."""
    render = Renderer(helm)
    docs = render(
        None,
        "--set",
        f"image.repository={e2e_suite.REPOSITORY}",
        "--set",
        f"image.tag={e2e_suite.TAG}",
        "--set",
        "image.pullPolicy=IfNotPresent",
        "--set",
        f"model.name={e2e_suite.MODEL}",
        "--set",
        "model.version=abc123",
        "--set",
        "replicaCount=2",
    )
    for version in KUBE_VERSIONS:
        for doc in docs:
            kube_validate(doc, version)
    deploy = one(docs, "Deployment")
    cause = deploy["metadata"]["annotations"]["kubernetes.io/change-cause"]
    assert cause == f"model {e2e_suite.MODEL}:abc123 (image {e2e_suite.IMAGE})"
    # The suite's leftover check selects on this label; the test pod carries another.
    (test_pod,) = find(docs, "Pod")
    assert "app.kubernetes.io/instance" not in test_pod["metadata"]["labels"]
    assert test_pod["metadata"]["labels"]["modelport.io/test-of"] == "modelport"
