"""Lossless draining: the pod's ``preStop`` hook marks the server as draining.

``python -m modelport.drain --seconds N`` (the chart's ``preStop``) writes the drain
marker, then sleeps N seconds while the endpoint removal reaches every proxy. Every
worker sees the marker within :data:`POLL_SECONDS` and from then on answers each
request with ``Connection: close`` and ``/readyz`` 503: keep-alive clients, which
kube-proxy keeps pinned to this pod (it balances connections, not requests), get
their answer and reconnect through the Service to a live pod. When SIGTERM comes,
no client connection is left that could be cut with a request already sent.

A file rather than an HTTP call: it reaches every worker process, needs no port,
and nothing outside the container can trigger it. A marker older than the server
is stale (a previous run's) and ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

ENV = "MODELPORT_DRAIN_FILE"
POLL_SECONDS = 0.1


def marker_path() -> Path:
    """Where the marker lives: ``MODELPORT_DRAIN_FILE``, else ``$TMPDIR/modelport-draining``
    (the pod's writable /tmp, shared by the hook and the server)."""
    return Path(os.environ.get(ENV) or Path(tempfile.gettempdir()) / "modelport-draining")


def begin(path: Path | None = None) -> Path:
    """Write the marker (atomically; its mtime says when draining began)."""
    path = path or marker_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{time.time()}\n")
    os.replace(tmp, path)
    return path


class DrainWatch:
    """Polls for a marker newer than this process's start; :attr:`draining` flips once."""

    def __init__(self, path: Path | None = None, interval: float = POLL_SECONDS) -> None:
        self.path = path or marker_path()
        self.interval = interval
        self.since = time.time()
        self.draining = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelport-drain", daemon=True)

    def check(self) -> bool:
        if not self.draining:
            # No marker yet: OSError. 1 s of slack for filesystems with coarse timestamps.
            with contextlib.suppress(OSError):
                self.draining = self.path.stat().st_mtime >= self.since - 1.0
        return self.draining

    def start(self) -> DrainWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self.check() and not self._stop.wait(self.interval):
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelport.drain",
        description="Mark the local modelport server as draining, then wait (a preStop hook).",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.0,
        help="Seconds to wait after marking, while the endpoint removal propagates.",
    )
    args = parser.parse_args(argv)
    path = begin()
    print(f"modelport: draining ({path}); waiting {args.seconds:g}s", flush=True)
    time.sleep(max(args.seconds, 0.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
