"""``python -m bench.revisions BASE [--rounds N] [--seconds S] [--clients 1,32,128]``:
the service at git revision BASE against the working tree, single-row ``/predict``
and V2 infer (32 clients unless told), measured in turn (``suite.alternate``), and
the ratio head ÷ base with each one's p99 ÷ p50.

BASE is served from a temporary ``git worktree`` with models that BASE's own code
trains into a BentoML home of its own, so a change to the model card cannot keep the
old service from loading them. The working tree serves the local store's models.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import suite
from modelport import server

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def serve(plan: suite.Plan, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    port = server.free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix="modelport-rev-", suffix=".log")[1])
    proc = server.start(
        port,
        models=suite.LOAD_MODEL,
        workers=1,
        env={**suite.private_env(), **env},
        prefix=suite.pin(plan.server_cpus),
        log=log,
        cwd=cwd,
    )
    try:
        try:
            server.wait_ready(url, proc, timeout=180, interval=0.05)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}; server log: {log}") from None
        yield url
    finally:
        suite._stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="git revision to compare with, e.g. a commit or tag")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--clients",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[32],
        help="comma-separated concurrency levels (default 32), e.g. 1,32,128",
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    plan = dataclasses.replace(suite.Plan.make(quick=False), seconds=args.seconds)
    with tempfile.TemporaryDirectory(prefix="modelport-rev-") as tmp:
        tree, home = Path(tmp, "tree"), Path(tmp, "home")
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.base],
            check=True,
            capture_output=True,
        )
        try:
            base_env = {"BENTOML_HOME": str(home), "PYTHONPATH": str(tree)}
            print(f"== training {suite.LOAD_MODEL} with {args.base}'s code", flush=True)
            subprocess.run(
                [sys.executable, "-m", "modelport", "train", suite.LOAD_MODEL, "--promote"],
                cwd=tree,
                env={**os.environ, **base_env, "MODELPORT_REPORTS_DIR": str(Path(tmp, "r"))},
                check=True,
                capture_output=True,
            )
            results: dict[str, Any] = {}
            with serve(plan, tree, base_env) as base, serve(plan, ROOT, {}) as head:
                for (name, path, body), clients in itertools.product(
                    (
                        ("/predict", "/predict", suite.single_body()),
                        ("V2 infer", f"/v2/models/{suite.LOAD_MODEL}/infer", suite.infer_body()),
                    ),
                    args.clients,
                ):
                    print(f"== {name}, {clients} clients, {args.rounds} rounds in turn", flush=True)
                    got = suite.alternate(
                        plan,
                        {f"base {name}": base + path, f"head {name}": head + path},
                        body,
                        args.rounds,
                        clients,
                    )
                    b, h = got[f"base {name}"][0], got[f"head {name}"][0]
                    results[f"{name} c={clients}"] = {"base": b, "head": h}
                    print(
                        f"  head / base: {h['rps'] / b['rps']:.3f} req/s; p99 ÷ p50 base "
                        f"{b['p99_ms'] / b['p50_ms']:.2f}, head {h['p99_ms'] / h['p50_ms']:.2f}",
                        flush=True,
                    )
                if args.out:
                    args.out.write_text(json.dumps(results, indent=2) + "\n")
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
