"""A real Prometheus (Debian's package) for the tests: started on a free loopback port
with a given configuration, queried over its HTTP API."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelport import server as srv
from tests.conftest import IN_CI


def binary() -> str:
    """The prometheus binary; a missing one fails under CI and skips elsewhere."""
    found = shutil.which("prometheus")
    if found is None:
        if IN_CI:
            pytest.fail("prometheus is not installed: run `make tools`")
        pytest.skip("prometheus not installed (make tools installs it)")
    return found


@contextmanager
def running(work: Path, config: dict[str, Any]) -> Iterator[str]:
    """Prometheus with ``config`` (its data and log in ``work``) until the block ends;
    yields its base URL once it is ready."""
    exe = binary()
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = srv.free_port()
    log = work / "log"
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200,
            60,
            lambda: log.read_text(),
        )
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_for(check: Callable[[], bool], seconds: float, why: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out: {why()[-2000:]}")


def vector(url: str, promql: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def query(url: str, promql: str) -> list[float]:
    return [float(x["value"][1]) for x in vector(url, promql)]
