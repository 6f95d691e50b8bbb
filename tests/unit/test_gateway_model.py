"""Gateway parsing and validation (istio's ValidateGateway / validateServer and
agent.ValidateNamespaceSlashWildcardHostname)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotpy.model import parse_object
from pilotpy.model.gateway import Gateway
from pilotpy.model.protocol import Protocol
from tests.unit.support import errors_of, parse_as


def gateway(servers: list[dict[str, Any]], *, name: str = "gw", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "istio-system"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers, **spec}}


def server(number: int = 80, protocol: str = "HTTP", name: str = "http",
           hosts: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    return {"port": {"number": number, "name": name, "protocol": protocol},
            "hosts": hosts if hosts is not None else ["*"], **fields}


def parse_gateway(doc: dict[str, Any]) -> Gateway:
    return parse_as(doc, Gateway)


W1_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: httpbin-gateway
  namespace: default
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - httpbin.local
"""


def test_w1_gateway_parses() -> None:
    parsed = parse_object(yaml.safe_load(W1_GATEWAY))
    gw = parsed.obj
    assert isinstance(gw, Gateway)
    assert parsed.warnings == ()
    assert gw.meta.key == ("Gateway", "default", "httpbin-gateway")
    assert gw.selector == {"istio": "ingressgateway"}
    (srv,) = gw.servers
    assert (srv.port.number, srv.port.protocol, srv.port.name) == (80, Protocol.HTTP, "http")
    assert srv.hosts == ("httpbin.local",)
    assert srv.tls is None and srv.is_plain_http


def test_https_server_with_credential_name_parses() -> None:
    gw = parse_gateway(gateway([server(443, "HTTPS", "https", ["bookinfo.example.com"],
                                       tls={"mode": "SIMPLE",
                                            "credentialName": "bookinfo-credential"})]))
    (srv,) = gw.servers
    assert srv.port.protocol is Protocol.HTTPS
    assert srv.tls is not None
    assert (srv.tls.mode, srv.tls.credential_name) == ("SIMPLE", "bookinfo-credential")
    assert not srv.is_plain_http


def test_protocol_names_are_case_insensitive() -> None:
    gw = parse_gateway(gateway([server(protocol="http"), server(81, "grpc-web", "web")]))
    assert [s.port.protocol for s in gw.servers] == [Protocol.HTTP, Protocol.GRPC_WEB]


def test_http_server_may_only_redirect_to_https() -> None:
    gw = parse_gateway(gateway([server(tls={"httpsRedirect": True})]))
    (srv,) = gw.servers
    assert srv.tls is not None and srv.tls.https_redirect
    assert srv.is_plain_http


@pytest.mark.parametrize("host", ["*", "*.example.com", "httpbin.local", "ns1/a.example.com",
                                  "*/a.example.com", "./a.example.com", "10.0.0.1"])
def test_valid_server_hosts(host: str) -> None:
    gw = parse_gateway(gateway([server(hosts=[host])]))
    assert gw.servers[0].hosts == (host,)


@pytest.mark.parametrize("host", [
    "httpbin",  # short name
    "ns1/httpbin",  # short name after the namespace
    "foo*.example.com",  # partial wildcard
    "*foo.example.com",  # partial wildcard
    "a.*.example.com",  # wildcard not in the first label
    "Bad_NS/a.example.com",  # invalid namespace
    "/a.example.com",  # empty namespace
    "ns1/",  # empty name
])
def test_invalid_server_hosts(host: str) -> None:
    errors = errors_of(gateway([server(hosts=[host])]))
    assert list(errors) == ["spec.servers[0].hosts"]
    assert repr(host) in errors["spec.servers[0].hosts"][0]


def test_server_needs_hosts() -> None:
    errors = errors_of(gateway([server(hosts=[])]))
    assert list(errors) == ["spec.servers[0].hosts"]


def test_https_server_without_tls_is_invalid() -> None:
    errors = errors_of(gateway([server(443, "HTTPS", "https")]))
    assert list(errors) == ["spec.servers[0].tls"]


def test_tls_server_without_tls_is_invalid() -> None:
    errors = errors_of(gateway([server(443, "TLS", "tls")]))
    assert list(errors) == ["spec.servers[0].tls"]


def test_tls_termination_on_a_plain_http_server_is_invalid() -> None:
    errors = errors_of(gateway([server(tls={"mode": "SIMPLE", "credentialName": "c"})]))
    assert list(errors) == ["spec.servers[0].tls"]


def test_tls_on_a_tcp_server_is_invalid() -> None:
    errors = errors_of(gateway([server(31400, "TCP", "tcp", tls={"httpsRedirect": True})]))
    assert list(errors) == ["spec.servers[0].tls"]


def test_https_redirect_on_an_https_server_is_only_a_warning() -> None:
    parsed = parse_object(gateway([server(443, "HTTPS", "https", tls={
        "mode": "SIMPLE", "credentialName": "c", "httpsRedirect": True})]))
    assert [w.path for w in parsed.warnings] == ["spec.servers[0].tls"]


def test_duplicate_port_names_are_invalid() -> None:
    errors = errors_of(gateway([server(80, name="http"), server(8080, name="http")]))
    assert list(errors) == ["spec.servers[1].port.name"]


def test_same_port_number_with_distinct_names_is_valid() -> None:
    # Several servers on one port merge into one listener (mergeGateways).
    gw = parse_gateway(gateway([server(80, name="http-a", hosts=["a.example.com"]),
                                server(80, name="http-b", hosts=["b.example.com"])]))
    assert [s.port.number for s in gw.servers] == [80, 80]


def test_gateway_without_servers_is_invalid() -> None:
    errors = errors_of(gateway([]))
    assert list(errors) == ["spec.servers"]


def test_gateway_name_must_be_a_dns_label() -> None:
    errors = errors_of(gateway([server()], name="my.gateway"))
    assert list(errors) == ["spec"]
    assert "my.gateway" in errors["spec"][0]


@pytest.mark.parametrize(("port", "path"), [
    ({"number": 0, "name": "http", "protocol": "HTTP"}, "spec.servers[0].port.number"),
    ({"number": 65536, "name": "http", "protocol": "HTTP"}, "spec.servers[0].port.number"),
    ({"number": 80, "name": "http", "protocol": "FOO"}, "spec.servers[0].port.protocol"),
    ({"number": 80, "protocol": "HTTP"}, "spec.servers[0].port.name"),
    ({"number": 80, "name": "http"}, "spec.servers[0].port.protocol"),
    ({"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 8080},
     "spec.servers[0].port.targetPort"),
])
def test_invalid_server_ports(port: dict[str, Any], path: str) -> None:
    errors = errors_of(gateway([{"port": port, "hosts": ["*"]}]))
    assert list(errors) == [path]


def test_bind_must_be_an_ip() -> None:
    errors = errors_of(gateway([server(bind="localhost")]))
    assert list(errors) == ["spec.servers[0].bind"]
    gw = parse_gateway(gateway([server(bind="127.0.0.1")]))
    assert gw.servers[0].bind == "127.0.0.1"


def test_invalid_tls_mode_is_reported() -> None:
    errors = errors_of(gateway([server(443, "HTTPS", "https", tls={"mode": "STRICT"})]))
    assert list(errors) == ["spec.servers[0].tls.mode"]


def test_all_server_errors_are_reported_at_once() -> None:
    errors = errors_of(gateway([server(hosts=["httpbin"]), server(443, "HTTPS", "http")]))
    assert set(errors) == {"spec.servers[0].hosts", "spec.servers[1].tls",
                           "spec.servers[1].port.name"}
