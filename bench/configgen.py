"""Synthetic mesh configs for benchmarks: N Services (one HTTP port, E endpoints each), one
VirtualService per Service bound to an ingress Gateway, as scenario S1 describes
(docs/benchmarks.md#scenarios)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "bench"
GATEWAY_NODE = "router~10.0.0.1~gw-{i}.istio-system~istio-system.svc.cluster.local"
SIDECAR_NODE = "sidecar~10.1.0.{i}~client-{i}.bench~bench.svc.cluster.local"


def _ip(service: int, endpoint: int) -> str:
    n = service * 16 + endpoint  # up to 16 endpoints per service without overlap
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def _vip(service: int) -> str:
    # Valid in a real cluster's 10.96.0.0/16: the first addresses are the network's own and
    # the `kubernetes` Service's.
    n = service + 16
    return f"10.96.{(n >> 8) & 255}.{n & 255}"


def documents(services: int, endpoints: int = 10, gateway_routes: int | None = None
              ) -> list[dict[str, Any]]:
    """`gateway_routes`: how many of the VirtualServices the gateway serves (the first ones;
    the others bind sidecars only); all by default."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "ports": [{"name": "http2", "port": 80, "targetPort": 8080}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
         "metadata": {"name": "bench-gateway", "namespace": NAMESPACE},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                               "hosts": [f"*.{NAMESPACE}.example.com"]}]}},
    ]
    for i in range(services):
        name = f"svc-{i}"
        docs.append({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": name, "namespace": NAMESPACE},
                     "spec": {"selector": {"app": name}, "clusterIP": _vip(i),
                              "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        docs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{name}-x", "namespace": NAMESPACE,
                                  "labels": {"kubernetes.io/service-name": name}},
                     "addressType": "IPv4",
                     "ports": [{"name": "http", "port": 8080}],
                     "endpoints": [{"addresses": [_ip(i, e)], "conditions": {"ready": True}}
                                   for e in range(endpoints)]})
        docs.append({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                     "metadata": {"name": name, "namespace": NAMESPACE},
                     # Bound to the gateway (by its external name) and to sidecars (by the
                     # service's own name), as application VirtualServices usually are.
                     "spec": {"hosts": [f"{name}.{NAMESPACE}.example.com", name],
                              "gateways": (["bench-gateway", "mesh"]
                                           if gateway_routes is None or i < gateway_routes
                                           else ["mesh"]),
                              "http": [{"match": [{"uri": {"prefix": "/api"}}],
                                        "timeout": "5s",
                                        "route": [{"destination": {"host": name}}]},
                                       {"route": [{"destination": {"host": name}}]}]}})
    return docs


def write(directory: Path, services: int, endpoints: int = 10) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mesh.yaml"
    loader = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump_all(documents(services, endpoints), Dumper=loader),
                    encoding="utf-8")
    return path
