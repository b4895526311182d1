"""Fixtures for the Helm chart tests: tools, cached renders, schema validators.

helm (Helm 4), helm3 (Helm 3) and promtool come from `make tools`. Where they are missing
the tests skip, except in CI (CI=true), where a missing tool is a failure: CI must run
everything but the e2e suite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import yaml

from .chartlib import CRDS_DIR, Doc, Renderer, require_helm, require_tool, strictify


@pytest.fixture(scope="session", params=[4, 3], ids=["helm4", "helm3"])
def helm(request: pytest.FixtureRequest) -> str:
    """Every chart test runs with Helm 4 and with Helm 3 (lint, template, the schema check
    of values, and everything asserted on the rendered objects)."""
    return require_helm(request.param)


@pytest.fixture(scope="session")
def helm4() -> str:
    """Helm 4 alone, for what only it can do offline (`install --dry-run=client` without a
    cluster: Helm 3's install always asks the cluster first)."""
    return require_helm(4)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool", "run `make tools` (Debian package prometheus)")


@pytest.fixture(scope="session")
def render(helm: str) -> Renderer:
    return Renderer(helm)


@pytest.fixture(scope="session")
def crd_validators() -> dict[tuple[str, str], Callable[[Doc], None]]:
    """(apiVersion, kind) -> validate function, from the CRDs in ../shared/crds."""
    import jsonschema

    if not CRDS_DIR.is_dir():
        pytest.skip(
            f"CRD schemas not found at {CRDS_DIR} (the shared/ directory beside the checkout, "
            "present in CI); custom resources are not validated here"
        )
    validators: dict[tuple[str, str], Callable[[Doc], None]] = {}
    for path in sorted(CRDS_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strictify(version["schema"]["openAPIV3Schema"])
            validator = jsonschema.Draft7Validator(schema)
            validators[(f"{group}/{version['name']}", kind)] = validator.validate
    return validators


@functools.cache
def _patch_kubernetes_validate() -> None:
    """kubernetes-validate re-reads its 1 MB definitions file on every call; cache the
    reads so validating every object on seven versions stays fast."""
    import kubernetes_validate.utils as kv_utils

    kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)


@pytest.fixture(scope="session")
def kube_validate() -> Callable[[Doc, str], None]:
    import kubernetes_validate

    _patch_kubernetes_validate()

    def validate(doc: Doc, version: str) -> None:
        kubernetes_validate.validate(doc, version, strict=True)

    return validate
