"""HTTP endpoints on the same asyncio loop as ADS, on istiod's ports: readiness and debug
handlers on :8080, Prometheus metrics (and the debug handlers again) on :15014."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from pilotpy import __version__
from pilotpy.runtime.metrics import CONTENT_TYPE
from pilotpy.server.http_limits import LimitedSite
from pilotpy.server.settings import HttpLimits


def build_app(is_ready: Callable[[], bool], routes: Iterable[web.RouteDef] = (),
              not_ready_reason: Callable[[], str] = lambda: "config sources have not synced"
              ) -> web.Application:
    async def ready(_: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {not_ready_reason()}\n")

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": __version__})

    app = web.Application()
    app.router.add_get("/ready", ready)
    app.router.add_get("/version", version)
    app.add_routes(list(routes))
    return app


def build_monitoring_app(render_metrics: Callable[[], str],
                         routes: Iterable[web.RouteDef] = ()) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=render_metrics().encode())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.add_routes(list(routes))
    return app


async def serve(app: web.Application, host: str, port: int,
                limits: HttpLimits | None = None) -> tuple[web.AppRunner, int]:
    """Start serving within `limits`; returns the runner (to stop it) and the bound port."""
    limits = limits or HttpLimits()
    # aiohttp closes a connection whose handler waits longer than this for a request (none
    # sent yet, half of one, or idle after a response): the header timeout.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.header_timeout)
    await runner.setup()
    site = LimitedSite(runner, host, port, limits)
    await site.start()
    return runner, site.port
