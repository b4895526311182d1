"""`modelport serve` and `modelport demo` as real processes: the server's log shown, a
failed start told with its reason, and SIGTERM/SIGINT passed on so nothing is left."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelport import server as srv
from tests.service.conftest import private_home

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Cli:
    """`python -m modelport ARGS` with its output collected line by line as it comes."""

    def __init__(self, args: list[str], home: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelport", *args],
            env={**os.environ, "BENTOML_HOME": str(home), "COLUMNS": "200", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 180) -> None:
        start = time.monotonic()
        while needle not in self.text:
            if self.proc.poll() is not None:
                self._reader.join(5)
                if needle in self.text:
                    return
                pytest.fail(f"exited {self.proc.returncode} before {needle!r}:\n{self.text}")
            if time.monotonic() - start > timeout:
                pytest.fail(f"no {needle!r} within {timeout:.0f}s:\n{self.text}")
            time.sleep(0.1)

    def finish(self, timeout: float = 90) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """After a failed test: stop the CLI (SIGTERM, which it passes on), then make sure
        no server it started outlives the test."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if "--port" in self.args:
            for pid in _servers_on(int(self.args[self.args.index("--port") + 1])):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[type[Cli]]:
    started: list[Cli] = []

    class Tracked(Cli):
        def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
            super().__init__(args, private_home(tmp_path), env)
            started.append(self)

    yield Tracked  # type: ignore[misc]
    for cli in started:
        cli.kill()


def _servers_on(port: int) -> list[int]:
    """Pids of `bentoml serve` processes started for this port."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and str(port).encode() in argv and any(b"bentoml" in a for a in argv):
            found.append(int(entry.name))
    return found


def _group(pgid: int) -> list[int]:
    """Live processes (zombies aside) of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_reaches_the_server_and_nothing_is_left(
    trained: dict[str, object], run: type[Cli], sig: signal.Signals
) -> None:
    port = srv.free_port()
    cli = run(["serve", "--port", str(port), "--models", "breast-cancer"])
    cli.wait_for("ready in")
    # The server's own log is shown: the address and the model it serves.
    assert f"listening on http://127.0.0.1:{port}" in cli.text
    assert "serving breast-cancer:" in cli.text
    (leader,) = _servers_on(port)
    members = _group(leader)
    assert leader in members
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/readyz").status_code == 200
    cli.proc.send_signal(sig)
    assert cli.finish() == 0, cli.text
    assert not _listening(port)
    assert _servers_on(port) == [] and _group(leader) == [], cli.text
    # bentoml drained: its shutdown hooks ran (their log reached the CLI's output).
    assert "cleanup" in cli.text.lower(), cli.text


def test_demo_forwards_sigterm(trained: dict[str, object], run: type[Cli]) -> None:
    port = srv.free_port()
    cli = run(["demo", "--port", str(port)])
    cli.wait_for("Serving; Ctrl-C stops.", timeout=300)
    (leader,) = _servers_on(port)
    cli.proc.send_signal(signal.SIGTERM)
    cli.finish()
    assert not _listening(port)
    assert _servers_on(port) == [] and _group(leader) == [], cli.text


def test_missing_model_fails_with_the_reason(trained: dict[str, object], run: type[Cli]) -> None:
    port = srv.free_port()
    cli = run(["serve", "--port", str(port), "--models", "breast-cancer,no-such-model"])
    code = cli.finish(timeout=120)
    assert code == 1, cli.text
    last = cli.lines[-1]
    assert last.startswith("error: not serving, models failed to load:"), cli.text
    assert "no-such-model" in last and "not in the model store" in last
    assert "serving breast-cancer:" in cli.text  # the log shows what did load
    assert not _listening(port) and _servers_on(port) == []


def test_port_in_use_is_said(run: type[Cli]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cli = run(["serve", "--port", str(port)])
        assert cli.finish(timeout=60) == 1
    assert cli.lines[-1] == f"error: port {port} on 127.0.0.1 is in use; choose another with --port"
    assert _servers_on(port) == []


def test_malformed_setting_stops_serve_before_the_server(run: type[Cli]) -> None:
    port = srv.free_port()
    cli = run(["serve", "--port", str(port)], env={"MODELPORT_MONITORING": "sometimes"})
    assert cli.finish(timeout=60) == 2
    assert cli.lines == [
        "error: MODELPORT_MONITORING='sometimes': expected a valid boolean, "
        "unable to interpret input"
    ]
    assert _servers_on(port) == []
