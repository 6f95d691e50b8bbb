"""pilotpy against an API server that goes away, expires its resourceVersions, or serves
objects pilotpy cannot accept; a real Envoy gateway attached throughout."""

from __future__ import annotations

import asyncio

import grpc
import pytest

import pilotpy.xds.server
from pilotpy.local.stack import eventually, http_get
from pilotpy.xds import types
from tests.kube.cluster import Cluster
from tests.kube.support import (
    DESTINATION_RULE,
    GATEWAY,
    GATEWAY_NODE,
    KubeMesh,
    virtual_service,
)
from tests.xds_client import SotwClient

pytestmark = pytest.mark.e2e
CONFIG_STATS = ("cluster_manager.cds.update_success", "listener_manager.lds.update_success",
                "listener_manager.listener_modified", "cluster_manager.cluster_modified")


async def routed_mesh(mesh: KubeMesh, routes: dict[str, str]) -> None:
    """W1's registry, Gateway and DestinationRule, one VirtualService per host -> subset."""
    mesh.write_registry()
    mesh.apply(GATEWAY)
    mesh.apply(DESTINATION_RULE)
    for host, subset in routes.items():
        mesh.apply(virtual_service(host.split(".")[0], host, subset))
    await mesh.start()
    for host, subset in routes.items():
        await mesh.wait_version(subset, host)


def config_stats(mesh: KubeMesh) -> dict[str, int]:
    envoy = mesh.stack.envoy  # type: ignore[union-attr]
    assert envoy is not None
    stats = envoy.stats()
    return {name: stats.get(name, 0) for name in CONFIG_STATS}


async def test_api_server_restart_keeps_serving_and_resumes_the_watch(
        mesh: KubeMesh, cluster: Cluster) -> None:
    await routed_mesh(mesh, {"a.local": "v1"})
    informer = mesh.informer("VirtualService")
    lists = informer.status.lists
    before = config_stats(mesh)
    pid = mesh.stack.envoy.pid  # type: ignore[union-attr]

    assert await mesh.source_connected("VirtualService") == "1"
    await asyncio.to_thread(cluster.stop_apiserver)
    await eventually(lambda: not informer.status.connected, "pilotpy noticing the API is gone")
    # Said in a metric (and in the log): the source lost its API.
    assert await mesh.source_connected("VirtualService") == "0"
    # Nothing changes for the proxies while the API is away: same config, still ready.
    await asyncio.sleep(2)
    assert mesh.version("a.local") == "v1"
    assert await mesh.ready_status() == 200
    assert config_stats(mesh) == before
    assert not mesh.plane.kube.connected

    # The API comes back; a change is written before pilotpy's watch gets through again
    # (its path is cut meanwhile, so the order is certain) and must still arrive.
    await mesh.proxy.cut()
    await asyncio.to_thread(cluster.start_apiserver)
    mesh.apply(virtual_service("a", "a.local", "v2"))
    assert not informer.status.connected
    await mesh.proxy.restore()
    await mesh.wait_version("v2", "a.local", timeout=60)
    assert await mesh.source_connected("VirtualService") == "1"
    # Resumed from its resourceVersion: no re-list, and the same Envoy process throughout.
    assert informer.status.lists == lists
    assert informer.status.relists_after_gone == 0
    assert mesh.stack.envoy.pid == pid  # type: ignore[union-attr]
    assert await mesh.ready_status() == 200
    assert sum(mesh.plane.xds.stats.rejects.values()) == 0


async def test_expired_resource_version_relists_and_drops_what_was_deleted(
        mesh: KubeMesh, cluster: Cluster) -> None:
    await routed_mesh(mesh, {"a.local": "v1", "b.local": "v1"})
    informer = mesh.informer("VirtualService")
    lists = informer.status.lists

    await mesh.proxy.cut()
    await eventually(lambda: not informer.status.connected, "the watch cut")
    mesh.apply(virtual_service("c", "c.local", "v2"))  # created
    mesh.apply(virtual_service("a", "a.local", "v2"))  # changed
    mesh.delete(virtual_service("b", "b.local", "v1"))  # deleted
    revision = await asyncio.to_thread(cluster.compact)
    await mesh.proxy.restore()

    await eventually(lambda: informer.status.relists_after_gone >= 1,
                     f"a 410 Gone after compaction at revision {revision}", timeout=60)
    await mesh.wait_version("v2", "c.local")
    await mesh.wait_version("v2", "a.local")
    await eventually(lambda: mesh.get("b.local")[0] == 404, "b.local gone")
    assert informer.status.lists > lists
    assert mesh.virtual_services() == ["a", "c"]  # nothing duplicated, nothing stale
    assert sum(mesh.plane.xds.stats.rejects.values()) == 0


async def test_not_ready_until_every_informer_synced(mesh: KubeMesh) -> None:
    mesh.write_registry()
    mesh.apply(GATEWAY)
    await mesh.start(wait_ready=False, api_reachable=False)
    envoy = mesh.stack.envoy  # type: ignore[union-attr]
    assert envoy is not None
    await asyncio.sleep(2)
    assert await mesh.ready_status() == 503
    status, _, body = await asyncio.to_thread(
        http_get, mesh.plane.http_port, "pilotpy", "/ready")
    assert status == 503 and b"kube" in body
    assert not mesh.plane.xds.ready.is_set()
    assert envoy.server_state() != "LIVE"  # its stream is held, not answered with nothing

    await mesh.proxy.restore()
    await mesh.wait_ready()
    assert await mesh.ready_status() == 200
    await eventually(lambda: envoy.server_state() == "LIVE", "Envoy LIVE after the sync")
    await eventually(lambda: mesh.get()[0] == 404, "the Gateway's blackhole:80")


async def test_stream_before_the_sync_gets_unavailable_after_the_wait(
        mesh: KubeMesh, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pilotpy.xds.server.READY_WAIT_SECONDS == 30.0
    monkeypatch.setattr(pilotpy.xds.server, "READY_WAIT_SECONDS", 1.0)
    await mesh.start(wait_ready=False, api_reachable=False)
    async with SotwClient(f"127.0.0.1:{mesh.plane.grpc_port}", GATEWAY_NODE) as client:
        await client.request(types.CLUSTER)
        assert await client.wait_closed(10.0) == grpc.StatusCode.UNAVAILABLE


async def test_invalid_object_is_reported_and_skipped(mesh: KubeMesh) -> None:
    await routed_mesh(mesh, {"a.local": "v1"})
    # Valid for the CRD's schema, invalid for Istio: a negative weight.
    mesh.apply(virtual_service("bad", "bad.local", "v2", weight=-5))
    mesh.apply(virtual_service("b", "b.local", "v2"))
    await mesh.wait_version("v2", "b.local")
    assert mesh.get("bad.local")[0] == 404
    errors = [str(p) for p in mesh.plane.problems.errors()]
    assert any("VirtualService default/bad" in e and "spec.http[0].route[0].weight" in e
               for e in errors), errors
    # An edit that breaks a served object keeps its last valid version.
    mesh.apply(virtual_service("a", "a.local", "v2", weight=-1))
    await asyncio.sleep(1)
    assert mesh.version("a.local") == "v1"
    assert mesh.virtual_services() == ["a", "b"]
    assert sum(mesh.plane.xds.stats.rejects.values()) == 0
