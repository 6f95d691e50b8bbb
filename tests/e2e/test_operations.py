"""Operating pilotpy like istiod with a real Envoy connected: /metrics with istiod's exact
names, the debug endpoints, and a real NACK showing up in both."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from pilotpy.local.stack import eventually, http_get
from pilotpy.xds import types
from tests.e2e.support import V2_CLUSTER, W1, W1Factory, weighted_virtual_service

pytestmark = pytest.mark.e2e

ISTIOD_METRICS = (
    "pilot_xds", "pilot_xds_pushes", "pilot_xds_push_time", "pilot_proxy_convergence_time",
    "pilot_debounce_time", "pilot_push_triggers", "pilot_total_xds_rejects",
    "pilot_xds_expired_nonce", "pilot_xds_config_size_bytes", "pilot_k8s_cfg_events",
    "pilot_services", "pilot_virt_services", "pilot_total_rejected_configs",
    "pilot_vservice_dup_domain", "process_cpu_seconds_total", "process_resident_memory_bytes",
)
# RE2 has no backreferences: Envoy rejects this route regex, Python's `re` accepts it.
ENVOY_REJECTS = "/(a)\\1"


def scrape(env: W1) -> str:
    status, headers, body = http_get(env.stack.plane.monitoring_port, "127.0.0.1", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return body.decode()


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def fetch_json(env: W1, path: str) -> Any:
    """debug_json off the event loop (pilotpy serves on the test's loop)."""
    return await asyncio.to_thread(debug_json, env, path)


def debug_json(env: W1, path: str) -> Any:
    status, _, body = http_get(env.stack.plane.http_port, "127.0.0.1", path)
    assert status == 200, (path, body)
    return json.loads(body)


async def test_metrics_have_istiods_names(w1: W1Factory) -> None:
    env = await w1()
    # A config change after convergence: a debounced push with a trigger and a convergence.
    env.write("virtualservice.yaml", weighted_virtual_service(100, 0))
    await eventually(lambda: set(env.versions(10)) == {"v1"}, "all traffic on v1")
    text = await eventually(lambda: (t := scrape(env)) and
                            "pilot_proxy_convergence_time_count 0" not in t and t,
                            "a convergence to be recorded")
    for name in ISTIOD_METRICS:
        assert re.search(rf"^# TYPE {name} (counter|gauge|histogram)$", text, re.M), name
    assert not re.search(r"^pilot_\w*_total[{ ]", text, re.M), "counters keep istiod's names"
    values = samples(text)
    assert sum(v for k, v in values.items() if k.startswith("pilot_xds{version=")) == 1
    for short in ("cds", "eds", "lds", "rds"):
        assert values[f'pilot_xds_pushes{{type="{short}"}}'] >= 1
    assert values['pilot_xds_push_time_count{type="rds"}'] >= 1
    assert values['pilot_xds_config_size_bytes_count{type="cds"}'] >= 1
    assert values["pilot_debounce_time_count"] >= 1
    assert values['pilot_push_triggers{type="config"}'] >= 1
    assert values['pilot_k8s_cfg_events{type="VirtualService",event="update"}'] >= 1
    assert values["pilot_services"] >= 2
    assert values["pilot_virt_services"] == 1
    assert values["pilot_total_rejected_configs"] == 0
    assert values["process_resident_memory_bytes"] > 0


async def test_debug_endpoints_describe_the_connected_gateway(w1: W1Factory) -> None:
    env = await w1()
    node_id = env.stack.node_id
    pod = node_id.split("~")[2]

    def synced() -> Any:
        (entry,) = debug_json(env, "/debug/syncz")
        done = all(entry.get(f"{t}_sent") and entry[f"{t}_sent"] == entry.get(f"{t}_acked")
                   for t in ("cluster", "listener", "route", "endpoint"))
        return done and entry

    entry = await eventually(synced, "every type acked in /debug/syncz")
    assert entry["proxy"] == node_id
    assert entry["proxy_type"] == "router"
    assert set(entry["resources"]) == {types.CLUSTER, types.ENDPOINT, types.LISTENER,
                                       types.ROUTE}

    configz = await fetch_json(env, "/debug/configz")
    assert {"kind": "VirtualService", "namespace": "default", "name": "httpbin"} in [
        {k: c[k] for k in ("kind", "namespace", "name")} for c in configz]

    registry = await fetch_json(env, "/debug/registryz")
    assert "httpbin-service.default.svc.cluster.local" in [s["hostname"] for s in registry]

    adsz = await fetch_json(env, "/debug/adsz")
    assert adsz["totalClients"] == 1
    assert adsz["clients"][0]["proxy"] == node_id

    dump = await fetch_json(env, f"/debug/config_dump?proxyID={pod}")
    clusters = next(c for c in dump["configs"] if c["@type"].endswith("ClustersConfigDump"))
    assert V2_CLUSTER in [c["cluster"]["name"] for c in clusters["dynamicActiveClusters"]]
    status, _, _ = await asyncio.to_thread(http_get, env.stack.plane.http_port, "127.0.0.1",
                                           "/debug/config_dump?proxyID=nobody.default")
    assert status == 404
    # The monitoring port serves the debug handlers too, like istiod's 15014.
    status, _, _ = await asyncio.to_thread(http_get, env.stack.plane.monitoring_port,
                                           "127.0.0.1", "/debug/syncz")
    assert status == 200


async def test_a_real_nack_is_counted_and_shown(w1: W1Factory) -> None:
    env = await w1()
    env.write("virtualservice.yaml", weighted_virtual_service(0, 100).replace(
        "  - retries:", f"  - match: [{{uri: {{regex: '{ENVOY_REJECTS}'}}}}]\n    retries:"))

    def rejected() -> Any:
        (entry,) = debug_json(env, "/debug/syncz")
        return entry["resources"].get(types.ROUTE, {}).get("lastError")

    error = await eventually(rejected, "Envoy's NACK of the route in /debug/syncz")
    assert "invalid escape sequence" in error, error
    values = samples(await asyncio.to_thread(scrape, env))
    assert values['pilot_total_xds_rejects{type="rds"}'] >= 1
    assert set(env.versions(5)) == {"v2"}  # Envoy keeps the previous routes


async def test_analysis_runs_at_ingest(w1: W1Factory) -> None:
    env = await w1()
    plane = env.stack.plane
    env.write("extra.yaml", weighted_virtual_service(0, 100).replace(
        "name: httpbin,", "name: dangling,").replace("httpbin.local", "other.local").replace(
        "gateways: [httpbin-gateway, mesh]", "gateways: [missing-gateway]"))

    def reported() -> bool:
        return any(p.code == "IST0101" and "default/missing-gateway" in p.message
                   for p in plane.problems.problems())

    await eventually(reported, "IST0101 for the dangling gateway reference")
    values = samples(await asyncio.to_thread(scrape, env))
    assert values['pilotpy_config_analysis_messages{code="IST0101",level="Error"}'] == 1
    assert set(env.versions(5)) == {"v2"}  # findings never stop serving
