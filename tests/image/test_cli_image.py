"""`modelport build --image`: the command-line side of the image build."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from modelport import bento, cli, image

pytestmark = pytest.mark.unit


def test_no_pull_without_the_base_image_names_the_stand_in_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    monkeypatch.setattr(bento, "build", lambda project, tags: "modelport:v1")
    monkeypatch.setattr(
        image, "probe_backends", lambda: {"docker": False, "podman": False, "buildah": True}
    )
    monkeypatch.setattr(image, "bento_base_image", lambda tag: "docker.io/library/python:3.11-slim")
    monkeypatch.setattr(image, "image_exists", lambda name, backend: False)
    monkeypatch.setattr(image, "build", lambda *a, **kw: built.append("called"))
    result = CliRunner().invoke(cli.app, ["build", "--image", "--no-pull"])
    assert result.exit_code == 1, result.output
    assert "modelport:v1" in result.output  # the bento was built and printed first
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "hack/build-base-image.sh docker.io/library/python:3.11-slim" in said
    assert built == []


def test_unusable_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bento, "build", lambda project, tags: "modelport:v1")
    monkeypatch.setattr(
        image, "probe_backends", lambda: {"docker": False, "podman": False, "buildah": False}
    )
    result = CliRunner().invoke(cli.app, ["build", "--image", "--backend", "docker"])
    assert result.exit_code == 1
    assert "no Docker daemon answers" in result.output
