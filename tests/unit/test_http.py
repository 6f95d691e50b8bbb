"""/ready answers 503 until the config sources have synced, then 200 (istiod's readiness)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from pilotpy import __version__
from pilotpy.server.http import build_app


async def test_ready_follows_the_readiness_of_the_control_plane() -> None:
    ready = False
    async with TestClient(TestServer(build_app(lambda: ready))) as client:
        response = await client.get("/ready")
        assert response.status == 503
        assert "not ready" in await response.text()
        ready = True
        response = await client.get("/ready")
        assert response.status == 200


async def test_version_is_served() -> None:
    async with TestClient(TestServer(build_app(lambda: True))) as client:
        response = await client.get("/version")
        assert response.status == 200
        assert (await response.json()) == {"version": __version__}


async def test_ready_names_what_it_waits_for() -> None:
    async with TestClient(TestServer(build_app(
            lambda: False, not_ready_reason=lambda: "waiting for kube"))) as client:
        response = await client.get("/ready")
        assert response.status == 503
        assert "waiting for kube" in await response.text()
