"""helm lint --strict and schema validation of every ci/*-values.yaml scenario: built-in
kinds against the Kubernetes OpenAPI schemas of each supported version, custom resources
against their CRDs."""

from __future__ import annotations

import pytest

from .chartlib import (
    CHART,
    KUBE_VERSIONS,
    SCENARIOS,
    CrdValidators,
    KubeValidate,
    Renderer,
    run_helm,
)

pytestmark = pytest.mark.chart

CUSTOM_GROUPS = ("monitoring.coreos.com/", "keda.sh/")


def test_scenarios_present() -> None:
    assert set(SCENARIOS) >= {
        "default",
        "autoscaling",
        "monitoring",
        "canary",
        "hardened",
        "keda",
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(helm: str, scenario: str) -> None:
    out = run_helm(helm, "lint", "--strict", str(CHART), "-f", f"{CHART}/ci/{scenario}-values.yaml")
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out, out
    assert "[ERROR]" not in out, out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_builtin_kinds_valid_on_all_versions(
    render: Renderer, kube_validate: KubeValidate, scenario: str
) -> None:
    docs = [d for d in render(scenario) if not d["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert docs
    failures = []
    for version in KUBE_VERSIONS:
        for doc in docs:
            try:
                kube_validate(doc, version)
            except Exception as exc:  # collect all, report together
                where = ".".join(str(p) for p in getattr(exc, "path", []))
                message = getattr(exc, "message", str(exc))
                failures.append(
                    f"{version} {doc['kind']}/{doc['metadata']['name']} {where}: {message}"
                )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_custom_resources_valid_against_crds(
    render: Renderer, crd_validators: CrdValidators, scenario: str
) -> None:
    for doc in render(scenario):
        if doc["apiVersion"].startswith(CUSTOM_GROUPS):
            validate = crd_validators[(doc["apiVersion"], doc["kind"])]
            validate(doc)
