"""modelport's routes, mounted into the BentoML service at ``/``.

Plain Starlette routes rather than ``@bentoml.api`` methods: they skip BentoML's
per-request pydantic model and response schema work, which cost more than the model
call. Every model route goes through :mod:`service.pipeline`.
"""

from __future__ import annotations

from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from modelport import __version__
from service import v2
from service.pipeline import EXPLAIN, FEEDBACK, INFER, PREDICT, Codec
from service.transport import FastJSON, InputError, draining, error_response


def _service() -> Any:
    return bentoml.get_current_service()


def _route(codec: Codec) -> Any:
    async def endpoint(request: Request) -> Response:
        return await _service().pipeline.handle(request, codec)

    return endpoint


async def server_metadata(_: Request) -> Response:
    return FastJSON(
        {"name": "modelport", "version": __version__, "extensions": ["binary_tensor_data"]}
    )


async def live(_: Request) -> Response:
    return FastJSON({"live": True})


async def ready(_: Request) -> Response:
    ok = _service().ready
    return FastJSON({"ready": ok}, status_code=200 if ok else 503)


def _model(request: Request) -> Any:
    params = request.path_params
    return _service().models.resolve(params["name"], params.get("version"))


async def model_metadata(request: Request) -> Response:
    try:
        served = _model(request)
    except InputError as exc:
        return error_response(exc.status, exc.message)
    return FastJSON(v2.metadata(served.name, served.version, served.card))


async def model_ready(request: Request) -> Response:
    try:
        served = _model(request)
    except InputError as exc:
        return error_response(exc.status, exc.message)
    ok = not draining()
    return FastJSON({"name": served.name, "ready": ok}, status_code=200 if ok else 503)


async def list_models(_: Request) -> Response:
    models = _service().models
    return FastJSON({"models": models.describe(), "failed": models.failures})


async def openapi(request: Request) -> Response:
    from service.openapi import document

    svc = _service()
    if svc.openapi_doc is None:
        svc.openapi_doc = document(svc.models)
    return FastJSON(svc.openapi_doc)


class Routes(Starlette):
    """A Starlette app so BentoML mounts it passively (paths it does not route, such
    as ``/``, ``/readyz`` and ``/metrics``, stay BentoML's), without Starlette's own
    error and exception middleware: BentoML's app already wraps it in a pair, and a
    second pair cost ~6 % of single-row throughput."""

    def build_middleware_stack(self) -> ASGIApp:
        router = self.router

        async def routed(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await router(scope, receive, send)
            except HTTPException as exc:  # 405 on a known path: the one error body
                allowed = (exc.headers or {}).get("Allow", "")
                message = f"{scope['method']} is not allowed on {scope['path']}" + (
                    f"; allowed: {allowed}" if allowed else ""
                )
                response = error_response(exc.status_code, message)
                if allowed:
                    response.headers["Allow"] = allowed
                await response(scope, receive, send)

        return routed


def app() -> Routes:
    return Routes(
        routes=[
            Route("/predict", _route(PREDICT), methods=["POST"]),
            Route("/models/{name}/predict", _route(PREDICT), methods=["POST"]),
            Route("/explain", _route(EXPLAIN), methods=["POST"]),
            Route("/models/{name}/explain", _route(EXPLAIN), methods=["POST"]),
            Route("/feedback", _route(FEEDBACK), methods=["POST"]),
            Route("/models", list_models, methods=["GET"]),
            Route("/docs.json", openapi, methods=["GET"]),
            Route("/v2", server_metadata, methods=["GET"]),
            Route("/v2/health/live", live, methods=["GET"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
            Route("/v2/models/{name}", model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", _route(INFER), methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}", model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/infer", _route(INFER), methods=["POST"]),
        ]
    )
