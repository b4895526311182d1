"""Latency over time: every request's latency for a long run, so periodic stalls
show (wrk reports only the distribution of the whole run).

``python -m bench.timeline URL BODY_FILE --connections 32 --seconds 60 --out F.json``
runs a closed-loop HTTP/1.1 keep-alive client (asyncio, uvloop when installed) and
writes ``[[start offset s, latency s, status], ...]``; :func:`summarize` turns it into
per-second percentiles and :func:`plot` into a PNG. The suite runs it pinned to the
client CPUs, like wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)


async def _client(
    host: str, port: int, request: bytes, start: float, stop: float, out: list[tuple[float, ...]]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (now := time.perf_counter()) < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = _LENGTH.search(head)
            if match:
                await reader.readexactly(int(match.group(1)))
            out.append((now - start, time.perf_counter() - now, int(head[9:12])))
    finally:
        writer.close()


async def run(url: str, body: bytes, connections: int, seconds: float) -> list[tuple[float, ...]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out: list[tuple[float, ...]] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(_client(host, port, request, start, start + seconds, out) for _ in range(connections))
    )
    return out


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q / 100))]


def summarize(samples: list[list[float]], window: float = 1.0) -> dict[str, Any]:
    """Whole-run percentiles and, per ``window`` seconds, count, p50, p99 and max (ms)."""
    lat = sorted(s[1] * 1000 for s in samples)
    windows: dict[int, list[float]] = {}
    for start, latency, _ in samples:
        windows.setdefault(int(start // window), []).append(latency * 1000)
    per = []
    for w in sorted(windows):
        v = sorted(windows[w])
        per.append(
            {
                "t": w * window,
                "requests": len(v),
                "p50_ms": _pct(v, 50),
                "p99_ms": _pct(v, 99),
                "max_ms": v[-1],
            }
        )
    p99s = sorted(p["p99_ms"] for p in per)
    return {
        "requests": len(lat),
        "errors": sum(1 for s in samples if not 200 <= s[2] < 300),
        "p50_ms": _pct(lat, 50),
        "p99_ms": _pct(lat, 99),
        "p999_ms": _pct(lat, 99.9),
        "max_ms": lat[-1] if lat else math.nan,
        "worst_window_p99_ms": p99s[-1] if p99s else math.nan,
        "median_window_p99_ms": _pct(p99s, 50),
        "windows": per,
    }


def plot(samples: list[list[float]], summary: dict[str, Any], title: str, path: Path) -> None:
    """Every request's latency against time (log scale), with the per-second p50/p99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    ax.scatter(
        [s[0] for s in samples],
        [max(s[1] * 1000, 1e-3) for s in samples],
        s=1,
        alpha=0.25,
        color="tab:blue",
        label="each request",
        rasterized=True,
    )
    windows = summary["windows"]
    xs = [w["t"] + 0.5 for w in windows]
    ax.plot(xs, [w["p50_ms"] for w in windows], color="tab:green", label="p50 per second")
    ax.plot(xs, [w["p99_ms"] for w in windows], color="tab:red", label="p99 per second")
    ax.set_yscale("log")
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio: slower, still far above one server CPU's rate
        pass
    samples = asyncio.run(run(args.url, args.body.read_bytes(), args.connections, args.seconds))
    args.out.write_text(json.dumps(samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
