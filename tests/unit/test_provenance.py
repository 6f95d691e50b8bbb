"""translate/provenance.py: which objects a proxy class's config depends on (propagation
status asks it), and which object and VirtualService rule an Envoy message came from
(`pilotpy explain` asks it)."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc

from pilotpy.model.kinds import Kind
from pilotpy.model.meta import Key
from pilotpy.model.virtualservice import VirtualService
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.push import PushContext
from pilotpy.translate.provenance import config_dependencies, config_ref, http_rule
from pilotpy.translate.routes import RouteOptions, build_http_routes
from tests.unit.support import context, parse_as

GATEWAY = "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local"
SLEEP = "sidecar~10.0.0.5~sleep.default~default.svc.cluster.local"


def _service(name: str, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": "10.96.0.9", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def _gateway(name: str, selector: dict[str, str], hosts: list[str]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": selector, "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": hosts}]}}


def _vs(name: str, hosts: list[str], gateways: list[str] | None = None,
        http: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"hosts": hosts, "http": http or [
        {"route": [{"destination": {"host": "httpbin"}}]}]}
    if gateways is not None:
        spec["gateways"] = gateways
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def _dr(name: str, host: str, subsets: list[str]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": "default",
                         "creationTimestamp": f"2024-01-0{len(name) % 9 + 1}T00:00:00Z"},
            "spec": {"host": host, "subsets": [{"name": s, "labels": {"version": s}}
                                               for s in subsets]}}


def _deps(push: PushContext, node_id: str, labels: dict[str, str] | None = None
          ) -> set[str]:
    proxy = parse_proxy(node_id, {"LABELS": labels or {}})
    return {str(k) for k in config_dependencies(push, view_proxy(proxy, push))}


def test_a_gateway_depends_on_the_gateways_selecting_it_and_their_bound_routes() -> None:
    push = context(_service("httpbin"),
                   _gateway("mine", {"istio": "ingressgateway"}, ["httpbin.local"]),
                   _gateway("theirs", {"istio": "other"}, ["other.local"]),
                   _vs("bound", ["httpbin.local"], ["mine"]),
                   _vs("elsewhere", ["other.local"], ["theirs"]),
                   _vs("mesh-only", ["httpbin"]))
    deps = _deps(push, GATEWAY, {"istio": "ingressgateway"})
    assert {"Gateway default/mine", "VirtualService default/bound",
            "Service default/httpbin"} <= deps
    assert not deps & {"Gateway default/theirs", "VirtualService default/elsewhere",
                       "VirtualService default/mesh-only"}


def test_a_virtual_service_whose_hosts_miss_the_gateways_is_no_dependency() -> None:
    # W1's third step: bound to the gateway, but no host in common: nothing reaches it.
    push = context(_service("httpbin"),
                   _gateway("mine", {"istio": "ingressgateway"}, ["httpbin.local"]),
                   _vs("apart", ["other.local"], ["mine"]))
    assert "VirtualService default/apart" not in _deps(push, GATEWAY,
                                                       {"istio": "ingressgateway"})


def test_a_sidecar_depends_on_mesh_routes_and_the_rules_of_the_services_it_sees() -> None:
    push = context(_service("httpbin"), _dr("httpbin", "httpbin", ["v1"]),
                   _vs("routes", ["httpbin"]),
                   _vs("gateway-only", ["httpbin.local"], ["some-gateway"]))
    deps = _deps(push, SLEEP)
    assert {"VirtualService default/routes", "DestinationRule default/httpbin",
            "Service default/httpbin"} <= deps
    assert "VirtualService default/gateway-only" not in deps


def test_a_sidecars_egress_hosts_narrow_its_dependencies() -> None:
    sidecar = {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
               "metadata": {"name": "default", "namespace": "default"},
               "spec": {"egress": [{"hosts": ["./httpbin.default.svc.cluster.local"]}]}}
    push = context(_service("httpbin"), _service("other"), sidecar, _vs("routes", ["httpbin"]),
                   _vs("other-routes", ["other"]))
    deps = _deps(push, SLEEP)
    assert {"Sidecar default/default", "VirtualService default/routes",
            "Service default/httpbin"} <= deps
    assert not deps & {"Service default/other", "VirtualService default/other-routes"}


def test_every_destination_rule_merged_for_a_host_is_a_dependency() -> None:
    push = context(_service("httpbin"), _dr("a-first", "httpbin", ["v1"]),
                   _dr("b-second", "httpbin", ["v2"]))
    assert {"DestinationRule default/a-first", "DestinationRule default/b-second"} <= _deps(
        push, SLEEP)


def test_config_ref_reads_the_istio_metadata_of_routes_and_clusters() -> None:
    route = rc.Route()
    route.metadata.filter_metadata["istio"].fields["config"].string_value = (
        "/apis/networking.istio.io/v1/namespaces/shop/virtual-service/cart")
    cluster = cluster_pb2.Cluster()
    cluster.metadata.filter_metadata["istio"].fields["config"].string_value = (
        "/apis/networking.istio.io/v1/namespaces/shop/destination-rule/cart")
    assert config_ref(route) == Key(Kind.VIRTUAL_SERVICE, "shop", "cart")
    assert config_ref(cluster) == Key(Kind.DESTINATION_RULE, "shop", "cart")
    assert config_ref(rc.Route(name="default")) is None


def test_http_rule_names_the_rule_and_match_each_route_came_from() -> None:
    vs = parse_as(_vs("reviews", ["reviews"], http=[
        {"match": [{"headers": {"end-user": {"exact": "jason"}}},
                   {"uri": {"prefix": "/jason"}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"name": "rest", "route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]),
        VirtualService)
    push = context(_service("reviews"), _vs("reviews", ["reviews"]))
    proxy = parse_proxy(SLEEP, {})
    routes = build_http_routes(vs, RouteOptions(push, view_proxy(proxy, push), 80,
                                                frozenset({"mesh"})))
    assert [http_rule(vs, r) for r in routes] == [(0, 0), (0, 1), (1, None)]
    assert http_rule(vs, rc.Route(name="rest", match=rc.RouteMatch(prefix="/x"))) is None
