"""Istio's Reconciled status written through a real kube-apiserver (serve --enable-status):
once the real Envoy gateway acknowledged a VirtualService's generation, the object says so
(`kubectl get vs -o yaml` shows it); while the gateway refuses it, it says not. `pilotpy diff
--kube` then reads the same cluster as the current state. Only the leader of
istio-status-leader writes, and writes are rate-limited."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotpy.local.stack import eventually
from pilotpy.model.kinds import Kind
from pilotpy.model.meta import Key
from pilotpy.server.controlplane import ControlPlane
from pilotpy.server.settings import Settings
from pilotpy.server.status_writer import StatusWriter
from tests.kube.cluster import ApiStatusError, Cluster
from tests.kube.support import (
    DESTINATION_RULE,
    GATEWAY,
    GATEWAY_NODE,
    KubeMesh,
    virtual_service,
)

pytestmark = pytest.mark.e2e
PATH = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/httpbin"
# RE2 has no backreferences: Envoy rejects this route regex, Python's `re` accepts it.
ENVOY_REJECTS = "/(a)\\1"
STATUS_LEASE = "/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/istio-status-leader"


def _reconciled(stored: dict[str, Any]) -> tuple[Any, ...] | None:
    """(status.observedGeneration, condition status, message, metadata.generation)."""
    status = stored.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Reconciled":
            return (status.get("observedGeneration"), condition["status"],
                    condition["message"], stored["metadata"]["generation"])
    return None


async def test_reconciled_status_follows_what_the_gateway_acknowledged(mesh: KubeMesh
                                                                        ) -> None:
    mesh.write_registry()
    await mesh.start(enable_status=True)
    mesh.apply(GATEWAY)
    mesh.apply(DESTINATION_RULE)
    mesh.apply(virtual_service("httpbin", "httpbin.local", "v2"))
    await mesh.wait_version("v2")

    def reconciled() -> Any:
        return _reconciled(mesh.admin.get(PATH))

    await eventually(lambda: reconciled() == (1, "True", "1/1 proxies up to date.", 1),
                     "generation 1 reconciled on the VirtualService", timeout=20)
    # The Gateway's listener may be acknowledged a little after the VirtualService's routes.
    await eventually(lambda: _reconciled(mesh.admin.get(
        "/apis/networking.istio.io/v1/namespaces/default/gateways/httpbin-gateway"))
        == (1, "True", "1/1 proxies up to date.", 1), "the Gateway reconciled", timeout=20)

    # Generation 2 carries a route Envoy refuses: not reconciled, 0 of 1 proxies.
    broken: dict[str, Any] = yaml.safe_load(virtual_service("httpbin", "httpbin.local", "v1"))
    broken["spec"]["http"].insert(0, {"match": [{"uri": {"regex": ENVOY_REJECTS}}],
                                      "route": [{"destination": {"host": "httpbin-service"}}]})
    mesh.apply_doc(broken)
    await eventually(lambda: reconciled() == (2, "False", "0/1 proxies up to date.", 2),
                     "generation 2 refused by the gateway", timeout=20)
    assert mesh.version() == "v2"  # Envoy kept the routes it had

    # Generation 3 fixes it.
    mesh.apply(virtual_service("httpbin", "httpbin.local", "v1"))
    await mesh.wait_version("v1")
    await eventually(lambda: reconciled() == (3, "True", "1/1 proxies up to date.", 3),
                     "generation 3 reconciled", timeout=20)
    assert mesh.plane.status_writer is not None and mesh.plane.status_writer.writes >= 4

    # `pilotpy diff --kube`: the cluster's objects are the current state.
    proposed = mesh.workdir / "v2.yaml"
    proposed.write_text(virtual_service("httpbin", "httpbin.local", "v2"))
    done = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "pilotpy.cli", "diff", "--kubeconfig",
        str(mesh.workdir / "kubeconfig"), "--proposed", str(proposed),
        "--node-id", GATEWAY_NODE, "--label", "istio=ingressgateway"],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert ('route.cluster: "outbound|80|v1|httpbin-service.default.svc.cluster.local" -> '
            '"outbound|80|v2|httpbin-service.default.svc.cluster.local"') in done.stdout


@contextlib.asynccontextmanager
async def replica(cluster: Cluster, workdir: Path, name: str, *, enable_status: bool = True,
                  lease_duration: float = 2.0) -> AsyncIterator[ControlPlane]:
    """Another pilotpy on the same API server, synced; no proxy connects to it."""
    kubeconfig = cluster.kubeconfig(workdir / f"kubeconfig-{name}")
    plane = ControlPlane(Settings(
        grpc_addr="127.0.0.1:0", grpc_tls_addr="", http_addr="127.0.0.1:0",
        monitoring_addr="127.0.0.1:0", kube=True, kubeconfig=kubeconfig, instance_id=name,
        enable_status=enable_status, lease_duration_seconds=lease_duration))
    await plane.start()
    try:
        await asyncio.wait_for(plane.xds.ready.wait(), 30)
        yield plane
    finally:
        await plane.stop()


def lease_holder(cluster: Cluster) -> str:
    try:
        lease = cluster.admin.get(STATUS_LEASE)
    except ApiStatusError:
        return ""
    return str(lease["spec"].get("holderIdentity") or "")


async def test_only_the_status_leader_writes_and_a_follower_takes_over(
        mesh: KubeMesh, tmp_path: Path) -> None:
    """Two replicas with --enable-status: the one holding istio-status-leader writes what
    its gateway acknowledged; the other (no proxies: it would write "0/0") writes nothing
    while the leader lives, and takes over once the leader gives the Lease up."""
    mesh.write_registry()
    await mesh.start(enable_status=True)
    mesh.apply(GATEWAY)
    mesh.apply(DESTINATION_RULE)
    mesh.apply(virtual_service("httpbin", "httpbin.local", "v2"))
    await mesh.wait_version("v2")
    await eventually(lambda: _reconciled(mesh.admin.get(PATH))
                     == (1, "True", "1/1 proxies up to date.", 1), "reconciled", timeout=20)
    leader = mesh.plane
    assert leader.status_election is not None and leader.status_election.leading.is_set()
    async with replica(mesh.cluster, tmp_path, "pilotpy-follower") as follower:
        assert follower.status_election is not None and follower.status_writer is not None
        for _ in range(12):  # several of the follower's retry periods (0.5 s)
            await asyncio.sleep(0.25)
            assert not follower.status_election.leading.is_set()
        assert follower.status_writer.writes == 0
        assert _reconciled(mesh.admin.get(PATH)) == (1, "True", "1/1 proxies up to date.", 1)
        assert lease_holder(mesh.cluster) == leader.status_election.identity

        # The leader steps down (its election cancelled: the Lease is released).
        task = next(t for t in leader._tasks if t.get_name() == "status leader election")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await eventually(lambda: lease_holder(mesh.cluster) == "pilotpy-follower",
                         "the follower holding istio-status-leader", timeout=10)
        await eventually(lambda: _reconciled(mesh.admin.get(PATH))
                         == (1, "True", "0/0 proxies up to date.", 1),
                         "the new leader's status", timeout=10)
        assert follower.status_writer.writes >= 1


async def test_status_writes_are_rate_limited_against_the_api_server(
        cluster: Cluster, tmp_path: Path) -> None:
    """The writer's token bucket against the real API server: N objects at 4 writes a second
    after a burst of 2 take at least (N - 2) / 4 s, each written once."""
    names = [f"rate-{i:02d}" for i in range(12)]
    docs = [yaml.safe_load(f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec: {{hosts: [{name}.local], http: [{{route: [{{destination: {{host: {name}}}}}]}}]}}
""") for name in names]
    for doc in docs:
        cluster.admin.apply(doc)
    try:
        async with replica(cluster, tmp_path, "pilotpy-rate", enable_status=False) as plane:
            assert plane.kube is not None and plane.kube_api is not None
            await eventually(lambda: all(
                Key(Kind.VIRTUAL_SERVICE, "default", n) in plane.discovery.object_changes
                for n in names), "the objects taken", timeout=10)
            writer = StatusWriter(plane.kube_api, plane.propagation, plane.discovery,
                                  plane.kube.object_path, qps=4.0, burst=2)
            started = time.monotonic()
            written = await writer.write_once()
            elapsed = time.monotonic() - started
            assert written >= len(names)
            assert elapsed >= (written - 2) / 4.0 - 0.05, (written, elapsed)
            assert await writer.write_once() == 0  # each state once
        for name in names:
            stored = cluster.admin.get(PATH.replace("httpbin", name))
            assert _reconciled(stored) == (1, "True", "0/0 proxies up to date.", 1), name
    finally:
        for doc in docs:
            with contextlib.suppress(ApiStatusError):
                cluster.admin.delete(doc)
