"""Shadow traffic without a mesh: a stable pod mirrors a sampled share of its
predictions to the canary Service after answering, and compares the two answers.

The request path only samples and appends to a bounded queue (well under a
microsecond); every 50 ms one background thread sends what queued up, batched per
model, over a keep-alive connection. A full queue drops
(counted), a slow or dead canary costs the stable response nothing, and every
mirrored row is counted as agreeing or not with the canary's prediction.
"""

from __future__ import annotations

import collections
import http.client
import logging
import random
import threading
import urllib.parse
from typing import Any

import numpy as np
import orjson

from modelport.predictors import Output
from modelport.settings import ServiceSettings
from service.validation import Batch

log = logging.getLogger("modelport")

MIRROR_HEADER = "X-Modelport-Mirror"  # marks mirrored requests (never mirrored again)
_TIMEOUT = 5.0
_MAX_ROWS = 256  # rows per mirrored request, well under any MODELPORT_MAX_BATCH_ROWS
_INTERVAL = 0.05  # seconds between sends: mirrored rows reach the canary this much later


def instances(batch: Batch, names: list[str]) -> list[dict[str, Any]]:
    """A validated batch as /predict rows (what the model saw, imputed values included)."""
    if batch.frame is not None:
        records: list[dict[str, Any]] = batch.frame.to_dict("records")
        return records
    return [dict(zip(names, row, strict=True)) for row in batch.numeric.tolist()]


def agreement(
    task: str, stable: list[Any], canary: list[Any], tolerance: float
) -> tuple[list[bool], list[float]]:
    """Per row: whether the canary agreed (same class; or |difference| within the
    tolerance), and for regressors the absolute differences."""
    if task == "regression":
        diff = np.abs(np.asarray(stable, dtype=float) - np.asarray(canary, dtype=float))
        return (diff <= tolerance).tolist(), diff.tolist()
    return [str(a) == str(b) for a, b in zip(stable, canary, strict=True)], []


class Mirror:
    def __init__(self, settings: ServiceSettings) -> None:
        url = urllib.parse.urlsplit(settings.shadow_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(
                f"MODELPORT_SHADOW_URL: expected http://HOST[:PORT], got {settings.shadow_url!r}"
            )
        self.host, self.port = url.hostname, url.port or 80
        self.base = url.path.rstrip("/")
        self.fraction = settings.shadow_fraction
        self.tolerance = settings.shadow_tolerance
        self.capacity = settings.shadow_queue
        # A deque, not a queue.Queue: appending takes no lock and wakes no thread (a
        # notify per mirrored request cost the event loop more than the sending did).
        self._pending: collections.deque[tuple[Any, Batch, Output]] = collections.deque()
        self._stop = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name="modelport-shadow", daemon=True)

    def start(self) -> Mirror:
        self._thread.start()
        return self

    def offer(self, served: Any, batch: Batch, out: Output) -> None:
        """Called on the request path after the response is ready: sample, enqueue."""
        if self.fraction < 1.0 and random.random() >= self.fraction:
            return
        if len(self._pending) >= self.capacity:
            served.metrics.observe_shadow("dropped")
            return
        self._pending.append((served, batch, out))

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        # Every _INTERVAL, what queued up goes out in as few requests as there are models
        # (up to _MAX_ROWS rows each): one HTTP exchange per batch, not per request.
        while not self._stop.wait(_INTERVAL):
            while self._pending:
                items, rows = [], 0
                while self._pending and rows < _MAX_ROWS:
                    item = self._pending.popleft()
                    items.append(item)
                    rows += item[1].rows
                groups: dict[int, list[tuple[Any, Batch, Output]]] = {}
                for item in items:
                    groups.setdefault(id(item[0]), []).append(item)
                for group in groups.values():
                    self._compare(group)

    def _compare(self, group: list[tuple[Any, Batch, Output]]) -> None:
        served = group[0][0]
        rows = [r for _, batch, _ in group for r in instances(batch, served.card.feature_names)]
        stable = [p for _, _, out in group for p in out.predictions]
        try:
            version, predictions = self._send(served.name, rows)
        except Exception as exc:  # a down or failing canary is counted, never raised
            log.debug("shadow request failed: %r", exc)
            served.metrics.observe_shadow("failed", count=len(group))
            return
        agree, differences = agreement(served.card.task, stable, predictions, self.tolerance)
        served.metrics.observe_shadow("compared", version, agree, differences, count=len(group))

    def _send(self, model: str, rows: list[dict[str, Any]]) -> tuple[str, list[Any]]:
        body = orjson.dumps({"model": model, "instances": rows}, option=orjson.OPT_SERIALIZE_NUMPY)
        try:
            return self._exchange(body, len(rows))
        except (http.client.RemoteDisconnected, ConnectionError):
            # A kept-alive connection the canary had closed while idle: once more, anew.
            return self._exchange(body, len(rows))

    def _exchange(self, body: bytes, rows: int) -> tuple[str, list[Any]]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=_TIMEOUT)
        try:
            self._conn.request(
                "POST",
                f"{self.base}/predict",
                body=body,
                headers={"Content-Type": "application/json", MIRROR_HEADER: "1"},
            )
            resp = self._conn.getresponse()
            payload = resp.read()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise
        if resp.will_close:
            self._conn.close()
            self._conn = None
        if resp.status != 200:
            raise RuntimeError(f"canary answered {resp.status}")
        answer = orjson.loads(payload)
        predictions = answer["predictions"]
        if len(predictions) != rows:
            raise RuntimeError("canary answered a different number of rows")
        return str(answer["model_version"]), predictions
