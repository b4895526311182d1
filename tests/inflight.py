"""Requests kept in flight while a server is asked to stop (the drain tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx


def drain_check(url: str, body: dict[str, Any], stop: Callable[[], None], n: int = 8) -> list:
    """POST ``body`` ``n`` times concurrently, call ``stop`` once they are connected
    (most still queued behind the first), and return each request's outcome: a
    status code, or the client error's repr."""
    results: list[int | str] = []

    def call() -> None:
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                results.append(client.post("/predict", json=body).status_code)
        except httpx.HTTPError as exc:
            results.append(repr(exc))

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    stop()
    for t in threads:
        t.join(timeout=90)
    return results
