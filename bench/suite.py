"""The measurements: model limits in-process, the bare HTTP ceiling, modelport served,
cold start and memory. Each function returns plain dicts for the JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.load import LoadResult, pin, wrk
from modelport import server, store

SKLEARN_MODELS = ["breast-cancer", "diabetes"]
KERAS_MODEL = "breast-cancer-keras"
LOAD_MODEL = "breast-cancer"  # the model every HTTP load test predicts with


@dataclass(frozen=True)
class Plan:
    """How long each load point runs, and on which CPUs server and client run."""

    seconds: float
    warmup: float
    concurrency: tuple[int, ...]
    server_cpus: list[int]
    client_cpus: list[int]
    inprocess_seconds: float

    @classmethod
    def make(cls, quick: bool) -> Plan:
        cpus = sorted(os.sched_getaffinity(0))
        # One CPU for the server (one worker), the rest for wrk: the client never
        # competes with what it measures. On one CPU they must share.
        server_cpus, client_cpus = (cpus[:1], cpus[1:]) if len(cpus) > 1 else (cpus, cpus)
        return cls(
            seconds=3.0 if quick else 8.0,
            warmup=1.0 if quick else 2.0,
            concurrency=(1, 8, 32, 128),
            server_cpus=server_cpus,
            client_cpus=client_cpus,
            inprocess_seconds=0.5 if quick else 2.0,
        )


def _rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            fn()
        calls += 10
    return calls / elapsed


def rows_for(name: str, n: int) -> tuple[list[dict[str, Any]], Any]:
    """``n`` rows of named features (the model's sample, repeated) and its card."""
    card = store.card_of(store.resolve(name))
    sample = card.sample.instances
    return [sample[i % len(sample)] for i in range(n)], card


def _matrix(rows: list[dict[str, Any]], names: list[str]) -> np.ndarray:
    return np.array([[r[n] for n in names] for r in rows], dtype=float)


def load_fast_predictor(name: str) -> Any:
    """The predictor exactly as the service prepares it (``service.runtime``: the
    card's linear form, else the compiled fast path)."""
    from modelport.settings import ServiceSettings
    from service.runtime import _load

    return _load(name, ServiceSettings()).predictor


def inprocess(models: list[str], batches: tuple[int, ...], seconds: float) -> list[dict[str, Any]]:
    """The model's own limit: ``predictor.predict`` on ready arrays, no HTTP, no JSON."""
    results = []
    for name in models:
        predictor = load_fast_predictor(name)
        for batch in batches:
            rows, card = rows_for(name, batch)
            X = _matrix(rows, card.feature_names)
            calls = _rate(partial(predictor.predict, X), seconds)
            results.append(
                {"model": name, "batch": batch, "calls_per_s": calls, "rows_per_s": calls * batch}
            )
            print(
                f"  in-process {name:22s} batch {batch:5d}: {calls:9.0f} calls/s "
                f"{calls * batch:11.0f} rows/s",
                flush=True,
            )
    return results


def cpu_seconds(root_pid: int) -> float:
    """User + system CPU seconds of a process tree so far."""
    import psutil

    root = psutil.Process(root_pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def rss_mb(root_pid: int) -> dict[str, float]:
    """Resident memory (MB) of a process tree: the whole tree, and its largest
    process (the serving worker; BentoML's supervisor is the small one)."""
    import psutil

    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
        sizes = [p.memory_info().rss / 2**20 for p in procs]
    except psutil.Error:
        return {"total_mb": float("nan"), "worker_mb": float("nan")}
    return {"total_mb": round(sum(sizes), 1), "worker_mb": round(max(sizes), 1)}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def private_env() -> dict[str, str]:
    """A drain marker of the server's own: the default one is shared by every
    modelport process on the machine (a test draining its server would otherwise turn
    on ``Connection: close`` in the benchmark's)."""
    folder = tempfile.mkdtemp(prefix="modelport-bench-drain-")
    return {"MODELPORT_DRAIN_FILE": str(Path(folder, "draining"))}


@contextmanager
def modelport_server(
    plan: Plan, models: str, config: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int, float]]:
    """``bentoml serve`` with one worker on the server CPU: (url, pid, seconds from
    process start to ``/readyz`` 200)."""
    port = server.free_port()
    url = f"http://127.0.0.1:{port}"
    since = time.monotonic()
    log = Path(tempfile.mkstemp(prefix="modelport-bench-", suffix=".log")[1])
    proc = server.start(
        port,
        models=models,
        workers=1,
        env={**private_env(), **(env or {})},
        service_config=config,
        prefix=pin(plan.server_cpus),
        log=log,
    )
    try:
        try:
            ready = server.wait_ready(url, proc, timeout=180, interval=0.05, since=since)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}; server log: {log}") from None
        yield url, proc.pid, ready
    finally:
        _stop(proc)


@contextmanager
def bare_server(plan: Plan) -> Iterator[tuple[str, int, float]]:
    """The bare Starlette app on uvicorn, one worker, on the server CPU."""
    port = server.free_port()
    url = f"http://127.0.0.1:{port}"
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    cmd = [
        *pin(plan.server_cpus),
        uvicorn,
        "bench.bare:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "MODELPORT_BENCH_MODEL": LOAD_MODEL,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    log = Path(tempfile.mkstemp(prefix="modelport-bare-", suffix=".log")[1])
    since = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    body = single_body()
    try:
        while True:  # uvicorn has no /readyz: the first good predict is "ready"
            if proc.poll() is not None:
                raise RuntimeError(f"bare server exited; see {log}")
            try:
                post(url + "/predict", body)
                break
            except OSError:
                time.sleep(0.05)
        yield url, proc.pid, time.monotonic() - since
    finally:
        _stop(proc)


def post(url: str, body: bytes) -> Any:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def single_body(rows: int = 1) -> bytes:
    instances, _ = rows_for(LOAD_MODEL, rows)
    return json.dumps({"model": LOAD_MODEL, "instances": instances}).encode()


def infer_body(rows: int = 1) -> bytes:
    instances, card = rows_for(LOAD_MODEL, rows)
    data = _matrix(instances, card.feature_names)
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(data.shape),
                    "datatype": "FP64",
                    "data": data.ravel().tolist(),
                }
            ]
        }
    ).encode()


def sweep(
    plan: Plan, url: str, body: bytes, label: str, concurrency: tuple[int, ...] | None = None
) -> list[dict[str, Any]]:
    """wrk at each concurrency level (after one warm-up run)."""
    wrk(url, body, connections=32, seconds=plan.warmup, cpu_list=plan.client_cpus)
    out = []
    for c in concurrency or plan.concurrency:
        r: LoadResult = wrk(
            url, body, connections=c, seconds=plan.seconds, cpu_list=plan.client_cpus
        )
        print(
            f"  {label:28s} c={c:<4d} {r.rps:8.0f} req/s  p50 {r.p50_ms:7.2f} ms  "
            f"p90 {r.p90_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  p99.9 {r.p999_ms:7.2f} ms  "
            f"errors {r.errors}",
            flush=True,
        )
        out.append({"label": label, **r.as_dict()})
    return out


@contextmanager
def batching_server(plan: Plan, model: str) -> Iterator[str]:
    port = server.free_port()
    url = f"http://127.0.0.1:{port}"
    root = str(Path(__file__).resolve().parent.parent)
    env = {
        **private_env(),
        "MODELPORT_BENCH_MODEL": model,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    log = Path(tempfile.mkstemp(prefix="modelport-batching-", suffix=".log")[1])
    proc = server.start(
        port,
        env=env,
        log=log,
        prefix=pin(plan.server_cpus),
        service="bench.batching_service:Batching",
    )
    try:
        server.wait_ready(url, proc, timeout=180, interval=0.05)
        yield url
    finally:
        _stop(proc)


def batching(plan: Plan, models: list[str]) -> list[dict[str, Any]]:
    """Single-row requests at 32 clients: no batching vs adaptive batching (a loose
    and a tight latency budget), per model."""
    out = []
    for model in models:
        rows, card = rows_for(model, 1)
        body = json.dumps({"rows": _matrix(rows, card.feature_names).tolist()}).encode()
        with batching_server(plan, model) as url:
            for route in ("plain", "batched", "batched_tight"):
                for r in sweep(plan, f"{url}/{route}", body, f"{model} /{route}", (32,)):
                    out.append({**r, "model": model, "route": route})
    return out


def cold_starts(plan: Plan, models: str, times: int) -> list[float]:
    """Seconds from process start to ``/readyz`` 200, ``times`` fresh starts."""
    out = []
    for _ in range(times):
        with modelport_server(plan, models) as (_, pid, ready):
            out.append(ready)
            print(f"  cold start {ready:.2f} s, worker RSS {rss_mb(pid)['worker_mb']:.0f} MB")
    return out


def _cpu_wait_ms(root_pid: int) -> float:
    """Milliseconds the process tree has spent runnable but waiting for a CPU
    (/proc/PID/schedstat, second field): what other work on the machine costs it."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(root_pid)
        for p in [root, *root.children(recursive=True)]:
            for task in Path(f"/proc/{p.pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[1]) / 1e6
    except (psutil.Error, OSError, ValueError, IndexError):
        return float("nan")
    return total


def timeline(
    plan: Plan, url: str, body: bytes, connections: int, seconds: float, png: Path, pid: int
) -> dict[str, Any]:
    """Every request's latency over a long run (bench.timeline, pinned like wrk),
    summarized per second, plotted to ``png``; with the time the server waited for
    a CPU meanwhile."""
    from bench import timeline as tl

    with tempfile.TemporaryDirectory(prefix="modelport-timeline-") as tmp:
        body_file, out = Path(tmp, "body.json"), Path(tmp, "samples.json")
        body_file.write_bytes(body)
        waited = _cpu_wait_ms(pid)
        subprocess.run(
            [
                *pin(plan.client_cpus),
                sys.executable,
                "-m",
                "bench.timeline",
                url,
                str(body_file),
                "--connections",
                str(connections),
                "--seconds",
                str(seconds),
                "--out",
                str(out),
            ],
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        waited = _cpu_wait_ms(pid) - waited
        samples = json.loads(out.read_text())
    summary = tl.summarize(samples)
    summary.update(seconds=seconds, connections=connections, cpu_wait_ms=waited, png=str(png))
    title = (
        f"modelport /predict, {connections} clients, {seconds:g} s: p50 "
        f"{summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms, "
        f"p99.9 {summary['p999_ms']:.1f} ms"
    )
    try:
        tl.plot(samples, summary, title, png)
    except ImportError as exc:  # matplotlib is a training extra: the figures still count
        summary["png"] = f"not drawn: {exc}"
    print(
        f"  {summary['requests']} requests: p50 {summary['p50_ms']:.2f} ms, p99 "
        f"{summary['p99_ms']:.2f} ms, p99.9 {summary['p999_ms']:.2f} ms, max "
        f"{summary['max_ms']:.1f} ms; worst 1 s p99 {summary['worst_window_p99_ms']:.2f} ms; "
        f"server waited {waited:.0f} ms for a CPU; plot: {summary['png']}",
        flush=True,
    )
    return summary


def against_mlserver(plan: Plan, infer_url: str, rounds: int) -> dict[str, Any]:
    """1000-row V2 tensor (FP64 JSON), 2 clients, MLServer and modelport in turn."""
    from bench import mlserver

    if mlserver.executable() is None:
        why = "not installed (bash hack/install-mlserver.sh)"
        print(f"  MLServer: {why}", flush=True)
        return {"error": why}
    body = infer_body(1000)
    try:
        with mlserver.mlserver(plan.server_cpus, LOAD_MODEL) as url:
            got = alternate(
                plan,
                {"MLServer": f"{url}/v2/models/{LOAD_MODEL}/infer", "modelport": infer_url},
                body,
                rounds,
                connections=2,
            )
    except (RuntimeError, OSError) as exc:
        print(f"  MLServer: {exc}", flush=True)
        return {"error": str(exc)}
    return {label: points[0] for label, points in got.items()}


def keras_service(plan: Plan, artifacts: list[str]) -> list[dict[str, Any]]:
    """The Keras model served alone: cold start (TensorFlow is imported only now),
    memory, and single-row throughput for each serving artifact."""
    rows, _ = rows_for(KERAS_MODEL, 1)
    body = json.dumps({"model": KERAS_MODEL, "instances": rows}).encode()
    out = []
    for artifact in artifacts:
        env = {"MODELPORT_KERAS_ARTIFACT": artifact}
        with modelport_server(plan, KERAS_MODEL, env=env) as (url, pid, ready):
            post(url + "/predict", body)
            rss = rss_mb(pid)
            print(
                f"  keras ({artifact}) cold start {ready:.2f} s, worker RSS "
                f"{rss['worker_mb']:.0f} MB",
                flush=True,
            )
            for r in sweep(plan, url + "/predict", body, f"keras {artifact} /predict", (32,)):
                out.append({**r, "artifact": artifact, "cold_start_s": ready, **rss})
    return out


def alternate(
    plan: Plan,
    urls: dict[str, str],
    body: bytes | dict[str, bytes],
    rounds: int,
    connections: int = 32,
) -> dict[str, list[dict[str, Any]]]:
    """Servers measured in turn, ``rounds`` times; each keeps its median-throughput
    run, and the range of its runs' throughput and p99. Interleaving cancels slow
    drifts in what else the machine is doing, which a before/after pair would read
    as a difference. ``body``: one for all, or one per label."""
    runs: dict[str, list[LoadResult]] = {label: [] for label in urls}
    bodies = body if isinstance(body, dict) else dict.fromkeys(urls, body)
    c = connections
    for label, url in urls.items():
        wrk(url, bodies[label], connections=c, seconds=plan.warmup, cpu_list=plan.client_cpus)
    for _ in range(rounds):
        for label, url in urls.items():
            runs[label].append(
                wrk(
                    url,
                    bodies[label],
                    connections=c,
                    seconds=plan.seconds,
                    cpu_list=plan.client_cpus,
                )
            )
    out = {}
    for label, results in runs.items():
        r = sorted(results, key=lambda x: x.rps)[len(results) // 2]
        print(
            f"  {label:28s} c={c:<4d} {r.rps:8.0f} req/s  p50 {r.p50_ms:7.2f} ms  "
            f"p99 {r.p99_ms:7.2f} ms  p99.9 {r.p999_ms:7.2f} ms  "
            f"(runs: {[round(x.rps) for x in results]} req/s, "
            f"p99 {[round(x.p99_ms, 2) for x in results]} ms)",
            flush=True,
        )
        out[label] = [
            {
                "label": label,
                **r.as_dict(),
                "runs": [x.rps for x in results],
                "runs_p99_ms": [x.p99_ms for x in results],
                "runs_p50_ms": [x.p50_ms for x in results],
            }
        ]
    return out
