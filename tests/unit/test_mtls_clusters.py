"""Outbound mesh mTLS (istiod's buildUpstreamTLSSettings, BestEffortInferServiceMTLSMode,
the EDS mtlsChecker): which clusters of which proxies get it, with what SANs and SNI, and
which endpoints take it."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.proxy import AGENT_METADATA, parse_proxy, view_proxy
from pilotpy.push import PushContext
from pilotpy.translate.generate import endpoints_for, generate
from tests.unit.support import context

SIDECAR = "sidecar~10.0.0.9~sleep-1.default~default.svc.cluster.local"
GATEWAY = "router~10.0.0.7~gw-1.istio-system~istio-system.svc.cluster.local"
AGENT: dict[str, Any] = {AGENT_METADATA: {}}
HTTPBIN = "outbound|8000||httpbin.default.svc.cluster.local"


def service(name: str, namespace: str = "default", *, headless: bool = False,
            port: str = "http") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": "None" if headless else "10.96.0.20",
                     "selector": {"app": name}, "ports": [{"name": port, "port": 8000}]}}


def pod(name: str, ip: str, app: str, *, sidecar: bool = True, account: str = "",
        namespace: str = "default") -> dict[str, Any]:
    labels = {"app": app, **({"security.istio.io/tlsMode": "istio"} if sidecar else {})}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"serviceAccountName": account or app}, "status": {"podIP": ip}}


def endpoints(service_name: str, *pods: tuple[str, str], namespace: str = "default",
              port: str = "http") -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": service_name, "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "ports": [{"name": port, "port": 8000}],
            "endpoints": [{"addresses": [ip], "targetRef": {"kind": "Pod", "name": name,
                                                             "namespace": namespace}}
                          for name, ip in pods]}


def rule(tls: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    policy = {"trafficPolicy": {"tls": tls}} if tls is not None else {}
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "httpbin", "namespace": "default"},
            "spec": {"host": "httpbin", **policy, **spec}}


def peer(mode: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "p", "namespace": namespace},
            "spec": {"mtls": {"mode": mode}, **spec}}


HTTPBIN_DOCS = (service("httpbin"), pod("httpbin-1", "10.0.0.11", "httpbin"),
                pod("httpbin-2", "10.0.0.12", "httpbin", account="httpbin-admin"),
                endpoints("httpbin", ("httpbin-1", "10.0.0.11"), ("httpbin-2", "10.0.0.12")))


def clusters(push: PushContext, node: str = SIDECAR, metadata: dict[str, Any] | None = None
             ) -> dict[str, cluster_pb2.Cluster]:
    config = generate(push, view_proxy(parse_proxy(node, AGENT if metadata is None
                                                   else metadata), push))
    return {c.name: c for c in config.clusters}


def upstream(socket: Any) -> tls_pb2.UpstreamTlsContext:
    context = tls_pb2.UpstreamTlsContext()
    assert socket.typed_config.Unpack(context)
    return context


def test_auto_mtls_gives_an_mtls_match_and_a_plaintext_fallback() -> None:
    cluster = clusters(context(*HTTPBIN_DOCS))[HTTPBIN]
    assert not cluster.HasField("transport_socket")
    istio, disabled = cluster.transport_socket_matches
    assert (istio.name, dict(istio.match.fields)["tlsMode"].string_value) == (
        "tlsMode-istio", "istio")
    assert (disabled.name, disabled.transport_socket.name, len(disabled.match.fields)) == (
        "tlsMode-disabled", "envoy.transport_sockets.raw_buffer", 0)
    context_ = upstream(istio.transport_socket)
    assert context_.sni == "outbound_.8000_._.httpbin.default.svc.cluster.local"
    assert list(context_.common_tls_context.alpn_protocols) == ["istio-peer-exchange", "istio"]
    certificate = context_.common_tls_context.tls_certificate_sds_secret_configs[0]
    assert (certificate.name, certificate.sds_config.api_config_source.grpc_services[0]
            .envoy_grpc.cluster_name) == ("default", "sds-grpc")


def test_the_sans_are_the_accounts_of_the_pods_behind_the_service() -> None:
    cluster = clusters(context(*HTTPBIN_DOCS))[HTTPBIN]
    validation = upstream(cluster.transport_socket_matches[0].transport_socket
                          ).common_tls_context.combined_validation_context
    assert [m.matcher.exact for m in
            validation.default_validation_context.match_typed_subject_alt_names] == [
        "spiffe://cluster.local/ns/default/sa/httpbin",
        "spiffe://cluster.local/ns/default/sa/httpbin-admin"]
    assert validation.validation_context_sds_secret_config.name == "ROOTCA"


def test_a_proxy_without_pilot_agent_gets_no_mesh_mtls() -> None:
    cluster = clusters(context(*HTTPBIN_DOCS), metadata={})[HTTPBIN]
    assert not cluster.transport_socket_matches and not cluster.HasField("transport_socket")


def test_gateways_with_pilot_agent_get_auto_mtls_too() -> None:
    cluster = clusters(context(*HTTPBIN_DOCS), GATEWAY)[HTTPBIN]
    assert len(cluster.transport_socket_matches) == 2


def test_enable_auto_mtls_false_turns_it_off() -> None:
    push = context(*HTTPBIN_DOCS, mesh=MeshConfig(enable_auto_mtls=False))
    assert not clusters(push)[HTTPBIN].transport_socket_matches


def test_a_destination_namespace_with_mtls_disabled_gets_plaintext() -> None:
    assert not clusters(context(*HTTPBIN_DOCS, peer("DISABLE")))[HTTPBIN].transport_socket_matches
    assert clusters(context(*HTTPBIN_DOCS, peer("STRICT")))[HTTPBIN].transport_socket_matches


def test_destination_rule_istio_mutual_is_one_socket_with_its_sni_and_sans() -> None:
    push = context(*HTTPBIN_DOCS, rule({"mode": "ISTIO_MUTUAL", "sni": "x.example",
                                        "subjectAltNames": ["spiffe://td/ns/a/sa/b"]}))
    cluster = clusters(push)[HTTPBIN]
    assert not cluster.transport_socket_matches
    context_ = upstream(cluster.transport_socket)
    assert context_.sni == "x.example"
    assert [m.matcher.exact for m in context_.common_tls_context.combined_validation_context
            .default_validation_context.match_typed_subject_alt_names] == [
        "spiffe://td/ns/a/sa/b"]


def test_destination_rule_tls_of_another_mode_turns_auto_mtls_off() -> None:
    for tls in ({"mode": "DISABLE"}, {"mode": "SIMPLE"}):
        cluster = clusters(context(*HTTPBIN_DOCS, rule(tls)))[HTTPBIN]
        assert not cluster.transport_socket_matches, tls


def test_a_mesh_external_service_gets_no_auto_mtls() -> None:
    entry = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
             "metadata": {"name": "api", "namespace": "default"},
             "spec": {"hosts": ["api.example.com"], "location": "MESH_EXTERNAL",
                      "resolution": "DNS", "ports": [{"name": "http", "number": 80,
                                                      "protocol": "HTTP"}]}}
    cluster = clusters(context(entry))["outbound|80||api.example.com"]
    assert not cluster.transport_socket_matches and not cluster.HasField("transport_socket")


def test_a_headless_service_gets_mtls_only_when_every_endpoint_has_a_sidecar() -> None:
    name = "outbound|8000||db.default.svc.cluster.local"
    all_sidecars = context(service("db", headless=True), pod("db-0", "10.0.0.30", "db"),
                           endpoints("db", ("db-0", "10.0.0.30")))
    cluster = clusters(all_sidecars)[name]
    assert cluster.type == cluster_pb2.Cluster.ORIGINAL_DST
    assert cluster.HasField("transport_socket") and not cluster.transport_socket_matches
    mixed = context(service("db", headless=True), pod("db-0", "10.0.0.30", "db"),
                    pod("db-1", "10.0.0.31", "db", sidecar=False),
                    endpoints("db", ("db-0", "10.0.0.30"), ("db-1", "10.0.0.31")))
    assert not clusters(mixed)[name].HasField("transport_socket")


def _tls_modes(push: PushContext, name: str = HTTPBIN) -> list[str]:
    view = view_proxy(parse_proxy(SIDECAR, AGENT), push)
    (assignment,) = endpoints_for(push, view, [name])
    out = []
    for group in assignment.endpoints:
        for lb in group.lb_endpoints:
            match = lb.metadata.filter_metadata.get("envoy.transport_socket_match")
            out.append(match.fields["tlsMode"].string_value if match is not None else "")
    return out


def test_endpoints_with_a_sidecar_carry_tls_mode_istio() -> None:
    docs = (service("httpbin"), pod("httpbin-1", "10.0.0.11", "httpbin"),
            pod("httpbin-2", "10.0.0.12", "httpbin", sidecar=False),
            endpoints("httpbin", ("httpbin-1", "10.0.0.11"), ("httpbin-2", "10.0.0.12")))
    assert _tls_modes(context(*docs)) == ["istio", ""]


def test_a_port_level_disable_takes_tls_mode_off_the_endpoint() -> None:
    disabled = peer("STRICT", selector={"matchLabels": {"app": "httpbin"}},
                    portLevelMtls={"8000": {"mode": "DISABLE"}})
    assert _tls_modes(context(*HTTPBIN_DOCS, disabled)) == ["", ""]


def test_destination_rule_istio_mutual_marks_every_endpoint() -> None:
    docs = (service("httpbin"), pod("httpbin-1", "10.0.0.11", "httpbin", sidecar=False),
            endpoints("httpbin", ("httpbin-1", "10.0.0.11")))
    assert _tls_modes(context(*docs, rule({"mode": "ISTIO_MUTUAL"}))) == ["istio"]
    assert _tls_modes(context(*docs)) == [""]
