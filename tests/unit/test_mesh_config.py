"""MeshConfig: defaults as istio's DefaultMeshConfig (pkg/config/mesh/mesh.go), the fields
pilotpy translates, and errors that name the field."""

from __future__ import annotations

import pytest
import yaml

from pilotpy.mesh import MeshConfig, MeshConfigError, parse_mesh_config

SECOND = 1_000_000_000


@pytest.mark.parametrize("data", [None, {}])
def test_defaults_follow_istio(data: object) -> None:
    config, warnings = parse_mesh_config(data)
    assert warnings == []
    assert config == MeshConfig()
    assert config.connect_timeout_ns == 10 * SECOND
    assert config.outbound_traffic_policy == "ALLOW_ANY"
    assert config.root_namespace == "istio-system"
    assert config.trust_domain == "cluster.local"
    assert config.dns_refresh_rate_ns == 60 * SECOND
    assert config.h2_upgrade_policy == "DO_NOT_UPGRADE"
    assert config.default_http_retry_policy is None


def test_a_mesh_config_as_users_write_it() -> None:
    config, warnings = parse_mesh_config(yaml.safe_load("""
accessLogFile: /dev/stdout
enableTracing: true
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
connectTimeout: 2.5s
rootNamespace: mesh-root
trustDomain: example.org
defaultHttpRetryPolicy:
  attempts: 3
  perTryTimeout: 1s
  retryOn: gateway-error,connect-failure,503
"""))
    assert warnings == []
    assert config.outbound_traffic_policy == "REGISTRY_ONLY"
    assert config.connect_timeout_ns == 2_500_000_000
    assert (config.root_namespace, config.trust_domain) == ("mesh-root", "example.org")
    retry = config.default_http_retry_policy
    assert retry is not None
    assert (retry.attempts, retry.per_try_timeout_ns, retry.retry_on) == (
        3, SECOND, "gateway-error,connect-failure,503")


def test_outbound_traffic_policy_without_mode_is_allow_any() -> None:
    config, _ = parse_mesh_config({"outboundTrafficPolicy": {}})
    assert config.outbound_traffic_policy == "ALLOW_ANY"


def test_zero_retry_attempts_disable_the_default_policy() -> None:
    config, _ = parse_mesh_config({"defaultHttpRetryPolicy": {"attempts": 0}})
    assert config.default_http_retry_policy is not None
    assert config.default_http_retry_policy.attempts == 0


@pytest.mark.parametrize(("data", "field"), [
    ({"outboundTrafficPolicy": {"mode": "BLOCK"}}, "outboundTrafficPolicy.mode"),
    ({"connectTimeout": "soon"}, "connectTimeout"),
    ({"connectTimeout": "100us"}, "connectTimeout"),
    ({"connectTimeout": 10}, "connectTimeout"),
    ({"dnsRefreshRate": "x"}, "dnsRefreshRate"),
    ({"h2UpgradePolicy": "ALWAYS"}, "h2UpgradePolicy"),
    ({"rootNamespace": ["a"]}, "rootNamespace"),
    ({"defaultHttpRetryPolicy": {"attempts": 2, "retryOn": "sometimes"}},
     "defaultHttpRetryPolicy.retryOn"),
    ({"defaultHttpRetryPolicy": {"attempts": 0, "retryOn": "5xx"}},
     "defaultHttpRetryPolicy.attempts"),
])
def test_errors_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(MeshConfigError) as info:
        parse_mesh_config(data, origin="mesh.yaml")
    message = str(info.value)
    assert message.startswith("mesh.yaml: ")
    assert f"{field}:" in message


def test_several_errors_are_reported_together() -> None:
    with pytest.raises(MeshConfigError) as info:
        parse_mesh_config({"connectTimeout": "x", "outboundTrafficPolicy": {"mode": "NOPE"}})
    assert "connectTimeout" in str(info.value)
    assert "outboundTrafficPolicy.mode" in str(info.value)


def test_a_mesh_config_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(MeshConfigError):
        parse_mesh_config(["not", "a", "mapping"])


def test_unknown_fields_are_warnings() -> None:
    config, warnings = parse_mesh_config({"conectTimeout": "5s", "outboundTrafficPolicy": {
        "mode": "REGISTRY_ONLY", "extra": 1}})
    assert config.connect_timeout_ns == 10 * SECOND  # the misspelt field is not applied
    assert config.outbound_traffic_policy == "REGISTRY_ONLY"
    assert sorted(w.path for w in warnings) == ["conectTimeout", "outboundTrafficPolicy.extra"]
    assert all(w.warning for w in warnings)


def test_istiod_fields_pilotpy_does_not_translate_load_quietly() -> None:
    _, warnings = parse_mesh_config({"enableAutoMtls": True, "accessLogEncoding": "JSON",
                                     "extensionProviders": [], "discoverySelectors": []})
    assert warnings == []


def test_sidecar_capture_ports_default_to_istio_init_s() -> None:
    default, _ = parse_mesh_config({})
    assert (default.proxy_listen_port, default.proxy_inbound_listen_port) == (15001, 15006)
    moved, warnings = parse_mesh_config({"proxyListenPort": 16001,
                                         "proxyInboundListenPort": 16006})
    assert warnings == []
    assert (moved.proxy_listen_port, moved.proxy_inbound_listen_port) == (16001, 16006)
    with pytest.raises(MeshConfigError, match="proxyListenPort"):
        parse_mesh_config({"proxyListenPort": 70000})


def test_access_log_and_tracing_fields() -> None:
    config, warnings = parse_mesh_config(yaml.safe_load("""
accessLogFile: /dev/stdout
accessLogEncoding: JSON
accessLogFormat: '{"code": "%RESPONSE_CODE%"}'
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  tracing:
    sampling: 25
    zipkin: {address: zipkin.istio-system:9411}
"""))
    assert warnings == []
    assert config.access_log_file == "/dev/stdout"
    assert config.access_log_encoding == "JSON"
    assert config.access_log_format == '{"code": "%RESPONSE_CODE%"}'
    assert config.enable_tracing is True
    assert config.trace_sampling == 25
    assert config.zipkin_address == "zipkin.istio-system:9411"


def test_tracing_defaults_and_errors() -> None:
    config, _ = parse_mesh_config({"enableTracing": False})
    assert (config.enable_tracing, config.trace_sampling, config.zipkin_address) == (
        False, 1.0, "")
    with pytest.raises(MeshConfigError, match=r"defaultConfig\.tracing\.zipkin\.address"):
        parse_mesh_config({"defaultConfig": {"tracing": {"zipkin": {"address": "nohost"}}}})
    with pytest.raises(MeshConfigError, match="accessLogFormat"):
        parse_mesh_config({"accessLogEncoding": "JSON", "accessLogFormat": "not json"})
    _, warnings = parse_mesh_config({"defaultConfig": {"tracing": {"datadog": {}}}})
    assert any("zipkin" in str(w) for w in warnings)


def test_tls_defaults_reach_originated_tls() -> None:
    config, warnings = parse_mesh_config({"tlsDefaults": {
        "ecdhCurves": ["P-256", "P-384"], "cipherSuites": ["ECDHE-RSA-AES256-GCM-SHA384"],
        "minProtocolVersion": "TLSV1_3"}})
    assert warnings == []
    assert config.tls_ecdh_curves == ("P-256", "P-384")
    assert config.tls_cipher_suites == ("ECDHE-RSA-AES256-GCM-SHA384",)


def test_ext_authz_providers_are_read_and_other_kinds_kept_quietly() -> None:
    config, warnings = parse_mesh_config({"extensionProviders": [
        {"name": "opa", "envoyExtAuthzGrpc": {"service": "ns/opa.ns.svc.cluster.local",
                                              "port": 9000, "timeout": "2s",
                                              "statusOnError": "503"}},
        {"name": "web", "envoyExtAuthzHttp": {
            "service": "authz.example", "port": 80, "pathPrefix": "/check",
            "includeAdditionalHeadersInCheck": {"b": "2", "a": "1"}}},
        {"name": "trace", "zipkin": {"service": "zipkin.istio-system", "port": 9411}}]})
    assert warnings == []
    opa, web = config.ext_authz_providers
    assert (opa.kind, opa.service, opa.port, opa.timeout_ns, opa.status_on_error) == (
        "grpc", "ns/opa.ns.svc.cluster.local", 9000, 2 * SECOND, 503)
    assert (web.kind, web.path_prefix, web.additional_headers) == (
        "http", "/check", (("a", "1"), ("b", "2")))
    assert config.ext_authz_provider("trace") is None


@pytest.mark.parametrize(("provider", "field"), [
    ({"name": "x", "envoyExtAuthzHttp": {"service": "", "port": 80}},
     "extensionProviders[0].envoyExtAuthzHttp.service"),
    ({"name": "x", "envoyExtAuthzHttp": {"service": "a.b", "port": 70000}},
     "extensionProviders[0].envoyExtAuthzHttp.port"),
    ({"name": "x", "envoyExtAuthzGrpc": {"service": "a.b", "port": 1, "statusOnError": "999"}},
     "extensionProviders[0].envoyExtAuthzGrpc.statusOnError"),
    ({"name": "x", "envoyExtAuthzHttp": {"service": "a.b", "port": 1, "pathPrefix": "check"}},
     "extensionProviders[0].envoyExtAuthzHttp.pathPrefix"),
    ({"name": "Upper", "envoyExtAuthzHttp": {"service": "a.b", "port": 1}},
     "extensionProviders[0].name"),
])
def test_an_invalid_ext_authz_provider_makes_the_mesh_config_invalid(
        provider: dict[str, object], field: str) -> None:
    with pytest.raises(MeshConfigError) as info:
        parse_mesh_config({"extensionProviders": [provider]})
    assert field in str(info.value)


def test_extension_provider_names_are_unique() -> None:
    with pytest.raises(MeshConfigError) as info:
        parse_mesh_config({"extensionProviders": [
            {"name": "x", "zipkin": {"service": "z", "port": 1}},
            {"name": "x", "envoyExtAuthzHttp": {"service": "a.b", "port": 1}}]})
    assert "duplicate extension provider name x" in str(info.value)
