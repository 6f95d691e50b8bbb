"""Connections to the HTTP ports, bounded: a client that opens many and sends nothing (or
half a request) must not take the file descriptors that ADS streams and config reads need.

Each port takes at most `max_connections` at once; one more is answered 503 and closed. A
connection must send a request's headers within `header_timeout` of opening (and of its last
response): aiohttp closes an idle handler at its keep-alive timeout, which is set to that.
A request body the handler does not read is drained for at most aiohttp's lingering time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

from pilotpy.server.settings import HttpLimits

log = logging.getLogger("pilotpy.http")

REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 30\r\n"
           b"\r\ntoo many connections to pilotpy")
WARNING_SECONDS = 60.0


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(REFUSAL)
        transport.close()


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
        self._site.open -= 1
        self._inner.connection_lost(exc)


class LimitedSite(web.TCPSite):
    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: HttpLimits, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(runner, host, port)
        self.limits = limits
        self.open = 0  # connections counted, from accept to close
        self.refused = 0
        self._clock = clock
        self._warned: float | None = None

    def _protocol(self) -> asyncio.Protocol:
        if self.open >= self.limits.max_connections:
            self.refused += 1
            now = self._clock()
            if self._warned is None or now - self._warned >= WARNING_SECONDS:
                self._warned = now
                log.warning("HTTP port %d: %d connections open, the limit "
                            "(--http-max-connections); refusing more (%d so far)", self.port,
                            self.open, self.refused)
            return _Refused()
        server = self._runner.server
        assert server is not None
        self.open += 1  # counted at accept: a burst of accepts cannot overshoot the limit
        return _Counted(server(), self)

    async def start(self) -> None:
        # TCPSite.start with a protocol factory that counts (web.BaseSite.start registers
        # the site with its runner).
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self._host, self._port,
                                                backlog=self._backlog)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
