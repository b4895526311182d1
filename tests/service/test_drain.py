"""Lossless draining: keep-alive clients on real sockets lose no request while a
server is drained and stopped the way the chart stops a pod (preStop, then SIGTERM)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import orjson
import pytest

from modelport import drain
from tests import keepalive


@pytest.mark.unit
def test_marker_older_than_the_server_is_ignored(tmp_path: Path) -> None:
    marker = tmp_path / "draining"
    drain.begin(marker)
    os.utime(marker, (time.time() - 60, time.time() - 60))  # a previous run's
    watch = drain.DrainWatch(marker)
    assert watch.check() is False
    drain.begin(marker)
    assert watch.check() is True


@pytest.mark.unit
def test_drain_command_writes_the_marker_and_waits(tmp_path: Path) -> None:
    marker = tmp_path / "sub" / "draining"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "modelport.drain", "--seconds", "0.3"],
        env={**os.environ, drain.ENV: str(marker)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0 and "draining" in proc.stdout
    assert marker.exists() and time.monotonic() - start >= 0.3


@pytest.mark.integration
@pytest.mark.slow
def test_keepalive_clients_lose_nothing_across_a_drain(trained, start_server, tmp_path) -> None:
    """Two servers stand for two pods behind a Service: each new connection goes to
    the next live one. Server A is drained as the kubelet does it (the chart's preStop
    command, A leaves the endpoint list, then SIGTERM to the server process) while 8
    keep-alive clients send continuously."""
    markers = [tmp_path / "a-draining", tmp_path / "b-draining"]
    servers = [start_server("breast-cancer", env={drain.ENV: str(m)}) for m in markers]
    a, b = servers
    with httpx.Client(base_url=a.url) as c:
        sample = c.get("/models").json()["models"][0]["sample"]
    body = orjson.dumps(sample)
    endpoints = [urllib.parse.urlsplit(s.url) for s in servers]
    live = list(endpoints)
    rotation = itertools.count()
    lock = threading.Lock()

    def target() -> tuple[str, int]:
        with lock:
            ep = live[next(rotation) % len(live)]
        return ep.hostname or "127.0.0.1", int(ep.port or 80)

    stop = threading.Event()
    result: dict[str, keepalive.Counts] = {}
    load = threading.Thread(
        target=lambda: result.update(counts=keepalive.run(target, body, clients=8, stop=stop))
    )
    load.start()
    time.sleep(2.0)
    # preStop: the chart's command, with A's marker; A leaves the endpoints meanwhile.
    hook = subprocess.Popen(
        [sys.executable, "-m", "modelport.drain", "--seconds", "3"],
        env={**os.environ, drain.ENV: str(markers[0])},
    )
    with lock:
        live.remove(endpoints[0])
    deadline = time.monotonic() + 5
    with httpx.Client(base_url=a.url) as c:
        while c.get("/readyz").status_code != 503:
            assert time.monotonic() < deadline, "A never reported unready while draining"
            time.sleep(0.05)
        r = c.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.headers["connection"] == "close"
    assert hook.wait(timeout=30) == 0
    # Then the kubelet's SIGTERM, to the server process alone (the container's PID 1).
    os.kill(a.proc.pid, signal.SIGTERM)
    assert a.proc.wait(timeout=60) == 0
    time.sleep(1.0)
    stop.set()
    load.join(timeout=120)
    counts = result["counts"]
    print(f"keep-alive drain: {counts.summary()}")
    assert counts.sent > 200, counts.summary()
    assert counts.resets == 0 and counts.non2xx == 0 and counts.lost == 0, counts.summary()
    assert counts.reconnects >= 4, counts.summary()  # the clients on A left when told to
    with httpx.Client(base_url=b.url) as c:
        assert c.get("/readyz").status_code == 200
