"""``python -m bench.coldstart [BASE] [--head REV] [--rounds N] [--models a,b]``: cold
starts of the service at git revision BASE (default HEAD) and of the working tree (or
revision REV), in turn: seconds from process start to the first ``/readyz`` 200
(polled every 50 ms, server pinned like ``bench.suite``), the CPU seconds its
processes used by then, and how long they waited for a CPU (other work on the
machine). Prints the medians and head ÷ base.

Revisions are served from ``git archive`` of them with the local model store, so they
must be able to load the models the working tree trained (unlike ``bench.revisions``,
nothing is trained: a start takes seconds, not minutes).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import suite
from modelport import server

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Start:
    seconds: float  # process start to /readyz 200
    cpu_seconds: float  # user + system time of all the server's processes by then
    cpu_wait_ms: float  # runnable but waiting for a CPU, by then


def cold_start(plan: suite.Plan, tree: Path, models: str) -> Start:
    """One start of the service in ``tree`` (its ``modelport`` package too)."""
    port = server.free_port()
    url = f"http://127.0.0.1:{port}"
    since = time.monotonic()
    proc = server.start(
        port,
        models=models,
        workers=1,
        env={**suite.private_env(), "PYTHONPATH": str(tree)},
        prefix=suite.pin(plan.server_cpus),
        cwd=tree,
    )
    try:
        seconds = server.wait_ready(url, proc, timeout=180, interval=0.05, since=since)
        return Start(seconds, suite.cpu_seconds(proc.pid), suite._cpu_wait_ms(proc.pid))
    finally:
        suite._stop(proc)


@contextmanager
def revision(rev: str) -> Iterator[Path]:
    """The files of git revision ``rev`` in a temporary folder."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryDirectory(prefix="modelport-cold-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def _summary(starts: list[Start]) -> dict[str, float]:
    return {
        "seconds": statistics.median(s.seconds for s in starts),
        "min_seconds": min(s.seconds for s in starts),
        "max_seconds": max(s.seconds for s in starts),
        "cpu_seconds": statistics.median(s.cpu_seconds for s in starts),
        "cpu_wait_ms": statistics.median(s.cpu_wait_ms for s in starts),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", nargs="?", default="HEAD", help="git revision (default HEAD)")
    parser.add_argument("--head", help="git revision to compare (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=5, help="starts of each (default 5)")
    parser.add_argument("--models", default=",".join(suite.SKLEARN_MODELS))
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    plan = suite.Plan.make(quick=True)
    starts: dict[str, list[Start]] = {"base": [], "head": []}
    with revision(args.base) as base, ExitStack() as stack:
        head = stack.enter_context(revision(args.head)) if args.head else ROOT
        trees = {"base": base, "head": head}
        for i in range(args.rounds):
            for label, tree in trees.items():
                s = cold_start(plan, tree, args.models)
                starts[label].append(s)
                print(
                    f"  {i + 1}/{args.rounds} {label}: {s.seconds:.2f} s, CPU "
                    f"{s.cpu_seconds:.2f} s, CPU-wait {s.cpu_wait_ms:.0f} ms",
                    flush=True,
                )
    result = {label: _summary(s) for label, s in starts.items()}
    for label, r in result.items():
        print(
            f"{label} ({args.base if label == 'base' else args.head or 'working tree'}): median "
            f"{r['seconds']:.3f} s ({r['min_seconds']:.2f}-{r['max_seconds']:.2f}), CPU "
            f"{r['cpu_seconds']:.3f} s, CPU-wait {r['cpu_wait_ms']:.0f} ms"
        )
    b, h = result["base"], result["head"]
    print(
        f"head / base: {h['seconds'] / b['seconds']:.3f} wall, "
        f"{h['cpu_seconds'] / b['cpu_seconds']:.3f} CPU"
    )
    if args.out:
        runs = {label: [asdict(s) for s in runs] for label, runs in starts.items()}
        args.out.write_text(json.dumps({"median": result, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
