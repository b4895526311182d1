"""How BentoML's worker runs uvicorn: an event loop that accepts every waiting
connection at once, and an HTTP protocol that starts requests oldest first and
writes a response in one piece.

**Accepting.** uvloop 0.23 (libuv 1.52) accepts one connection per event-loop
iteration, and under load one iteration serves every connection with a request
ready: ~15 ms with 88 busy keep-alive connections on one CPU. When 128 clients
connect at once (a load balancer opening its pool, clients reconnecting after a
rollout), the last of them waited 40 iterations for ``accept``: their first answer
took up to 0.75 s, while every later request took 20 ms. Measured with 128 clients
connecting at once: the first-response time grew linearly with a connection's
place in the burst, and ``strace`` showed exactly one ``accept4`` per
``epoll_pwait``, never the EAGAIN of a drained queue. asyncio's own loop drains the
queue but serves 4-5 % fewer requests per second, so :class:`Loop` keeps uvloop and
drains the queue itself; each accepted socket becomes an ordinary uvloop transport.

**Writing.** uvicorn writes a response's status line and headers as soon as the
app starts the response, then the body: two ``write`` calls and two TCP segments
for every answer. :class:`HTTPProtocol` holds the headers until the first body
message and writes both together (the ASGI specification lets a server do so).

**Ordering.** The requests read in one turn of the loop start oldest first, not in
epoll's order (see :func:`_start_in_order`): at 32 keep-alive clients, p99 went
from 2.0 to 1.2-1.4 times p50 with monitoring off (bare uvicorn: 2.0).

BentoML's worker runs uvicorn with ``loop="auto"`` and ``http="auto"``;
:func:`install` points both at this module (tests/service/test_worker.py fails if an
upgrade stops using them).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvloop

log = logging.getLogger("modelport")

# Errors after which accepting again at once would spin: out of descriptors or
# memory. The listener pauses for a second instead (what libuv and asyncio do).
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Listener:
    """The server object uvicorn keeps for one listening socket (``close``,
    ``wait_closed``, ``sockets``), accepting until the kernel's queue is empty."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        sock: socket.socket,
        backlog: int,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._sock = sock
        self._backlog = max(1, backlog)
        self._pending: set[asyncio.Task[Any]] = set()
        self._serving = True
        self.sockets = [sock]
        sock.setblocking(False)
        sock.listen(self._backlog)
        loop.add_reader(sock.fileno(), self._accept)
        log.info("accepting on %s, every waiting connection at once", _address(sock))

    def _accept(self) -> None:
        for _ in range(self._backlog):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    log.warning("not accepting connections for 1 s: %s", exc)
                    self._loop.remove_reader(self._sock.fileno())
                    self._loop.call_later(1.0, self._resume)
                    return
                continue  # ECONNABORTED and the like: that client gave up
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError as exc:  # the client reset the connection before it started
            log.debug("connection dropped before it started: %s", exc)
            conn.close()

    def _resume(self) -> None:
        if self._serving:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        """Stop accepting; the socket itself belongs to whoever passed it in."""
        if self._serving:
            self._serving = False
            self._loop.remove_reader(self._sock.fileno())

    async def wait_closed(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


class Loop(uvloop.Loop):
    """uvloop, except that a server on an inherited plain TCP socket (how BentoML
    hands its socket to the worker) accepts with :class:`Listener`."""

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: Any = None,
        port: Any = None,
        *,
        sock: socket.socket | None = None,
        ssl: Any = None,
        backlog: int = 100,
        **kwargs: Any,
    ) -> Any:
        if (
            sock is None
            or ssl is not None
            or kwargs
            or sock.type != socket.SOCK_STREAM
            or sock.family not in (socket.AF_INET, socket.AF_INET6)
        ):
            return await super().create_server(
                protocol_factory, host, port, sock=sock, ssl=ssl, backlog=backlog, **kwargs
            )
        return Listener(self, protocol_factory, sock, backlog)


def factory(use_subprocess: bool = False) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvicorn's loop-factory signature."""
    return Loop


class _Holding:
    """The transport while uvicorn writes a response's head: keeps the bytes."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.held = b""

    def write(self, data: bytes) -> None:
        self.held += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _Prefixed:
    """The transport while uvicorn writes the first body part: the held head goes
    out in the same write, or before the connection closes."""

    def __init__(self, transport: Any, prefix: bytes) -> None:
        self.transport = transport
        self.prefix = prefix

    def write(self, data: bytes) -> None:
        prefix, self.prefix = self.prefix, b""
        self.transport.write(prefix + data if prefix else data)

    def close(self) -> None:
        if self.prefix:
            self.write(b"")
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _protocol() -> type:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

    class Cycle(RequestResponseCycle):
        held = b""

        async def send(self, message: Any) -> None:
            if message["type"] == "http.response.start" and not self.response_started:
                real = self.transport
                self.transport = holding = _Holding(real)  # type: ignore[assignment]
                try:
                    await super().send(message)
                finally:
                    self.transport = real
                self.held = holding.held
                return
            if not self.held:
                await super().send(message)
                return
            real = self.transport
            self.transport = prefixed = _Prefixed(real, self.held)  # type: ignore[assignment]
            self.held = b""
            try:
                await super().send(message)
            finally:
                self.transport = real
            if prefixed.prefix and not real.is_closing():  # no body written (HEAD, 304)
                real.write(prefixed.prefix)

    class Protocol(HttpToolsProtocol):
        cycle_class = Cycle
        answered = 0.0  # loop time of this connection's last answer (new ones: first)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if type(cycle) is RequestResponseCycle:
                cycle.__class__ = Cycle  # the same object, with the one-write send
            starts = _STARTS.get(self.loop)
            if starts is None:
                starts = _STARTS[self.loop] = []
                self.loop.call_soon(_start_in_order, self.loop)
            starts.append((self.answered, id(self), self, cycle, app))

        def begin(self, cycle: Any, app: Any) -> None:
            super()._start_asgi_task(cycle, app)

        def on_response_complete(self) -> None:
            self.answered = self.loop.time()
            super().on_response_complete()

    return Protocol


# Requests read in one turn of the loop, started oldest first (see _start_in_order).
_STARTS: dict[Any, list[tuple[float, int, Any, Any, Any]]] = {}


def _start_in_order(loop: Any) -> None:
    """Start the requests read in one turn of the loop in the order their
    connections were last answered, not in the order epoll reported them.

    Level-triggered epoll hands back the connections it reported last time first
    (they stay on its ready list), and a connection whose request arrived just after
    the poll last. With 32 keep-alive clients that connection was answered last
    again, its next request again missed the poll: one client in 32 waited two
    rounds for every answer, and p99 was twice p50 (bare uvicorn too). A closed-loop
    client sends right after an answer, so the oldest answer marks the oldest request.
    """
    starts = _STARTS.pop(loop)
    if len(starts) > 1:
        starts.sort(key=_first)
    for _, _, protocol, cycle, app in starts:
        protocol.begin(cycle, app)


def _first(item: tuple[float, int, Any, Any, Any]) -> tuple[float, int]:
    return item[0], item[1]


@functools.cache
def http_protocol() -> type:
    """uvicorn's httptools protocol with one write per response."""
    return _protocol()


def __getattr__(name: str) -> Any:
    # ``HTTPProtocol`` is built when uvicorn asks for it, in the worker: the
    # supervisor, which imports this module too, never loads uvicorn's protocols.
    if name == "HTTPProtocol":
        return http_protocol()
    raise AttributeError(name)


def in_worker() -> bool:
    """Whether this process is BentoML's worker (``python -m
    _bentoml_impl.worker.service``), not its supervisor or a test importing the
    service."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == "_bentoml_impl.worker.service"


def install() -> None:
    """Make uvicorn's ``loop="auto"`` and ``http="auto"`` (BentoML's worker) build
    :class:`Loop` and the one-write protocol (httptools, as "auto" picks)."""
    from uvicorn import config

    config.LOOP_FACTORIES["auto"] = f"{__name__}:factory"
    config.HTTP_PROTOCOLS["auto"] = f"{__name__}:HTTPProtocol"
