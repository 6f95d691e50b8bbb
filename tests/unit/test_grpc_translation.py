"""The proxyless gRPC generator (pilotpy/translate/grpc), one behaviour per test: the names a
client may dial, the API listeners and xDS servers' inbound listeners, the routes and
clusters gRPC accepts, and the problems reported for what it cannot do."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from pilotpy.problems import Reason, Severity
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.push import PushContext
from pilotpy.translate.generate import GeneratedConfig, endpoints_for, generate
from pilotpy.translate.grpc.endpoints import grpc_assignment
from pilotpy.translate.grpc.names import inbound_listener_name, requested_hosts
from pilotpy.translate.routes import CORS_FILTER, FAULT_FILTER
from tests.unit.support import context

CLIENT = "sidecar~10.244.0.40~client-1.default~default.svc.cluster.local"
SERVER = "sidecar~10.244.0.31~echo-v1.default~default.svc.cluster.local"
GRPC = {"GENERATOR": "grpc"}
ECHO = "echo.default.svc.cluster.local"
ECHO_ROUTE = f"outbound|9080||{ECHO}"


def service(name: str = "echo", namespace: str = "default", *, cluster_ip: str = "10.96.0.20",
            ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": name},
                     "ports": ports or [{"name": "grpc", "port": 9080, "targetPort": 8080}],
                     **spec}}


def pod(name: str, ip: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "status": {"podIP": ip}}


def doc(kind: str, name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


SUBSETS = doc("DestinationRule", "echo", {"host": "echo", "subsets": [
    {"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]})


def grpc_config(push: PushContext, node: str = CLIENT) -> GeneratedConfig:
    proxy = parse_proxy(node, {**GRPC, "LABELS": {}})
    return generate(push, view_proxy(proxy, push))


def listener_names(config: GeneratedConfig) -> tuple[list[str], list[str]]:
    return ([li.name for li in config.listeners],
            [li.name for li in config.named_only_listeners])


def manager_of(listener: Any) -> hcm.HttpConnectionManager:
    out = hcm.HttpConnectionManager()
    listener.api_listener.api_listener.Unpack(out)
    return out


def route(config: GeneratedConfig, name: str = ECHO_ROUTE) -> Any:
    (found,) = [r for r in config.routes if r.name == name]
    return found


def cluster(config: GeneratedConfig, name: str) -> cluster_pb2.Cluster:
    (found,) = [c for c in config.named_only_clusters if c.name == name]
    return found


# -- names a client may dial --------------------------------------------------------------------

@pytest.mark.parametrize(("name", "resolves"), [
    # istiod's TestTryFindFQDN, for a client in namespace `ns`.
    ("foo", True), ("foo.ns", True), ("foo.ns.svc", True), ("foo.ns.svc.cluster.local", True),
    ("foo.com", False), ("foo.ns.com", False), ("foo.ns.svc.notdnsdomain", False),
    ("foo.ns.svc.cluster.local.extra", False)])
def test_short_names_resolve_as_istiods_try_find_fqdn(name: str, resolves: bool) -> None:
    assert (name in requested_hosts("foo.ns.svc.cluster.local", "ns",
                                    "ns.svc.cluster.local")) is resolves


def test_a_service_of_another_namespace_is_dialed_by_its_fqdn_only() -> None:
    assert requested_hosts("foo.other.svc.cluster.local", "ns", "ns.svc.cluster.local") == [
        "foo.other.svc.cluster.local"]


def test_inbound_listener_names_bracket_ipv6() -> None:
    assert inbound_listener_name("::", 8080) == "xds.istio.io/grpc/lds/inbound/[::]:8080"
    assert inbound_listener_name("0.0.0.0", 8080) == "xds.istio.io/grpc/lds/inbound/0.0.0.0:8080"


# -- proxy class ----------------------------------------------------------------------------

def test_grpc_generator_is_its_own_proxy_class() -> None:
    push = context(service())
    envoy = view_proxy(parse_proxy(CLIENT), push)
    grpc = view_proxy(parse_proxy(CLIENT, GRPC), push)
    assert envoy.class_key != grpc.class_key


def test_grpc_servers_are_classed_by_address_and_clients_are_not() -> None:
    push = context(service(), pod("echo-v1", "10.244.0.31", {"app": "echo"}),
                   pod("echo-v2", "10.244.0.32", {"app": "echo"}))
    v1 = view_proxy(parse_proxy(SERVER, GRPC), push)
    v2 = view_proxy(parse_proxy(SERVER.replace("31~echo-v1", "32~echo-v2"), GRPC), push)
    assert v1.class_key != v2.class_key  # inbound listeners are named after the address
    client = view_proxy(parse_proxy(CLIENT, GRPC), push)
    other = view_proxy(parse_proxy(CLIENT.replace("0.40~", "0.41~"), GRPC), push)
    assert client.class_key == other.class_key


# -- client listeners ----------------------------------------------------------------------

def test_client_listener_is_an_api_listener_taking_its_fqdn_route_over_ads() -> None:
    config = grpc_config(context(service()))
    (listener,) = config.listeners
    assert listener.name == f"{ECHO}:9080"
    assert (listener.address.socket_address.address,
            listener.address.socket_address.port_value) == ("10.96.0.20", 9080)
    manager = manager_of(listener)
    assert manager.rds.route_config_name == ECHO_ROUTE
    assert manager.rds.config_source.HasField("ads")


def test_client_listener_has_the_fault_and_router_filters_only_router_last() -> None:
    manager = manager_of(grpc_config(context(service())).listeners[0])
    assert [f.name for f in manager.http_filters] == [FAULT_FILTER, "envoy.filters.http.router"]


def test_short_names_are_served_only_by_name() -> None:
    wildcard, named_only = listener_names(grpc_config(context(service())))
    assert wildcard == [f"{ECHO}:9080"]
    assert {"echo:9080", "echo.default:9080", "echo.default.svc:9080"} <= set(named_only)
    short = next(li for li in grpc_config(context(service())).named_only_listeners
                 if li.name == "echo:9080")
    assert manager_of(short).rds.route_config_name == ECHO_ROUTE


def test_a_name_that_is_a_service_hostname_is_that_service_not_a_short_name() -> None:
    entry = doc("ServiceEntry", "bare-echo", {
        "hosts": ["echo"], "addresses": ["240.0.0.1"], "resolution": "STATIC",
        "ports": [{"number": 9080, "name": "grpc", "protocol": "GRPC"}],
        "endpoints": [{"address": "10.0.0.9"}]})
    config = grpc_config(context(service(), entry))
    bare = [li for li in [*config.listeners, *config.named_only_listeners]
            if li.name == "echo:9080"]
    assert [manager_of(li).rds.route_config_name for li in bare] == ["outbound|9080||echo"]


def test_headless_service_listener_binds_the_unspecified_address() -> None:
    listener = grpc_config(context(service(cluster_ip="None"))).listeners[0]
    assert listener.address.socket_address.address == "0.0.0.0"


def test_udp_ports_and_external_names_get_no_listener() -> None:
    push = context(service(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]),
                   service("alias", type="ExternalName", externalName=ECHO, cluster_ip=""))
    assert listener_names(grpc_config(push))[0] == []


def test_a_sidecar_resource_scopes_what_a_grpc_client_reaches() -> None:
    sidecar = doc("Sidecar", "default", {"egress": [{"hosts": [f"./{ECHO}"]}]})
    push = context(service(), service("other", cluster_ip="10.96.0.21"), sidecar)
    assert listener_names(grpc_config(push))[0] == [f"{ECHO}:9080"]


# -- inbound listeners -----------------------------------------------------------------------

def server_push() -> PushContext:
    return context(service(), pod("echo-v1", "10.244.0.31", {"app": "echo", "version": "v1"}))


def test_server_gets_an_inbound_listener_per_target_port_and_listening_address() -> None:
    config = grpc_config(server_push(), SERVER)
    inbound = {li.name: li for li in config.named_only_listeners
               if li.name.startswith("xds.istio.io/grpc/lds/inbound/")}
    assert sorted(inbound) == [f"xds.istio.io/grpc/lds/inbound/{a}:8080"
                               for a in ("0.0.0.0", "10.244.0.31", "[::]")]
    listener = inbound["xds.istio.io/grpc/lds/inbound/10.244.0.31:8080"]
    assert (listener.address.socket_address.address,
            listener.address.socket_address.port_value) == ("10.244.0.31", 8080)
    assert not listener.listener_filters and not listener.HasField("use_original_dst")


def test_inbound_route_accepts_every_rpc_without_forwarding() -> None:
    config = grpc_config(server_push(), SERVER)
    listener = next(li for li in config.named_only_listeners if li.name.endswith("0.0.0.0:8080"))
    (chain,) = listener.filter_chains
    manager = hcm.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(manager)
    assert [f.name for f in manager.http_filters] == ["envoy.filters.http.router"]
    (vhost,) = manager.route_config.virtual_hosts
    assert list(vhost.domains) == ["*"]
    (accept,) = vhost.routes
    assert accept.match.prefix == "/" and accept.HasField("non_forwarding_action")


def test_a_workload_no_service_selects_gets_no_inbound_listener() -> None:
    config = grpc_config(context(service()), SERVER)
    assert not [li for li in config.named_only_listeners if "inbound" in li.name]


# -- routes ----------------------------------------------------------------------------------

def test_route_has_the_service_alone_by_every_name_with_and_without_port() -> None:
    config = grpc_config(context(service(), service("other", cluster_ip="10.96.0.21")))
    rc = route(config)
    (vhost,) = rc.virtual_hosts
    assert vhost.name == f"{ECHO}:9080"
    assert {"echo:9080", "echo", f"{ECHO}:9080", "echo.default:9080", "10.96.0.20:9080"} <= set(
        vhost.domains)
    # gRPC matches `<host>:<port>`: the port must take part (no ignore_port_in_host_matching).
    assert not rc.ignore_port_in_host_matching and not rc.HasField("validate_clusters")


def test_route_without_virtual_service_goes_to_the_service_cluster() -> None:
    (vhost,) = route(grpc_config(context(service()))).virtual_hosts
    (default,) = vhost.routes
    assert default.route.cluster == ECHO_ROUTE


def split(**http: Any) -> dict[str, Any]:
    return doc("VirtualService", "echo", {"hosts": ["echo"], "http": [{"route": [
        {"destination": {"host": "echo", "subset": "v1"}, "weight": 80},
        {"destination": {"host": "echo", "subset": "v2"}, "weight": 20}], **http}]})


def test_virtual_service_split_becomes_weighted_subset_clusters() -> None:
    (vhost,) = route(grpc_config(context(service(), SUBSETS, split()))).virtual_hosts
    weights = {c.name: c.weight.value for c in vhost.routes[0].route.weighted_clusters.clusters}
    assert weights == {f"outbound|9080|v1|{ECHO}": 80, f"outbound|9080|v2|{ECHO}": 20}


def test_virtual_service_timeout_is_max_stream_duration() -> None:
    (vhost,) = route(grpc_config(context(service(), SUBSETS, split(timeout="0.5s")))
                     ).virtual_hosts
    action = vhost.routes[0].route
    assert action.max_stream_duration.max_stream_duration.ToMilliseconds() == 500
    assert not action.HasField("max_grpc_timeout")


def test_fault_is_kept_and_cors_is_left_out_with_a_problem() -> None:
    vs = split(fault={"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}},
               corsPolicy={"allowOrigins": [{"exact": "https://example.com"}]})
    config = grpc_config(context(service(), SUBSETS, vs))
    (vhost,) = route(config).virtual_hosts
    assert set(vhost.routes[0].typed_per_filter_config) == {FAULT_FILTER}
    assert [(p.reason, p.field) for p in config.problems] == [
        (Reason.UNSUPPORTED, "spec.http[0].corsPolicy")]
    assert CORS_FILTER not in str(vhost)


def test_what_grpc_ignores_of_a_virtual_service_is_reported_by_field() -> None:
    vs = doc("VirtualService", "echo", {"hosts": ["echo"], "http": [
        {"match": [{"queryParams": {"a": {"exact": "b"}}}], "redirect": {"uri": "/x"}},
        {"rewrite": {"uri": "/y"}, "mirror": {"host": "echo"},
         "retries": {"attempts": 2, "perTryTimeout": "1s"},
         "route": [{"destination": {"host": "echo"}}]}]})
    fields = {p.field for p in grpc_config(context(service(), vs)).problems}
    assert fields == {"spec.http[0].match[0].queryParams", "spec.http[0].redirect",
                      "spec.http[1].rewrite", "spec.http[1].mirror",
                      "spec.http[1].retries.perTryTimeout"}


# -- clusters --------------------------------------------------------------------------------

def test_clusters_are_eds_over_ads_and_served_only_by_name() -> None:
    config = grpc_config(context(service(), SUBSETS))
    assert config.clusters == []
    assert [c.name for c in config.named_only_clusters] == sorted([
        ECHO_ROUTE, f"outbound|9080|v1|{ECHO}", f"outbound|9080|v2|{ECHO}"])
    default = cluster(config, ECHO_ROUTE)
    assert default.type == cluster_pb2.Cluster.EDS
    assert default.eds_cluster_config.service_name == ECHO_ROUTE
    assert default.eds_cluster_config.eds_config.HasField("ads")
    assert default.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN  # gRPC's default, unwritten


def policy(traffic_policy: dict[str, Any]) -> dict[str, Any]:
    return doc("DestinationRule", "echo", {"host": "echo", "trafficPolicy": traffic_policy})


def test_consistent_hash_is_ring_hash() -> None:
    rule = policy({"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}})
    found = cluster(grpc_config(context(service(), rule)), ECHO_ROUTE)
    assert found.lb_policy == cluster_pb2.Cluster.RING_HASH
    assert found.ring_hash_lb_config.minimum_ring_size.value == 1024


def test_maglev_is_ring_hash_with_a_problem() -> None:
    rule = policy({"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user",
                                                       "maglev": {"tableSize": 65537}}}})
    config = grpc_config(context(service(), rule))
    assert cluster(config, ECHO_ROUTE).lb_policy == cluster_pb2.Cluster.RING_HASH
    assert [p.field for p in config.problems] == [
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev"]


def test_least_request_falls_back_to_round_robin_for_clients_without_it() -> None:
    rule = policy({"loadBalancer": {"simple": "LEAST_REQUEST"}})
    found = cluster(grpc_config(context(service(), rule)), ECHO_ROUTE)
    assert found.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN  # C-core rejects LEAST_REQUEST
    assert [p.typed_extension_config.name for p in found.load_balancing_policy.policies] == [
        "envoy.load_balancing_policies.least_request",
        "envoy.load_balancing_policies.wrr_locality"]


def test_http2_max_requests_is_the_only_threshold() -> None:
    rule = policy({"connectionPool": {"http": {"http2MaxRequests": 100,
                                               "http1MaxPendingRequests": 5},
                                      "tcp": {"maxConnections": 3}}})
    config = grpc_config(context(service(), rule))
    (threshold,) = cluster(config, ECHO_ROUTE).circuit_breakers.thresholds
    assert threshold.max_requests.value == 100
    assert not threshold.HasField("max_connections")
    assert not threshold.HasField("max_pending_requests")
    assert [p.field for p in config.problems] == ["spec.trafficPolicy.connectionPool"]


def test_outlier_detection_is_sent_and_consecutive_errors_reported_as_ignored() -> None:
    rule = policy({"outlierDetection": {"consecutive5xxErrors": 3, "interval": "5s",
                                        "baseEjectionTime": "30s"}})
    config = grpc_config(context(service(), rule))
    outlier = cluster(config, ECHO_ROUTE).outlier_detection
    assert outlier.interval.seconds == 5 and outlier.base_ejection_time.seconds == 30
    assert [(p.reason, p.field) for p in config.problems] == [
        (Reason.IGNORED, "spec.trafficPolicy.outlierDetection")]


def test_tls_origination_is_not_applied_and_reported_as_an_error() -> None:
    config = grpc_config(context(service(), policy({"tls": {"mode": "ISTIO_MUTUAL"}})))
    assert not cluster(config, ECHO_ROUTE).HasField("transport_socket")
    (problem,) = config.problems
    assert (problem.reason, problem.severity, problem.field) == (
        Reason.NOT_SERVED, Severity.ERROR, "spec.trafficPolicy.tls")


# -- endpoints -------------------------------------------------------------------------------

def test_endpoints_name_their_locality_and_list_each_address_once() -> None:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name="c")
    group = assignment.endpoints.add()
    for address in ("10.0.0.1", "10.0.0.1", "db.example.com", "10.0.0.2"):
        lb = group.lb_endpoints.add()
        lb.endpoint.address.socket_address.address = address
        lb.endpoint.address.socket_address.port_value = 80
    group.load_balancing_weight.value = 4
    (fixed,) = grpc_assignment(assignment).endpoints
    assert fixed.HasField("locality")
    assert [lb.endpoint.address.socket_address.address for lb in fixed.lb_endpoints] == [
        "10.0.0.1", "10.0.0.2"]
    assert fixed.load_balancing_weight.value == 2


def test_dns_service_entry_hostnames_are_left_out_with_a_problem() -> None:
    entry = doc("ServiceEntry", "api", {
        "hosts": ["api.example.com"], "resolution": "DNS",
        "ports": [{"number": 443, "name": "grpc", "protocol": "GRPC"}]})
    push = context(entry)
    config = grpc_config(push)
    name = "outbound|443||api.example.com"
    proxy = view_proxy(parse_proxy(CLIENT, GRPC), push)
    (assignment,) = endpoints_for(push, proxy, [name])
    assert list(assignment.endpoints) == []
    assert [(p.reason, p.field) for p in config.problems] == [
        (Reason.NOT_SERVED, "spec.resolution")]
