"""Nonsense values fail `helm install`/`helm template` with a message naming the value:
the JSON schema for types, ranges and unknown keys, template checks for combinations."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .chartlib import CHART, RELEASE, Renderer, find_tool, helm_version_major, schema_message

pytestmark = pytest.mark.chart


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=-1"], "at '/replicaCount': minimum"),
        (["--set", "replicaz=2"], "additional properties 'replicaz' not allowed"),
        (["--set", "autoscaling.maxReplica=3"], "additional properties 'maxReplica' not allowed"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "image.digest=latest"], "at '/image/digest'"),
        (["--set", "service.type=External"], "at '/service/type'"),
        (["--set", "service.port=70000"], "at '/service/port': maximum"),
        (["--set", "bentoml.workers=0"], "at '/bentoml/workers': minimum"),
        (["--set", "serving.kerasArtifact=onnx"], "at '/serving/kerasArtifact'"),
        (["--set", "serving.sklearnArtifact=tflite"], "at '/serving/sklearnArtifact'"),
        (["--set", "serving.driftFlushSeconds=-1"], "at '/serving/driftFlushSeconds': minimum"),
        (["--set", "serving.explain.budgetSeconds=0"], "at '/serving/explain/budgetSeconds'"),
        (["--set", "serving.explain.maxRows=0"], "at '/serving/explain/maxRows': minimum"),
        (["--set", "readinessProbe.periodSeconds=0"], "at '/readinessProbe/periodSeconds'"),
        (["--set", "readinessProbe.path=readyz"], "at '/readinessProbe/path'"),
        (["--set", "writableDirs[0]=tmp"], "at '/writableDirs/0'"),
        (
            ["--set", "topologySpread.whenUnsatisfiable=Maybe"],
            "at '/topologySpread/whenUnsatisfiable'",
        ),
        (
            ["--set", "prometheusRule.alerts.highLatency.severity=urgent"],
            "at '/prometheusRule/alerts/highLatency/severity'",
        ),
        (
            ["--set", "prometheusRule.alerts.accuracyBelowFloor.tolerance=5"],
            "at '/prometheusRule/alerts/accuracyBelowFloor/tolerance': maximum",
        ),
        (["--set", "prometheusRule.driftWindow=an hour"], "at '/prometheusRule/driftWindow'"),
        (["--set", "model.name=Breast Cancer"], "at '/model/name'"),
        (["--set", "model.extraModels[0]=bad tag!"], "at '/model/extraModels/0'"),
        (["--set", "keda.serverAddress=prometheus:9090"], "at '/keda/serverAddress'"),
        (["--set", "resources.requests=null"], "at '/resources'"),
    ],
)
def test_schema_rejects(render: Renderer, args: list[str], message: str) -> None:
    error = render.error(None, *args)
    assert "values don't meet the specifications of the schema" in error
    major = helm_version_major(render.helm)
    assert major is not None
    assert schema_message(message, major) in error, error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "autoscaling.enabled=true", "--set", "keda.enabled=true"],
            "autoscaling.enabled and keda.enabled are mutually exclusive",
        ),
        (
            ["--set", "terminationGracePeriodSeconds=30"],
            "terminationGracePeriodSeconds (30) must exceed preStopSleepSeconds + "
            "bentoml.requestTimeoutSeconds (40)",
        ),
        (["--set", "canary.enabled=true"], "canary.enabled needs canary.image.tag"),
        (
            ["--set", "podDisruptionBudget.minAvailable=1"],
            "set either minAvailable or maxUnavailable, not both",
        ),
        (
            [
                "--set",
                "autoscaling.enabled=true",
                "--set",
                "autoscaling.minReplicas=5",
                "--set",
                "autoscaling.maxReplicas=3",
            ],
            "autoscaling.maxReplicas (3) must be >= autoscaling.minReplicas (5)",
        ),
        (
            [
                "--set",
                "autoscaling.enabled=true",
                "--set",
                "autoscaling.targetCPUUtilizationPercentage=null",
            ],
            "autoscaling.enabled needs a metric",
        ),
    ],
)
def test_template_rejects_combinations(render: Renderer, args: list[str], message: str) -> None:
    assert message in render.error(None, *args)


def test_every_value_is_documented() -> None:
    """helm-docs style: every value has a `# --` comment, on itself or on an enclosing key
    (which then documents the whole object, e.g. `resources`)."""
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    pending = False
    undocumented = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = True
            continue
        if not stripped or stripped.startswith("#") or stripped.startswith("-"):
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = pending or any(doc for _, doc in stack)
        pending = False
        key, _, rest = stripped.partition(":")
        if rest.strip():  # a leaf: `key: value`
            if not documented:
                undocumented.append(key)
        else:
            stack.append((indent, documented))
    assert not undocumented, f"values without a `# --` comment: {undocumented}"


def test_schema_is_strict_draft07() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(node: dict, path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}")

    walk(schema, "values")


def test_notes_tell_how_to_reach_the_service(helm4: str) -> None:
    env = {**os.environ, "KUBECONFIG": os.devnull}
    proc = subprocess.run(
        [helm4, "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", "models"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n models port-forward service/modelport 3000:3000" in notes
    assert "/metrics" in notes
    assert "/predict" in notes
    assert "rollout history deployment/modelport" in notes
    assert find_tool("helm")


def test_deploy_guide_lists_every_value() -> None:
    """docs/deploy.md's values table names every documented value."""
    guide = (CHART.parents[1] / "docs" / "deploy.md").read_text()
    stack: list[tuple[int, str]] = []
    pending = False
    missing = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = True
            continue
        if not stripped or stripped.startswith(("#", "-")):
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key, _, rest = stripped.partition(":")
        path = ".".join([*(k for _, k in stack), key])
        if pending and f"| `{path}` |" not in guide:
            missing.append(path)
        pending = False
        if not rest.strip():
            stack.append((indent, key))
    assert not missing, f"values missing from docs/deploy.md: {missing}"
