"""What the walkthroughs promise, stated as calls through the translated config of their golden
cases (pilotpy.simulate): which listener, chain, virtual host, route and cluster Envoy picks."""

from __future__ import annotations

from functools import cache

import pytest

from pilotpy.simulate import Call, Mode, Outcome, Protocol, Simulation
from tests.golden.cases import Case, all_cases, case_named, simulation

REVIEWS_VIP = "10.96.0.52"


@cache
def sim(name: str) -> Simulation:
    return simulation(case_named(name))


# -- W1: httpbin through the ingress gateway -------------------------------------------------


def test_w1_get_headers_lands_on_httpbin_v2() -> None:
    result = sim("w1-httpbin").run(Call(port=8080, host="httpbin.local", path="/headers"))
    assert result.outcome is Outcome.FORWARDED, result.describe()
    assert (result.listener, result.route_configuration, result.virtual_host) == (
        "0.0.0.0_8080", "http.80", "httpbin.local:80")
    assert result.cluster == "outbound|80|v2|httpbin-service.default.svc.cluster.local"
    assert [str(e) for e in result.endpoints] == ["127.0.0.12:8000"]


def test_w1_another_host_gets_the_gateways_404() -> None:
    result = sim("w1-httpbin").run(Call(port=8080, host="example.com", path="/headers"))
    assert (result.outcome, result.status) == (Outcome.NO_VIRTUAL_HOST, 404)


@pytest.mark.parametrize("case", ["w1-gateway-only", "w1-hosts-do-not-intersect"])
def test_w1_without_a_matching_virtual_service_the_gateway_answers_404(case: str) -> None:
    result = sim(case).run(Call(port=8080, host="httpbin.local", path="/headers"))
    assert (result.virtual_host, result.route) == ("blackhole:80", "default")
    assert (result.outcome, result.status) == (Outcome.DIRECT_RESPONSE, 404)


def test_w1_nothing_listens_on_the_gateway_service_port_itself() -> None:
    # Server port 80 becomes listener 8080 (the Service's targetPort): 80 is closed.
    result = sim("w1-httpbin").run(Call(port=80, host="httpbin.local"))
    assert result.outcome is Outcome.NO_LISTENER


# -- W3: Bookinfo ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/productpage", "/static/css/style.css", "/login", "/logout",
                                  "/api/v1/products/0/reviews"])
def test_w3_gateway_exposes_the_bookinfo_paths(path: str) -> None:
    result = sim("w3-bookinfo-gateway").run(Call(port=8080, host="bookinfo.example", path=path))
    assert result.cluster == "outbound|9080||productpage.default.svc.cluster.local", path
    assert [str(e) for e in result.endpoints] == ["10.244.1.10:9080"]


@pytest.mark.parametrize("path", ["/", "/details/0", "/productpage/extra", "/loginx"])
def test_w3_gateway_answers_404_for_anything_else(path: str) -> None:
    result = sim("w3-bookinfo-gateway").run(Call(port=8080, host="bookinfo.example", path=path))
    assert (result.outcome, result.status, result.response_flag) == (
        Outcome.NO_ROUTE, 404, "NR"), path


@pytest.mark.parametrize("host", ["reviews", "reviews:9080", "reviews.default",
                                  "reviews.default.svc.cluster.local", REVIEWS_VIP])
def test_w3_jasons_request_to_reviews_lands_on_v2(host: str) -> None:
    result = sim("w3-bookinfo-productpage").run(Call(
        port=9080, address=REVIEWS_VIP, host=host, path="/reviews/0",
        headers={"end-user": "jason"}))
    assert (result.handed_off_from, result.listener) == ("virtualOutbound", "0.0.0.0_9080")
    assert (result.route_configuration, result.virtual_host) == (
        "9080", "reviews.default.svc.cluster.local:9080")
    assert result.cluster == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert [str(e) for e in result.endpoints] == ["10.244.1.13:9080"]


@pytest.mark.parametrize("headers", [{}, {"end-user": "mary"}, {"end-user": "Jason"}])
def test_w3_everyone_else_lands_on_reviews_v1(headers: dict[str, str]) -> None:
    result = sim("w3-bookinfo-productpage").run(Call(
        port=9080, address=REVIEWS_VIP, host="reviews", path="/reviews/0", headers=headers))
    assert result.cluster == "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert [str(e) for e in result.endpoints] == ["10.244.1.12:9080"]


def test_w3_details_keeps_its_default_route() -> None:
    result = sim("w3-bookinfo-productpage").run(Call(port=9080, address="10.96.0.51",
                                                     host="details", path="/details/0"))
    assert (result.route, result.cluster) == (
        "default", "outbound|9080||details.default.svc.cluster.local")


def test_w3_a_call_into_productpage_reaches_the_app_through_virtual_inbound() -> None:
    result = sim("w3-bookinfo-productpage").run(Call(
        port=9080, address="10.244.1.10", host="productpage:9080", path="/productpage",
        mode=Mode.INBOUND))
    assert (result.listener, result.cluster) == ("virtualInbound", "inbound|9080||")
    assert [str(e) for e in result.endpoints] == ["10.244.1.10:9080"]


# -- sidecars: hosts outside the registry ----------------------------------------------------


def test_allow_any_passes_an_unknown_tcp_destination_through() -> None:
    result = sim("sidecar-w2").run(Call(port=443, address="203.0.113.7",
                                        protocol=Protocol.TCP))
    assert (result.listener, result.filter_chain and result.filter_chain.label) == (
        "virtualOutbound", "virtualOutbound-catchall-tcp")
    assert result.cluster == "PassthroughCluster"
    assert [str(e) for e in result.endpoints] == ["203.0.113.7:443"]


def test_allow_any_passes_an_unknown_http_host_through() -> None:
    result = sim("sidecar-w2").run(Call(port=80, address="203.0.113.7", host="example.com"))
    assert (result.route_configuration, result.virtual_host) == ("80", "allow_any")
    assert result.cluster == "PassthroughCluster"


def test_registry_only_blackholes_an_unknown_tcp_destination() -> None:
    result = sim("sidecar-registry-only").run(Call(port=443, address="203.0.113.7",
                                                   protocol=Protocol.TCP))
    assert result.cluster == "BlackHoleCluster"
    assert result.outcome is Outcome.NO_HEALTHY_UPSTREAM


def test_registry_only_answers_502_for_an_unknown_http_host() -> None:
    result = sim("sidecar-registry-only").run(Call(port=9080, address="203.0.113.7",
                                                   host="example.com"))
    assert (result.virtual_host, result.status) == ("block_all", 502)


# -- TLS by SNI, TCP by port -----------------------------------------------------------------


def test_gateway_tls_passthrough_picks_the_chain_by_sni() -> None:
    result = sim("gateway-tcp-tls").run(Call(port=8443, tls=True, sni="nginx.example.com",
                                             protocol=Protocol.TCP))
    assert result.filter_chain is not None and result.filter_chain.index == 0
    assert result.cluster == "outbound|443||my-nginx.default.svc.cluster.local"


def test_gateway_https_termination_routes_by_host_inside_tls() -> None:
    result = sim("gateway-tcp-tls").run(Call(port=8443, tls=True, host="httpbin.example.com",
                                             path="/status/200"))
    assert result.route_configuration == "https.443.https-httpbin.mygateway.default"
    assert result.cluster == "outbound|8000||httpbin.default.svc.cluster.local"


def test_gateway_tls_with_an_unknown_sni_is_closed() -> None:
    result = sim("gateway-tcp-tls").run(Call(port=8443, tls=True, sni="unknown.example.com",
                                             protocol=Protocol.TCP))
    assert result.outcome is Outcome.NO_FILTER_CHAIN


def test_gateway_plaintext_to_a_port_of_sni_chains_finds_no_chain() -> None:
    result = sim("gateway-tcp-tls").run(Call(port=8443, host="httpbin.example.com"))
    assert result.outcome is Outcome.NO_FILTER_CHAIN  # every chain there names an SNI


def test_gateway_tcp_server_splits_by_weight() -> None:
    result = sim("gateway-tcp-tls").run(Call(port=31400, protocol=Protocol.TCP))
    assert result.weights == {
        "outbound|9000|v1|tcp-echo.istio-io-tcp-traffic-shifting.svc.cluster.local": 80,
        "outbound|9000|v2|tcp-echo.istio-io-tcp-traffic-shifting.svc.cluster.local": 20}


def test_sidecar_external_tls_service_entries_share_443_by_sni() -> None:
    sidecar = sim("sidecar-tls-routes")
    known = sidecar.run(Call(port=443, address="203.0.113.5", tls=True,
                             sni="api.external.example", protocol=Protocol.TCP))
    assert (known.listener, known.cluster) == ("0.0.0.0_443", "outbound|443||api.external.example")
    assert known.destinations[0].discovery == "STRICT_DNS"
    unknown = sidecar.run(Call(port=443, address="203.0.113.5", tls=True, sni="other.example",
                               protocol=Protocol.TCP))
    assert unknown.filter_chain is not None and unknown.filter_chain.label == (
        "PassthroughFilterChain")
    assert unknown.cluster == "PassthroughCluster"


def test_sidecar_tcp_port_proxies_to_the_service_by_its_vip() -> None:
    result = sim("sidecar-w2").run(Call(port=6379, address="10.96.0.22", protocol=Protocol.TCP))
    assert (result.handed_off_from, result.listener) == ("virtualOutbound", "10.96.0.22_6379")
    assert result.cluster == "outbound|6379||redis.default.svc.cluster.local"


def test_sidecar_sniffed_port_sends_http_and_tcp_apart() -> None:
    legacy = sim("sidecar-w2")
    as_http = legacy.run(Call(port=7070, address="10.96.0.23", host="legacy"))
    assert as_http.route_configuration == "legacy.default.svc.cluster.local:7070"
    as_tcp = legacy.run(Call(port=7070, address="10.96.0.23", protocol=Protocol.TCP))
    assert as_tcp.filter_chain is not None and as_tcp.filter_chain.index is None
    assert as_tcp.cluster == "outbound|7070||legacy.default.svc.cluster.local"


# -- every case: the simulator reads every golden config -------------------------------------


@pytest.mark.parametrize("case", [c for c in all_cases() if c.is_envoy], ids=lambda c: c.name)
def test_every_listener_port_answers_a_call(case: Case) -> None:
    """A call to each listener's own address and port reaches some decision without the
    simulator meeting config it does not model."""
    simulated = simulation(case)
    for listener in simulated.listeners:
        socket = listener.address.socket_address
        address = socket.address if socket.address != "0.0.0.0" else "192.0.2.1"
        for protocol in (Protocol.HTTP, Protocol.TCP):
            result = simulated.run(Call(port=socket.port_value, address=address,
                                        protocol=protocol, host="example.com"))
            assert result.outcome is not Outcome.UNSUPPORTED, result.describe()
            assert result.outcome is not Outcome.OVERLAPPING_FILTER_CHAINS, result.describe()


# -- sidecars: inbound -----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [Protocol.HTTP, Protocol.TCP])
def test_a_sniffed_inbound_port_takes_http_and_opaque_tcp(protocol: Protocol) -> None:
    # Both chains name raw_buffer: Envoy never falls back from the raw_buffer branch (where
    # the HTTP chain is) to a chain naming no transport, so without it TCP would be closed.
    result = sim("sidecar-registry-only").run(Call(
        port=9200, address="10.244.0.50", protocol=protocol, host="reviews", mode=Mode.INBOUND))
    assert (result.outcome, result.cluster) == (Outcome.FORWARDED, "inbound|9200||")


def test_a_port_no_service_declares_passes_through_inbound() -> None:
    result = sim("sidecar-registry-only").run(Call(
        port=7777, address="10.244.0.50", protocol=Protocol.TCP, mode=Mode.INBOUND))
    assert (result.filter_chain and result.filter_chain.label, result.cluster) == (
        "virtualInbound", "InboundPassthroughCluster")
