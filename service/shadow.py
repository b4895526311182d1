"""Shadow traffic without a mesh: a stable pod mirrors a sampled share of its
predictions to the canary Service after answering, and compares the two answers.

The request path only samples and enqueues (a few microseconds); one background
thread sends from a bounded queue over a keep-alive connection. A full queue drops
(counted), a slow or dead canary costs the stable response nothing, and every
mirrored row is counted as agreeing or not with the canary's prediction.
"""

from __future__ import annotations

import http.client
import logging
import queue
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
        self._queue: queue.Queue[tuple[Any, Batch, Output] | None] = queue.Queue(
            settings.shadow_queue
        )
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name="modelport-shadow", daemon=True)

    def start(self) -> Mirror:
        self._thread.start()
        return self

    def offer(self, served: Any, batch: Batch, out: Output) -> None:
        """Called on the request path after the response is ready: sample, enqueue."""
        if self.fraction < 1.0 and random.random() >= self.fraction:
            return
        try:
            self._queue.put_nowait((served, batch, out))
        except queue.Full:
            served.metrics.observe_shadow("dropped")

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            served, batch, out = item
            try:
                version, predictions = self._send(served, batch)
            except Exception as exc:  # a down or failing canary is counted, never raised
                log.debug("shadow request failed: %r", exc)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                served.metrics.observe_shadow("failed")
                continue
            agree, differences = agreement(
                served.card.task, out.predictions, predictions, self.tolerance
            )
            served.metrics.observe_shadow("compared", version, agree, differences)

    def _send(self, served: Any, batch: Batch) -> tuple[str, list[Any]]:
        body = orjson.dumps(
            {"model": served.name, "instances": instances(batch, served.card.feature_names)},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=_TIMEOUT)
        self._conn.request(
            "POST",
            f"{self.base}/predict",
            body=body,
            headers={"Content-Type": "application/json", MIRROR_HEADER: "1"},
        )
        resp = self._conn.getresponse()
        payload = resp.read()
        if resp.will_close:
            self._conn.close()
            self._conn = None
        if resp.status != 200:
            raise RuntimeError(f"canary answered {resp.status}")
        answer = orjson.loads(payload)
        predictions = answer["predictions"]
        if len(predictions) != batch.rows:
            raise RuntimeError("canary answered a different number of rows")
        return str(answer["model_version"]), predictions
