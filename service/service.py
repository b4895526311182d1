"""The BentoML service: JSON predictions, Open Inference Protocol V2, feedback.

``bentoml serve service.service:ModelPort``. Models load in ``__init__`` (in each
worker, never at import); ``/readyz`` stays 503 until every model named in
``MODELPORT_MODELS`` has loaded, passed its integrity check and reproduced its
stored sample output, and turns 503 again once the pod drains (modelport.drain).
The routes are in :mod:`service.routes`; every model route runs
:class:`service.pipeline.Pipeline`.
"""

from __future__ import annotations

import logging
from typing import Any

import bentoml

from modelport.settings import ServiceSettings
from service import accept, routes
from service.pipeline import Pipeline
from service.runtime import ModelSet
from service.shadow import Mirror
from service.transport import Deadline, Guard, draining

log = logging.getLogger("modelport")

# Two per-request costs BentoML pays by default, each measured by bench/ (see
# docs/performance.md): OpenTelemetry spans, which BentoML records even when nothing
# exports them (~30 % of throughput; skipped on the model routes), and one
# access-log line per request (~15 %; off for every route, BentoML's request metrics
# still count them). Both come back with BENTOML_CONFIG_OVERRIDES.
HOT_ROUTES = [r"/predict$", r"/infer$", r"/explain$", r"/feedback$"]


def _own_timeout() -> None:
    """``traffic.timeout`` enforced by :class:`service.transport.Deadline` instead of
    BentoML's TimeoutMiddleware, whose per-request timers were the tail (see
    Deadline). BentoML looks the class up in this module when it builds the app (in
    the worker, after importing this module); tests/service/test_deadline.py fails if
    a BentoML upgrade stops doing so."""
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = Deadline  # type: ignore[misc,assignment]


_own_timeout()
accept.install()  # the worker's event loop drains the accept queue: see service.accept


@bentoml.service(
    name="modelport",
    workers=1,
    traffic={"timeout": 60},
    labels={"project": "modelport"},
    logging={"access": {"enabled": False}},
    # BentoML's request metrics (bentoml_service_request_*) cost ~5 % of throughput
    # per request and duplicate modelport_requests_total and its latency histogram;
    # off, which also drops BentoML's /metrics: service.routes serves it.
    metrics={"enabled": False, "namespace": "bentoml_service"},
    tracing={"excluded_urls": HOT_ROUTES},
)
@bentoml.asgi_app(routes.app(), path="/", name="modelport-routes")
class ModelPort:
    def __init__(self) -> None:
        import gc

        if log.level == logging.NOTSET:  # BentoML sets up its own loggers only
            log.setLevel(logging.INFO)  # which form each model serves in, mirroring, ...
        self.settings = ServiceSettings()
        self.models = ModelSet.load(self.settings)
        self.mirror: Mirror | None = None
        if self.settings.shadow_url:
            try:
                self.mirror = Mirror(self.settings).start()
                log.info(
                    "mirroring %g of predictions to %s",
                    self.settings.shadow_fraction,
                    self.settings.shadow_url,
                )
            except ValueError as exc:  # a bad setting keeps the pod unready, with the reason
                self.models.failures["shadow"] = str(exc)
                log.error("not ready: %s", exc)
        self.pipeline = Pipeline(self.models, self.settings, self.mirror)
        self.openapi_doc: dict[str, Any] | None = None
        # Models and libraries are loaded for good: move them out of the collector's
        # view, so full collections under load stop scanning them (the p99 spikes).
        # No gc.collect() first: the little garbage frozen with them costs less than
        # the ~0.1 s a full collection adds to every cold start.
        gc.freeze()

    @bentoml.on_shutdown
    def flush_metrics(self) -> None:
        """Drift counts still pending at shutdown reach their counters (BentoML calls
        this after the in-flight requests have finished)."""
        if self.models.flusher is not None:
            self.models.flusher.stop()
        if self.mirror is not None:
            self.mirror.stop()

    @property
    def ready(self) -> bool:
        return self.models.ready and not draining()

    def __is_ready__(self) -> bool:
        return self.ready


ModelPort.add_asgi_middleware(Guard)  # type: ignore[attr-defined]
ModelPort.add_asgi_middleware(routes.Direct)  # type: ignore[attr-defined]
