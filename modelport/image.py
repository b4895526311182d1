"""The service image, built from a bento with ``bentoml containerize`` (``modelport build
--image``).

Pure functions first (tag naming, backend choice, the containerize command); the few that
run tools are at the end. Running the image the way the chart does is test-only
(tests/image/podman.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = "modelport"
# Preference order. docker needs a reachable daemon; podman and buildah build daemonless.
BACKENDS = ("docker", "podman", "buildah")
# Backends that build with buildah's engine: squashable, with RUN-time volumes.
BUILDAH_ENGINES = ("podman", "buildah")
# Mounted at /root for the build's RUN steps: pip and uv read their user configuration and
# keep their download caches there. Nothing under it is committed to the image.
BUILD_HOME_FILES = {
    # uv verifies TLS with its bundled roots unless told to use the system's trust store,
    # which is where a base image keeps a proxy's CA.
    ".config/uv/uv.toml": 'native-tls = true\nlink-mode = "copy"\n',
    # pip likewise: older pips use their own certifi bundle.
    ".config/pip/pip.conf": "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n",
}


class ImageError(RuntimeError):
    """The image cannot be built or run; the message says why and what to do."""


# --- names -------------------------------------------------------------------------------


def image_tag(bento_tag: str, repository: str = REPOSITORY) -> str:
    """``modelport:<bento version>``: each model set gets its own tag."""
    _, _, version = bento_tag.partition(":")
    if not version or version == "latest":
        raise ImageError(f"need an exact bento tag (name:version), got {bento_tag!r}")
    return f"{repository}:{version}"


def base_image(dockerfile: str) -> str:
    """The image the generated Dockerfile builds ``FROM`` (its first stage)."""
    match = re.search(r"^FROM\s+(?:--\S+\s+)*(\S+)", dockerfile, re.MULTILINE)
    if match is None:
        raise ImageError("the bento's Dockerfile has no FROM line")
    return match.group(1)


def qualified(image: str) -> str:
    """The name containers-storage files a Docker Hub short name under:
    ``python:3.11-slim`` -> ``docker.io/library/python:3.11-slim``."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return image  # already has a registry
    if not sep:
        image = f"library/{image}"
    return f"docker.io/{image}"


# --- building ----------------------------------------------------------------------------


def choose_backend(usable: Mapping[str, bool], requested: str | None = None) -> str:
    """The requested backend if it works, else the first that works in BACKENDS order."""
    if requested is not None:
        if requested not in BACKENDS:
            raise ImageError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
        if not usable.get(requested):
            raise ImageError(f"backend {requested!r} is not usable here ({_why(requested)})")
        return requested
    for name in BACKENDS:
        if usable.get(name):
            return name
    raise ImageError(
        "no container build tool works here: install podman or buildah (`make tools` does, "
        "on Debian), or start a Docker daemon"
    )


def _why(backend: str) -> str:
    return "no Docker daemon answers" if backend == "docker" else f"{backend} is not installed"


def containerize_command(
    bento_tag: str,
    tags: Sequence[str],
    backend: str,
    *,
    bentoml: str = "bentoml",
    pull: bool = True,
    build_home: Path | None = None,
) -> list[str]:
    """The ``bentoml containerize`` command line.

    ``pull=False`` builds only from images already in local storage (CI has no registry).
    With podman or buildah the layers are squashed into one, so the setup script's removal
    of build tools shrinks the image, and ``build_home`` (see BUILD_HOME_FILES) is mounted
    at /root for the RUN steps. bentoml passes at most one ``volume`` through correctly.
    """
    cmd = [bentoml, "containerize", bento_tag, "--backend", backend]
    for tag in tags:
        cmd += ["--image-tag", tag]
    if backend in BUILDAH_ENGINES:
        cmd += ["--opt", "squash"]
        if not pull:
            # `--opt pull=never` would become `--pull never`, which buildah misparses.
            cmd += ["--opt", "pull-never"]
        if build_home is not None:
            cmd += ["--opt", f"volume={build_home.resolve()}:/root"]
    return cmd


def build_env(backend: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for the build: chroot isolation for buildah's engine (no nested
    namespaces or cgroups needed, so it works in CI containers) unless the caller chose."""
    env = dict(environ)
    if backend in BUILDAH_ENGINES:
        env.setdefault("BUILDAH_ISOLATION", "chroot")
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    return env


# --- I/O ---------------------------------------------------------------------------------


def _runs(cmd: list[str], timeout: float = 20) -> bool:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def probe_backends() -> dict[str, bool]:
    """Which backends work here: docker only with a daemon that answers."""
    found = {name: shutil.which(name) for name in BACKENDS}
    return {
        "docker": bool(found["docker"]) and _runs(["docker", "info", "--format", "{{.ID}}"]),
        "podman": bool(found["podman"]) and _runs(["podman", "info", "--format", "{{.Host.Arch}}"]),
        "buildah": bool(found["buildah"]) and _runs(["buildah", "version"]),
    }


def image_exists(image: str, backend: str) -> bool:
    if backend == "docker":
        return _runs(["docker", "image", "inspect", image])
    if backend == "podman":
        return _runs(["podman", "image", "exists", image])
    return _runs(["buildah", "inspect", "--type", "image", image])


def image_size(image: str, backend: str) -> int:
    """Uncompressed size in bytes, as the backend reports it."""
    if backend == "buildah" and not shutil.which("podman"):
        # buildah reports only a rounded, human-readable size.
        out = subprocess.run(
            ["buildah", "images", "--format", "{{.Size}}", image],
            capture_output=True,
            text=True,
            check=True,
        )
        return human_size(out.stdout.splitlines()[0])
    tool = "docker" if backend == "docker" else "podman"
    out = subprocess.run(
        [tool, "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def human_size(text: str) -> int:
    """``"152 MB"`` -> 152000000 (decimal units, as podman and buildah print them)."""
    number, _, unit = text.strip().partition(" ")
    scale = {"B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    return int(float(number) * scale[unit or "B"])


def write_build_home(path: Path) -> Path:
    for rel, text in BUILD_HOME_FILES.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    return path


@dataclass(frozen=True)
class Built:
    tag: str
    backend: str
    seconds: float
    size: int


def build(
    bento_tag: str,
    *,
    project: Path,
    backend: str | None = None,
    pull: bool = True,
    extra_tags: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] = print,
) -> Built:
    """Containerize ``bento_tag`` as ``modelport:<version>`` (plus ``extra_tags``),
    streaming the builder's output line by line to ``on_line``."""
    import os
    import sys

    chosen = choose_backend(probe_backends(), backend)
    tag = image_tag(bento_tag)
    bentoml_cli = str(Path(sys.executable).with_name("bentoml"))
    home = write_build_home(project / ".tools" / "image-build" / "root")
    cmd = containerize_command(
        bento_tag, [tag, *extra_tags], chosen, bentoml=bentoml_cli, pull=pull, build_home=home
    )
    env = build_env(chosen, os.environ if environ is None else environ)
    on_line(f"building {tag} from bento {bento_tag} with {chosen}: {' '.join(cmd[1:])}")
    start = time.monotonic()
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
            tail = [*tail[-40:], line]
    seconds = time.monotonic() - start
    # bentoml logs a failed build and may still exit 0: trust only the image store.
    if proc.returncode != 0 or not image_exists(tag, chosen):
        raise ImageError(f"bentoml containerize failed (exit {proc.returncode}):\n" + "".join(tail))
    return Built(tag, chosen, seconds, image_size(tag, chosen))


def bento_base_image(bento_tag: str) -> str:
    """The fully qualified base image the bento's Dockerfile builds FROM."""
    import bentoml

    dockerfile = Path(bentoml.get(bento_tag).path) / "env" / "docker" / "Dockerfile"
    return qualified(base_image(dockerfile.read_text()))
