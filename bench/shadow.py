"""``python -m bench.shadow [--rounds N] [--seconds S]``: what mirroring to a canary
costs the stable pod: single-row ``/predict`` at 32 clients on stable servers that
mirror 0 %, 10 % and 100 % of their requests to one canary server, measured in turn,
with the throughput ratio to the one that does not mirror and the mirror outcomes.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from bench import suite


def mirrored(url: str) -> dict[str, float]:
    """``modelport_shadow_mirrored_total`` by outcome, from a server's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("modelport_shadow_mirrored_total{"):
            outcome = re.search(r'outcome="(\w+)"', line)
            if outcome:
                out[outcome.group(1)] = out.get(outcome.group(1), 0) + float(line.split()[-1])
    return out


def served(url: str) -> float:
    """Single-row /predict requests a server answered, by its own counter."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("modelport_requests_total{") and 'endpoint="predict"' in line
    )


def private_home(tmp: Path, name: str) -> str:
    """A BentoML home of its own (its own metrics dir) sharing the local model store."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    home = tmp / name
    home.mkdir()
    (home / "models").symlink_to(Path(BentoMLContainer.bentoml_home.get()) / "models")
    return str(home)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    plan = dataclasses.replace(suite.Plan.make(quick=True), seconds=args.seconds)
    canary_plan = dataclasses.replace(plan, server_cpus=plan.client_cpus)
    body = suite.single_body()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelport-shadow-")))
        canary_env = {"MODELPORT_VARIANT": "canary", "BENTOML_HOME": private_home(tmp, "canary")}
        canary, _, _ = stack.enter_context(
            suite.modelport_server(canary_plan, suite.LOAD_MODEL, env=canary_env)
        )
        urls: dict[str, str] = {}
        pids: dict[str, int] = {}
        for label, fraction in (
            ("no mirroring", None),
            ("mirror 10%", "0.1"),
            ("mirror 100%", "1"),
        ):
            env = {"BENTOML_HOME": private_home(tmp, f"stable-{len(urls)}")}
            if fraction is not None:
                env.update(MODELPORT_SHADOW_URL=canary, MODELPORT_SHADOW_FRACTION=fraction)
            url, pid, _ = stack.enter_context(
                suite.modelport_server(plan, suite.LOAD_MODEL, env=env)
            )
            urls[label], pids[label] = url, pid
        before = {k: (suite.cpu_seconds(pids[k]), served(urls[k])) for k in urls}
        got = suite.alternate(plan, {k: v + "/predict" for k, v in urls.items()}, body, args.rounds)
        # CPU per request of each stable pod (its whole process tree, the sender thread
        # included): what mirroring costs the pod itself, apart from the load generator
        # sharing its CPU with the canary.
        cost = {
            k: (suite.cpu_seconds(pids[k]) - before[k][0])
            / max(served(urls[k]) - before[k][1], 1)
            * 1e6
            for k in urls
        }
        base = got["no mirroring"][0]["rps"]
        print(
            "\n| stable pod | req/s | ÷ no mirroring | CPU µs/request | ÷ no mirroring "
            "| p50 ms | p99 ms | mirrored (compared / dropped / failed) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for label, url in urls.items():
            r = got[label][0]
            m = mirrored(url)
            print(
                f"| {label} | {r['rps']:.0f} | {r['rps'] / base:.3f} | {cost[label]:.0f} | "
                f"{cost[label] / cost['no mirroring']:.3f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {m.get('compared', 0):.0f} / {m.get('dropped', 0):.0f} / "
                f"{m.get('failed', 0):.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
