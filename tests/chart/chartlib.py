"""Shared helpers of the chart tests: paths, tool discovery, `helm template` with a cache,
and lookups in rendered objects. Fixtures live in conftest.py."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "modelport"
CI_VALUES = sorted(CHART.glob("ci/*-values.yaml"))
SCENARIOS = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]
# Beside the checkout in CI; users' clones do not have it.
CRDS_DIR = REPO.parent / "shared" / "crds"
KUBE_VERSIONS = [f"1.{minor}" for minor in range(29, 36)]
RELEASE = "modelport"
NAMESPACE = "models"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

Doc = dict[str, Any]
KubeValidate = Callable[[Doc, str], None]
CrdValidators = dict[tuple[str, str], Callable[[Doc], None]]


def find_tool(name: str) -> str | None:
    """A tool from PATH, else from the repo's .tools/bin (where `make tools` puts helm)."""
    found = shutil.which(name)
    if found:
        return found
    local = REPO / ".tools" / "bin" / name
    return str(local) if local.is_file() and os.access(local, os.X_OK) else None


# The Helm majors the chart is tested with, and the binary `make tools` installs for each
# (hack/install-helm.sh): Helm 4 is the pinned one, Helm 3 still manages many clusters.
HELM_BINARIES = {4: "helm", 3: "helm3"}


@functools.cache
def helm_version_major(helm: str) -> int | None:
    proc = subprocess.run(
        [helm, "version", "--template", "{{.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version.startswith("v"):
        return None
    head = version[1:].split(".", 1)[0]
    return int(head) if head.isdigit() else None


def find_helm(major: int) -> str | None:
    """A helm binary of that major: its own name (helm, helm3) on PATH or in .tools/bin,
    else plain `helm` when that happens to be the major asked for."""
    for name in dict.fromkeys((HELM_BINARIES[major], "helm")):
        for path in (shutil.which(name), REPO / ".tools" / "bin" / name):
            if path and os.access(path, os.X_OK) and helm_version_major(str(path)) == major:
                return str(path)
    return None


def require_helm(major: int) -> str:
    path = find_helm(major)
    if path is None:
        message = (
            f"Helm {major} not found as {HELM_BINARIES[major]} on PATH or in .tools/bin: "
            "run `make tools` (hack/install-helm.sh)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_tool(name: str, hint: str) -> str:
    path = find_tool(name)
    if path is None:
        message = f"{name} not found on PATH or in .tools/bin: {hint}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def schema_message(helm4_message: str, major: int) -> str:
    """The schema error text of a Helm major, from Helm 4's (santhosh-tekuri/jsonschema:
    "at '/a/0': ...", "additional properties 'k' not allowed"). Helm 3 (gojsonschema)
    names the same place as "- a.0:" and the same key as "Additional property k"."""
    if major != 3:
        return helm4_message
    extra = re.search(r"additional properties '([^']+)' not allowed", helm4_message)
    if extra:
        return f"Additional property {extra.group(1)} is not allowed"
    where = re.search(r"at '/([^']*)'", helm4_message)
    if where is None:
        raise ValueError(f"no location in {helm4_message!r}")
    return f"- {where.group(1).replace('/', '.')}:"


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


def run_helm(helm: str, *args: str) -> str:
    proc = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise HelmError(proc.stderr.strip() or proc.stdout.strip())
    return proc.stdout


def parse_docs(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


class Renderer:
    """`helm template` with a per-session cache: each distinct invocation runs once."""

    def __init__(self, helm: str) -> None:
        self.helm = helm
        self._cache: dict[tuple[str, ...], list[Doc]] = {}

    def args(self, scenario: str | None, extra: tuple[str, ...]) -> tuple[str, ...]:
        args: tuple[str, ...] = ("template", RELEASE, str(CHART), "--namespace", NAMESPACE)
        if scenario is not None:
            args += ("-f", str(CHART / "ci" / f"{scenario}-values.yaml"))
        return args + extra

    def __call__(self, scenario: str | None = None, *extra: str) -> list[Doc]:
        key = self.args(scenario, extra)
        if key not in self._cache:
            self._cache[key] = parse_docs(run_helm(self.helm, *key))
        return copy.deepcopy(self._cache[key])

    def error(self, scenario: str | None = None, *extra: str) -> str:
        """Render expecting failure; returns helm's message."""
        try:
            run_helm(self.helm, *self.args(scenario, extra))
        except HelmError as exc:
            return str(exc)
        raise AssertionError(f"helm template succeeded with {extra}")


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def strictify(schema: Any) -> Any:
    """CRD schemas in OpenAPI flavour made strict: unknown fields are errors unless the
    schema preserves them, as the API server prunes and `kubectl --validate=strict` rejects."""
    if isinstance(schema, dict):
        out = {k: strictify(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strictify(v) for v in schema]
    return schema
