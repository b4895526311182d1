"""Real servers: ``bentoml serve`` on 127.0.0.1 with a free port, talked to over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from modelport import server as srv


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    ready_seconds: float

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def private_home(base: Path) -> Path:
    """A BentoML home sharing the session's model store. BentoML empties
    ``$BENTOML_HOME/prometheus_multiproc_dir`` when a server starts, so two servers on
    one home would wipe each other's metrics."""
    home = base / "bentoml-home"
    home.mkdir(exist_ok=True)
    link = home / "models"
    if not link.exists():
        link.symlink_to(Path(os.environ["BENTOML_HOME"]) / "models")
    return home


def launch(
    log_dir: Path,
    models: str,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    wait: bool = True,
    service_config: dict | None = None,
) -> Server:
    env = {"BENTOML_HOME": str(private_home(log_dir)), **(env or {})}
    port = srv.free_port()
    log = log_dir / f"server-{port}.log"
    proc = srv.start(
        port, models=models, workers=workers, env=env, log=log, service_config=service_config
    )
    url = f"http://127.0.0.1:{port}"
    seconds = 0.0
    if wait:
        try:
            seconds = srv.wait_ready(url, proc, timeout=120)
        except Exception:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"server did not get ready:\n{log.read_text()[-3000:]}") from None
    return Server(url, proc, log, seconds)


LIMITS = {"MODELPORT_MAX_BATCH_ROWS": "2000", "MODELPORT_MAX_BODY_BYTES": "1000000"}


@pytest.fixture(scope="session")
def server(trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """All three demo models, one worker, small request limits for the limit tests."""
    s = launch(
        tmp_path_factory.mktemp("server"), "breast-cancer,diabetes,breast-cancer-keras", env=LIMITS
    )
    yield s
    s.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def _start(models: str, **kw: object) -> Server:
        # A folder (so a BentoML home, so a metrics dir) of its own per server.
        base = tmp_path / f"server-{len(started)}"
        base.mkdir()
        s = launch(base, models, **kw)  # type: ignore[arg-type]
        started.append(s)
        return s

    yield _start
    for s in started:
        s.stop()
