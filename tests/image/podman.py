"""The rendered Deployment's pod template translated into ``podman run`` arguments, so the
image tests run the service image the way the Helm chart's Deployment runs it. Test-only:
``modelport build --image`` needs none of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.image import ImageError


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
    # Host directories standing in for shared emptyDirs, Secrets and ConfigMaps:
    # "HOST:CONTAINER[:ro]" for `podman run -v`.
    binds: tuple[str, ...] = field(default=())

    def tmpfs_options(self) -> str:
        # An emptyDir is an ordinary directory: world-writable (kubelet creates it 0777),
        # executable, owned by fsGroup; a tmpfs with these options behaves the same.
        return "rw,exec,nosuid,nodev,mode=0777"


_PULL = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}


def run_spec(
    deployment: Mapping[str, Any],
    container: str | None = None,
    *,
    volumes: Mapping[str, Path] | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> RunSpec:
    """Translate a rendered Deployment (its pod template) into a RunSpec.

    ``container`` may name an init container. ``volumes`` maps volume names to host
    directories: an emptyDir shared by an init container and the server, a Secret or a
    ConfigMap (its files); ``secrets`` gives the Secrets that env and envFrom read.
    Anything else the translation cannot reproduce faithfully (other volumes, env from an
    unknown Secret, an exec probe) is an error rather than silently dropped, so a chart
    change cannot make the image test pass vacuously.
    """
    pod = deployment["spec"]["template"]["spec"]
    volumes = volumes or {}
    secrets = secrets or {}
    inits = pod.get("initContainers") or []
    c = next((x for x in [*pod["containers"], *inits] if container in (None, x["name"])), None)
    if c is None:
        raise ImageError(f"no container {container!r} in the Deployment")
    is_init = any(c is x for x in inits)
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

    declared = {v["name"]: v for v in pod.get("volumes") or []}
    writable, binds = [], []
    for mount in c.get("volumeMounts") or []:
        name, read_only = mount["name"], bool(mount.get("readOnly"))
        if name in volumes:
            host = volumes[name] / mount.get("subPath", "")
            binds.append(f"{host}:{mount['mountPath']}" + (":ro" if read_only else ""))
        elif "emptyDir" not in declared.get(name, {}):
            raise ImageError(f"volume {name!r} is not an emptyDir; cannot reproduce it")
        elif read_only:
            raise ImageError(f"volume {name!r} is mounted read-only: give it a host directory")
        else:
            writable.append(mount["mountPath"])

    env = {}
    for item in c.get("env") or []:
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif ref and ref["key"] in secrets.get(ref["name"], {}):
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            raise ImageError(f"env {item['name']} is not a plain value; cannot reproduce it")
    for source in c.get("envFrom") or []:
        ref = source.get("secretRef") or {}
        if ref.get("name") not in secrets:
            raise ImageError(f"envFrom {source} cannot be reproduced")
        env.update(secrets[ref["name"]])

    ports = [p for p in c.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
    if not ports and not is_init:
        raise ImageError("the container declares no TCP port")
    limits = (c.get("resources") or {}).get("limits") or {}
    grace = int(pod.get("terminationGracePeriodSeconds", 30))
    startup = c.get("startupProbe") or c.get("readinessProbe")
    readiness = c.get("readinessProbe")
    if (startup is None or readiness is None) and not is_init:
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
        container_port=int(ports[0]["containerPort"]) if ports else 0,
        pull=_PULL.get(c.get("imagePullPolicy", "IfNotPresent"), "missing"),
        cpus=cpu_quantity(limits["cpu"]) if "cpu" in limits else None,
        memory=memory_quantity(limits["memory"]) if "memory" in limits else None,
        # preStop runs inside the grace period; what is left is SIGTERM's budget.
        stop_seconds=max(1, grace - pre_stop_seconds(c)),
        startup_budget=probe_budget(startup) if startup else 0.0,
        startup_path=_http_path(startup) if startup else "",
        readiness_path=_http_path(readiness) if readiness else "",
        args=tuple(c.get("command") or ()) + tuple(c.get("args") or ()),
        binds=tuple(binds),
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
    """How long the preStop hook pauses: ``sleep: {seconds}``, ``exec: [sleep, N]`` or the
    chart's ``exec: [python, -m, modelport.drain, --seconds, N]``. Any other exec hook is
    an error: guessing 0 would give SIGTERM a budget the pod does not have."""
    hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if not hook:
        return 0
    if "sleep" in hook:
        return int(hook["sleep"]["seconds"])
    command = [str(a) for a in (hook.get("exec") or {}).get("command") or []]
    if len(command) == 2 and Path(command[0]).name == "sleep":
        return math.ceil(float(command[1]))
    if command[1:3] == ["-m", "modelport.drain"]:
        seconds = 0.0  # modelport.drain's default
        for i, arg in enumerate(command):
            if arg == "--seconds" and i + 1 < len(command):
                seconds = float(command[i + 1])
            elif arg.startswith("--seconds="):
                seconds = float(arg.partition("=")[2])
        return math.ceil(seconds)
    raise ImageError(f"preStop hook {hook} has no known duration; cannot size the stop timeout")


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
    spec: RunSpec,
    *,
    name: str,
    host_port: int | None = None,
    host_ip: str = "127.0.0.1",
    detach: bool = True,
    network: str | None = None,
) -> list[str]:
    """``podman run`` arguments (after ``podman``) for one pod's container.

    The port is published rather than shared with the host, so the container listens on
    its own network namespace exactly where the chart says. ``network="host"`` instead
    gives the container the host's loopback (an init container reaching a test server
    there, as a pod reaches a cluster Service); ``detach=False`` runs it to completion.
    """
    args = ["run", *(["--detach"] if detach else []), "--name", name, f"--pull={spec.pull}"]
    if network:
        args += ["--network", network]
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
    for bind in spec.binds:
        args += ["--volume", bind]
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
    if host_port is not None and spec.container_port:
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
        "# Written by modelport (tests/image/podman.py): container limits = the caller's own.\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile[0]}:{nofile[1]}", '
        f'"nproc={nproc[0]}:{nproc[1]}"]\n'
    )


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
