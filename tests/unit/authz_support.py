"""Shared by the authorization and JWT translation tests: a registry with httpbin (HTTP 8000
-> 8080, TCP 9000, in `foo`), its v1 pod's sidecar, an ingress gateway, and calls into them
through the translated config (pilotpy.simulate)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotpy.mesh import MeshConfig
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.push import PushContext
from pilotpy.simulate import Call, Mode, Result, Simulation
from pilotpy.translate.generate import GeneratedConfig, generate
from tests.unit.support import context

HTTPBIN_IP = "10.244.0.11"
SIDECAR = f"sidecar~{HTTPBIN_IP}~httpbin-v1-abc.foo~foo.svc.cluster.local"
GATEWAY_IP = "10.244.0.7"
GATEWAY = (f"router~{GATEWAY_IP}~istio-ingressgateway-abc.istio-system"
           "~istio-system.svc.cluster.local")
HTTP_PORT, TCP_PORT, UNDECLARED_PORT = 8080, 9000, 7777
HCM_FILTER = "envoy.filters.network.http_connection_manager"

REGISTRY: tuple[dict[str, Any], ...] = (
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "httpbin", "namespace": "foo"},
     "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "httpbin"},
              "ports": [{"name": "http", "port": 8000, "targetPort": HTTP_PORT},
                        {"name": "tcp-data", "port": TCP_PORT}]}},
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "httpbin-v1-abc", "namespace": "foo",
                  "labels": {"app": "httpbin", "version": "v1"}},
     "status": {"podIP": HTTPBIN_IP}},
    {"apiVersion": "v1", "kind": "Service",
     "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
     "spec": {"clusterIP": "10.96.0.2", "selector": {"istio": "ingressgateway"},
              "ports": [{"name": "http2", "port": 80, "targetPort": 8080},
                        {"name": "tcp", "port": 31400}]}},
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "istio-ingressgateway-abc", "namespace": "istio-system",
                  "labels": {"istio": "ingressgateway"}},
     "status": {"podIP": GATEWAY_IP}},
    {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
     "metadata": {"name": "gw", "namespace": "istio-system"},
     "spec": {"selector": {"istio": "ingressgateway"},
              "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                           "hosts": ["*"]},
                          {"port": {"number": 31400, "name": "tcp", "protocol": "TCP"},
                           "hosts": ["*"]}]}},
    {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
     "metadata": {"name": "httpbin", "namespace": "istio-system"},
     "spec": {"hosts": ["*"], "gateways": ["gw"],
              "http": [{"route": [{"destination": {
                  "host": "httpbin.foo.svc.cluster.local", "port": {"number": 8000}}}]}],
              "tcp": [{"route": [{"destination": {
                  "host": "httpbin.foo.svc.cluster.local", "port": {"number": 9000}}}]}]}},
)


def authorization_policy(name: str = "p", namespace: str = "foo", *,
                         annotations: dict[str, str] | None = None,
                         **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": metadata, "spec": spec}


def request_authentication(*rules: dict[str, Any], name: str = "jwt", namespace: str = "foo",
                           **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {**spec, "jwtRules": list(rules)}}


def push_with(docs: Iterable[dict[str, Any]], mesh: MeshConfig | None = None) -> PushContext:
    return context(*REGISTRY, *docs, mesh=mesh)


def translated(docs: Iterable[dict[str, Any]] = (), *, node: str = SIDECAR,
               mesh: MeshConfig | None = None) -> GeneratedConfig:
    push = push_with(docs, mesh)
    return generate(push, view_proxy(parse_proxy(node), push))


def simulation(docs: Iterable[dict[str, Any]] = (), *, node: str = SIDECAR,
               mesh: MeshConfig | None = None) -> Simulation:
    config = translated(docs, node=node, mesh=mesh)
    return Simulation(config.listeners, config.routes, config.clusters)


def inbound(sim: Simulation, port: int = HTTP_PORT, **call: Any) -> Result:
    """A call from another pod to httpbin's `port`, captured by its sidecar."""
    return sim.run(Call(port=port, address=HTTPBIN_IP, mode=Mode.INBOUND, **call))


def listener(config: GeneratedConfig, name: str) -> Any:
    return next(li for li in config.listeners if li.name == name)


def chain(config: GeneratedConfig, listener_name: str, chain_name: str,
          index: int = 0) -> Any:
    chains = [c for c in listener(config, listener_name).filter_chains
              if c.name == chain_name]
    return chains[index]


def filter_names(filter_chain: Any) -> list[str]:
    """The chain's network filters, with the HTTP filters of a connection manager after it
    (`envoy.filters.network.http_connection_manager/envoy.filters.http.rbac`)."""
    out = []
    for network_filter in filter_chain.filters:
        out.append(str(network_filter.name))
        if network_filter.name == HCM_FILTER:
            manager = hcm_pb2.HttpConnectionManager()
            network_filter.typed_config.Unpack(manager)
            out += [f"{HCM_FILTER}/{f.name}" for f in manager.http_filters]
    return out


def unpack_filter(filter_chain: Any, name: str, message: Any) -> Any:
    """The typed config of the chain's (or its connection manager's) filter `name`."""
    for network_filter in filter_chain.filters:
        if network_filter.name == name:
            network_filter.typed_config.Unpack(message)
            return message
        if network_filter.name == HCM_FILTER:
            manager = hcm_pb2.HttpConnectionManager()
            network_filter.typed_config.Unpack(manager)
            for http_filter in manager.http_filters:
                if http_filter.name == name:
                    http_filter.typed_config.Unpack(message)
                    return message
    raise AssertionError(f"no filter {name} in chain {filter_chain.name}")
