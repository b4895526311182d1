"""A real S3 protocol server on loopback (moto's standalone server, a subprocess),
signing keys, and private copies of the session's trained models to sign and push."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport import server as srv

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "modelport-test",
    "AWS_SECRET_ACCESS_KEY": "modelport-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never a developer's own AWS profile or endpoint.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
UNSET = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN")
BUCKET = "models"


@dataclass
class S3:
    url: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


def start_moto(log: Path, env: dict[str, str] | None = None) -> S3:
    port = srv.free_port()
    bin_dir = Path(sys.executable).parent
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"moto_server exited:\n{log.read_text()[-2000:]}")
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            return S3(url, proc)
        except httpx.TransportError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("moto_server did not answer within 60 s")


def start_moto_with_bucket(log: Path) -> S3:
    """moto's server with the tests' bucket created."""
    import boto3

    server = start_moto(log)
    boto3.client(
        "s3",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=BUCKET)
    return server


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    server = start_moto_with_bucket(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    for key in (*UNSET, "MODELPORT_VERIFY_KEY", "MODELPORT_REGISTRY"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def reg_env(s3: S3) -> dict[str, str]:
    """Environment naming a registry prefix of its own for one test."""
    return {
        **CREDENTIALS,
        "MODELPORT_REGISTRY": f"s3://{BUCKET}/t-{uuid.uuid4().hex[:8]}",
        "MODELPORT_REGISTRY_ENDPOINT_URL": s3.url,
    }


@pytest.fixture
def registry(reg_env: dict[str, str]) -> Any:
    from modelport.registry import Registry, RegistrySettings

    return Registry(
        RegistrySettings(
            registry=reg_env["MODELPORT_REGISTRY"],
            registry_endpoint_url=reg_env["MODELPORT_REGISTRY_ENDPOINT_URL"],
        )
    )


@pytest.fixture
def raw_s3(s3: S3) -> Any:
    """A plain client: what someone with write access to the bucket can do."""
    import boto3

    return boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1")


@dataclass
class Keys:
    private: Path
    public: Path
    other_public: Path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    d = tmp_path_factory.mktemp("keys")
    paths = []
    for stem in ("signer", "other"):
        key = ec.generate_private_key(ec.SECP256R1())
        priv, pub = d / f"{stem}.pem", d / f"{stem}.pub"
        priv.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        paths += [priv, pub]
    return Keys(paths[0], paths[1], paths[3])


def copy_model(
    trained: dict[str, Any], recipe: str, home: Path, version: str | None = None
) -> Path:
    """A copy of a session-trained model in the BentoML home ``home`` (optionally under
    another version), so tests can sign and alter it without touching the shared store."""
    tag = str(trained[recipe].tag)
    name, old = tag.split(":")
    src = Path(os.environ["BENTOML_HOME"]) / "models" / name / old
    dst = home / "models" / name / (version or old)
    shutil.copytree(src, dst)
    if version:
        info = dst / "model.yaml"
        text = re.sub(rf"(?m)^version: {old}$", f"version: {version}", info.read_text())
        info.write_text(text)
    return dst


@pytest.fixture
def src_home(tmp_path: Path) -> Path:
    home = tmp_path / "src-home"
    (home / "models").mkdir(parents=True)
    return home
