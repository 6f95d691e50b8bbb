"""W6 with a real Envoy: meshConfig access logs (a line per request naming the upstream
cluster, response flags and route) and Zipkin tracing with B3 propagation, into a small
Zipkin-compatible collector on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pilotpy.local.stack import eventually
from pilotpy.server import http
from tests.e2e.support import V2_CLUSTER, W1Factory, weighted_virtual_service

pytestmark = pytest.mark.e2e


class Collector:
    """Accepts Zipkin v2 JSON spans (POST /api/v2/spans), like a Zipkin or Jaeger collector."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.port = 0

    async def receive(self, request: web.Request) -> web.Response:
        self.spans.extend(await request.json())
        return web.Response(status=202)


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    found = Collector()
    app = web.Application()
    app.router.add_post("/api/v2/spans", found.receive)
    runner, found.port = await http.serve(app, "127.0.0.1", 0)
    yield found
    await runner.cleanup()


async def test_json_access_log_line_per_request(w1: W1Factory, tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    env = await w1(mesh_config=f"accessLogFile: {log_file}\naccessLogEncoding: JSON\n")
    env.write("virtualservice.yaml", weighted_virtual_service(0, 100).replace(
        "  - retries:", "  - name: primary\n    retries:"))
    await eventually(lambda: b"primary" in env.envoy.admin_get("/config_dump").encode(),
                     "the named route at Envoy")
    for _ in range(3):
        assert env.get(path="/headers?n=1")[0] == 200
    assert env.get(host="unknown.local")[0] == 404

    def entries() -> list[dict[str, Any]]:
        if not log_file.exists():
            return []
        lines = log_file.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    # Envoy flushes access logs on a timer; the first 200 of the fixture is logged too.
    logged = await eventually(lambda: len(e := entries()) >= 5 and e, "5 access log lines")
    ok = [e for e in logged if e["response_code"] == 200]
    assert ok and all(e["upstream_cluster"] == V2_CLUSTER for e in ok)
    assert ok[-1]["route_name"] == "primary"
    assert {"upstream_cluster", "response_flags", "route_name", "request_id"} <= set(ok[0])
    (missing,) = [e for e in logged if e["response_code"] == 404]
    assert missing["authority"] == "unknown.local"
    assert missing["response_flags"] == "NR"  # no virtual host for that authority
    assert missing["upstream_cluster"] is None


async def test_text_access_log_uses_istios_default_format(w1: W1Factory, tmp_path: Path
                                                          ) -> None:
    log_file = tmp_path / "access.log"
    env = await w1(mesh_config=f"accessLogFile: {log_file}\n")
    assert env.get()[0] == 200
    line = await eventually(lambda: log_file.exists() and log_file.read_text().strip(),
                            "a text access log line")
    first = line.splitlines()[0]
    assert first.startswith("[") and '"GET /headers HTTP/1.1" 200 - via_upstream' in first
    assert f" {V2_CLUSTER} " in first


async def test_spans_reach_a_zipkin_collector_with_b3_propagation(
        w1: W1Factory, collector: Collector) -> None:
    env = await w1(mesh_config=(
        "enableTracing: true\n"
        "defaultConfig:\n"
        "  tracing:\n"
        "    sampling: 100\n"
        f"    zipkin: {{address: 127.0.0.1:{collector.port}}}\n"))
    echoed: dict[str, Any] = {}
    for _ in range(6):  # Envoy's Zipkin tracer flushes every 5 spans (or 5 s)
        status, _, body = env.get()
        assert status == 200
        echoed = json.loads(body)["headers"]
    headers = {k.lower(): v for k, v in echoed.items()}
    assert {"x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"} <= set(headers)
    assert headers["x-b3-sampled"] == "1"

    # The last request's span may wait for the tracer's 5 s flush: wait for that trace, not
    # for the first batch of five.
    last_trace = headers["x-b3-traceid"]
    spans = await eventually(
        lambda: any(s["traceId"] == last_trace for s in collector.spans) and collector.spans,
        "the last request's span at the collector", timeout=20)
    assert len(spans) >= 5
    assert any(s.get("tags", {}).get("upstream_cluster") == V2_CLUSTER for s in spans)
