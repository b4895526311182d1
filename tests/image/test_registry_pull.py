"""model.source=registry, run as the cluster runs it: the chart's pod template rendered by
helm, its `pull-model` init container and then the server started with podman from the
service image (uid 1034, read-only root, the chart's mounts; a host directory stands in for
the `models` emptyDir they share and for the verification-key ConfigMap), pulling signed
models from moto's S3 server on the host's loopback (`--network host` for the init
container, as a pod reaches a registry Service).

Measures what issue 14 asks: the time from a new model version to a ready server, i.e. the
init container's pull plus the server's start, for a version published after the pod
template changed (`helm upgrade --set model.version=NEW`)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chart.chartlib import Renderer, one
from tests.registry.conftest import BUCKET, CREDENTIALS, S3, copy_model, start_moto_with_bucket

from . import podman
from .conftest import Report, ServiceImage, start_container

pytestmark = [pytest.mark.image, pytest.mark.integration, pytest.mark.slow]

MODEL = "breast-cancer"
PREFIX = "image-test"
SECRET = "modelport-registry"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    server = start_moto_with_bucket(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A P-256 signing key and its public half, in a directory as the ConfigMap's files."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    d = tmp_path_factory.mktemp("keys")
    d.chmod(0o755)  # the container's uid 1034 reads the mounted public key
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = d / "signing.pem", d / "public" / "signing.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.parent.mkdir(mode=0o755)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    public.chmod(0o644)
    return private, public


def _push(
    trained: dict[str, Any], home: Path, version: str, s3: S3, private: Path, env: Any
) -> None:
    """Sign and push a copy of the session's model under ``version`` (the real CLI)."""
    copy_model(trained, MODEL, home, version)
    proc = subprocess.run(
        [
            str(Path(shutil.which("modelport") or ".venv/bin/modelport")),
            "push",
            f"{MODEL}:{version}",
            "--sign-key",
            str(private),
        ],
        env={
            **env,
            **CREDENTIALS,
            "BENTOML_HOME": str(home),
            "MODELPORT_REGISTRY": f"s3://{BUCKET}/{PREFIX}",
            "MODELPORT_REGISTRY_ENDPOINT_URL": s3.url,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _deployment(helm: str, image: ServiceImage, s3: S3, version: str) -> dict[str, Any]:
    repository, _, tag = image.tag.partition(":")
    docs = Renderer(helm)(
        None,
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "model.source=registry",
        "--set",
        f"model.name={MODEL}",
        "--set",
        f"model.version={version}",
        "--set",
        f"registry.bucket={BUCKET}",
        "--set",
        f"registry.prefix={PREFIX}",
        "--set",
        f"registry.endpointUrl={s3.url}",
        "--set",
        f"registry.credentialsSecret={SECRET}",
        "--set",
        "verifyKey.configMapName=modelport-signing",
    )
    return one(docs, "Deployment", "modelport")


def _pod_dirs(root: Path, public: Path) -> dict[str, Path]:
    """A fresh pod's volumes: an empty `models` emptyDir (world-writable like kubelet's)
    and the ConfigMap's files."""
    models = root / "models"
    models.mkdir(parents=True)
    models.chmod(0o777)
    (models / "models").mkdir(mode=0o777)  # the server's subPath (kubelet creates it)
    (models / "models").chmod(0o777)
    return {"models": models, "verify-key": public.parent}


def _pull(
    deployment: dict[str, Any], dirs: dict[str, Path], env: dict[str, str], name: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    secrets = {SECRET: {k: CREDENTIALS[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}}
    spec = podman.run_spec(deployment, "pull-model", volumes=dirs, secrets=secrets)
    args = podman.podman_run_args(spec, name=name, detach=False, network="host")
    subprocess.run(["podman", "rm", "--force", name], env=env, capture_output=True, check=False)
    start = time.monotonic()
    proc = subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    seconds = time.monotonic() - start
    subprocess.run(["podman", "rm", "--force", name], env=env, capture_output=True, check=False)
    return proc, seconds


def test_new_model_version_from_the_registry_to_ready(
    trained: dict[str, Any],
    helm: str,
    service_image: ServiceImage,
    podman_env: dict[str, str],
    moto: S3,
    keys: tuple[Path, Path],
    tmp_path: Path,
    report: Report,
) -> None:
    import os

    private, public = keys
    env = dict(os.environ)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "MODELPORT_VERIFY_KEY"):
        env.pop(key, None)
    # Two versions that are not in the image: only the registry has them.
    old, new = "registryold1", "registrynew2"
    assert old not in service_image.models.values()
    home = tmp_path / "publisher"
    (home / "models").mkdir(parents=True)
    _push(trained, home, old, moto, private, env)

    for version, label in ((old, "install"), (new, "upgrade")):
        if version == new:  # the new version is published, then the release upgraded
            _push(trained, home, new, moto, private, env)
        deployment = _deployment(helm, service_image, moto, version)
        dirs = _pod_dirs(tmp_path / label, public)
        proc, pull_seconds = _pull(deployment, dirs, podman_env, f"modelport-pull-{label}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{MODEL}:{version}: pulled" in proc.stdout and "signature verified" in proc.stdout
        start = time.monotonic()
        c = start_container(deployment, podman_env, f"modelport-registry-{label}", volumes=dirs)
        try:
            ready_seconds = time.monotonic() - start
            served = httpx.get(f"{c.url}/models", timeout=10).json()["models"]
            assert [(m["name"], m["version"]) for m in served] == [(MODEL, version)]
            sample = served[0]["sample"]
            resp = httpx.post(f"{c.url}/predict", json=sample, timeout=10)
            assert resp.status_code == 200, resp.text
            assert "signatures are not enforced" not in c.logs()
        finally:
            c.remove()
        report(
            f"registry {label} {MODEL}:{version}: pull (init container) {pull_seconds:.1f}s "
            f"+ server ready {ready_seconds:.1f}s = {pull_seconds + ready_seconds:.1f}s"
        )


def test_a_version_that_is_not_published_keeps_the_pod_from_starting(
    helm: str,
    service_image: ServiceImage,
    podman_env: dict[str, str],
    moto: S3,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    deployment = _deployment(helm, service_image, moto, "nosuchversion")
    dirs = _pod_dirs(tmp_path, keys[1])
    proc, _ = _pull(deployment, dirs, podman_env, "modelport-pull-missing")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuchversion" in lines[0], proc.stderr
    assert not any((dirs["models"] / "models").iterdir())  # nothing half-pulled is left
