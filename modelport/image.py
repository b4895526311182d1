"""The service image: built from a bento with ``bentoml containerize``, and run the way the
Helm chart's Deployment runs it.

Pure functions first (tag naming, backend choice, the containerize command, the rendered
Deployment translated into ``podman run`` arguments); the few that run tools are at the end.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# --- running as the chart would ------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """What the Deployment's pod template asks of the model container, in podman's terms."""

    image: str
    user: str
    groups: tuple[int, ...]
    read_only: bool
    writable: tuple[str, ...]
    cap_drop: tuple[str, ...]
    cap_add: tuple[str, ...]
    no_new_privileges: bool
    privileged: bool
    seccomp: str | None
    env: dict[str, str]
    container_port: int
    pull: str
    cpus: float | None
    memory: int | None
    stop_seconds: int
    startup_budget: float
    startup_path: str
    readiness_path: str
    args: tuple[str, ...] = field(default=())

    def tmpfs_options(self) -> str:
        # An emptyDir is an ordinary directory: world-writable (kubelet creates it 0777),
        # executable, owned by fsGroup; a tmpfs with these options behaves the same.
        return "rw,exec,nosuid,nodev,mode=0777"


_PULL = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}


def run_spec(deployment: Mapping[str, Any], container: str | None = None) -> RunSpec:
    """Translate a rendered Deployment (its pod template) into a RunSpec.

    Anything the translation cannot reproduce faithfully (volumes other than emptyDir,
    env from Secrets, an exec probe) is an error rather than silently dropped, so a chart
    change cannot make the image test pass vacuously.
    """
    pod = deployment["spec"]["template"]["spec"]
    containers = pod["containers"]
    c = next((x for x in containers if container in (None, x["name"])), None)
    if c is None:
        raise ImageError(f"no container {container!r} in the Deployment")
    pod_sc: Mapping[str, Any] = pod.get("securityContext") or {}
    sc: Mapping[str, Any] = {**pod_sc, **(c.get("securityContext") or {})}

    uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
    if sc.get("runAsNonRoot") and (uid is None or int(uid) == 0):
        raise ImageError("runAsNonRoot needs a non-zero runAsUser to check against the image")
    user = "" if uid is None else f"{uid}" + ("" if gid is None else f":{gid}")
    groups = tuple(int(g) for g in (pod_sc.get("supplementalGroups") or []))
    if pod_sc.get("fsGroup") is not None:
        groups += (int(pod_sc["fsGroup"]),)

    caps = sc.get("capabilities") or {}
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp not in (None, "RuntimeDefault", "Unconfined"):
        raise ImageError(f"seccompProfile {seccomp} has no podman equivalent here")

    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    writable = []
    for mount in c.get("volumeMounts") or []:
        volume = volumes.get(mount["name"], {})
        if "emptyDir" not in volume:
            raise ImageError(f"volume {mount['name']!r} is not an emptyDir; cannot reproduce it")
        if not mount.get("readOnly"):
            writable.append(mount["mountPath"])

    env = {}
    for item in c.get("env") or []:
        if "value" not in item:
            raise ImageError(f"env {item['name']} is not a plain value; cannot reproduce it")
        env[item["name"]] = str(item["value"])
    if c.get("envFrom"):
        raise ImageError("envFrom cannot be reproduced")

    ports = [p for p in c.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
    if not ports:
        raise ImageError("the container declares no TCP port")
    limits = (c.get("resources") or {}).get("limits") or {}
    grace = int(pod.get("terminationGracePeriodSeconds", 30))
    startup = c.get("startupProbe") or c.get("readinessProbe")
    readiness = c.get("readinessProbe")
    if startup is None or readiness is None:
        raise ImageError("the container needs a readiness probe (and a startup probe)")

    return RunSpec(
        image=str(c["image"]),
        user=user,
        groups=groups,
        read_only=bool(sc.get("readOnlyRootFilesystem")),
        writable=tuple(writable),
        cap_drop=tuple(caps.get("drop") or ()),
        cap_add=tuple(caps.get("add") or ()),
        no_new_privileges=sc.get("allowPrivilegeEscalation") is False,
        privileged=bool(sc.get("privileged")),
        seccomp=seccomp,
        env=env,
        container_port=int(ports[0]["containerPort"]),
        pull=_PULL.get(c.get("imagePullPolicy", "IfNotPresent"), "missing"),
        cpus=cpu_quantity(limits["cpu"]) if "cpu" in limits else None,
        memory=memory_quantity(limits["memory"]) if "memory" in limits else None,
        # preStop runs inside the grace period; what is left is SIGTERM's budget.
        stop_seconds=max(1, grace - pre_stop_seconds(c)),
        startup_budget=probe_budget(startup),
        startup_path=_http_path(startup),
        readiness_path=_http_path(readiness),
        args=tuple(c.get("command") or ()) + tuple(c.get("args") or ()),
    )


def probe_budget(probe: Mapping[str, Any]) -> float:
    """Seconds a probe allows before the kubelet gives up: initialDelaySeconds +
    failureThreshold x periodSeconds (Kubernetes defaults where unset)."""
    return float(
        probe.get("initialDelaySeconds", 0)
        + probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10)
    )


def _http_path(probe: Mapping[str, Any]) -> str:
    if "httpGet" not in probe:
        raise ImageError("only httpGet probes can be reproduced")
    return str(probe["httpGet"].get("path", "/"))


def pre_stop_seconds(container: Mapping[str, Any]) -> int:
    """How long the preStop hook pauses: ``sleep: {seconds}`` or ``exec: [sleep, N]``."""
    hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in hook:
        return int(hook["sleep"]["seconds"])
    command = (hook.get("exec") or {}).get("command") or []
    if len(command) == 2 and Path(command[0]).name == "sleep":
        return int(float(command[1]))
    return 0


def cpu_quantity(value: str | float) -> float:
    """Kubernetes CPU quantity -> cores: ``"500m"`` -> 0.5, ``"2"`` -> 2.0."""
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


_MEMORY_UNITS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def memory_quantity(value: str | int) -> int:
    """Kubernetes memory quantity -> bytes: ``"1Gi"`` -> 1073741824."""
    text = str(value)
    for suffix in sorted(_MEMORY_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * _MEMORY_UNITS[suffix])
    return int(float(text))


def podman_run_args(
    spec: RunSpec, *, name: str, host_port: int, host_ip: str = "127.0.0.1"
) -> list[str]:
    """``podman run`` arguments (after ``podman``) for one pod's model container.

    The port is published rather than shared with the host, so the container listens on
    its own network namespace exactly where the chart says.
    """
    args = ["run", "--detach", "--name", name, f"--pull={spec.pull}"]
    if spec.user:
        args += ["--user", spec.user]
    for gid in spec.groups:
        args += ["--group-add", str(gid)]
    if spec.read_only:
        # podman otherwise adds writable tmpfs at /tmp, /run and /var/tmp, which the pod
        # does not have; only the chart's emptyDir mounts may be writable.
        args += ["--read-only", "--read-only-tmpfs=false"]
    for path in spec.writable:
        args += ["--tmpfs", f"{path}:{spec.tmpfs_options()}"]
    args += [f"--cap-drop={cap}" for cap in spec.cap_drop]
    args += [f"--cap-add={cap}" for cap in spec.cap_add]
    if spec.no_new_privileges:
        args += ["--security-opt=no-new-privileges"]
    if spec.privileged:
        args += ["--privileged"]
    if spec.seccomp == "Unconfined":
        args += ["--security-opt=seccomp=unconfined"]
    for key, value in spec.env.items():
        args += ["--env", f"{key}={value}"]
    if spec.cpus is not None:
        args += [f"--cpus={spec.cpus:g}"]
    if spec.memory is not None:
        args += [f"--memory={spec.memory}"]
    args += [f"--stop-timeout={spec.stop_seconds}"]
    args += ["--publish", f"{host_ip}:{host_port}:{spec.container_port}"]
    args.append(spec.image)
    args += list(spec.args)
    return args


def containers_conf(nofile: tuple[int, int], nproc: tuple[int, int]) -> str:
    """containers.conf for running containers here. podman raises the open-files and
    process limits of a rootful container to 1048576 by default, which fails where root
    lacks CAP_SYS_RESOURCE (a sandboxed CI runner); give containers the limits the caller
    has instead."""
    return (
        "# Written by modelport (modelport/image.py): container limits = the caller's own.\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile[0]}:{nofile[1]}", '
        f'"nproc={nproc[0]}:{nproc[1]}"]\n'
    )


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


def write_containers_conf(path: Path) -> Path:
    import resource

    # A container's processes count against pid_max whatever nproc says; podman caps there.
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())

    def limits(which: int, ceiling: int) -> tuple[int, int]:
        soft, hard = resource.getrlimit(which)
        fit = [ceiling if v == resource.RLIM_INFINITY else min(v, ceiling) for v in (soft, hard)]
        return fit[0], fit[1]

    nofile = limits(resource.RLIMIT_NOFILE, 1048576)
    nproc = limits(resource.RLIMIT_NPROC, pid_max)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(containers_conf(nofile, nproc))
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
