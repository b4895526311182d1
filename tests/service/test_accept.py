"""The worker's event loop (service.accept): every waiting connection is accepted
per readiness event, so a burst of new clients is not served one per loop
iteration behind the busy ones."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import socket
from typing import ClassVar

import pytest
import uvicorn
import uvloop

from service import accept

pytestmark = pytest.mark.unit


class _Counting(asyncio.Protocol):
    made: ClassVar[int] = 0
    nodelay: ClassVar[list[int]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        _Counting.made += 1
        sock = transport.get_extra_info("socket")
        _Counting.nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def _iterate(loop: asyncio.AbstractEventLoop) -> None:
    """Exactly one turn of the loop."""
    loop.call_soon(loop.stop)
    loop.run_forever()


def _connections_made(
    loop_class: type[asyncio.AbstractEventLoop], clients: int, turns: int
) -> list[int]:
    _Counting.made, _Counting.nodelay = 0, []
    loop = loop_class()
    listening = socket.create_server(("127.0.0.1", 0), backlog=512)
    try:
        server = loop.run_until_complete(loop.create_server(_Counting, sock=listening, backlog=512))
        # The kernel completes every handshake before the loop turns: a burst.
        conns = [socket.create_connection(listening.getsockname()[:2]) for _ in range(clients)]
        made = []
        for _ in range(turns):
            _iterate(loop)
            made.append(_Counting.made)
        server.close()
        loop.run_until_complete(server.wait_closed())
        for conn in conns:
            conn.close()
        return made
    finally:
        listening.close()
        loop.close()


def test_a_burst_is_accepted_in_one_turn_where_stock_uvloop_takes_one_per_turn() -> None:
    stock = _connections_made(uvloop.Loop, clients=100, turns=4)
    # Why service.accept exists; if a uvloop upgrade drains the queue itself, this
    # fails and the workaround can go.
    assert stock[-1] < 20, stock
    ours = _connections_made(accept.Loop, clients=100, turns=4)
    assert ours[1:] == [100, 100, 100], ours
    assert _Counting.nodelay == [1] * 100  # the same TCP_NODELAY as uvloop's own accept


def test_close_stops_accepting() -> None:
    loop = accept.Loop()
    listening = socket.create_server(("127.0.0.1", 0))
    try:
        server = loop.run_until_complete(loop.create_server(_Counting, sock=listening))
        assert server.is_serving()
        server.close()
        loop.run_until_complete(server.wait_closed())
        assert not server.is_serving()
        _Counting.made = 0
        conn = socket.create_connection(listening.getsockname()[:2])
        _iterate(loop)
        _iterate(loop)
        assert _Counting.made == 0
        conn.close()
    finally:
        listening.close()
        loop.close()


def test_other_servers_keep_uvloops_own_accept() -> None:
    loop = accept.Loop()
    try:
        server = loop.run_until_complete(loop.create_server(_Counting, "127.0.0.1", 0))
        assert not isinstance(server, accept.Listener)
        server.close()
    finally:
        loop.close()


def test_uvicorn_auto_loop_is_ours_once_the_service_is_imported() -> None:
    import service.service  # noqa: F401  (installs it, as in BentoML's worker)

    config = uvicorn.Config(app=None, loop="auto")  # BentoML's worker passes no loop
    assert config.get_loop_factory() is accept.Loop


def test_the_served_worker_accepts_a_burst_with_it(server) -> None:
    """A real ``bentoml serve``: 64 clients connect at once, each gets its answer,
    and the worker's log shows the listener it used."""

    def one(_: int) -> int:
        conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
        try:
            conn.request("GET", "/livez")
            return conn.getresponse().status
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        assert list(pool.map(one, range(64))) == [200] * 64
    assert "every waiting connection at once" in server.log_text()
