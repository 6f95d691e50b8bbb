"""TCP and TLS on gateways and sidecars: validation of certificate sources and SNI hosts, and
the diagnostics for servers pilotpy refuses (each naming the Gateway, server and field) while
the rest of the config is still served."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from pilotpy.model.gateway import Gateway
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.translate.generate import GeneratedConfig, generate
from tests.unit.support import context, errors_of, parse_as

ROUTER = "router~10.244.0.7~gw-1.istio-system~istio-system.svc.cluster.local"
SIDECAR = "sidecar~10.244.1.8~client-0.default~default.svc.cluster.local"
CERT = {"serverCertificate": "/certs/tls.crt", "privateKey": "/certs/tls.key"}


def gateway(*servers: dict[str, Any], name: str = "gw") -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": list(servers)}}


def server(number: int, protocol: str, name: str, hosts: list[str],
           **tls: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"port": {"number": number, "name": name, "protocol": protocol},
                           "hosts": hosts}
    if tls:
        out["tls"] = tls
    return out


def virtual_service(name: str, hosts: list[str], **routes: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": hosts, "gateways": ["gw"], **routes}}


def service(name: str, port_name: str, port: int, cluster_ip: str = "10.96.0.20"
            ) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": name},
                     "ports": [{"name": port_name, "port": port}]}}


def service_entry(name: str, host: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                     "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}}


def router_config(*docs: dict[str, Any]) -> GeneratedConfig:
    push = context(*docs)
    proxy = parse_proxy(ROUTER, {"LABELS": {"istio": "ingressgateway"}})
    return generate(push, view_proxy(proxy, push))


def listener(config: GeneratedConfig, name: str) -> dict[str, Any]:
    found = [MessageToDict(m, preserving_proto_field_name=True) for m in config.listeners
             if m.name == name]
    assert found, f"no listener {name} in {[m.name for m in config.listeners]}"
    return found[0]


def server_names(chain: dict[str, Any]) -> list[str]:
    return list(chain.get("filter_chain_match", {}).get("server_names", []))


# -- validation ------------------------------------------------------------------------------


def test_simple_tls_needs_a_certificate_and_a_key() -> None:
    errors = errors_of(gateway(server(443, "HTTPS", "https", ["a.example.com"],
                                      mode="SIMPLE")))
    assert set(errors) == {"spec.servers[0].tls.serverCertificate",
                           "spec.servers[0].tls.privateKey"}


def test_mutual_tls_needs_a_client_ca() -> None:
    errors = errors_of(gateway(server(443, "HTTPS", "https", ["a.example.com"],
                                      mode="MUTUAL", **CERT)))
    assert list(errors) == ["spec.servers[0].tls.caCertificates"]
    assert "client CA bundle" in errors["spec.servers[0].tls.caCertificates"][0]


def test_one_certificate_source_only() -> None:
    errors = errors_of(gateway(server(443, "HTTPS", "https", ["a.example.com"],
                                      mode="SIMPLE", credentialName="c", **CERT)))
    assert list(errors) == ["spec.servers[0].tls"]


def test_istio_mutual_takes_no_certificates() -> None:
    errors = errors_of(gateway(server(443, "HTTPS", "https", ["a.example.com"],
                                      mode="ISTIO_MUTUAL", **CERT)))
    assert list(errors) == ["spec.servers[0].tls.mode"]


def test_passthrough_ignores_certificates_with_a_warning_only() -> None:
    parsed = parse_as(gateway(server(443, "TLS", "tls", ["a.example.com"],
                                     mode="PASSTHROUGH", **CERT)), Gateway)
    assert parsed.servers[0].tls is not None


def test_sni_hosts_must_fall_within_the_virtual_service_hosts() -> None:
    errors = errors_of(virtual_service("nginx", ["nginx.example.com"], tls=[{
        "match": [{"sniHosts": ["other.example.com"]}],
        "route": [{"destination": {"host": "my-nginx"}}]}]))
    assert list(errors) == ["spec.tls[0].match.sniHosts"]
    assert "other.example.com" in errors["spec.tls[0].match.sniHosts"][0]


# -- gateway problems --------------------------------------------------------------------------


def messages(config: GeneratedConfig) -> dict[str, list[str]]:
    """Problem messages by field (every problem here is about the one Gateway)."""
    out: dict[str, list[str]] = {}
    for problem in config.problems:
        out.setdefault(problem.field, []).append(problem.message)
    return out


def test_a_server_whose_secret_is_missing_is_skipped_by_name_and_field() -> None:
    config = router_config(
        gateway(server(443, "HTTPS", "https", ["a.example.com"], mode="SIMPLE",
                       credentialName="a-cert"),
                server(444, "HTTPS", "https-files", ["b.example.com"], mode="SIMPLE", **CERT)))
    assert [str(p) for p in config.problems if "a-cert" in p.message] == [
        "Warning [NotFound] (Gateway default/gw) spec.servers[0]: kubernetes://a-cert: Secret "
        "istio-system/a-cert not found; skipped"]
    # The server with files is still served.
    assert [m.name for m in config.listeners] == ["0.0.0.0_444"]
    assert [r.name for r in config.routes] == ["https.444.https-files.gw.default"]


def test_auto_passthrough_and_istio_mutual_are_refused() -> None:
    config = router_config(gateway(
        server(15443, "TLS", "tls", ["*.local"], mode="AUTO_PASSTHROUGH"),
        server(15444, "TLS", "tls-mtls", ["*.local"], mode="ISTIO_MUTUAL")))
    assert config.listeners == []
    found = messages(config)
    assert found["spec.servers[0]"][0].startswith("tls.mode AUTO_PASSTHROUGH")
    assert found["spec.servers[1]"][0].startswith("tls.mode ISTIO_MUTUAL")


def test_plain_http_and_tls_cannot_share_a_port() -> None:
    config = router_config(gateway(
        server(443, "HTTPS", "https", ["a.example.com"], mode="SIMPLE", **CERT),
        server(443, "HTTP", "http", ["b.example.com"])))
    assert messages(config)["spec.servers[1]"][0].startswith(
        "port 443 already serves Gateway default/gw server https"), config.problems
    chains = listener(config, "0.0.0.0_443")["filter_chains"]
    assert [server_names(c) for c in chains] == [["a.example.com"]]


def test_a_second_tcp_server_on_a_port_is_refused() -> None:
    config = router_config(
        gateway(server(31400, "TCP", "tcp", ["*"]), server(31400, "MONGO", "mongo", ["*"])),
        service("echo", "tcp", 9000),
        virtual_service("echo", ["*"], tcp=[{"route": [{"destination": {"host": "echo"}}]}]))
    assert messages(config)["spec.servers[1]"][0].startswith(
        "port 31400 already serves Gateway default/gw server tcp"), config.problems
    (chain,) = listener(config, "0.0.0.0_31400")["filter_chains"]
    assert chain["filters"][0]["typed_config"]["cluster"] == (
        "outbound|9000||echo.default.svc.cluster.local")


def test_duplicate_hosts_on_a_tls_port_are_refused() -> None:
    config = router_config(gateway(
        server(443, "HTTPS", "https-a", ["a.example.com"], mode="SIMPLE", **CERT),
        server(443, "HTTPS", "https-b", ["a.example.com", "b.example.com"], mode="SIMPLE",
               **CERT)))
    assert messages(config)["spec.servers[1]"][0].startswith(
        "hosts ['a.example.com'] are already served on port 443"), config.problems
    assert [r.name for r in config.routes] == ["https.443.https-a.gw.default"]


def test_a_tcp_server_without_a_route_gets_no_listener() -> None:
    config = router_config(gateway(server(31400, "TCP", "tcp", ["*"])))
    assert config.listeners == []
    assert [str(p) for p in config.problems] == [
        "Warning [NotFound] (Gateway default/gw) spec.servers[0]: no VirtualService `tcp` "
        "route bound to default/gw matches it; no filter chain"]


def test_tcp_route_match_on_another_port_does_not_bind() -> None:
    config = router_config(
        gateway(server(31400, "TCP", "tcp", ["*"])), service("echo", "tcp", 9000),
        virtual_service("echo", ["*"], tcp=[
            {"match": [{"port": 31401}], "route": [{"destination": {"host": "echo"}}]}]))
    assert config.listeners == []


def test_overlapping_sni_routes_keep_the_first_and_report_the_rest() -> None:
    route = [{"destination": {"host": "my-nginx", "port": {"number": 443}}}]
    config = router_config(
        gateway(server(443, "TLS", "tls", ["*.example.com"], mode="PASSTHROUGH")),
        service("my-nginx", "https", 443),
        virtual_service("first", ["*.example.com"], tls=[
            {"match": [{"sniHosts": ["a.example.com", "b.example.com"]}], "route": route}]),
        virtual_service("second", ["b.example.com"], tls=[
            {"match": [{"sniHosts": ["b.example.com"]}], "route": route}]))
    chains = listener(config, "0.0.0.0_443")["filter_chains"]
    assert [server_names(c) for c in chains] == [["a.example.com", "b.example.com"]]
    assert any(str(p).startswith(
        "Warning [Conflict] (VirtualService default/second) spec.tls[0].match[0]: server names "
        "['b.example.com'] already have a filter chain") for p in config.problems), (
        config.problems)


def test_passthrough_needs_a_tls_route_bound_to_the_gateway() -> None:
    config = router_config(
        gateway(server(443, "TLS", "tls", ["a.example.com"], mode="PASSTHROUGH")),
        service("my-nginx", "https", 443),
        {**virtual_service("unbound", ["a.example.com"], tls=[{
            "match": [{"sniHosts": ["a.example.com"]}],
            "route": [{"destination": {"host": "my-nginx"}}]}]),
         "spec": {"hosts": ["a.example.com"], "gateways": ["other"], "tls": [{
             "match": [{"sniHosts": ["a.example.com"]}],
             "route": [{"destination": {"host": "my-nginx"}}]}]}})
    assert config.listeners == []
    assert any("no VirtualService `tls` route" in p.message for p in config.problems)


# -- sidecars --------------------------------------------------------------------------------


def test_external_tls_services_without_addresses_share_the_wildcard_listener_by_sni() -> None:
    push = context(service_entry("a", "a.external.example"),
                   service_entry("b", "b.external.example"),
                   service_entry("a-again", "a.external.example"))
    config = generate(push, view_proxy(parse_proxy(SIDECAR), push))
    shared = listener(config, "0.0.0.0_443")
    assert [server_names(c) for c in shared["filter_chains"]] == [
        ["a.external.example"], ["b.external.example"]]
    assert shared["default_filter_chain"]["name"] == "PassthroughFilterChain"
    assert [f["name"] for f in shared["listener_filters"]] == [
        "envoy.filters.listener.tls_inspector"]
    assert [str(p) for p in config.problems] == [
        "Warning [Conflict] (ServiceEntry default/a-again) spec.ports[0]: server names "
        "['a.external.example'] already have a filter chain on listener 0.0.0.0_443; skipped"]


def test_tcp_routes_do_not_apply_to_tls_ports() -> None:
    push = context(service("secure", "https", 443), service("other", "tcp", 443, "10.96.0.21"),
                   {**virtual_service("secure", ["secure.default.svc.cluster.local"], tcp=[
                       {"route": [{"destination": {"host": "other"}}]}]),
                    "spec": {"hosts": ["secure.default.svc.cluster.local"], "tcp": [
                        {"route": [{"destination": {"host": "other"}}]}]}})
    config = generate(push, view_proxy(parse_proxy(SIDECAR), push))
    (chain,) = listener(config, "10.96.0.20_443")["filter_chains"]
    assert chain["filters"][0]["typed_config"]["cluster"] == (
        "outbound|443||secure.default.svc.cluster.local")
    assert "filter_chain_match" not in chain  # a VIP of its own: no SNI needed
