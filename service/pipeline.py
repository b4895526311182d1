"""The one request pipeline of every model route: decode -> resolve the model ->
validate -> predict (or explain, or record feedback) -> observe -> encode.

A protocol is a :class:`Codec`: how its bodies decode, validate against the model's
schema and encode. Everything else — the model lookup, the error body, the request
metrics, what is logged — happens once, here, for every route.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import CoroutineType
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from modelport.settings import ServiceSettings
from service import v2
from service.monitoring import UNKNOWN_MODEL
from service.runtime import ModelSet, ServedModel
from service.shadow import MIRROR_HEADER, Mirror
from service.transport import (
    BINARY_HEADER,
    FastJSON,
    InputError,
    check_json_content_type,
    error_response,
    parse_json,
    show,
)
from service.validation import check_batch_size, parse_instances

log = logging.getLogger("modelport")

_VERSION = re.compile(r"^[a-z0-9]{1,32}$")  # BentoML's generated versions; bounds labels


@dataclass
class Call:
    """A decoded request: which model it names (None: the only one served) and the
    protocol's own payload."""

    model: Any
    version: Any
    payload: Any


class Codec(ABC):
    """One protocol's stages. ``endpoint`` labels its metrics."""

    endpoint: str

    @abstractmethod
    def decode(self, request: Request, raw: bytes) -> Call: ...

    @abstractmethod
    def validate(self, call: Call, served: ServedModel, settings: ServiceSettings) -> Any: ...

    def run(self, call: Call, served: ServedModel, valid: Any) -> Any:
        return served.predict(valid)

    @abstractmethod
    def encode(self, call: Call, served: ServedModel, result: Any) -> Response: ...

    def mirrored(self, valid: Any, result: Any) -> tuple[Any, Any] | None:
        """(batch, output) to mirror to a canary, for prediction routes."""
        return None


class Pipeline:
    def __init__(
        self, models: ModelSet, settings: ServiceSettings, mirror: Mirror | None = None
    ) -> None:
        self.models = models
        self.settings = settings
        self.mirror = mirror

    async def handle(self, request: Request, codec: Codec) -> Response:
        start = time.perf_counter()
        served: ServedModel | None = None
        try:
            path = request.path_params
            if "name" in path:  # a model named in the path is looked up first: 404 before 400
                served = self.models.resolve(path["name"], path.get("version"))
            call = codec.decode(request, await request.body())
            if served is None:
                served = self.models.resolve(call.model, call.version)
            valid = codec.validate(call, served, self.settings)
            result = codec.run(call, served, valid)
            # Slow stages run off the event loop and hand back a coroutine (checking the
            # exact type costs a fraction of inspect.isawaitable's ABC lookups).
            if type(result) is CoroutineType:
                result = await result
            response = codec.encode(call, served, result)
        except InputError as exc:
            self._failed(served, codec.endpoint, exc.status, exc.missing)
            log.debug("%s %s: %s", codec.endpoint, exc.status, exc.message)
            return error_response(exc.status, exc.message)
        except Exception:
            log.exception("%s failed for %s", codec.endpoint, served.tag if served else "?")
            self._failed(served, codec.endpoint, 500, [])
            return error_response(500, "internal error; see the server log")
        served.metrics.request(codec.endpoint, 200, time.perf_counter() - start)
        if self.mirror is not None and MIRROR_HEADER not in request.headers:
            shadow = codec.mirrored(valid, result)
            if shadow is not None:
                self.mirror.offer(served, *shadow)
        return response

    def _failed(
        self, served: ServedModel | None, endpoint: str, status: int, missing: list[str]
    ) -> None:
        if served is not None:
            served.metrics.observe_missing(missing)
            served.metrics.request(endpoint, status)
        elif self.models.registry is not None:
            self.models.registry.requests.labels(
                UNKNOWN_MODEL, "", self.settings.variant, endpoint, str(status)
            ).inc()


def json_object(request: Request, raw: bytes, fields: str) -> dict[str, Any]:
    check_json_content_type(request.headers)
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise InputError(f"body: expected a JSON object with {fields}")
    return body


class Predict(Codec):
    """``POST /predict`` (model named in the body) and ``POST /models/{name}/predict``."""

    endpoint = "predict"

    def decode(self, request: Request, raw: bytes) -> Call:
        body = json_object(request, raw, "'instances'")
        return Call(request.path_params.get("name", body.get("model")), None, body)

    def validate(self, call: Call, served: ServedModel, settings: ServiceSettings) -> Any:
        return parse_instances(
            call.payload.get("instances"), served.schema, settings.max_batch_rows
        )

    def mirrored(self, valid: Any, result: Any) -> tuple[Any, Any] | None:
        return valid, result

    def encode(self, call: Call, served: ServedModel, result: Any) -> Response:
        return FastJSON(
            {
                "model_name": served.name,
                "model_version": served.version,
                "predictions": result.predictions,
                "probabilities": result.probabilities,
            }
        )


class Infer(Codec):
    """Open Inference Protocol V2 ``POST /v2/models/{name}[/versions/{v}]/infer``."""

    endpoint = "infer"

    def decode(self, request: Request, raw: bytes) -> Call:
        if BINARY_HEADER not in request.headers:
            check_json_content_type(
                request.headers, " (or binary tensors with Inference-Header-Content-Length)"
            )
        params = request.path_params
        return Call(params["name"], params.get("version"), v2.decode(raw, request.headers))

    def validate(self, call: Call, served: ServedModel, settings: ServiceSettings) -> Any:
        req: v2.InferRequest = call.payload
        wants = req.parameters.get("explain", False)
        if not isinstance(wants, bool):
            raise InputError(f"parameters.explain: expected true or false, got {show(wants)}")
        if wants and not settings.explain:
            raise InputError("explanations are turned off on this server (MODELPORT_EXPLAIN)", 404)
        _, available = v2.tensors(served.card, explain=wants)
        specs = v2.select(req, available)
        return v2.validate(req, served.schema, settings.max_batch_rows), specs, wants, settings

    def run(self, call: Call, served: ServedModel, valid: Any) -> Any:
        batch, specs, wants, settings = valid
        out = served.predict(batch)
        if not wants:
            return out, specs, None
        explained = explain(served, batch, False, settings, "inputs")
        if not inspect.isawaitable(explained):
            return out, specs, explained

        async def later() -> Any:
            return out, specs, await explained

        return later()

    def mirrored(self, valid: Any, result: Any) -> tuple[Any, Any] | None:
        return valid[0], result[0]

    def encode(self, call: Call, served: ServedModel, result: Any) -> Response:
        out, specs, explained = result
        values = {"predict": np.asarray(out.predictions)}
        if out.probabilities is not None:
            values["probabilities"] = out.probabilities
        parameters = None
        if explained is not None:
            values["attributions"] = explained.attributions[:, 0, :]
            values["base_values"] = explained.base_values[:, 0]
            parameters = {"explain_method": explained.method, "explain_output": explained.output}
        body, headers = v2.encode(
            call.payload, served.name, served.version, specs, values, parameters
        )
        media = "application/octet-stream" if headers else "application/json"
        return Response(body, headers=headers, media_type=media)


class Feedback(Codec):
    """``POST /feedback``: ground truth for earlier predictions (stateless)."""

    endpoint = "feedback"

    def decode(self, request: Request, raw: bytes) -> Call:
        body = json_object(request, raw, "'items'")
        version = body.get("model_version")
        if version is not None and not (isinstance(version, str) and _VERSION.match(version)):
            raise InputError(f"model_version: {show(version)} is not a model version")
        return Call(body.get("model"), None, body)

    def validate(self, call: Call, served: ServedModel, settings: ServiceSettings) -> Any:
        items = call.payload.get("items")
        if not isinstance(items, list):
            raise InputError(f"items: expected a list of {{prediction, label}}, got {show(items)}")
        check_batch_size(len(items), settings.max_batch_rows, "items")
        return [_pair(served, i, item) for i, item in enumerate(items)]

    def run(self, call: Call, served: ServedModel, valid: Any) -> Any:
        version = call.payload.get("model_version") or served.version
        served.metrics.observe_feedback(valid, version)
        return version, len(valid)

    def encode(self, call: Call, served: ServedModel, result: Any) -> Response:
        version, accepted = result
        return FastJSON({"model_name": served.name, "model_version": version, "accepted": accepted})


def _pair(served: ServedModel, i: int, item: Any) -> tuple[Any, Any]:
    if not isinstance(item, dict):
        raise InputError(f"items[{i}]: expected an object with prediction and label")
    values: list[Any] = []
    for key in ("prediction", "label"):
        where = f"items[{i}].{key}"
        if key not in item:
            raise InputError(f"{where}: missing")
        value = item[key]
        if served.card.task == "regression":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"{where}: expected a number, got {show(value)}")
            try:
                number = float(value)
            except OverflowError:  # an integer past float's range
                number = float("inf")
            if not np.isfinite(number):
                raise InputError(f"{where}: must be a finite number, got {show(value)}")
            values.append(number)
        else:
            classes = [str(c) for c in served.card.classes or []]
            if isinstance(value, dict | list) or str(value) not in classes:
                raise InputError(f"{where}: unknown class {show(value)}; classes are {classes}")
            values.append(str(value))
    return values[0], values[1]


class Explain(Predict):
    """``POST /explain`` and ``POST /models/{name}/explain``: the prediction with a base
    value and one attribution per input feature, which add up to the output."""

    endpoint = "explain"

    def decode(self, request: Request, raw: bytes) -> Call:
        call = super().decode(request, raw)
        every = call.payload.get("all_classes", False)
        if not isinstance(every, bool):
            raise InputError(f"all_classes: expected true or false, got {show(every)}")
        return call

    def validate(self, call: Call, served: ServedModel, settings: ServiceSettings) -> Any:
        if not settings.explain:
            raise InputError("explanations are turned off on this server (MODELPORT_EXPLAIN)", 404)
        return super().validate(call, served, settings), settings

    def run(self, call: Call, served: ServedModel, valid: Any) -> Any:
        batch, settings = valid
        return explain(served, batch, call.payload.get("all_classes", False), settings, "instances")

    def mirrored(self, valid: Any, result: Any) -> tuple[Any, Any] | None:
        return None

    def encode(self, call: Call, served: ServedModel, result: Any) -> Response:
        return FastJSON(
            {
                "model_name": served.name,
                "model_version": served.version,
                "method": result.method,
                "output": result.output,
                "tolerance": result.tolerance,
                "explanations": result.rows(),
            }
        )


def explain(
    served: ServedModel, batch: Any, every: bool, settings: ServiceSettings, where: str
) -> Any:
    """The batch's explanation. Exact methods take well under a millisecond: inline.
    Building an explainer (the first time) and sampled methods take seconds: in a
    thread, so the event loop keeps serving other requests meanwhile."""
    from modelport.explain import BudgetExceededError

    budget = settings.explain_budget_seconds

    def checked(explainer: Any) -> Any:
        if explainer.sampled and batch.rows > settings.explain_max_rows:
            raise InputError(
                f"{where}: {batch.rows} rows exceed the limit of {settings.explain_max_rows} "
                f"per request for {explainer.method} explanations (MODELPORT_EXPLAIN_MAX_ROWS)",
                status=413,
            )
        return explainer

    def work(explainer: Any) -> Any:
        try:
            out = explainer.explain(batch.model_input, all_classes=every, budget_seconds=budget)
        except BudgetExceededError as exc:
            raise InputError(
                f"explanation by {explainer.method} exceeded its budget of {budget:g}s after "
                f"{exc.rows_done} of {batch.rows} rows (MODELPORT_EXPLAIN_BUDGET_SECONDS); "
                "send fewer rows",
                status=503,
            ) from None
        served.metrics.observe_explanation(out.attributions)
        return out

    ready = served.built_explainer
    if ready is not None and not ready.sampled:
        return work(checked(ready))

    async def slow() -> Any:
        import anyio.to_thread

        explainer = checked(await anyio.to_thread.run_sync(served.explainer))
        if not explainer.sampled:
            return work(explainer)
        return await anyio.to_thread.run_sync(work, explainer)

    return slow()


PREDICT = Predict()
INFER = Infer()
FEEDBACK = Feedback()
EXPLAIN = Explain()
