"""The HTTP ports against clients that hold connections (docs/operations.md#limits): ADS and
config reads go on, the connections are closed at the header timeout, and debug lists come in
bounded pages."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pilotpy.server.debug_pages import DebugPages
from pilotpy.server.debug_routes import debug_routes
from pilotpy.server.settings import HttpLimits
from pilotpy.xds.types import CLUSTER
from tests.xds.xds_harness import (
    SILENCE,
    ConfigDir,
    Harness,
    decoded,
    eventually,
    harness,
    round_robin,
    running,
    sotw_converge,
)

# Opens connections to 127.0.0.1:<port> all at once (a port that stops accepting leaves them
# in its listen queue or retrying their SYNs), sends half a request on every other one that
# got through, and holds them all until its stdin closes (at most 60 s).
HOLDER = """
import select, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(count):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    held.append(s)
time.sleep(1)
for i, s in enumerate(held):
    if i % 2:
        try:
            s.send(b"GET /ready HTTP/1.1\\r\\nHost: x\\r\\n")
        except OSError:
            pass
print("holding", flush=True)
select.select([sys.stdin], [], [], 60)
"""

@contextlib.contextmanager
def open_file_limit(limit: int) -> Iterator[None]:
    """This process's soft limit on descriptors, as on a host that keeps the default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.asynccontextmanager
async def holding(ports: list[int], count: int) -> AsyncIterator[None]:
    """`count` connections to each port held open by other processes (their descriptors,
    not ours)."""
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER, str(port), str(count)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
               for port in ports]
    try:
        lines = await asyncio.wait_for(asyncio.gather(*(
            asyncio.to_thread(h.stdout.readline) for h in holders if h.stdout)), 60)
        assert lines == [b"holding\n"] * len(holders)
        yield
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(10)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest_asyncio.fixture
async def guarded(config_dir: ConfigDir) -> AsyncIterator[Harness]:
    limits = HttpLimits(max_connections=50, header_timeout=1.0)
    async with harness(config_dir, http_limits=limits) as found:
        yield found


async def get(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}{path}") as response:
        body = await response.read()
        return response.status, body


async def test_a_thousand_idle_http_connections_leave_ads_and_config_reads_alone(
        guarded: Harness) -> None:
    """At a soft limit of 1024 descriptors: 1000 connections to each HTTP port, half of them
    with half a request, while a proxy connects and a config edit is read and pushed."""
    plane = guarded.plane
    with open_file_limit(1024):
        async with holding([plane.http_port, plane.monitoring_port], 1000):
            assert open_descriptors() < 500
            async with guarded.sotw() as client:
                await sotw_converge(client)
                wait = guarded.pushed()
                guarded.config.edit("DestinationRule", "httpbin", round_robin)
                await wait()
                pushed = await client.recv()
                assert pushed.type_url == CLUSTER and decoded(pushed)
            assert open_descriptors() < 500
    # The held connections are closed at the header timeout; the ports serve again.
    await eventually(lambda: open_descriptors() < 200, what="held connections closed")
    assert await get(plane.http_port, "/ready") == (200, b"ready\n")


async def test_a_connection_that_sends_half_a_request_is_closed_at_the_header_timeout(
        guarded: Harness) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded.plane.http_port)
    writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, nothing answered
    writer.close()


async def test_connections_past_the_limit_wait_until_one_closes(guarded: Harness) -> None:
    """At the limit the port stops accepting: the next connection waits in the listen queue,
    costing nothing, and is served once a connection closes."""
    port = guarded.plane.http_port
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(), SILENCE)
            raise AssertionError("a connection past the limit was served")
        held.pop()[1].close()
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"ready\n")
        writer.close()
    finally:
        for _, held_writer in held:
            held_writer.close()


# -- paged debug responses ----------------------------------------------------------------------

def service_doc(index: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"svc-{index:04d}", "namespace": "paged"},
            "spec": {"ports": [{"name": "http", "port": 80}]}}


async def test_debug_lists_come_in_bounded_pages_linked_to_the_next(
        config_dir: ConfigDir) -> None:
    config_dir.write("many.yaml", [service_doc(i) for i in range(300)])
    async with running(config_dir.root) as plane:
        app = web.Application()
        app.add_routes(debug_routes(plane.xds, plane.discovery, plane.store_objects,
                                    DebugPages(max_bytes=16 * 1024)))
        async with TestClient(TestServer(app)) as http:
            names: list[str] = []
            path = "/debug/configz"
            pages = 0
            while path:
                response = await http.get(path)
                assert response.status == 200
                assert len(await response.read()) <= 16 * 1024
                names += [o["name"] for o in await response.json() if o["kind"] == "Service"]
                link = response.headers.get("Link", "")
                path = link[1:link.index(">")] if link else ""
                pages += 1
            assert pages > 3
            assert [n for n in names if n.startswith("svc-")] == [
                f"svc-{i:04d}" for i in range(300)]
            limited = await http.get("/debug/registryz?limit=7&start=3")
            assert len(await limited.json()) == 7
            assert "start=10" in limited.headers["Link"]
            assert (await http.get("/debug/configz?start=soon")).status == 400
