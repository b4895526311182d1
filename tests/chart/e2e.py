"""Helpers of the e2e suite (tests/chart/test_chart_e2e.py) that need no cluster, so the
default test run checks them: the load generator's objects and log, waiting for pods to go,
the Helm major and its flags. Plain functions, never fixtures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEEPALIVE = Path(__file__).resolve().parents[1] / "keepalive.py"
LOAD_NAME = "modelport-e2e-load"
LOAD_MOUNT = "/load"


@dataclass(frozen=True)
class LoadSummary:
    """The load generator's final JSON line (tests/keepalive.py)."""

    sent: int
    answered: int
    ok: int
    non2xx: int
    resets: int
    errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.sent - self.ok


def load_summary(log: str) -> LoadSummary:
    """The last JSON object line of the load generator's log; ValueError naming the tail of
    the log when there is none (the pod died, or the script changed its output)."""
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "sent" in data:
            try:
                return LoadSummary(
                    sent=int(data["sent"]),
                    answered=int(data["answered"]),
                    ok=int(data["ok"]),
                    non2xx=int(data["non2xx"]),
                    resets=int(data["resets"]),
                    errors=[str(e) for e in data.get("errors", [])],
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"load summary line lacks a count ({exc}): {line}") from None
    tail = "\n".join(log.strip().splitlines()[-10:])
    raise ValueError(f"no JSON summary line in the load generator's log; it ends:\n{tail}")


def wait_gone(
    list_names: Callable[[], list[str]],
    timeout: float,
    *,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Poll ``list_names`` until it returns nothing; the seconds waited. TimeoutError naming
    what is still there after ``timeout`` (pods in their preStop pause take that long:
    `helm uninstall --wait` returns once the Deployment is gone, not its pods)."""
    start = clock()
    while True:
        names = list_names()
        if not names:
            return clock() - start
        if clock() - start >= timeout:
            raise TimeoutError(f"still present after {timeout:.0f}s: {', '.join(names)}")
        sleep(interval)


def helm_major(version: str) -> int:
    """``v4.1.4`` (or ``v3.17.3+g...``) -> 4; ValueError for anything else."""
    text = version.strip().removeprefix("v")
    head = text.split(".", 1)[0]
    if not head.isdigit():
        raise ValueError(f"not a helm version: {version!r}")
    return int(head)


def apply_flags(major: int) -> list[str]:
    """Flags for every `helm upgrade`/`helm rollback`: with Helm 4's server-side apply, take
    back the fields a kubectl rollout (set image, set env, rollout undo) took over; Helm 3's
    three-way merge does that by itself and has no such flag."""
    return ["--force-conflicts"] if major >= 4 else []


def load_objects(
    *,
    namespace: str,
    fullname: str,
    image: str,
    pull_policy: str,
    seconds: int,
    clients: int,
    body: str,
    script: str,
) -> list[dict[str, Any]]:
    """The ConfigMap holding tests/keepalive.py and the request body, and the Pod that runs
    it with the service image's python against the release's Service: restricted like the
    chart's pods, and labelled as a client so a NetworkPolicy lets it in."""
    labels = {"app.kubernetes.io/name": LOAD_NAME, "modelport.io/e2e": "load"}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": LOAD_NAME, "namespace": namespace, "labels": labels},
        "data": {"keepalive.py": script, "body.json": body},
    }
    restricted = {
        "runAsNonRoot": True,
        "runAsUser": 1034,
        "runAsGroup": 1034,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": LOAD_NAME,
            "namespace": namespace,
            "labels": {**labels, f"{fullname}-client": "true"},
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1034,
                "runAsGroup": 1034,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "load",
                    "image": image,
                    "imagePullPolicy": pull_policy,
                    # The service image's entrypoint starts BentoML: run python directly.
                    "command": [
                        "python",
                        "-B",
                        f"{LOAD_MOUNT}/keepalive.py",
                        "--url",
                        f"http://{fullname}:3000",
                        "--clients",
                        str(clients),
                        "--seconds",
                        str(seconds),
                        "--body",
                        f"@{LOAD_MOUNT}/body.json",
                    ],
                    "securityContext": restricted,
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                    },
                    "volumeMounts": [{"name": "load", "mountPath": LOAD_MOUNT, "readOnly": True}],
                }
            ],
            "volumes": [{"name": "load", "configMap": {"name": LOAD_NAME}}],
        },
    }
    return [config_map, pod]
