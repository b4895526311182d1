"""Starting ``bentoml serve`` as a child process and waiting until it is ready."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SERVICE = "service.service:ModelPort"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    port: int,
    *,
    models: str | None = None,
    workers: int | None = None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    service_config: dict[str, Any] | None = None,
    prefix: list[str] | None = None,
    service: str = SERVICE,
) -> subprocess.Popen[bytes]:
    """``bentoml serve`` on 127.0.0.1:port, in its own process group.

    ``service_config`` overrides the service's decorator settings (BentoML's
    ``services.modelport`` config); ``prefix`` wraps the command (e.g. ``taskset``);
    ``service`` is the import path served (another service only in benchmarks).
    """
    child_env = {**os.environ, **(env or {})}
    child_env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if models is not None:
        child_env["MODELPORT_MODELS"] = models
    overrides = dict(service_config or {})
    if workers is not None:
        overrides["workers"] = workers
    if overrides:
        child_env["BENTOML_CONFIG_OVERRIDES"] = json.dumps({"services": {"modelport": overrides}})
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    out = log.open("wb") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [
            *(prefix or []),
            str(bentoml_cli),
            "serve",
            service,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=child_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(
    url: str,
    proc: subprocess.Popen[bytes],
    timeout: float = 120.0,
    *,
    interval: float = 0.2,
    since: float | None = None,
) -> float:
    """Seconds until ``GET url/readyz`` answered 200 (counted from ``since``, a
    ``time.monotonic()`` reading, default now); raises if the process dies or the
    timeout passes."""
    start = time.monotonic() if since is None else since
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"{url}/readyz did not answer 200 within {timeout:.0f}s")
