"""modelport's routes, mounted into the BentoML service at ``/``.

Plain Starlette routes rather than ``@bentoml.api`` methods: they skip BentoML's
per-request pydantic model and response schema work, which cost more than the model
call. Every model route goes through :mod:`service.pipeline`.
"""

from __future__ import annotations

import functools
from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport import __version__
from service import v2
from service.pipeline import EXPLAIN, FEEDBACK, INFER, PREDICT, Codec
from service.transport import FastJSON, InputError, draining, error_response


@functools.cache
def _current() -> Any:
    # bentoml's lazy module __getattr__ costs ~3 µs per attribute access: resolved once.
    return bentoml.get_current_service


def _service() -> Any:
    return _current()()


def _route(codec: Codec) -> Any:
    async def endpoint(request: Request) -> Response:
        return await _service().pipeline.handle(request, codec)

    return endpoint


def _count(route: str, status: int) -> None:
    """Requests to the routes that are not model routes (those count in
    ``modelport_requests_total``): BentoML's own request metrics are off."""
    registry = _service().models.registry
    if registry is not None:
        registry.http_requests.labels(route, str(status)).inc()


def _counted(route: str, handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        response: Response = await handler(request)
        _count(route, response.status_code)
        return response

    return endpoint


async def metrics(_: Request) -> Response:
    """Prometheus text for every worker's series (multiprocess mode). Served here
    because BentoML's request metrics, and with them its ``/metrics``, are off (see
    service.service)."""
    import anyio.to_thread
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    flusher = _service().models.flusher
    if flusher is not None:  # this worker's counts are exact; others' lag <= one flush
        flusher.flush()

    def scrape() -> bytes:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)

    return Response(await anyio.to_thread.run_sync(scrape), media_type=CONTENT_TYPE_LATEST)


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
                _count(_template(router, scope), exc.status_code)
                allowed = (exc.headers or {}).get("Allow", "")
                message = f"{scope['method']} is not allowed on {scope['path']}" + (
                    f"; allowed: {allowed}" if allowed else ""
                )
                response = error_response(exc.status_code, message)
                if allowed:
                    response.headers["Allow"] = allowed
                await response(scope, receive, send)

        return routed


def _template(router: Any, scope: Scope) -> str:
    """The route pattern a request matched (a bounded label, unlike its path)."""
    for route in router.routes:
        if route.matches(scope)[0] != Match.NONE:
            return str(route.path)
    return "(none)"


def _get(path: str, handler: Any) -> Route:
    return Route(path, _counted(path, handler), methods=["GET"])


@functools.cache
def app() -> Routes:
    """The one route table (cached: :class:`Direct` serves its model routes)."""
    return Routes(
        routes=[
            Route("/predict", _route(PREDICT), methods=["POST"]),
            Route("/models/{name}/predict", _route(PREDICT), methods=["POST"]),
            Route("/explain", _route(EXPLAIN), methods=["POST"]),
            Route("/models/{name}/explain", _route(EXPLAIN), methods=["POST"]),
            Route("/feedback", _route(FEEDBACK), methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            _get("/models", list_models),
            _get("/docs.json", openapi),
            _get("/v2", server_metadata),
            _get("/v2/health/live", live),
            _get("/v2/health/ready", ready),
            _get("/v2/models/{name}", model_metadata),
            _get("/v2/models/{name}/ready", model_ready),
            Route("/v2/models/{name}/infer", _route(INFER), methods=["POST"]),
            _get("/v2/models/{name}/versions/{version}", model_metadata),
            _get("/v2/models/{name}/versions/{version}/ready", model_ready),
            Route("/v2/models/{name}/versions/{version}/infer", _route(INFER), methods=["POST"]),
        ]
    )


class Direct:
    """The model routes (every POST route of :func:`app`: predict, explain, feedback,
    V2 infer) served straight from modelport's outermost middleware, after
    :class:`service.transport.Guard`, by the same endpoints and route patterns.

    The way through BentoML's app to a mounted route is six more layers (exception
    middleware, BentoML's request context, its router, the passive mount, this app's
    router, Starlette's request wrapper): about a fifth of a single-row request's
    CPU time (py-spy, /predict at 32 clients), none of it needed here. The other
    routes (``/readyz``, ``/metrics``, docs, GETs, wrong methods) go that way still.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self.hot = [
            (route, route.endpoint)
            for route in app().routes
            if isinstance(route, Route) and route.methods and "POST" in route.methods
        ]
        # Paths without parameters by a dict lookup instead of a regex per route.
        self.static = {
            route.path: endpoint for route, endpoint in self.hot if not route.param_convertors
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.static.get(scope["path"])
            if endpoint is not None and not scope.get("root_path"):
                scope["endpoint"], scope["path_params"] = endpoint, {}
                await self._serve(endpoint, scope, receive, send)
                return
            for route, endpoint in self.hot:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    await self._serve(endpoint, scope, receive, send)
                    return
        await self.inner(scope, receive, send)

    @staticmethod
    async def _serve(endpoint: Any, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body"):
            # A body in one message (the usual case) handed to the Request as read:
            # Starlette's body() would read it through an async generator (~1.5 µs).
            request = Request(scope, receive, send)
            request._body = message.get("body", b"")
        else:
            request = Request(scope, _replay(message, receive), send)
        response = await endpoint(request)
        await response(scope, receive, send)


def _replay(first: Message, receive: Receive) -> Receive:
    pending: list[Message] = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
