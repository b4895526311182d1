"""Starting ``bentoml serve`` as a child process, following its log, waiting until it is
ready, and stopping it the way Kubernetes does (SIGTERM to the server, then a wait)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

SERVICE = "service.service:ModelPort"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``bentoml serve`` would fail to bind host:port (SO_REUSEADDR as uvicorn sets
    it, so a port with only TIME_WAIT connections counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


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
    pipe: bool = False,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``bentoml serve`` on 127.0.0.1:port, in its own process group.

    Its output goes to ``log``, to ``proc.stdout`` with ``pipe`` (read it with
    :func:`follow`), else nowhere. ``service_config`` overrides the service's decorator
    settings (BentoML's ``services.modelport`` config); ``prefix`` wraps the command (e.g.
    ``taskset``); ``service`` is the import path served (another service only in
    benchmarks), imported from ``cwd`` (default: the current directory).
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
    out: Any = subprocess.PIPE if pipe else log.open("wb") if log else subprocess.DEVNULL
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
        cwd=cwd,
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


@dataclass
class Startup:
    """How a server's start ended: ready, or up but refusing (``failed``: model tag ->
    reason, as the service's ``GET /models`` reports them)."""

    ready: bool
    seconds: float
    failed: dict[str, str] = field(default_factory=dict)
    served: list[dict[str, Any]] = field(default_factory=list)


def wait_started(
    url: str, proc: subprocess.Popen[bytes], timeout: float | None = None, interval: float = 0.2
) -> Startup:
    """Wait until the service has finished initialising. ``/readyz`` answers only then
    (while models load, connections hang): 200 is ready, 503 means models failed, which
    does not heal by itself. Raises RuntimeError if the process exits first and
    TimeoutError after ``timeout`` seconds (None: no limit)."""
    start = time.monotonic()
    while timeout is None or time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return Startup(True, time.monotonic() - start, *_models(url))
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                return Startup(False, time.monotonic() - start, *_models(url))
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"{url}/readyz did not answer within {timeout:.0f}s")


def _models(url: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """(failed model tag -> reason, served models) from the service's ``GET /models``."""
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=5) as resp:
            body = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return {}, []
    if not isinstance(body, dict):
        return {}, []
    failed, served = body.get("failed"), body.get("models")
    return (
        {str(k): str(v) for k, v in failed.items()} if isinstance(failed, dict) else {},
        [m for m in served if isinstance(m, dict)] if isinstance(served, list) else [],
    )


class Follower:
    """Copies a piped server's output, line by line, to a callback (in a thread), keeping
    the last lines for error messages."""

    def __init__(self, proc: subprocess.Popen[bytes], on_line: Callable[[str], None]) -> None:
        if proc.stdout is None:
            raise ValueError("the server's output is not piped: start it with pipe=True")
        self._stream = proc.stdout
        self._on_line = on_line
        self.tail: deque[str] = deque(maxlen=50)
        self._thread = threading.Thread(target=self._run, name="server-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for raw in self._stream:
            line = raw.decode(errors="replace").rstrip("\n")
            self.tail.append(line)
            self._on_line(line)

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


def follow(proc: subprocess.Popen[bytes], on_line: Callable[[str], None]) -> Follower:
    return Follower(proc, on_line)


@dataclass
class Forwarding:
    """What :func:`forward_signals` has seen: the first signal received (None: none)."""

    signal: int | None = None


@contextlib.contextmanager
def forward_signals(proc: subprocess.Popen[bytes]) -> Iterator[Forwarding]:
    """While inside, SIGTERM and SIGINT sent to this process go to the server instead: it
    runs in its own process group, so neither a terminal's Ctrl-C nor a supervisor's
    SIGTERM reaches it otherwise. The first signal is passed on (the server drains and
    exits); a second kills it. On leaving, a server still running gets SIGTERM, is waited
    for, and whatever is left of its process group is killed."""
    seen = Forwarding()

    def handle(signum: int, _frame: FrameType | None) -> None:
        if proc.poll() is not None:
            return
        if seen.signal is None:
            seen.signal = signum
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
        else:
            kill_group(proc)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield seen
    finally:
        try:
            stop(proc)
        finally:
            for s, old in previous.items():
                signal.signal(s, old)


def stop(proc: subprocess.Popen[bytes], timeout: float | None = None) -> int:
    """SIGTERM to the server (as the kubelet sends it to PID 1), wait for the drain, then
    kill anything of its process group still alive. ``timeout``: most seconds to wait
    before killing (None: as long as the drain takes)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    kill_group(proc)
    return proc.wait()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The server leads its own process group (start_new_session): its pid is the group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
