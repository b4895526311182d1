"""A BentoML service that isolates adaptive batching: the same model and fast path
as modelport behind three APIs, so the suite can compare them in one process.

- ``/plain``: no batching;
- ``/batched``: adaptive batching with a latency budget that does not shed load;
- ``/batched_tight``: the same with ``max_latency_ms=10``, which in BentoML 1.4
  answers a share of requests with 503 under load.

    MODELPORT_BENCH_MODEL=breast-cancer bentoml serve bench.batching_service:Batching
"""

from __future__ import annotations

import os

import bentoml
import numpy as np

_QUIET = {"logging": {"access": {"enabled": False}}, "tracing": {"excluded_urls": [".*"]}}


@bentoml.service(name="bench-batching", workers=1, **_QUIET)
class Batching:
    def __init__(self) -> None:
        from bench.suite import load_fast_predictor

        self.predictor = load_fast_predictor(
            os.environ.get("MODELPORT_BENCH_MODEL", "breast-cancer")
        )

    @bentoml.api(route="/plain")
    async def plain(self, rows: np.ndarray) -> np.ndarray:
        return self.predictor.scores(rows)

    @bentoml.api(route="/batched", batchable=True, max_batch_size=128, max_latency_ms=1000)
    async def batched(self, rows: np.ndarray) -> np.ndarray:
        return self.predictor.scores(rows)

    @bentoml.api(route="/batched_tight", batchable=True, max_batch_size=128, max_latency_ms=10)
    async def batched_tight(self, rows: np.ndarray) -> np.ndarray:
        return self.predictor.scores(rows)
