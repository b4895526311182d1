"""HTTP load with ``wrk`` (Debian package), pinned to its own CPU.

The server runs on one CPU and wrk on another (``taskset``), so the load generator
never competes with the server it measures.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class LoadResult:
    """One wrk run: throughput, latency percentiles (ms) and failures."""

    connections: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # non-2xx responses plus socket errors (connect, read, write, timeout)
    p999_ms: float = float("nan")
    max_ms: float = float("nan")
    timeouts: int = 0  # requests not answered within wrk's 10 s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpus() -> list[int]:
    import os

    return sorted(os.sched_getaffinity(0))


def pin(cpu_list: list[int]) -> list[str]:
    """Command prefix that pins a process (and its children) to ``cpu_list``."""
    if not shutil.which("taskset") or not cpu_list:
        return []
    return ["taskset", "-c", ",".join(map(str, cpu_list))]


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str, connections: int, seconds: float) -> LoadResult:
    """Read wrk's ``--latency`` report (raises on anything unexpected)."""
    dist = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.M))
    total = re.search(r"^\s+(\d+) requests in ([\d.]+)(us|ms|s|m)", output, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not ({"50", "90", "99"} <= dist.keys() and total and rps):
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    extra = re.search(r"^tail p999_us=([\d.]+) max_us=([\d.]+) timeouts=(\d+)", output, re.M)
    return LoadResult(
        connections=connections,
        seconds=seconds,
        requests=int(total.group(1)),
        rps=float(rps.group(1)),
        p50_ms=_ms(dist["50"]),
        p90_ms=_ms(dist["90"]),
        p99_ms=_ms(dist["99"]),
        errors=errors,
        p999_ms=float(extra.group(1)) / 1000 if extra else float("nan"),
        max_ms=float(extra.group(2)) / 1000 if extra else float("nan"),
        timeouts=int(extra.group(3)) if extra else 0,
    )


def wrk(
    url: str, body: bytes, *, connections: int, seconds: float, cpu_list: list[int]
) -> LoadResult:
    """POST ``body`` to ``url`` with ``connections`` keep-alive clients for ``seconds``
    (whole seconds: wrk takes no fractions)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: run `make setup` (Debian package wrk)")
    with tempfile.TemporaryDirectory(prefix="modelport-wrk-") as tmp:
        body_file = Path(tmp, "body.json")
        body_file.write_bytes(body)
        script = Path(tmp, "post.lua")
        # The body is read from a file: Lua string escaping of JSON is not needed.
        script.write_text(
            'local f = assert(io.open("' + str(body_file) + '", "rb"))\n'
            'wrk.method = "POST"\nwrk.body = f:read("*a")\nf:close()\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            # wrk's --latency report stops at p99: p99.9 and the maximum from its
            # full histogram, in microseconds.
            "function done(summary, latency, requests)\n"
            '  io.write(string.format("tail p999_us=%.1f max_us=%.1f timeouts=%d\\n",\n'
            "    latency:percentile(99.9), latency.max, summary.errors.timeout))\n"
            "end\n"
        )
        threads = max(1, min(len(cpu_list), connections))
        cmd = [
            *pin(cpu_list),
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"wrk failed ({done.returncode}): {(done.stderr or done.stdout).strip()}"
        )
    return parse_wrk(done.stdout, connections, seconds)
