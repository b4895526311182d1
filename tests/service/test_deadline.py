"""The request timeout (service.transport.Deadline) that replaces BentoML's
TimeoutMiddleware: same 504, no timer per request."""

from __future__ import annotations

import asyncio
import inspect

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from service.transport import Deadline

pytestmark = pytest.mark.unit


async def _slow_app(scope: Scope, receive: Receive, send: Send) -> None:
    delay = float(scope["path"].strip("/") or 0)
    await asyncio.sleep(delay)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


async def _streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(0.6)  # past the deadline, but the answer has started
    await send({"type": "http.response.body", "body": b"late"})


def _fast_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Deadline, "SWEEP_SECONDS", 0.05)


async def _get(app: Deadline, path: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        return await client.get(path)


def test_a_request_past_its_deadline_gets_504_and_others_are_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fast_sweep(monkeypatch)
    app = Deadline(_slow_app, timeout=0.2)

    async def run() -> tuple[httpx.Response, httpx.Response]:
        return await asyncio.gather(_get(app, "/5"), _get(app, "/0.01"))

    slow, fast = asyncio.run(run())
    assert slow.status_code == 504
    assert slow.json() == {"error": "not able to process the request in 0.2 seconds"}
    assert (fast.status_code, fast.text) == (200, "done")
    assert app._running == {}  # nothing left behind once answered


def test_an_answer_that_has_started_is_not_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    _fast_sweep(monkeypatch)
    app = Deadline(_streaming_app, timeout=0.2)
    response = asyncio.run(_get(app, "/"))
    assert (response.status_code, response.text) == (200, "late")


def test_a_cancellation_that_is_not_the_deadline_propagates() -> None:
    app = Deadline(_slow_app, timeout=60)

    async def run() -> None:
        task = asyncio.ensure_future(_get(app, "/5"))
        await asyncio.sleep(0.05)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run())
    assert app._running == {}


def test_bentoml_builds_its_app_with_deadline() -> None:
    """BentoML imports TimeoutMiddleware from its traffic module when it builds the
    app; the service module puts Deadline there."""
    from bentoml._internal.server import base_app
    from bentoml._internal.server.http import traffic

    import service.service  # noqa: F401  (the import installs Deadline)

    source = inspect.getsource(base_app.BaseAppFactory)
    assert "from .http.traffic import TimeoutMiddleware" in source
    assert traffic.TimeoutMiddleware is Deadline
    middlewares = base_app.BaseAppFactory.middlewares.fget  # type: ignore[attr-defined]

    class Factory:
        timeout, max_concurrency = 7, None

    [middleware] = middlewares(Factory())
    assert middleware.cls is Deadline and middleware.kwargs == {"timeout": 7}
