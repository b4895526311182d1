"""The hot routes: ``/predict``, Open Inference Protocol V2 (REST), the ``/models``
listing, and the body-size guard.

Plain Starlette routes mounted into the BentoML service (routes with path
parameters), sharing the service instance's models, validation and metrics.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import bentoml
import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport import __version__
from modelport.settings import ServiceSettings
from service.validation import Batch, InputError, Schema, batch_from_columns, check_batch_size

log = logging.getLogger("modelport")

_NUMERIC = {
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
}


class FastJSON(Response):
    """JSON via orjson: several times faster than ``json`` for float arrays, and it
    writes NumPy arrays directly."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _error(status: int, message: str) -> Response:
    return FastJSON({"error": message}, status_code=status)


def _service() -> Any:
    return bentoml.get_current_service()


def _shape_rows(shape: Any, where: str) -> list[int]:
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InputError(f"{where}.shape: expected a list of non-negative integers, got {shape!r}")
    return shape


def _numbers(data: Any, count: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(data, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{where}.data: expected numbers") from None
    if arr.size != count:
        raise InputError(f"{where}.data: has {arr.size} elements, the shape needs {count}")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InputError(f"{where}.data[{bad}]: must be a finite number, got {arr[bad]}")
    return arr


def parse_infer(body: Any, schema: Schema, max_rows: int) -> Batch:
    """V2 inference request -> validated batch. One [n, features] tensor (all-numeric
    models) or one named input per feature, each of shape [n] or [n, 1]."""
    if not isinstance(body, dict):
        raise InputError("body: expected a JSON object with 'inputs'")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError("inputs: expected a non-empty list of tensors")
    card = schema.card
    for i, tensor in enumerate(inputs):
        fields = {"name", "shape", "datatype", "data"}
        if not isinstance(tensor, dict) or not fields <= tensor.keys():
            raise InputError(f"inputs[{i}]: expected an object with name, shape, datatype, data")
    names = card.feature_names
    if len(inputs) == 1 and inputs[0]["name"] not in names:
        tensor, where = inputs[0], "inputs[0]"
        if any(f.kind != "numeric" for f in card.features):
            raise InputError(
                f"{where}: this model has categorical features; send one named input per feature"
            )
        if tensor["datatype"] not in _NUMERIC:
            raise InputError(
                f"{where}.datatype: {tensor['datatype']!r} is not a numeric type "
                f"(FP32, FP64, INT64, ...)"
            )
        shape = _shape_rows(tensor["shape"], where)
        if len(shape) != 2 or shape[1] != len(names):
            raise InputError(
                f"{where}.shape: expected [n, {len(names)}] "
                f"(n rows of {len(names)} features), got {shape}"
            )
        check_batch_size(shape[0], max_rows, f"{where}.shape[0]")
        return Batch(_numbers(tensor["data"], shape[0] * shape[1], where).reshape(shape))

    given = {t["name"]: (i, t) for i, t in enumerate(inputs)}
    unknown = [n for n in given if n not in names]
    if unknown:
        raise InputError(
            f"inputs: unknown input(s) {unknown[:5]}; expected one per feature: "
            f"{names[:5]}{' ...' if len(names) > 5 else ''}"
        )
    absent = [n for n in names if n not in given]
    if absent:
        raise InputError(f"inputs: missing input(s) for feature(s) {absent[:5]}", missing=absent)
    columns: dict[str, Any] = {}
    rows: int | None = None
    for spec in card.features:
        i, tensor = given[spec.name]
        where = f"inputs[{i}] ({spec.name})"
        shape = _shape_rows(tensor["shape"], where)
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise InputError(f"{where}.shape: expected [n] or [n, 1], got {shape}")
        if rows is None:
            rows = shape[0]
            check_batch_size(rows, max_rows, f"{where}.shape[0]")
        elif shape[0] != rows:
            raise InputError(f"{where}.shape: {shape[0]} rows, other inputs have {rows}")
        if spec.kind == "numeric":
            if tensor["datatype"] not in _NUMERIC:
                raise InputError(
                    f"{where}.datatype: numeric feature needs a numeric type, got "
                    f"{tensor['datatype']!r}"
                )
            columns[spec.name] = _numbers(tensor["data"], shape[0], where)
        else:
            data = tensor["data"]
            if not isinstance(data, list) or len(data) != shape[0]:
                raise InputError(f"{where}.data: expected {shape[0]} values")
            columns[spec.name] = [str(v) for v in data]
    return batch_from_columns(columns, schema)


def _outputs(served: Any, out: Any, wanted: Any) -> list[dict[str, Any]]:
    n = len(out.predictions)
    if served.card.task == "regression":
        tensors = [{"name": "predict", "shape": [n], "datatype": "FP64", "data": out.predictions}]
    else:
        ints = all(isinstance(c, int) for c in served.card.classes)
        tensors = [
            {
                "name": "predict",
                "shape": [n],
                "datatype": "INT64" if ints else "BYTES",
                "data": out.predictions if ints else [str(p) for p in out.predictions],
            },
            {
                "name": "probabilities",
                "shape": list(out.probabilities.shape),
                "datatype": "FP64",
                "data": out.probabilities.reshape(-1).tolist(),
            },
        ]
    if isinstance(wanted, list) and wanted:
        names = {w.get("name") for w in wanted if isinstance(w, dict)}
        unknown = names - {t["name"] for t in tensors}
        if unknown:
            raise InputError(
                f"outputs: unknown output(s) {sorted(map(str, unknown))}; "
                f"available: {[t['name'] for t in tensors]}"
            )
        tensors = [t for t in tensors if t["name"] in names]
    return tensors


async def server_metadata(_: Request) -> Response:
    return JSONResponse({"name": "modelport", "version": __version__, "extensions": []})


async def live(_: Request) -> Response:
    return JSONResponse({"live": True})


async def ready(_: Request) -> Response:
    ok = _service().models.ready
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


def _model(request: Request) -> Any:
    svc = _service()
    name = request.path_params["name"]
    served = svc.models.models.get(name)
    if served is None:
        raise InputError(
            f"model {name!r} is not served here; served models: "
            f"{', '.join(sorted(svc.models.models))}",
            status=404,
        )
    version = request.path_params.get("version")
    if version is not None and version != served.version:
        raise InputError(
            f"model {name!r} version {version!r} is not served here; "
            f"served version: {served.version}",
            status=404,
        )
    return served


async def model_metadata(request: Request) -> Response:
    try:
        served = _model(request)
    except InputError as exc:
        return _error(exc.status, exc.message)
    card = served.card
    inputs = [
        {"name": f.name, "datatype": "FP64" if f.kind == "numeric" else "BYTES", "shape": [-1, 1]}
        for f in card.features
    ]
    outputs = [
        {
            "name": "predict",
            "datatype": "FP64" if card.task == "regression" else "INT64",
            "shape": [-1],
        }
    ]
    if card.task == "classification":
        outputs.append(
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(card.classes or [])]}
        )
    return JSONResponse(
        {
            "name": served.name,
            "versions": [served.version],
            "platform": "sklearn" if card.framework == "sklearn" else "tensorflow",
            "inputs": inputs,
            "outputs": outputs,
        }
    )


async def model_ready(request: Request) -> Response:
    try:
        served = _model(request)
    except InputError as exc:
        return _error(exc.status, exc.message)
    return JSONResponse({"name": served.name, "ready": True})


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:  # json also reads NaN and Infinity, so validation can name the field
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"body: not valid JSON ({exc})") from None


async def infer(request: Request) -> Response:
    start = time.perf_counter()
    svc = _service()
    try:
        served = _model(request)
    except InputError as exc:
        svc._count_unknown("infer", exc.status)
        return _error(exc.status, exc.message)
    try:
        body = await _body(request)
        batch = parse_infer(body, served.schema, svc.settings.max_batch_rows)
        out = served.predict(batch)
        outputs = _outputs(served, out, body.get("outputs"))
    except InputError as exc:
        served.metrics.observe_missing(exc.missing)
        served.metrics.request("infer", exc.status)
        return _error(exc.status, exc.message)
    except Exception:
        log.exception("inference failed for %s", served.tag)
        served.metrics.request("infer", 500)
        return _error(500, "internal error; see the server log")
    served.metrics.request("infer", 200, time.perf_counter() - start)
    payload: dict[str, Any] = {
        "model_name": served.name,
        "model_version": served.version,
        "outputs": outputs,
    }
    if isinstance(body.get("id"), str):
        payload["id"] = body["id"]
    return FastJSON(payload)


async def list_models(_: Request) -> Response:
    svc = _service()
    return JSONResponse({"models": svc.models.describe(), "failed": svc.models.failures})


async def predict(request: Request) -> Response:
    """``POST /predict`` (model named in the body) and ``POST /models/{name}/predict``.

    A plain route rather than a ``@bentoml.api``: it skips BentoML's per-request
    pydantic model and response schema work, which cost more than the model call.
    """
    try:
        body = await _body(request)
        if not isinstance(body, dict):
            raise InputError("body: expected a JSON object with 'instances'")
    except InputError as exc:
        return _error(exc.status, exc.message)
    name = request.path_params.get("name", body.get("model"))
    status, payload = _service().run_predict(body.get("instances"), name)
    return FastJSON(payload, status_code=status)


# One router mounted at "/": BentoML's PassiveMount only claims paths that one of these
# routes matches, so /readyz, /metrics and the @bentoml.api routes stay BentoML's. A
# bare Router, not a Starlette app: BentoML's app already wraps it in error and
# exception middleware, and a second pair cost ~6 % of single-row throughput.
app = Router(
    routes=[
        Route("/models", list_models),
        Route("/predict", predict, methods=["POST"]),
        Route("/models/{name}/predict", predict, methods=["POST"]),
        Route("/v2", server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", model_metadata),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    ]
)


class BodyLimit:
    """413 for request bodies over MODELPORT_MAX_BODY_BYTES, before anything parses them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.limit = ServiceSettings().max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._reject(scope, receive, send)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # No length given (chunked): read up to the limit, then replay.
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._reject(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(
            413, f"body: request body exceeds {self.limit} bytes (MODELPORT_MAX_BODY_BYTES)"
        )
        await response(scope, receive, send)
