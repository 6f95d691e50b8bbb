"""Istio's Reconciled status written through a real kube-apiserver (serve --enable-status):
once the real Envoy gateway acknowledged a VirtualService's generation, the object says so
(`kubectl get vs -o yaml` shows it); while the gateway refuses it, it says not. `pilotpy diff
--kube` then reads the same cluster as the current state."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
import yaml

from pilotpy.local.stack import eventually
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
    gateway = mesh.admin.get(
        "/apis/networking.istio.io/v1/namespaces/default/gateways/httpbin-gateway")
    assert _reconciled(gateway) == (1, "True", "1/1 proxies up to date.", 1)

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
