"""k8s/base and k8s/monitoring are generated from the chart (`make manifests`): re-render
them and fail on any drift, and check that kustomize builds every directory."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .chartlib import IN_CI, REPO

pytestmark = pytest.mark.chart

GENERATED = ("base", "monitoring")


@pytest.fixture(scope="module")
def regenerated(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("k8s")
    subprocess.run(
        ["bash", str(REPO / "hack" / "gen-manifests.sh"), str(out)],
        env={**os.environ, "HELM": helm},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@pytest.mark.parametrize("directory", GENERATED)
def test_manifests_match_the_chart(regenerated: Path, directory: str) -> None:
    committed = REPO / "k8s" / directory
    fresh = regenerated / directory
    names = sorted(p.name for p in fresh.iterdir())
    assert sorted(p.name for p in committed.iterdir()) == names
    for name in names:
        assert (committed / name).read_text() == (fresh / name).read_text(), (
            f"k8s/{directory}/{name} differs from the chart: run `make manifests`"
        )


def test_base_is_the_chart_defaults_without_test_hooks() -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "k8s/base/modelport.yaml").read_text()) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "Deployment",
        "Namespace",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("directory", [*GENERATED, "local"])
def test_kustomize_builds(directory: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if IN_CI:
            pytest.fail("kubectl not found (needed for `kubectl kustomize`)")
        pytest.skip("kubectl not found: kustomize builds are not checked")
    proc = subprocess.run(
        [kubectl, "kustomize", str(REPO / "k8s" / directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert docs
    if directory == "local":
        deploy = next(d for d in docs if d["kind"] == "Deployment")
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "modelport:latest"
        assert container["imagePullPolicy"] == "Never"
