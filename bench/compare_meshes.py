"""The meshes `make bench-compare` loads into the API server, and the changes it makes to them.

- `gateway_mesh(n, routes)`: n Services in namespace `bench` (10 endpoints each), one
  VirtualService per Service bound to sidecars and, for the first `routes` (all by default),
  to the ingress Gateway (bench/configgen.py, S1's input);
- `reference_mesh()`: Istio's reference mesh (S7): 1000 Services in 20 namespaces, 2000 sidecars
  of 200 workloads (10 replicas each, so 200 proxy classes), a namespace-scoped Sidecar per
  namespace, one VirtualService per Service."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from configgen import NAMESPACE, documents

REFERENCE_NAMESPACES = 20
REFERENCE_SERVICES_PER_NAMESPACE = 50
REFERENCE_WORKLOADS_PER_NAMESPACE = 10
REFERENCE_REPLICAS = 10


def gateway_mesh(services: int, gateway_routes: int | None = None) -> list[dict[str, Any]]:
    return documents(services, gateway_routes=gateway_routes)


@dataclass
class ReferenceMesh:
    docs: list[dict[str, Any]] = field(default_factory=list)
    sidecars: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def _service(name: str, namespace: str, vip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "clusterIP": vip,
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def _slice(name: str, namespace: str, addresses: Sequence[tuple[str, str | None]]
           ) -> dict[str, Any]:
    endpoints = []
    for address, pod in addresses:
        endpoint: dict[str, Any] = {"addresses": [address], "conditions": {"ready": True}}
        if pod is not None:
            endpoint["targetRef"] = {"kind": "Pod", "namespace": namespace, "name": pod}
        endpoints.append(endpoint)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-x", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": endpoints}


def reference_mesh() -> ReferenceMesh:
    mesh = ReferenceMesh()
    for n in range(REFERENCE_NAMESPACES):
        namespace = f"ns-{n}"
        mesh.docs.append({
            "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "default", "namespace": namespace},
            "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]}})
        for s in range(REFERENCE_SERVICES_PER_NAMESPACE):
            name = f"svc-{s}"
            mesh.docs.append(_service(name, namespace, f"10.96.{100 + n}.{s + 1}"))
            if s < REFERENCE_WORKLOADS_PER_NAMESPACE:
                # A workload with sidecars: its pods are the endpoints.
                pods = []
                for r in range(REFERENCE_REPLICAS):
                    pod, ip = f"{name}-{r}", f"10.200.{n}.{s * REFERENCE_REPLICAS + r + 1}"
                    mesh.docs.append({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": pod, "namespace": namespace,
                                     "labels": {"app": name}},
                        "spec": {"containers": [{"name": "app", "image": "app"}]},
                        "status": {"podIP": ip}})
                    mesh.sidecars.append((f"sidecar~{ip}~{pod}.{namespace}~"
                                          f"{namespace}.svc.cluster.local", {"app": name}))
                    pods.append((ip, pod))
                mesh.docs.append(_slice(name, namespace, pods))
            else:
                mesh.docs.append(_slice(name, namespace, [
                    (f"10.201.{n}.{s * 2 + 1}", None), (f"10.201.{n}.{s * 2 + 2}", None)]))
            mesh.docs.append(virtual_service(name, namespace, timeout=5))
    return mesh


def virtual_service(name: str, namespace: str, *, timeout: int) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"hosts": [name],
                     "http": [{"timeout": f"{timeout}s", "route": [{"destination": {
                         "host": name}}]}]}}


def changed_gateway_route(docs: list[dict[str, Any]], generation: int) -> dict[str, Any]:
    """The first VirtualService of a gateway mesh with a timeout of its own per `generation`
    (1, 2, ...): each is a route change."""
    vs = copy.deepcopy(next(d for d in docs if d["kind"] == "VirtualService"))
    vs["spec"]["http"][0]["timeout"] = f"{5 + generation}s"
    return vs


def changed_endpoints(docs: list[dict[str, Any]], index: int, generation: int) -> dict[str, Any]:
    """An EndpointSlice of the mesh (round robin by `index`) whose first address moves to
    one this `generation` (a run) has not used: endpoint churn that is never a no-op."""
    slices = [d for d in docs if d["kind"] == "EndpointSlice"]
    changed = copy.deepcopy(slices[index % len(slices)])
    first = changed["endpoints"][0]
    n = generation * 4096 + index % 4096
    first["addresses"] = [f"10.{252 + (n >> 16) % 4}.{(n >> 8) & 255}.{n & 255}"]
    first.pop("targetRef", None)
    return changed


__all__ = ["NAMESPACE", "ReferenceMesh", "changed_endpoints", "changed_gateway_route",
           "gateway_mesh", "reference_mesh", "virtual_service"]
