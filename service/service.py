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
from service import routes, worker
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


def _cheap_exclusions() -> None:
    """BentoML's tracing middleware decides that a route is excluded only after
    building the request's full URL (~5 µs per request, ~6 % of a single-row
    request's time). With modelport's own exclusions (HOT_ROUTES: patterns anchored
    at the path's end, which the URL shares) the path alone gives the same answer;
    any other ``tracing.excluded_urls`` keeps OpenTelemetry's own check. Looked up by
    BentoML when it builds the app, like TimeoutMiddleware above
    (tests/service/test_deadline.py checks both still take effect)."""
    import re

    from opentelemetry.instrumentation import asgi

    base = asgi.OpenTelemetryMiddleware
    if getattr(base, "modelport", False):
        return
    hot = re.compile("|".join(HOT_ROUTES))

    class Tracing(base):  # type: ignore[misc,valid-type]
        modelport = True

        def __init__(self, app: Any, excluded_urls: Any = None, **kwargs: Any) -> None:
            super().__init__(app, excluded_urls=excluded_urls, **kwargs)
            ours = list(getattr(excluded_urls, "_excluded_urls", None) or []) == HOT_ROUTES
            self.untraced = hot if ours else None

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if (
                self.untraced is not None
                and scope["type"] == "http"
                and self.untraced.search(scope["path"])
            ):
                await self.app(scope, receive, send)
                return
            await super().__call__(scope, receive, send)

    asgi.OpenTelemetryMiddleware = Tracing  # type: ignore[misc,assignment]


def _tune_worker() -> None:
    """What only BentoML's worker process needs: the supervisor imports this module
    too, and OpenTelemetry's ASGI middleware alone would add ~17 ms to its start."""
    if not worker.in_worker():
        return
    _cheap_exclusions()
    worker.install()  # its event loop and HTTP protocol: see service.worker


_tune_worker()


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
