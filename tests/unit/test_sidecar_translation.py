"""Sidecar translation details the goldens do not spell out: the names a virtual host
answers to, egress scoping by port, the proxy class key, headless endpoint pushes."""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.model import Key
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.push import PushContext, build_push_context
from pilotpy.translate.generate import generate
from pilotpy.translate.sidecar_routes import virtual_host_domains
from pilotpy.translate.sidecar_scope import sidecar_scope
from tests.unit.support import context, objects_of

NODE = "sidecar~10.244.0.5~sleep-1.default~default.svc.cluster.local"


def service(name: str, namespace: str = "default", *, cluster_ip: str = "10.96.0.9",
            port: int = 80) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": name},
                     "ports": [{"name": "http", "port": port}]}}


def one(push: PushContext, hostname: str) -> Any:
    found = push.service(hostname, "default")
    assert found is not None
    return found


def test_same_namespace_domains_include_every_short_form_without_port() -> None:
    # The route configuration ignores ports in Host matching, so `name:80` forms are not
    # needed (istiod's SidecarIgnorePort).
    push = context(service("httpbin"))
    domains = virtual_host_domains(one(push, "httpbin.default.svc.cluster.local"),
                                   "default.svc.cluster.local")
    assert domains == [
        "httpbin.default.svc.cluster.local", "httpbin.default.svc.cluster.local.",
        "httpbin", "httpbin.default.svc", "httpbin.default", "10.96.0.9"]


def test_other_namespaces_never_get_the_bare_name() -> None:
    push = context(service("productpage", "bookinfo"))
    domains = virtual_host_domains(one(push, "productpage.bookinfo.svc.cluster.local"),
                                   "default.svc.cluster.local")
    assert "productpage" not in domains
    assert {"productpage.bookinfo", "productpage.bookinfo.svc"} <= set(domains)


def test_headless_services_answer_for_pod_names_too() -> None:
    push = context(service("db", cluster_ip="None"))
    domains = virtual_host_domains(one(push, "db.default.svc.cluster.local"),
                                   "default.svc.cluster.local")
    assert "*.db.default.svc.cluster.local" in domains and "*.db" in domains
    assert not any(d[0].isdigit() for d in domains)  # no VIP


def sidecar(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "default", "namespace": "default"}, "spec": spec}


def test_a_port_scoped_egress_listener_owns_its_port() -> None:
    push = context(service("a"), service("b", "other"), sidecar(egress=[
        {"port": {"number": 9080}, "hosts": ["other/*"]}, {"hosts": ["./*"]}]))
    scope = sidecar_scope(push, view_proxy(parse_proxy(NODE), push))
    assert scope.allows("default", "a.default.svc.cluster.local", 80)
    assert not scope.allows("other", "b.other.svc.cluster.local", 80)
    assert scope.allows("other", "b.other.svc.cluster.local", 9080)
    assert not scope.allows("default", "a.default.svc.cluster.local", 9080)


def test_sidecar_policy_overrides_the_mesh_default() -> None:
    push = context(sidecar(outboundTrafficPolicy={"mode": "REGISTRY_ONLY"}))
    assert sidecar_scope(push, view_proxy(parse_proxy(NODE), push)).registry_only
    push = context(mesh=MeshConfig(outbound_traffic_policy="REGISTRY_ONLY"))
    assert sidecar_scope(push, view_proxy(parse_proxy(NODE), push)).registry_only


def test_replicas_share_a_class_unless_headless_services_make_addresses_matter() -> None:
    other = NODE.replace("10.244.0.5", "10.244.0.6")
    push = context(service("a"))
    assert (view_proxy(parse_proxy(NODE), push).class_key
            == view_proxy(parse_proxy(other), push).class_key)
    push = context(service("a"), service("db", cluster_ip="None"))
    assert (view_proxy(parse_proxy(NODE), push).class_key
            != view_proxy(parse_proxy(other), push).class_key)


def endpoint_slice(service_name: str, address: str) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"addresses": [address]}]}


def test_headless_endpoint_changes_push_in_full_others_only_endpoints() -> None:
    for cluster_ip, full in (("10.96.0.9", False), ("None", True)):
        first = objects_of([service("db", cluster_ip=cluster_ip),
                            endpoint_slice("db", "10.244.0.30")])
        previous, _ = build_push_context(first, MeshConfig(), 1)
        second = objects_of([service("db", cluster_ip=cluster_ip),
                             endpoint_slice("db", "10.244.0.31")])
        key = Key("EndpointSlice", "default", "db-1")
        _, scope = build_push_context(second, MeshConfig(), 2, previous, [key])
        assert scope.full is full


# -- outbound listeners on reserved ports and shared ports ---------------------------------

AGENT_METADATA = {"ENVOY_STATUS_PORT": 15021, "ENVOY_PROMETHEUS_PORT": 15090}


def listener_names(*docs: dict[str, Any], metadata: dict[str, Any] | None = None) -> set[str]:
    push = context(*docs)
    view = view_proxy(parse_proxy(NODE, AGENT_METADATA if metadata is None else metadata), push)
    return {listener.name for listener in generate(push, view).listeners}


def tcp_service(name: str, port: int, cluster_ip: str = "10.96.0.7") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": name},
                     "ports": [{"name": "tcp", "port": port}]}}


def test_a_service_address_may_use_the_proxys_status_and_stats_ports() -> None:
    # istiod's conflictWithReservedListener: only wildcard listeners clash with the bootstrap's
    # own 15021/15090 listeners.
    names = listener_names(tcp_service("health", 15021), tcp_service("metrics", 15090,
                                                                      "10.96.0.8"))
    assert {"10.96.0.7_15021", "10.96.0.8_15090"} <= names


def test_wildcard_listeners_never_take_the_proxys_static_ports() -> None:
    names = listener_names(service("status", port=15021),
                           tcp_service("bare", 15090, cluster_ip=""))
    assert "0.0.0.0_15021" not in names and "0.0.0.0_15090" not in names


def test_static_ports_are_the_ones_the_proxy_reports() -> None:
    # Without the metadata (a proxy that has no such listeners) the port is free.
    assert "0.0.0.0_15021" in listener_names(service("status", port=15021), metadata={})


def test_a_tcp_service_without_address_on_an_http_port_takes_the_default_chain() -> None:
    push = context(service("web"), {
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "raw", "namespace": "default"},
        "spec": {"hosts": ["raw.example.com"], "location": "MESH_EXTERNAL",
                 "resolution": "NONE",
                 "ports": [{"number": 80, "name": "tcp-raw", "protocol": "TCP"}]}})
    view = view_proxy(parse_proxy(NODE, AGENT_METADATA), push)
    listener = next(item for item in generate(push, view).listeners if item.name == "0.0.0.0_80")
    proxy = tcp_proxy_pb2.TcpProxy.FromString(
        listener.default_filter_chain.filters[0].typed_config.value)
    assert proxy.cluster == "outbound|80||raw.example.com"
    assert len(listener.filter_chains) == 1  # the HTTP chain, route 80
