"""HTTP endpoints on the same asyncio loop as ADS: readiness (istiod's /ready on :8080)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from pilotpy import __version__


def build_app(is_ready: Callable[[], bool]) -> web.Application:
    async def ready(_: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: config sources have not synced\n")

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": __version__})

    app = web.Application()
    app.router.add_get("/ready", ready)
    app.router.add_get("/version", version)
    return app


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (to stop it) and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp keeps the bound sockets here
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, bound
