"""Connections to the HTTP ports, bounded: a client that opens many and sends nothing (or
half a request) must not take the file descriptors that ADS streams and config reads need,
nor the loop's time.

Each port holds at most `max_connections` at once. At the limit it stops accepting: further
connections wait in the kernel's listen queue (and past it, their SYNs are dropped and
retried by the client) and cost pilotpy nothing until a connection closes. A connection must
send a request's headers within `header_timeout` of opening (and of its last response):
aiohttp closes an idle handler at its keep-alive timeout, which is set to that. A request
body the handler does not read is drained for at most aiohttp's lingering time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

from aiohttp import web

from pilotpy.server.settings import HttpLimits

log = logging.getLogger("pilotpy.http")

WARNING_SECONDS = 60.0
ACCEPT_RETRY_SECONDS = 0.1


class _Counted(asyncio.Protocol):
    """aiohttp's handler for one connection, counted while the connection is open."""

    def __init__(self, inner: asyncio.Protocol, site: LimitedSite) -> None:
        self._inner = inner
        self._site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._site.closed()
        self._inner.connection_lost(exc)


class LimitedSite(web.TCPSite):
    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: HttpLimits, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(runner, host, port)
        self.limits = limits
        self.open = 0  # connections accepted and not yet closed
        self.held_back = 0  # times the limit stopped accepting
        self._room = asyncio.Event()
        self._clock = clock
        self._warned: float | None = None
        self._socket: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    def closed(self) -> None:
        self.open -= 1
        self._room.set()

    async def start(self) -> None:
        # web.BaseSite.start registers the site with its runner; the listening socket and
        # the accept loop are this class's own, so that it can stop accepting.
        await web.BaseSite.start(self)
        family = socket.AF_INET6 if ":" in (self._host or "") else socket.AF_INET
        listening = socket.create_server((self._host or "", self._port), family=family,
                                         backlog=self._backlog)
        listening.setblocking(False)
        self._socket = listening
        self._bound_port = listening.getsockname()[1]
        self._accepting = asyncio.create_task(self._accept(listening),
                                              name=f"http accept :{self._bound_port}")

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        while True:
            while self.open >= self.limits.max_connections:
                self._held_back()
                self._room.clear()
                await self._room.wait()
            try:
                connection, _ = await loop.sock_accept(listening)
            except OSError as err:  # out of descriptors, say: try again shortly
                log.warning("HTTP port %d: accepting failed: %s", self.port, err)
                await asyncio.sleep(ACCEPT_RETRY_SECONDS)
                continue
            self.open += 1
            try:
                await loop.connect_accepted_socket(lambda: _Counted(server(), self), connection)
            except OSError:
                self.closed()
                connection.close()

    def _held_back(self) -> None:
        self.held_back += 1
        now = self._clock()
        if self._warned is None or now - self._warned >= WARNING_SECONDS:
            self._warned = now
            log.warning("HTTP port %d: %d connections open, the limit (--http-max-connections); "
                        "not accepting more until one closes (%d times so far)", self.port,
                        self.open, self.held_back)

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._socket is not None:
            self._socket.close()
        await super().stop()
