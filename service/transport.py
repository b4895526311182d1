"""HTTP plumbing shared by every route: the one error type's response, JSON bodies,
content types, and the guard middleware (body size limit, lossless draining).

No model knowledge here; :mod:`service.pipeline` does the model work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import reprlib
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport.drain import DrainWatch
from modelport.settings import ServiceSettings

log = logging.getLogger("modelport")

BINARY_HEADER = "inference-header-content-length"  # OIP binary tensor extension

_show = reprlib.Repr()
_show.maxlevel = 2
_show.maxstring = 60
_show.maxother = 60
_show.maxlong = 40
_show.maxlist = _show.maxdict = 6


def show(value: Any) -> str:
    """A client value for an error message: bounded in depth and length, so a
    deeply nested or huge value can neither blow the stack nor flood the reply."""
    return _show.repr(value)


class InputError(Exception):
    """The one error type of every route: HTTP ``status`` with a message naming the
    field. Raised by any stage; the pipeline answers it as ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400, missing: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        # Features that were absent or null, for the missing-value counters.
        self.missing = missing or []


class FastJSON(Response):
    """JSON via orjson: several times faster than ``json`` for float arrays, and it
    writes NumPy arrays directly."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)

    def init_headers(self, headers: Any = None) -> None:
        # Starlette's general version (lower-casing and encoding every header, looking
        # for given ones) cost ~1 µs of every answer; the common case directly.
        if headers is not None or self.status_code < 200 or self.status_code in (204, 304):
            super().init_headers(headers)
            return
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", b"application/json"),
        ]


def error_response(status: int, message: str) -> Response:
    return FastJSON({"error": message}, status_code=status)


def check_json_content_type(headers: Any, alternative: str = "") -> None:
    """415 unless the body is declared JSON (or not declared at all, as many clients
    send it). ``alternative`` names what else the route takes, for the message."""
    declared = headers.get("content-type")
    if declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise InputError(
        f"body: Content-Type {show(media)} is not supported; send JSON with "
        f"'Content-Type: application/json'{alternative}",
        status=415,
    )


def parse_json(raw: bytes, where: str = "body") -> Any:
    """JSON text -> Python. orjson first (fast); the standard library second, only to
    read what orjson refuses but validation should name precisely (NaN, Infinity,
    integers past 64 bits)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise InputError(f"{where}: JSON nested more than 1024 levels deep") from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: not valid JSON ({str(exc)[:200]})") from None


_WATCH: DrainWatch | None = None


def draining() -> bool:
    """Whether this worker has seen the preStop drain marker."""
    return _WATCH is not None and _WATCH.draining


class Guard:
    """Outermost modelport middleware: 413 for bodies over MODELPORT_MAX_BODY_BYTES
    before anything parses them, and once the pod drains, ``Connection: close`` on
    every response so keep-alive clients reconnect to a live pod (modelport.drain)."""

    def __init__(self, app: ASGIApp) -> None:
        global _WATCH
        self.app = app
        self.limit = ServiceSettings().max_body_bytes
        if _WATCH is None:
            _WATCH = DrainWatch().start()
        self.watch = _WATCH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.watch.draining:
            send = _closing(send)
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
                break
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
        response = error_response(
            413, f"body: request body exceeds {self.limit} bytes (MODELPORT_MAX_BODY_BYTES)"
        )
        await response(scope, receive, send)


class Deadline:
    """The request timeout (``traffic.timeout``), in BentoML's place for its
    ``TimeoutMiddleware`` (see :mod:`service.service`).

    BentoML's version starts a task and a ``call_later`` timer per request and never
    cancels the timer: each request left about six objects alive for the whole
    timeout (60 s), so the heap held ~100 000 of them under load and every full
    garbage collection scanned them: 50-150 ms pauses, the p99 (docs/performance.md).
    Here a request costs a dict entry; one sweep per second cancels the requests past
    their deadline that have not started answering, and they get the same 504.
    """

    SWEEP_SECONDS = 1.0

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = float(timeout)
        # task -> [deadline, response started, timed out]
        self._running: dict[asyncio.Task[Any], list[Any]] = {}
        self._sweeping = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the worker runs one loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        # With the loop given, no getpid() system call (Python 3.11 makes one for
        # every loop lookup): two per request otherwise.
        task = asyncio.current_task(loop)
        if task is None:  # a loop other than the one seen first (tests run several)
            loop = self._loop = asyncio.get_running_loop()
            task = asyncio.current_task(loop)
        if task is None or task in self._running:  # nested use: the outer call times it
            await self.app(scope, receive, send)
            return
        state = [loop.time() + self.timeout, False, False]
        self._running[task] = state
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(self.SWEEP_SECONDS, self._sweep, loop)

        async def started(message: Message) -> None:
            state[1] = True
            await send(message)

        try:
            await self.app(scope, receive, started)
        except asyncio.CancelledError:
            if not state[2]:
                raise  # not ours: shutdown or the server's own cancellation
            task.uncancel()
            await error_response(
                504, f"not able to process the request in {self.timeout:g} seconds"
            )(scope, receive, send)
        finally:
            del self._running[task]

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, state in self._running.items():
            if now >= state[0] and not state[1] and not state[2]:
                state[2] = True
                task.cancel()
        if self._running:
            loop.call_later(self.SWEEP_SECONDS, self._sweep, loop)
        else:
            self._sweeping = False


def _closing(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            headers.append((b"connection", b"close"))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
