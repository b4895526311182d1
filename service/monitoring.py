"""modelport's Prometheus series (documented in docs/metrics.md).

Counters and histograms only, plus gauges in ``max`` mode, so values aggregate
across BentoML's worker processes without a ``pid`` label. Label children are
resolved once per model at load time, not per request.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from modelport.metadata import ModelCard
from modelport.predictors import Output
from service.validation import Batch

# ``variant`` (stable, canary, shadow: MODELPORT_VARIANT, set per Deployment by the chart)
# splits every series by the pod's role in a release, so a canary is judged against stable.
M = ["model_name", "model_version", "variant"]
ENDPOINTS = ("predict", "infer", "feedback", "explain")
UNKNOWN_MODEL = "_unknown"

_LATENCY = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_DIFFERENCE = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class Registry:
    """All modelport metric families; created once per process (see :func:`families`)."""

    def __init__(self, prediction_buckets: list[float]) -> None:
        self.info = Gauge(
            "modelport_model_info",
            "Served model (value 1) with framework and task.",
            [*M, "framework", "task"],
            multiprocess_mode="max",
        )
        self.test_metric = Gauge(
            "modelport_model_test_metric",
            "Held-out test metric recorded at training.",
            [*M, "metric"],
            multiprocess_mode="max",
        )
        self.http_requests = Counter(
            "modelport_http_requests",
            "Requests to the service's other routes (metadata, health, model list, "
            "OpenAPI), by route pattern and code.",
            ["route", "code"],
        )
        self.requests = Counter(
            "modelport_requests",
            "Requests by model, endpoint, status code.",
            [*M, "endpoint", "code"],
        )
        self.request_seconds = Histogram(
            "modelport_request_duration_seconds",
            "Time in the request handler.",
            [*M, "endpoint"],
            buckets=_LATENCY,
        )
        self.inference_seconds = Histogram(
            "modelport_inference_duration_seconds",
            "Time in the model call alone.",
            M,
            buckets=_LATENCY,
        )
        self.batch_size = Histogram(
            "modelport_batch_size", "Rows per model call.", M, buckets=_BATCH
        )
        self.predictions = Counter("modelport_predictions", "Predictions by class.", [*M, "class"])
        self.prediction_value = Histogram(
            "modelport_prediction_value",
            "Predicted values (regressors).",
            M,
            buckets=prediction_buckets or (0.0,),
        )
        self.drift_bin = Counter(
            "modelport_drift_bin", "Live values per training-quantile bin.", [*M, "feature", "bin"]
        )
        self.drift_reference = Gauge(
            "modelport_drift_reference_ratio",
            "Training share of each drift bin.",
            [*M, "feature", "bin"],
            multiprocess_mode="max",
        )
        self.out_of_range = Counter(
            "modelport_drift_out_of_range",
            "Values outside the training range or categories.",
            [*M, "feature"],
        )
        self.missing = Counter(
            "modelport_missing_values", "Missing (absent or null) values.", [*M, "feature"]
        )
        self.feedback = Counter(
            "modelport_feedback",
            "Feedback pairs (classifiers).",
            [*M, "predicted", "actual", "correct"],
        )
        self.feedback_n = Counter("modelport_feedback_observations", "Feedback items.", M)
        self.feedback_abs = Counter(
            "modelport_feedback_absolute_error", "Sum of |prediction - label| (regressors).", M
        )
        self.feedback_sq = Counter(
            "modelport_feedback_squared_error", "Sum of (prediction - label)^2 (regressors).", M
        )
        self.importance = Gauge(
            "modelport_feature_importance",
            "Global importance from the model card (mean |attribution| on the test split).",
            [*M, "feature"],
            multiprocess_mode="max",
        )
        self.attribution_abs = Counter(
            "modelport_attribution_abs",
            "Sum of |attribution| of rows explained live.",
            [*M, "feature"],
        )
        self.explained_rows = Counter("modelport_explained_rows", "Rows explained live.", M)
        self.shadow_mirrored = Counter(
            "modelport_shadow_mirrored",
            "Requests mirrored to the canary, by outcome (compared, dropped, failed).",
            [*M, "outcome"],
        )
        self.shadow_agreement = Counter(
            "modelport_shadow_agreement",
            "Mirrored rows whose canary prediction agreed with this pod's (class, or value "
            "within MODELPORT_SHADOW_TOLERANCE).",
            [*M, "canary_version", "agree"],
        )
        self.shadow_difference = Histogram(
            "modelport_shadow_difference",
            "|stable - canary| prediction per mirrored row (regressors).",
            [*M, "canary_version"],
            buckets=_DIFFERENCE,
        )


_REGISTRY: Registry | None = None


def families(prediction_buckets: list[float]) -> Registry:
    """The process's metric families (prometheus_client refuses duplicates)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry(prediction_buckets)
    return _REGISTRY


class PendingHistogram:
    """A histogram child's observations summed in memory (bucket counts and sum) and
    added to it on :meth:`flush`: a multiprocess-file write per bucket per flush, not
    two per observation. The caller holds the owning :class:`ModelMetrics`' lock."""

    def __init__(self, child: Any) -> None:
        self.child = child
        # prometheus_client's own layout: non-cumulative buckets, each observation in the
        # first bucket whose upper bound is >= it (the last bound is +Inf).
        self.bounds = [float(b) for b in child._upper_bounds]
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.dirty = False

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.dirty = True

    def flush(self) -> None:
        if not self.dirty:
            return
        counts, self.counts = self.counts, [0] * len(self.bounds)
        total, self.total, self.dirty = self.total, 0.0, False
        self.child._sum.inc(total)
        for i, n in enumerate(counts):
            if n:
                self.child._buckets[i].inc(n)


class PendingCounter:
    """A counter child's increments summed in memory, added on :meth:`flush`."""

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n = 0

    def inc(self, n: int = 1) -> None:
        self.n += n

    def flush(self) -> None:
        if self.n:
            n, self.n = self.n, 0
            self.child.inc(n)


@dataclass
class ModelMetrics:
    """Pre-resolved label children for one served model, and the drift-bin layout
    as arrays so a request's bins are counted in a few vectorised steps."""

    reg: Registry
    name: str
    version: str
    card: ModelCard
    monitored: int
    enabled: bool = True
    variant: str = "stable"
    deferred: bool = False  # drift counts wait for a Flusher instead of each request
    _classes: dict[str, Any] = field(default_factory=dict)
    _requests: dict[tuple[str, int], Any] = field(default_factory=dict)

    MAX_WAITING = 8192  # rows waiting to be binned (see __post_init__)
    CHUNK = 512  # rows binned per slice (see _bin_waiting)

    def __post_init__(self) -> None:
        r, lv = self.reg, (self.name, self.version, self.variant)
        self.labels = lv
        r.info.labels(*lv, self.card.framework, self.card.task).set(1)
        for metric, value in self.card.evaluation.test.items():
            r.test_metric.labels(*lv, metric).set(value)
        specs = {f.name: f for f in self.card.features}
        numeric = [f.name for f in self.card.features if f.kind == "numeric"]
        refs = [ref for ref in self.card.drift.features[: self.monitored] if ref.feature in numeric]
        width = max((len(ref.ratios) for ref in refs), default=1)
        # Column of each monitored feature in Batch.numeric; its edges padded with +inf
        # (no value lies above +inf, so padding never moves a value's bin).
        self._columns = np.asarray([numeric.index(ref.feature) for ref in refs], dtype=int)
        self._edges = np.full((len(refs), max(width - 1, 1)), np.inf)
        self._bins: list[Any] = [None] * (len(refs) * width)
        self._width = width
        for j, ref in enumerate(refs):
            self._edges[j, : len(ref.edges)] = ref.edges
            for i, ratio in enumerate(ref.ratios):
                self._bins[j * width + i] = r.drift_bin.labels(*lv, ref.feature, str(i))
                r.drift_reference.labels(*lv, ref.feature, str(i)).set(ratio)
        # A request's numeric rows wait here and are binned in one vectorised step per
        # flush (Flusher): counting a single row's 30 bins as it came cost ~9 µs of
        # Python per request (30 bisects and array increments), binning it with
        # thousands of others ~0.3 µs. At most MAX_WAITING rows wait; past that the
        # request that overflows bins them (memory stays bounded if flushes lag).
        self._waiting: list[np.ndarray] = []
        self._waiting_rows = 0
        self._lock = threading.Lock()
        self._lo = np.asarray([_bound(specs[ref.feature].min, -np.inf) for ref in refs])
        self._hi = np.asarray([_bound(specs[ref.feature].max, np.inf) for ref in refs])
        self._outside = [r.out_of_range.labels(*lv, ref.feature) for ref in refs]
        self._categorical = [
            f for f in self.card.features if f.kind == "categorical" and f.categories is not None
        ]
        # The per-request series (classes, latency, batch size, values) add up here too
        # and reach prometheus_client on the same flush: seven file writes per request
        # cost ~15 % of single-row throughput once requests took ~160 µs of CPU.
        for cls in self.card.classes or []:
            self._classes[str(cls)] = PendingCounter(r.predictions.labels(*lv, str(cls)))
        self.inference = PendingHistogram(r.inference_seconds.labels(*lv))
        self.batch = PendingHistogram(r.batch_size.labels(*lv))
        self.values = PendingHistogram(r.prediction_value.labels(*lv))
        self.latency = {e: PendingHistogram(r.request_seconds.labels(*lv, e)) for e in ENDPOINTS}
        self._series: list[Any] = [
            *self._classes.values(),
            self.inference,
            self.batch,
            self.values,
            *self.latency.values(),
        ]
        features = self.card.feature_names
        if self.card.importance is not None:
            for feature, weight in self.card.importance.values.items():
                r.importance.labels(*lv, feature).set(weight)
        self._attribution = [r.attribution_abs.labels(*lv, f) for f in features]
        self._explained = r.explained_rows.labels(*lv)

    def request(self, endpoint: str, code: int, seconds: float | None = None) -> None:
        key = (endpoint, code)
        with self._lock:
            pending = self._requests.get(key)
            if pending is None:
                pending = self._requests[key] = PendingCounter(
                    self.reg.requests.labels(*self.labels, endpoint, str(code))
                )
                self._series.append(pending)
            pending.inc()
            timed = seconds is not None and self.enabled
            if timed:
                self.latency[endpoint].observe(seconds)  # type: ignore[arg-type]
        if self.deferred:
            return
        if timed:  # no Flusher: flushing on every request
            self.flush()
        else:  # monitoring off: only the request count, as it comes
            pending.flush()

    def drift_counts(self, numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(monitored features x bins) counts of ``numeric``'s rows, and per-feature
        out-of-range counts. Bin rule as :func:`modelport.metadata.assign_bins`:
        a value's bin is the number of edges strictly below it."""
        values = numeric[:, self._columns]  # (n, F)
        # searchsorted(side="left") is the number of edges strictly below each value:
        # a binary search per value, where comparing with every edge (an n x F x bins
        # array) cost most of a 1000-row request's monitoring.
        parts = [
            np.searchsorted(self._edges[j], values[:, j], side="left") + j * self._width
            for j in range(len(self._columns))
        ]
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        counts = np.bincount(flat, minlength=len(self._bins))
        outside = ((values < self._lo) | (values > self._hi)).sum(axis=0)
        return counts.reshape(len(self._columns), self._width), outside

    def observe_inputs(self, batch: Batch) -> None:
        if not self.enabled:
            return
        if len(self._columns):
            # The block is kept as it is: nothing writes into a validated batch
            # (predictors transform copies), so no copy is needed.
            with self._lock:
                self._waiting.append(batch.numeric)
                self._waiting_rows += batch.rows
                overflowing = self._waiting_rows >= self.MAX_WAITING
            if overflowing or not self.deferred:
                self._bin_waiting()
        if self._categorical and batch.frame is not None:
            for spec in self._categorical:
                unseen = int((~batch.frame[spec.name].isin(spec.categories)).sum())
                if unseen:
                    self.reg.out_of_range.labels(*self.labels, spec.name).inc(unseen)

    def _bin_waiting(self, pause: Callable[[], None] | None = None) -> None:
        with self._lock:
            blocks, self._waiting, self._waiting_rows = self._waiting, [], 0
        if not blocks:
            return
        # In slices of CHUNK rows, with ``pause`` (the Flusher's yield of the GIL)
        # between them: binning 6 000 rows at once held the GIL for ~4 ms, a stall
        # every request in flight waited out (p99 at 32 clients went from 1.5 to 2.2
        # times p50); a slice takes ~0.3 ms.
        flat = np.zeros(len(self._bins), dtype=np.int64)
        outside = np.zeros(len(self._outside), dtype=np.int64)
        part: list[np.ndarray] = []
        rows = 0
        for i, block in enumerate(blocks, 1):
            part.append(block)
            rows += len(block)
            if rows < self.CHUNK and i < len(blocks):
                continue
            counts, out = self.drift_counts(part[0] if len(part) == 1 else np.concatenate(part))
            flat += counts.ravel()
            outside += out
            part, rows = [], 0
            if pause is not None and i < len(blocks):
                pause()
        updates = [(self._bins[i], int(flat[i])) for i in np.flatnonzero(flat).tolist()]
        updates += [(self._outside[j], int(outside[j])) for j in np.flatnonzero(outside).tolist()]
        for k, (child, n) in enumerate(updates, 1):
            child.inc(n)
            if pause is not None and k % 64 == 0:  # ~1.5 µs a multiprocess-file write
                pause()

    def flush(self, pause: Callable[[], None] | None = None) -> None:
        """Move what waits (rows to bin into drift counts; request, class and histogram
        counts) into the Prometheus series; ``pause`` between slices of the work."""
        with self._lock:
            for series in self._series:
                series.flush()
        self._bin_waiting(pause)

    def observe_missing(self, features: list[str]) -> None:
        for feature in features:
            self.reg.missing.labels(*self.labels, feature).inc()

    def observe_outputs(self, out: Output, seconds: float) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._observe_outputs(out, seconds)
        if not self.deferred:
            self.flush()

    def _observe_outputs(self, out: Output, seconds: float) -> None:
        self.inference.observe(seconds)
        self.batch.observe(len(out.predictions))
        if self.card.task == "regression":
            for v in out.predictions:
                self.values.observe(float(v))
            return
        assert out.probabilities is not None
        if len(out.predictions) == 1:
            self._classes[str(out.predictions[0])].inc()
            return
        counts = np.bincount(out.probabilities.argmax(axis=1), minlength=len(self._classes))
        for label, count in zip(self._classes.values(), counts.tolist(), strict=True):
            if count:
                label.inc(count)

    def observe_explanation(self, attributions: np.ndarray) -> None:
        """``attributions``: (rows, outputs, features); the first output is the one
        every request has (the predicted class's probability, or the value)."""
        rows = attributions.shape[0]
        if not rows:
            return
        sums = np.abs(attributions[:, 0, :]).sum(axis=0)
        for child, total in zip(self._attribution, sums.tolist(), strict=True):
            if total:
                child.inc(total)
        self._explained.inc(rows)

    def observe_shadow(
        self,
        outcome: str,
        canary_version: str = "",
        agree: list[bool] | None = None,
        differences: list[float] | None = None,
        count: int = 1,
    ) -> None:
        """``count`` mirrored requests with ``outcome``; their rows' agreement."""
        r = self.reg
        r.shadow_mirrored.labels(*self.labels, outcome).inc(count)
        if agree:
            yes = sum(agree)
            if yes:
                r.shadow_agreement.labels(*self.labels, canary_version, "true").inc(yes)
            if len(agree) - yes:
                r.shadow_agreement.labels(*self.labels, canary_version, "false").inc(
                    len(agree) - yes
                )
        for d in differences or []:
            r.shadow_difference.labels(*self.labels, canary_version).observe(d)

    def observe_feedback(self, pairs: list[tuple[Any, Any]], version: str) -> None:
        lv = (self.name, version, self.variant)
        r = self.reg
        r.feedback_n.labels(*lv).inc(len(pairs))
        if self.card.task == "regression":
            err = np.asarray([float(p) - float(a) for p, a in pairs])
            r.feedback_abs.labels(*lv).inc(float(np.abs(err).sum()))
            r.feedback_sq.labels(*lv).inc(float((err**2).sum()))
            return
        for p, a in pairs:
            r.feedback.labels(*lv, str(p), str(a), "true" if str(p) == str(a) else "false").inc()


def _yield() -> None:
    # Not sleep(0): slices back to back still added up to a stall for a request in
    # flight (~2.5 ms at 32 clients); 2 ms apart, a request meets at most one.
    time.sleep(0.002)


class Flusher:
    """Flushes every model's pending drift counts every ``interval`` seconds, from a
    daemon thread; :meth:`stop` (the service's shutdown hook) flushes the rest."""

    def __init__(self, metrics: list[ModelMetrics], interval: float) -> None:
        self.metrics = metrics
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelport-flush", daemon=True)

    def start(self) -> Flusher:
        for m in self.metrics:
            m.deferred = True
        self._thread.start()
        return self

    def flush(self) -> None:
        for m in self.metrics:
            m.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for m in self.metrics:
                m.flush(pause=_yield)  # the serving thread runs between slices

    def stop(self) -> None:
        self._stop.set()
        self.flush()


def _bound(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def prediction_buckets(cards: list[ModelCard]) -> list[float]:
    """Union of the regressors' training quantiles (one histogram has one bucket list)."""
    bounds = sorted({float(f"{b:.4g}") for c in cards for b in (c.drift.prediction_buckets or [])})
    if len(bounds) > 40:
        bounds = bounds[:: len(bounds) // 40 + 1]
    return bounds
