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
from pilotpy.translate.sidecar_routes import default_route, virtual_host_domains
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


def tcp_service_entry(name: str, hosts: list[str], addresses: list[str],
                      port: int = 22) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": hosts, "addresses": addresses, "location": "MESH_EXTERNAL",
                     "resolution": "NONE",
                     "ports": [{"number": port, "name": "tcp", "protocol": "TCP"}]}}


def outbound_listener(push: PushContext, name: str) -> tuple[Any, tuple[str, ...]]:
    from pilotpy.translate.generate import generate

    generated = generate(push, view_proxy(parse_proxy(NODE), push))
    (listener,) = [x for x in generated.listeners if x.name == name]
    return listener, tuple(str(p) for p in generated.problems)


def prefix_ranges(listener: Any) -> list[list[str]]:
    return [[f"{r.address_prefix}/{r.prefix_len.value}" for r in c.filter_chain_match.prefix_ranges]
            for c in listener.filter_chains]


def test_every_cidr_of_a_service_entry_gets_its_own_chain_on_the_wildcard_listener() -> None:
    """istiod makes one service per address and merges their chains while the ranges
    differ (samples/external/github.yaml): no range may fall to the catch-all."""
    push = context(tcp_service_entry("github", ["github.com"],
                                     ["192.30.252.0/22", "185.199.108.0/22", "140.82.112.0/20"]))
    listener, diagnostics = outbound_listener(push, "0.0.0.0_22")
    assert prefix_ranges(listener) == [["192.30.252.0/22"], ["185.199.108.0/22"],
                                       ["140.82.112.0/20"]]
    assert {c.filters[0].typed_config.value.count(b"outbound|22||github.com")
            for c in listener.filter_chains} == {2}  # stat prefix and cluster
    assert listener.default_filter_chain.name == "PassthroughFilterChain"
    assert diagnostics == ()


def test_a_range_another_service_already_holds_is_reported_with_the_range_and_owner() -> None:
    push = context(tcp_service_entry("a", ["a.example.com"], ["10.1.0.0/16"]),
                   tcp_service_entry("b", ["b.example.com"], ["10.1.0.0/16", "10.2.0.0/16"]))
    listener, diagnostics = outbound_listener(push, "0.0.0.0_22")
    assert prefix_ranges(listener) == [["10.1.0.0/16"], ["10.2.0.0/16"]]
    assert diagnostics == ("Warning [Conflict] (ServiceEntry default/b) spec.addresses: "
                           "b.example.com:22 (TCP) at 10.1.0.0/16: the range already has a "
                           "filter chain on listener 0.0.0.0_22 (from a.example.com); skipped",)


def external_name(name: str, target: str, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "ExternalName", "externalName": target,
                     "ports": [{"name": "http", "port": 80}]}}


def http_service_entry(host: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": host, "namespace": "default"},
            "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                     "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}}


def route_80(push: PushContext) -> tuple[dict[str, list[str]], list[str]]:
    """Route `80`'s virtual hosts (name -> domains) and every cluster name."""
    from pilotpy.translate.generate import generate

    generated = generate(push, view_proxy(parse_proxy(NODE), push))
    (route,) = [r for r in generated.routes if r.name == "80"]
    return ({v.name: list(v.domains) for v in route.virtual_hosts},
            [c.name for c in generated.clusters])


def test_an_external_name_to_an_unknown_host_is_left_to_the_catch_all() -> None:
    """istio.io's my-httpbin -> httpbin.org: no virtual host, listener or cluster of its own,
    so the request passes through (istiod treats ExternalName as an alias)."""
    push = context(service("sleep"), external_name("my-httpbin", "httpbin.org"))
    vhosts, clusters = route_80(push)
    assert sorted(vhosts) == ["allow_any", "sleep.default.svc.cluster.local:80"]
    assert not any("httpbin" in " ".join(d) for d in vhosts.values())
    assert not any("httpbin" in c for c in clusters)


def test_an_external_name_to_a_registry_host_adds_its_names_to_that_virtual_host() -> None:
    push = context(http_service_entry("httpbin.org"),
                   external_name("my-httpbin", "HTTPBIN.org."),  # DNS spelling is normalised
                   external_name("my-httpbin-2", "my-httpbin.default.svc.cluster.local"),
                   external_name("loop-a", "loop-b.default.svc.cluster.local"),
                   external_name("loop-b", "loop-a.default.svc.cluster.local"))
    vhosts, clusters = route_80(push)
    assert sorted(vhosts) == ["allow_any", "httpbin.org:80"]
    domains = vhosts["httpbin.org:80"]
    assert {"httpbin.org", "my-httpbin.default.svc.cluster.local", "my-httpbin",
            "my-httpbin-2", "my-httpbin-2.default.svc"} <= set(domains)
    assert not any(d.startswith("loop-") for d in domains)
    assert "outbound|80||httpbin.org" in clusters
    assert not any("my-httpbin" in c for c in clusters)


def test_routes_shared_between_classes_still_follow_source_labels() -> None:
    """Route bytes are memoized per push context; a `sourceLabels` match keys them by the
    proxy's labels too, so two workloads of one namespace each get their own."""
    from pilotpy.translate.generate import generate

    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "web", "namespace": "default"},
          "spec": {"hosts": ["web"], "http": [
              {"match": [{"sourceLabels": {"app": "a"}}],
               "route": [{"destination": {"host": "web"}}], "timeout": "3s"},
              {"route": [{"destination": {"host": "web"}}]}]}}
    push = context(service("web"), vs)

    def timeouts(app: str) -> list[float]:
        view = view_proxy(parse_proxy(f"sidecar~10.2.0.9~{app}-0.default~"
                                      "default.svc.cluster.local", {"LABELS": {"app": app}}),
                          push)
        (route,) = [r for r in generate(push, view).routes if r.name == "80"]
        (vhost,) = [v for v in route.virtual_hosts if v.name.startswith("web.")]
        return [r.route.timeout.seconds for r in vhost.routes]

    assert timeouts("a") == [3]  # its match became a catch-all for it
    assert timeouts("b") == [0]


def test_a_service_default_route_keeps_previous_hosts_under_a_consistent_hash() -> None:
    # istiod's BuildDefaultHTTPOutboundRoute converts the mesh's retry policy without the
    # consistent hash (only VirtualService routes drop the predicate); found by the diff tier.
    rule = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "ratings", "namespace": "default"},
            "spec": {"host": "ratings.default.svc.cluster.local", "trafficPolicy": {
                "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}}}
    push = context(service("ratings"), rule)
    view = view_proxy(parse_proxy(NODE), push)
    route = default_route(push, view, one(push, "ratings.default.svc.cluster.local"), 80)
    assert [h.header.header_name for h in route.route.hash_policy] == ["x-user"]
    assert [p.name for p in route.route.retry_policy.retry_host_predicate] == [
        "envoy.retry_host_predicates.previous_hosts"]
