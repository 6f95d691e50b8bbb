"""The simulator's matching rules, one test per rule, over hand-built Envoy messages (what
Envoy does is in each test's name; pilotpy.simulate's module docstrings cite the source)."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from pilotpy.simulate import Call, Mode, Outcome, Protocol, Simulation
from pilotpy.simulate.routing import Request, find_virtual_host, header_matches, route_matches

# -- builders --------------------------------------------------------------------------------


def typed(message: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def tcp(cluster: str, name: str = "") -> lc.FilterChain:
    return lc.FilterChain(name=name, filters=[lc.Filter(
        name="envoy.filters.network.tcp_proxy",
        typed_config=typed(tcp_proxy_pb2.TcpProxy(stat_prefix=cluster, cluster=cluster)))])


def http(route_name: str, name: str = "") -> lc.FilterChain:
    manager = hcm_pb2.HttpConnectionManager(stat_prefix="s", rds=hcm_pb2.Rds(
        route_config_name=route_name))
    return lc.FilterChain(name=name, filters=[lc.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=typed(manager))])


def listener(name: str, address: str, port: int, *chains: lc.FilterChain,
             bind: bool = True, original_dst: bool = False, inspectors: tuple[str, ...] = (),
             default: lc.FilterChain | None = None) -> listener_pb2.Listener:
    out = listener_pb2.Listener(name=name, filter_chains=list(chains))
    out.address.socket_address.address = address
    out.address.socket_address.port_value = port
    if not bind:
        out.bind_to_port.value = False
    if original_dst:
        out.use_original_dst.value = True
    kinds = {"tls": tls_inspector_pb2.TlsInspector(), "http": http_inspector_pb2.HttpInspector(),
             "original_dst": original_dst_pb2.OriginalDst()}
    for kind in inspectors:
        out.listener_filters.add(name=kind, typed_config=typed(kinds[kind]))
    if default is not None:
        out.default_filter_chain.CopyFrom(default)
    return out


def match(chain: lc.FilterChain, *, port: int | None = None, cidrs: tuple[str, ...] = (),
          sni: tuple[str, ...] = (), transport: str = "",
          alpn: tuple[str, ...] = ()) -> lc.FilterChain:
    m = chain.filter_chain_match
    if port is not None:
        m.destination_port.value = port
    for cidr in cidrs:
        prefix, _, length = cidr.partition("/")
        m.prefix_ranges.append(address_pb2.CidrRange(
            address_prefix=prefix, prefix_len=wrappers_pb2.UInt32Value(value=int(length))))
    m.server_names.extend(sni)
    m.transport_protocol = transport
    m.application_protocols.extend(alpn)
    return chain


def route(name: str, cluster: str = "c", **match_fields: Any) -> rc.Route:
    out = rc.Route(name=name, match=rc.RouteMatch(**(match_fields or {"prefix": "/"})))
    out.route.cluster = cluster
    return out


def vhost(name: str, domains: list[str], *routes: rc.Route) -> rc.VirtualHost:
    return rc.VirtualHost(name=name, domains=domains, routes=list(routes) or [route("r")])


def config(name: str, *vhosts: rc.VirtualHost,
           ignore_port: bool = True) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=list(vhosts),
                                        ignore_port_in_host_matching=ignore_port)


def eds(name: str, *addresses: str) -> tuple[cluster_pb2.Cluster,
                                             endpoint_pb2.ClusterLoadAssignment]:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.service_name = name
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    group = assignment.endpoints.add()
    for address in addresses:
        host, _, port = address.partition(":")
        socket = group.lb_endpoints.add().endpoint.address.socket_address
        socket.address, socket.port_value = host, int(port)
    return cluster, assignment


def gateway(*chains: lc.FilterChain, inspectors: tuple[str, ...] = (),
            default: lc.FilterChain | None = None, routes: tuple[Any, ...] = (),
            clusters: tuple[Any, ...] = (), assignments: tuple[Any, ...] = ()) -> Simulation:
    return Simulation([listener("gw", "0.0.0.0", 8080, *chains, inspectors=inspectors,
                                default=default)], routes, clusters, assignments)


def chain_of(sim: Simulation, call: Call) -> str:
    result = sim.run(call)
    assert result.filter_chain is not None, result.describe()
    return result.filter_chain.label


# -- calls -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    pytest.param({"port": 0}, "not a TCP port", id="port-0"),
    pytest.param({"port": 80, "address": "reviews"}, "not an IP address", id="a-name"),
])
def test_a_call_needs_a_port_and_an_ip(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Call(**fields)


def test_a_call_folds_header_names_and_derives_sni_and_alpn() -> None:
    call = Call(port=443, tls=True, host="A.Example.com:8443", headers={"X-User": "j"})
    assert (dict(call.headers), call.server_name, call.client_alpn) == (
        {"x-user": "j"}, "a.example.com", ("http/1.1",))
    assert Call(port=80, host="a", sni="b").server_name == ""  # no TLS, no SNI


# -- listeners -------------------------------------------------------------------------------


def test_gateway_call_takes_the_exact_address_before_the_wildcard() -> None:
    sim = Simulation([listener("any", "0.0.0.0", 80, tcp("a")),
                      listener("exact", "10.0.0.1", 80, tcp("b"))])
    assert sim.run(Call(port=80, address="10.0.0.1", protocol=Protocol.TCP)).listener == "exact"
    assert sim.run(Call(port=80, address="10.0.0.2", protocol=Protocol.TCP)).listener == "any"


def test_gateway_call_to_a_port_nobody_binds_is_refused() -> None:
    sim = Simulation([listener("any", "0.0.0.0", 80, tcp("a")),
                      listener("unbound", "0.0.0.0", 81, tcp("b"), bind=False)])
    result = sim.run(Call(port=81, protocol=Protocol.TCP))
    assert result.outcome is Outcome.NO_LISTENER
    assert "81" in result.reason


def _sidecar(*extra: listener_pb2.Listener) -> Simulation:
    outbound = listener("virtualOutbound", "0.0.0.0", 15001,
                        match(tcp("BlackHoleCluster", "blackhole"), port=15001),
                        tcp("PassthroughCluster", "catchall"), original_dst=True)
    inbound = listener("virtualInbound", "0.0.0.0", 15006,
                       match(tcp("inbound|8080||", "app"), port=8080),
                       tcp("InboundPassthroughCluster", "passthrough"),
                       inspectors=("original_dst",))
    clusters = [cluster_pb2.Cluster(name=n, type=cluster_pb2.Cluster.ORIGINAL_DST)
                for n in ("PassthroughCluster", "InboundPassthroughCluster", "inbound|8080||")]
    clusters.append(cluster_pb2.Cluster(name="BlackHoleCluster", type=cluster_pb2.Cluster.STATIC))
    return Simulation([outbound, inbound, *extra], (), clusters)


def test_original_destination_hands_off_to_the_exact_address_first() -> None:
    sim = _sidecar(listener("10.96.0.5_3306", "10.96.0.5", 3306, tcp("db"), bind=False),
                   listener("0.0.0.0_3306", "0.0.0.0", 3306, tcp("any-db"), bind=False))
    result = sim.run(Call(port=3306, address="10.96.0.5", protocol=Protocol.TCP))
    assert (result.handed_off_from, result.listener) == ("virtualOutbound", "10.96.0.5_3306")
    other = sim.run(Call(port=3306, address="10.96.0.6", protocol=Protocol.TCP))
    assert other.listener == "0.0.0.0_3306"


def test_original_destination_without_a_listener_stays_on_the_capture_listener() -> None:
    result = _sidecar().run(Call(port=443, address="203.0.113.9", protocol=Protocol.TCP))
    assert (result.listener, result.handed_off_from) == ("virtualOutbound", "")
    assert result.cluster == "PassthroughCluster"
    assert [str(e) for e in result.endpoints] == ["203.0.113.9:443"]


def test_a_connection_to_the_capture_port_itself_is_blackholed() -> None:
    result = _sidecar().run(Call(port=15001, address="10.96.0.5", protocol=Protocol.TCP))
    assert result.filter_chain is not None and result.filter_chain.label == "blackhole"
    assert result.outcome is Outcome.NO_HEALTHY_UPSTREAM  # BlackHoleCluster has no endpoint


def test_inbound_call_matches_the_original_destination_port() -> None:
    sim = _sidecar()
    app = sim.run(Call(port=8080, address="10.244.0.9", protocol=Protocol.TCP, mode=Mode.INBOUND))
    assert (app.listener, app.cluster) == ("virtualInbound", "inbound|8080||")
    assert [str(e) for e in app.endpoints] == ["10.244.0.9:8080"]
    other = sim.run(Call(port=9000, address="10.244.0.9", protocol=Protocol.TCP,
                         mode=Mode.INBOUND))
    assert other.cluster == "InboundPassthroughCluster"


def test_a_router_config_has_no_capture_listener() -> None:
    sim = gateway(tcp("a"))
    assert not sim.is_sidecar
    result = sim.run(Call(port=8080, protocol=Protocol.TCP, mode=Mode.OUTBOUND))
    assert result.outcome is Outcome.NO_LISTENER


# -- listener filters ------------------------------------------------------------------------


def _by_alpn() -> list[lc.FilterChain]:
    return [match(tcp("h1", "h1"), transport="raw_buffer", alpn=("http/1.1",)),
            match(tcp("h2c", "h2c"), transport="raw_buffer", alpn=("h2c",)),
            match(tcp("opaque", "opaque"), transport="raw_buffer")]


def test_http_inspector_reports_http1_and_h2c_for_plaintext_http() -> None:
    sim = gateway(*_by_alpn(), inspectors=("http",))
    assert chain_of(sim, Call(port=8080)) == "h1"
    assert chain_of(sim, Call(port=8080, protocol=Protocol.HTTP2)) == "h2c"
    assert chain_of(sim, Call(port=8080, protocol=Protocol.TCP)) == "opaque"


def test_without_the_http_inspector_nothing_detects_http() -> None:
    assert chain_of(gateway(*_by_alpn()), Call(port=8080)) == "opaque"


def test_a_disabled_http_inspector_detects_nothing_on_its_ports() -> None:
    sim = gateway(*_by_alpn(), inspectors=("http",))
    inspector = sim.listeners[0].listener_filters[0]
    inspector.filter_disabled.destination_port_range.CopyFrom(
        range_pb2.Int32Range(start=8080, end=8081))
    assert chain_of(sim, Call(port=8080)) == "opaque"


def test_tls_without_the_tls_inspector_is_raw_buffer_without_sni() -> None:
    chains = (match(tcp("a", "by-sni"), sni=("a.example.com",)), tcp("other", "other"))
    assert chain_of(gateway(*chains), Call(port=8080, tls=True, sni="a.example.com")) == "other"
    assert chain_of(gateway(*chains, inspectors=("tls",)),
                    Call(port=8080, tls=True, sni="a.example.com")) == "by-sni"


# -- filter chain match ----------------------------------------------------------------------


def test_a_chain_naming_the_destination_port_beats_one_without() -> None:
    sim = Simulation([listener("l", "0.0.0.0", 15006, match(tcp("p"), port=9000),
                               tcp("any", "any"), original_dst=False,
                               inspectors=("original_dst",))])
    assert chain_of(sim, Call(port=9000, protocol=Protocol.TCP, mode=Mode.INBOUND)) == (
        "filter_chains[0]")
    assert chain_of(sim, Call(port=9001, protocol=Protocol.TCP, mode=Mode.INBOUND)) == "any"


def test_a_port_branch_that_fails_goes_to_the_default_chain_not_the_portless_chains() -> None:
    sim = gateway(match(tcp("tls-only", "tls-only"), port=8080, transport="tls"),
                  tcp("portless", "portless"), default=tcp("fallback", "fallback"))
    assert chain_of(sim, Call(port=8080, protocol=Protocol.TCP)) == "fallback"


def test_a_transport_branch_without_the_alpn_does_not_fall_back_to_chains_without_transport(
        ) -> None:
    # Envoy picks the `raw_buffer` branch, finds no chain for the (absent) ALPN there, and
    # never tries the chain that names no transport: hence pilotpy's default chains.
    sim = gateway(match(tcp("h1", "h1"), transport="raw_buffer", alpn=("http/1.1",)),
                  tcp("anything", "anything"), inspectors=("http",))
    assert sim.run(Call(port=8080, protocol=Protocol.TCP)).outcome is Outcome.NO_FILTER_CHAIN
    sim.listeners[0].default_filter_chain.CopyFrom(tcp("fallback", "fallback"))
    assert chain_of(sim, Call(port=8080, protocol=Protocol.TCP)) == "fallback"


def test_the_longest_destination_prefix_wins() -> None:
    sim = gateway(match(tcp("wide", "wide"), cidrs=("10.0.0.0/8",)),
                  match(tcp("narrow", "narrow"), cidrs=("10.1.0.0/16",)),
                  tcp("any", "any"))
    assert chain_of(sim, Call(port=8080, address="10.1.2.3", protocol=Protocol.TCP)) == "narrow"
    assert chain_of(sim, Call(port=8080, address="10.2.2.3", protocol=Protocol.TCP)) == "wide"
    assert chain_of(sim, Call(port=8080, address="192.168.0.1", protocol=Protocol.TCP)) == "any"


def test_an_address_in_no_range_with_no_catch_all_takes_the_default_chain() -> None:
    sim = gateway(match(tcp("wide", "wide"), cidrs=("10.0.0.0/8",)),
                  default=tcp("fallback", "fallback"))
    assert chain_of(sim, Call(port=8080, address="192.168.0.1", protocol=Protocol.TCP)) == (
        "fallback")


def test_server_names_exact_then_longest_wildcard_then_none() -> None:
    sim = gateway(match(tcp("exact", "exact"), sni=("a.b.example.com",)),
                  match(tcp("b", "wild-b"), sni=("*.b.example.com",)),
                  match(tcp("ex", "wild-example"), sni=("*.example.com",)),
                  tcp("none", "none"), inspectors=("tls",))

    def by(sni: str) -> str:
        return chain_of(sim, Call(port=8080, tls=True, sni=sni, protocol=Protocol.TCP))

    assert by("a.b.example.com") == "exact"
    assert by("c.b.example.com") == "wild-b"
    assert by("c.example.com") == "wild-example"
    assert by("example.com") == "none"  # `*.example.com` needs a label before the dot
    assert by("A.B.EXAMPLE.COM") == "exact"  # server names compare lower-cased


def test_a_plaintext_connection_has_no_server_name() -> None:
    sim = gateway(match(tcp("a", "named"), sni=("a.example.com",)), tcp("b", "unnamed"),
                  inspectors=("tls",))
    assert chain_of(sim, Call(port=8080, protocol=Protocol.TCP)) == "unnamed"


def test_transport_protocol_exact_before_unset() -> None:
    sim = gateway(match(tcp("t", "tls"), transport="tls"), tcp("r", "any"), inspectors=("tls",))
    assert chain_of(sim, Call(port=8080, tls=True, protocol=Protocol.TCP)) == "tls"
    assert chain_of(sim, Call(port=8080, protocol=Protocol.TCP)) == "any"


def test_application_protocols_follow_the_clients_order() -> None:
    sim = gateway(match(tcp("h2", "h2"), alpn=("h2",)),
                  match(tcp("h1", "h1"), alpn=("http/1.1",)), inspectors=("tls",))
    assert chain_of(sim, Call(port=8080, tls=True, protocol=Protocol.TCP,
                              alpn=("http/1.1", "h2"))) == "h1"
    assert chain_of(sim, Call(port=8080, tls=True, protocol=Protocol.TCP,
                              alpn=("h2", "http/1.1"))) == "h2"


def test_no_chain_and_no_default_closes_the_connection() -> None:
    sim = gateway(match(tcp("a"), sni=("a.example.com",)), inspectors=("tls",))
    result = sim.run(Call(port=8080, tls=True, sni="b.example.com", protocol=Protocol.TCP))
    assert result.outcome is Outcome.NO_FILTER_CHAIN
    assert "b.example.com" in result.reason


def test_chains_matching_alike_are_reported_as_overlapping() -> None:
    result = gateway(tcp("a"), tcp("b")).run(Call(port=8080, protocol=Protocol.TCP))
    assert result.outcome is Outcome.OVERLAPPING_FILTER_CHAINS


# -- connection managers and TLS -------------------------------------------------------------


def test_plaintext_to_a_chain_terminating_tls_fails_the_handshake() -> None:
    chain = tcp("a")
    chain.transport_socket.name = "envoy.transport_sockets.tls"
    chain.transport_socket.typed_config.CopyFrom(typed(tls_pb2.DownstreamTlsContext()))
    assert gateway(chain).run(Call(port=8080)).outcome is Outcome.TLS_ERROR


def test_opaque_or_tls_bytes_to_a_plaintext_connection_manager_are_a_protocol_error() -> None:
    sim = gateway(http("r"), routes=(config("r", vhost("v", ["*"])),))
    assert sim.run(Call(port=8080, protocol=Protocol.TCP)).outcome is Outcome.PROTOCOL_ERROR
    assert sim.run(Call(port=8080, tls=True)).outcome is Outcome.PROTOCOL_ERROR


def test_a_route_configuration_never_served_leaves_the_listener_warming() -> None:
    result = gateway(http("missing")).run(Call(port=8080, host="a"))
    assert (result.outcome, result.route_configuration) == (Outcome.NO_ROUTE_CONFIGURATION,
                                                            "missing")


# -- virtual hosts ---------------------------------------------------------------------------

VHOSTS = config("r", vhost("exact", ["api.example.com"]),
                vhost("suffix-long", ["*.api.example.com"]),
                vhost("suffix", ["*.example.com"]),
                vhost("prefix", ["api.*"]),
                vhost("default", ["*"]))


@pytest.mark.parametrize(("host", "expected"), [
    ("api.example.com", "exact"),
    ("API.Example.COM", "exact"),  # hosts compare lower-cased
    ("api.example.com:8080", "exact"),  # ignore_port_in_host_matching
    ("v1.api.example.com", "suffix-long"),  # the longest suffix wildcard first
    ("www.example.com", "suffix"),
    ("api.internal", "prefix"),  # prefix wildcards after every suffix wildcard
    ("other.test", "default"),
    (".example.com", "default"),  # a wildcard stands for at least one character
])
def test_virtual_host_domain_order(host: str, expected: str) -> None:
    found = find_virtual_host(VHOSTS, host)
    assert found is not None and found.name == expected


def test_the_port_counts_without_ignore_port_in_host_matching() -> None:
    configuration = config("r", vhost("plain", ["a.test"]), vhost("port", ["a.test:80"]),
                           ignore_port=False)
    found = find_virtual_host(configuration, "a.test:80")
    assert found is not None and found.name == "port"


def test_a_lone_wildcard_virtual_host_answers_even_without_a_host() -> None:
    found = find_virtual_host(config("r", vhost("all", ["*"])), "")
    assert found is not None and found.name == "all"
    assert find_virtual_host(config("r", vhost("a", ["a.test"])), "") is None


def test_no_virtual_host_is_404_nr() -> None:
    sim = gateway(http("r"), routes=(config("r", vhost("a", ["a.test"])),))
    result = sim.run(Call(port=8080, host="b.test"))
    assert (result.outcome, result.status, result.response_flag) == (
        Outcome.NO_VIRTUAL_HOST, 404, "NR")


def test_a_virtual_host_requiring_tls_redirects_plaintext() -> None:
    vh = vhost("secure", ["a.test"])
    vh.require_tls = rc.VirtualHost.ALL
    result = gateway(http("r"), routes=(config("r", vh),)).run(
        Call(port=8080, host="a.test", path="/x"))
    assert (result.outcome, result.status) == (Outcome.TLS_REDIRECT, 301)
    assert result.redirect is not None and result.redirect.location == "https://a.test/x"


# -- routes ----------------------------------------------------------------------------------


def _request(path: str = "/", method: str = "GET", headers: dict[str, str] | None = None,
             host: str = "a.test") -> Request:
    return Request(host, path, method, "http", headers or {})


@pytest.mark.parametrize(("match_fields", "path", "fits"), [
    ({"prefix": "/api"}, "/api/v1", True),
    ({"prefix": "/api"}, "/apix", True),  # a plain prefix does not respect segments
    ({"prefix": "/api"}, "/API", False),
    ({"prefix": "/api", "case_sensitive": wrappers_pb2.BoolValue(value=False)}, "/API/x", True),
    ({"path": "/exact"}, "/exact?q=1", True),  # the query is not part of the path
    ({"path": "/exact"}, "/exact/", False),
    ({"safe_regex": regex_pb2.RegexMatcher(regex="/v[0-9]+/.*")}, "/v2/items", True),
    ({"safe_regex": regex_pb2.RegexMatcher(regex="/v[0-9]+")}, "/v2/items", False),  # whole path
    ({"path_separated_prefix": "/api"}, "/api", True),
    ({"path_separated_prefix": "/api"}, "/api/x", True),
    ({"path_separated_prefix": "/api"}, "/apix", False),
    ({"path_separated_prefix": "/api"}, "/api?x=1", True),
])
def test_path_matching(match_fields: dict[str, Any], path: str, fits: bool) -> None:
    assert route_matches(route("r", **match_fields), _request(path)) is fits


def _header(name: str, **fields: Any) -> rc.HeaderMatcher:
    return rc.HeaderMatcher(name=name, **fields)


def _exact(value: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(exact=value)


@pytest.mark.parametrize(("matcher", "headers", "fits"), [
    (_header("end-user", string_match=_exact("jason")), {"end-user": "jason"}, True),
    (_header("end-user", string_match=_exact("jason")), {"end-user": "json"}, False),
    (_header("end-user", string_match=_exact("jason")), {}, False),
    (_header("x", string_match=string_pb2.StringMatcher(prefix="ab")), {"x": "abc"}, True),
    (_header("x", string_match=string_pb2.StringMatcher(
        safe_regex=regex_pb2.RegexMatcher(regex="a.c"))), {"x": "abc"}, True),
    (_header("x", present_match=True), {"x": ""}, True),
    (_header("x", present_match=True), {}, False),
    (_header("x", present_match=True, invert_match=True), {}, True),
    # A missing header matches no value matcher, inverted or not...
    (_header("x", string_match=_exact("a"), invert_match=True), {}, False),
    (_header("x", string_match=_exact("a"), invert_match=True), {"x": "b"}, True),
    # ...unless it is treated as empty.
    (_header("x", string_match=_exact("a"), invert_match=True,
             treat_missing_header_as_empty=True), {}, True),
    (_header("X-Case", string_match=_exact("v")), {"x-case": "v"}, True),  # names fold case
    (_header(":method", string_match=_exact("POST")), {}, False),
    (_header(":authority", string_match=string_pb2.StringMatcher(prefix="a.")), {}, True),
])
def test_header_matching(matcher: rc.HeaderMatcher, headers: dict[str, str], fits: bool) -> None:
    assert header_matches(matcher, _request(headers=headers)) is fits


@pytest.mark.parametrize(("parameter", "path", "fits"), [
    (rc.QueryParameterMatcher(name="v", present_match=True), "/?v", True),
    (rc.QueryParameterMatcher(name="v", present_match=True), "/?w=1", False),
    (rc.QueryParameterMatcher(name="v", string_match=_exact("2")), "/?v=2&v=3", True),
    (rc.QueryParameterMatcher(name="v", string_match=_exact("3")), "/?v=2&v=3", False),  # first
])
def test_query_parameter_matching(parameter: rc.QueryParameterMatcher, path: str,
                                  fits: bool) -> None:
    candidate = route("r", prefix="/")
    candidate.match.query_parameters.append(parameter)
    assert route_matches(candidate, _request(path)) is fits


def _routed(*routes: rc.Route, clusters: tuple[Any, ...] = (),
            assignments: tuple[Any, ...] = ()) -> Simulation:
    return gateway(http("r"), routes=(config("r", vhost("v", ["*"], *routes)),),
                   clusters=clusters, assignments=assignments)


def test_the_first_matching_route_wins() -> None:
    sim = _routed(route("api", prefix="/api"), route("all"))
    assert sim.run(Call(port=8080, path="/api/x")).route == "api"
    result = sim.run(Call(port=8080, path="/home"))
    assert (result.route, result.route_index) == ("all", 1)


def test_no_route_is_404_nr() -> None:
    result = _routed(route("api", prefix="/api")).run(Call(port=8080, path="/home"))
    assert (result.outcome, result.status, result.response_flag) == (Outcome.NO_ROUTE, 404, "NR")


# -- actions and upstreams -------------------------------------------------------------------


def test_weighted_clusters_come_with_their_weights() -> None:
    split = rc.Route(name="split", match=rc.RouteMatch(prefix="/"))
    split.route.weighted_clusters.clusters.add(name="v1", weight=wrappers_pb2.UInt32Value(value=80))
    split.route.weighted_clusters.clusters.add(name="v2", weight=wrappers_pb2.UInt32Value(value=20))
    result = _routed(split).run(Call(port=8080))
    assert result.cluster is None
    assert result.weights == {"v1": 80, "v2": 20}


def test_redirect_builds_the_location() -> None:
    redirect = rc.Route(name="r", match=rc.RouteMatch(prefix="/old"))
    redirect.redirect.host_redirect = "new.test"
    redirect.redirect.prefix_rewrite = "/new"
    redirect.redirect.response_code = rc.RedirectAction.PERMANENT_REDIRECT
    result = _routed(redirect).run(Call(port=8080, host="a.test", path="/old/page?x=1"))
    assert result.outcome is Outcome.REDIRECT
    assert result.redirect is not None
    assert (result.redirect.status, result.redirect.location) == (
        308, "http://new.test/new/page?x=1")


def test_direct_response_answers_with_its_status_and_body() -> None:
    direct = rc.Route(name="d", match=rc.RouteMatch(prefix="/"))
    direct.direct_response.status = 418
    direct.direct_response.body.inline_string = "teapot"
    result = _routed(direct).run(Call(port=8080))
    assert result.direct_response is not None
    assert (result.status, result.direct_response.body) == (418, "teapot")


def test_rewrites_change_what_goes_upstream() -> None:
    rewrite = route("r", prefix="/products")
    rewrite.route.prefix_rewrite = "/productpage"
    rewrite.route.host_rewrite_literal = "productpage"
    result = _routed(rewrite).run(Call(port=8080, host="a.test", path="/products/1?q"))
    assert (result.upstream_host, result.upstream_path) == ("productpage", "/productpage/1?q")


def test_regex_rewrite_substitutes_groups() -> None:
    rewrite = route("r", prefix="/")
    rewrite.route.regex_rewrite.pattern.regex = "^/v1/(.*)$"
    rewrite.route.regex_rewrite.substitution = "/api/\\1"
    result = _routed(rewrite).run(Call(port=8080, path="/v1/items?x"))
    assert result.upstream_path == "/api/items?x"


def test_eds_endpoints_come_from_the_assignment_of_the_service_name() -> None:
    cluster, assignment = eds("c", "10.0.0.1:80", "10.0.0.2:80")
    result = _routed(route("r")).run(Call(port=8080))
    assert result.outcome is Outcome.NO_CLUSTER  # not in CDS: 503 NC
    assert (result.status, result.response_flag) == (503, "NC")
    found = _routed(route("r"), clusters=(cluster,), assignments=(assignment,)).run(
        Call(port=8080))
    assert found.outcome is Outcome.FORWARDED
    assert [str(e) for e in found.endpoints] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert found.destinations[0].discovery == "EDS"


def test_a_cluster_without_endpoints_is_503_uh() -> None:
    cluster, _ = eds("c")
    result = _routed(route("r"), clusters=(cluster,)).run(Call(port=8080))
    assert (result.outcome, result.status, result.response_flag) == (
        Outcome.NO_HEALTHY_UPSTREAM, 503, "UH")


def test_mirrors_are_reported() -> None:
    mirrored = route("r")
    mirrored.route.request_mirror_policies.add(cluster="shadow")
    assert _routed(mirrored).run(Call(port=8080)).mirrors == ("shadow",)


def test_the_steps_say_what_happened() -> None:
    cluster, assignment = eds("c", "10.0.0.1:80")
    result = _routed(route("r"), clusters=(cluster,), assignments=(assignment,)).run(
        Call(port=8080, host="a.test"))
    text = result.describe()
    for expected in ("listener gw", "route configuration r", "virtual host v", "route r",
                     "cluster c (EDS)", "10.0.0.1:80", "=> forwarded"):
        assert expected in text, text
