"""The BentoML service: JSON predictions, Open Inference Protocol V2, feedback.

``bentoml serve service.service:ModelPort``. Models load in ``__init__`` (in each
worker, never at import); ``/readyz`` stays 503 until every model named in
``MODELPORT_MODELS`` has loaded, passed its integrity check and reproduced its
stored sample output.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, cast

import bentoml
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from modelport.settings import ServiceSettings
from service import oip
from service.monitoring import UNKNOWN_MODEL
from service.runtime import ModelSet, ServedModel
from service.validation import InputError, check_batch_size, parse_instances

log = logging.getLogger("modelport")

_VERSION = re.compile(r"^[a-z0-9]{1,32}$")  # BentoML's generated versions; bounds labels


class FeedbackItem(BaseModel):
    prediction: Any = Field(description="What the model predicted (class label or value).")
    label: Any = Field(description="The ground truth (class label or value).")


class FeedbackResponse(BaseModel):
    model_name: str
    model_version: str
    accepted: int


def error(status: int, message: str) -> JSONResponse:
    # Returned, not raised: BentoML 1.4 wraps raised 4xx errors in a list.
    return JSONResponse({"error": message}, status_code=status)


# Two per-request costs BentoML pays by default, each measured by bench/ (see
# docs/performance.md): OpenTelemetry spans, which BentoML records even when nothing
# exports them (~30 % of throughput; skipped on the inference routes), and one
# access-log line per request (~15 %; off for every route, BentoML's request metrics
# still count them). Both come back with BENTOML_CONFIG_OVERRIDES.
HOT_ROUTES = [r"/predict$", r"/infer$"]


@bentoml.service(
    name="modelport",
    workers=1,
    traffic={"timeout": 60},
    labels={"project": "modelport"},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": HOT_ROUTES},
)
@bentoml.asgi_app(oip.app, path="/", name="oip-v2")
class ModelPort:
    def __init__(self) -> None:
        import gc

        self.settings = ServiceSettings()
        self.models = ModelSet.load(self.settings)
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

    def __is_ready__(self) -> bool:
        return self.models.ready

    def _count_unknown(self, endpoint: str, status: int) -> None:
        if self.models.registry is not None:
            self.models.registry.requests.labels(UNKNOWN_MODEL, "", endpoint, str(status)).inc()

    def resolve(self, name: Any, endpoint: str) -> ServedModel:
        try:
            return self.models.get(name)
        except InputError as exc:
            self._count_unknown(endpoint, exc.status)
            raise

    def run_predict(self, instances: Any, model: Any) -> tuple[int, dict[str, Any]]:
        """``POST /predict`` and ``POST /models/{name}/predict`` (routes in
        :mod:`service.oip`): (HTTP status, JSON body; NumPy arrays allowed)."""
        start = time.perf_counter()
        try:
            served = self.resolve(model, "predict")
        except InputError as exc:
            return exc.status, {"error": exc.message}
        try:
            batch = parse_instances(instances, served.schema, self.settings.max_batch_rows)
            out = served.predict(batch)
        except InputError as exc:
            served.metrics.observe_missing(exc.missing)
            served.metrics.request("predict", exc.status)
            return exc.status, {"error": exc.message}
        except Exception:
            log.exception("prediction failed for %s", served.tag)
            served.metrics.request("predict", 500)
            return 500, {"error": "internal error; see the server log"}
        served.metrics.request("predict", 200, time.perf_counter() - start)
        return 200, {
            "model_name": served.name,
            "model_version": served.version,
            "predictions": out.predictions,
            "probabilities": out.probabilities,
        }

    @bentoml.api(route="/feedback")
    async def feedback(
        self,
        items: list[FeedbackItem] = Field(description="Predictions with their ground truth."),
        model: str | None = Field(None, description="Model name (optional with one model)."),
        model_version: str | None = Field(
            None, description="Version that made the predictions (default: the served one)."
        ),
    ) -> FeedbackResponse:
        """Record ground truth for earlier predictions (stateless; any pod may receive it)."""
        start = time.perf_counter()
        try:
            served = self.resolve(model, "feedback")
        except InputError as exc:
            return cast(FeedbackResponse, error(exc.status, exc.message))
        try:
            version = model_version or served.version
            if not _VERSION.match(version):
                raise InputError(f"model_version: {version!r} is not a model version")
            check_batch_size(len(items), self.settings.max_batch_rows, "items")
            pairs = [self._pair(served, i, item) for i, item in enumerate(items)]
        except InputError as exc:
            served.metrics.request("feedback", exc.status)
            return cast(FeedbackResponse, error(exc.status, exc.message))
        served.metrics.observe_feedback(pairs, version)
        served.metrics.request("feedback", 200, time.perf_counter() - start)
        return FeedbackResponse(model_name=served.name, model_version=version, accepted=len(pairs))

    @staticmethod
    def _pair(served: ServedModel, i: int, item: FeedbackItem) -> tuple[Any, Any]:
        import math

        values: list[Any] = []
        for key in ("prediction", "label"):
            value = getattr(item, key)
            where = f"items[{i}].{key}"
            if served.card.task == "regression":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InputError(f"{where}: expected a number, got {value!r}")
                if not math.isfinite(value):
                    raise InputError(f"{where}: must be a finite number, got {value}")
                values.append(float(value))
            else:
                classes = [str(c) for c in served.card.classes or []]
                if str(value) not in classes or isinstance(value, dict | list):
                    raise InputError(f"{where}: unknown class {value!r}; classes are {classes}")
                values.append(str(value))
        return values[0], values[1]


ModelPort.add_asgi_middleware(oip.BodyLimit)  # type: ignore[attr-defined]
