"""Fixtures of the image tests: the service image built from scratch (models, bento, the
stand-in base when absent, `bentoml containerize`) and containers started from it exactly
as the chart's Deployment would run them.

Needs root with podman and debootstrap (`make tools`). Where they are missing the tests
skip, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport import image
from modelport import server as srv
from tests.chart.chartlib import Renderer, one, require_tool
from tests.conftest import IN_CI, ROOT
from tests.image import podman

# A sklearn-only bento: modelport.bento drops TensorFlow, so the image stays small.
IMAGE_MODELS = ("breast-cancer", "diabetes")
Report = Callable[[str], None]


def _need(ok: object, message: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> Report:
    """Progress lines on the terminal even while pytest captures output: a fresh build
    takes minutes, and silence would look like a hang."""
    plugins = request.config.pluginmanager
    terminal = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")

    def write(line: str) -> None:
        if terminal is None or capture is None:
            print(f"[image] {line}", flush=True)
            return
        with capture.global_and_fixture_disabled():
            terminal.write_line(f"[image] {line}")

    return write


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool("helm", "run `make tools` (hack/install-helm.sh)")


@pytest.fixture(scope="session")
def podman_env() -> dict[str, str]:
    """Environment for podman and buildah: the project's containers.conf (written here, from
    this process's limits) and the session's BentoML home."""
    _need(
        shutil.which("podman"), "podman not found: run `make tools` (hack/install-system-deps.sh)"
    )
    _need(
        os.geteuid() == 0,
        "the image tests need root (rootful podman; debootstrap for the stand-in base image)",
    )
    conf = podman.write_containers_conf(ROOT / ".tools" / "containers" / "containers.conf")
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    info = subprocess.run(["podman", "info"], env=env, capture_output=True, text=True, check=False)
    _need(info.returncode == 0, f"podman does not work here: {info.stderr.strip()[-500:]}")
    return env


@dataclass(frozen=True)
class ServiceImage:
    tag: str
    bento_tag: str
    models: dict[str, str]  # name -> exact version in the image
    size: int


def _run_streaming(cmd: list[str], env: dict[str, str], report: Report) -> None:
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            report(line.rstrip())
    if proc.returncode != 0:
        pytest.fail(f"{cmd[0]} failed (exit {proc.returncode}):\n{''.join(lines[-40:])}")


def _build_progress(report: Report) -> Report:
    """Only the builder's step lines, the setup script's and errors: enough to follow."""

    def on_line(line: str) -> None:
        text = line.removeprefix("INFO: ")
        if text.startswith(("STEP", "building", "image-cleanup", "Error", "error")):
            report(text[:160])

    return on_line


@pytest.fixture(scope="session")
def service_image(
    trained: Any, podman_env: dict[str, str], report: Report
) -> Iterator[ServiceImage]:
    """Bento of the sklearn models -> stand-in base (if absent) -> image, never pulling.
    The image is removed afterwards (its models live in the session's temporary store);
    MODELPORT_KEEP_IMAGE=1 keeps it. The base image stays: it is the slow part."""
    from modelport import bento, store

    _need(
        shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin"),
        "debootstrap not found: run `make tools`",
    )
    bento_tag = bento.build(ROOT, list(IMAGE_MODELS))
    # podman runs the image, and it sees only containers-storage (podman's, buildah's).
    usable = {**image.probe_backends(), "docker": False}
    backend = image.choose_backend(usable, os.environ.get("MODELPORT_IMAGE_BACKEND") or None)
    base = image.bento_base_image(bento_tag)
    if not image.image_exists(base, backend):
        report(f"building the stand-in base image {base} (hack/build-base-image.sh)")
        start = time.monotonic()
        _run_streaming(
            ["bash", str(ROOT / "hack" / "build-base-image.sh"), base], podman_env, report
        )
        report(f"base image built in {time.monotonic() - start:.0f}s")
    try:
        built = image.build(
            bento_tag,
            project=ROOT,
            backend=backend,
            pull=False,
            environ=podman_env,
            on_line=_build_progress(report),
        )
    except image.ImageError as exc:
        pytest.fail(str(exc))
    report(
        f"{built.tag}: built with {built.backend} in {built.seconds:.0f}s, "
        f"{built.size / 1e6:.0f} MB"
    )
    models = {name: store.resolve(name).tag.version for name in IMAGE_MODELS}
    yield ServiceImage(built.tag, bento_tag, models, built.size)
    if os.environ.get("MODELPORT_KEEP_IMAGE") != "1":
        subprocess.run(
            ["podman", "rmi", "--force", built.tag],
            env=podman_env,
            capture_output=True,
            check=False,
        )


@pytest.fixture(scope="session")
def deployment(helm: str, service_image: ServiceImage) -> dict[str, Any]:
    """The chart's Deployment for this image, rendered by helm with default values."""
    repository, _, tag = service_image.tag.partition(":")
    first, *rest = IMAGE_MODELS
    extra = ",".join(f'"{name}:{service_image.models[name]}"' for name in rest)
    docs = Renderer(helm)(
        None,
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        f"model.name={first}",
        "--set",
        f"model.version={service_image.models[first]}",
        "--set-json",
        f"model.extraModels=[{extra}]",
    )
    return one(docs, "Deployment", "modelport")


@dataclass
class Container:
    name: str
    url: str
    spec: podman.RunSpec
    env: dict[str, str]
    ready_seconds: float = 0.0

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def logs(self) -> str:
        out = self.podman("logs", self.name, check=False)
        return (out.stdout + out.stderr)[-4000:]

    def state(self) -> dict[str, Any]:
        import json

        out = self.podman("inspect", "--format", "{{json .State}}", self.name)
        state: dict[str, Any] = json.loads(out.stdout)
        return state

    def remove(self) -> None:
        self.podman("rm", "--force", "--time", "0", self.name, check=False)


def start_container(
    deployment: dict[str, Any],
    env: dict[str, str],
    name: str,
    volumes: dict[str, Path] | None = None,
) -> Container:
    """`podman run` with the arguments the Deployment translates to; waits until the
    readiness path answers 200, failing once the startup probe's budget is spent.
    ``volumes``: host directories for the pod's shared volumes (podman.run_spec)."""
    spec = podman.run_spec(deployment, "modelport", volumes=volumes)
    port = srv.free_port()
    c = Container(name, f"http://127.0.0.1:{port}", spec, env)
    c.remove()  # a leftover of an interrupted run
    run = c.podman(*podman.podman_run_args(spec, name=name, host_port=port), check=False)
    if run.returncode != 0:
        pytest.fail(f"podman run failed: {run.stderr.strip()}")
    start = time.monotonic()
    while time.monotonic() - start < spec.startup_budget:
        try:
            if httpx.get(f"{c.url}{spec.readiness_path}", timeout=2).status_code == 200:
                c.ready_seconds = time.monotonic() - start
                return c
        except httpx.TransportError:
            pass
        if not c.state().get("Running"):
            logs = c.logs()
            c.remove()
            pytest.fail(f"container exited before it was ready:\n{logs}")
        time.sleep(0.25)
    logs = c.logs()
    c.remove()
    pytest.fail(
        f"{spec.readiness_path} not 200 within the startup budget "
        f"({spec.startup_budget:.0f}s):\n{logs}"
    )


@pytest.fixture(scope="module")
def container(
    deployment: dict[str, Any], podman_env: dict[str, str], report: Report
) -> Iterator[Container]:
    c = start_container(deployment, podman_env, "modelport-image-test")
    report(f"ready in {c.ready_seconds:.1f}s (startup budget {c.spec.startup_budget:.0f}s)")
    yield c
    c.remove()
