"""Keep-alive load: N clients on persistent HTTP/1.1 connections, counting every request.

Standard library only, so the same file runs on a developer's machine (the drain
tests import :func:`run`) and inside a cluster pod with the service image's Python
(the e2e suite mounts it from a ConfigMap and reads the last line of its log):

    python keepalive.py --url http://svc:3000 --clients 8 --seconds 60 --body @body.json

Each client keeps one connection open and sends requests back to back. A response
with ``Connection: close`` (what a draining server sends) makes it reconnect before
the next request, as any HTTP client does, so a load balancer can route it to a live
server. A request counts as *sent* once its bytes were written; every sent request
must come back *answered* with a 2xx, else it is a loss: a reset or a non-2xx.
The last line printed is the JSON summary; the exit code is 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# Where to connect for the next connection: (host, port). A test can rotate it
# between servers, as a Service's endpoint list does.
Target = Callable[[], tuple[str, int]]


@dataclass
class Counts:
    sent: int = 0
    answered: int = 0
    ok: int = 0
    non2xx: int = 0
    resets: int = 0
    reconnects: int = 0
    refused: int = 0  # connection refused before anything was sent: not a loss
    errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.sent - self.ok

    def add(self, other: Counts) -> None:
        for name in ("sent", "answered", "ok", "non2xx", "resets", "reconnects", "refused"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors[: max(0, 20 - len(self.errors))])

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "lost": self.lost}


def _client(
    target: Target,
    path: str,
    body: bytes,
    stop: threading.Event,
    counts: Counts,
    timeout: float,
) -> None:
    conn: http.client.HTTPConnection | None = None
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    while not stop.is_set():
        if conn is None:
            host, port = target()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                conn.connect()
            except ConnectionRefusedError:
                counts.refused += 1
                conn = None
                time.sleep(0.05)
                continue
            except OSError as exc:
                counts.errors.append(f"connect: {exc!r}")
                conn = None
                time.sleep(0.05)
                continue
        try:
            conn.request("POST", path, body=body, headers=headers)
        except OSError as exc:
            # Nothing (or not all) was written: the server had closed an idle connection.
            counts.errors.append(f"send: {exc!r}")
            conn.close()
            conn = None
            counts.reconnects += 1
            continue
        counts.sent += 1
        try:
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as exc:
            counts.resets += 1
            counts.errors.append(f"response: {exc!r}")
            conn.close()
            conn = None
            continue
        counts.answered += 1
        if 200 <= resp.status < 300:
            counts.ok += 1
        else:
            counts.non2xx += 1
            if len(counts.errors) < 20:
                counts.errors.append(f"status {resp.status}")
        if resp.will_close:
            conn.close()
            conn = None
            counts.reconnects += 1
    if conn is not None:
        conn.close()


def run(
    target: Target | str,
    body: bytes,
    *,
    clients: int = 8,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    path: str = "/predict",
    timeout: float = 60.0,
) -> Counts:
    """Run ``clients`` keep-alive clients until ``seconds`` pass or ``stop`` is set;
    the summed counts."""
    if isinstance(target, str):
        parsed = urllib.parse.urlsplit(target)
        address = (parsed.hostname or "127.0.0.1", parsed.port or 80)

        def fixed() -> tuple[str, int]:
            return address

        target = fixed
    stop = stop or threading.Event()
    per_client = [Counts() for _ in range(clients)]
    threads = [
        threading.Thread(target=_client, args=(target, path, body, stop, c, timeout), daemon=True)
        for c in per_client
    ]
    for t in threads:
        t.start()
    if seconds is not None:
        stop.wait(seconds)
        stop.set()
    for t in threads:
        t.join(timeout + 5)
    total = Counts()
    for c in per_client:
        total.add(c)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="Base URL, e.g. http://modelport:3000")
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--body", required=True, help="JSON text, or @FILE")
    parser.add_argument("--progress", type=float, default=10.0, help="Seconds between lines.")
    args = parser.parse_args(argv)
    raw = args.body
    if raw.startswith("@"):
        with open(raw[1:], encoding="utf-8") as fh:
            raw = fh.read()
    body = json.dumps(json.loads(raw)).encode()
    stop = threading.Event()
    result: dict[str, Counts] = {}

    def load() -> None:
        result["counts"] = run(args.url, body, clients=args.clients, stop=stop, path=args.path)

    worker = threading.Thread(target=load)
    worker.start()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        time.sleep(min(args.progress, max(0.0, end - time.monotonic())))
        print(f"keepalive: {time.monotonic() - end + args.seconds:.0f}s", flush=True)
    stop.set()
    worker.join()
    counts = result["counts"]
    print(json.dumps(counts.summary()), flush=True)
    return 1 if counts.lost or counts.sent == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
