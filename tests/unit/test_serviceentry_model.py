"""ServiceEntry parsing and validation (istio's ValidateServiceEntry)."""

from __future__ import annotations

from typing import Any

import yaml

from pilotpy.model import parse_object
from pilotpy.model.protocol import Protocol
from pilotpy.model.serviceentry import ServiceEntry
from tests.unit.support import errors_of, parse_as


def entry(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"hosts": ["api.example.com"],
                            "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]}
    body.update(spec)
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": "external", "namespace": "default"}, "spec": body}


def parse_entry(doc: dict[str, Any]) -> ServiceEntry:
    return parse_as(doc, ServiceEntry)


HTTPBIN_ORG = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: httpbin-ext
spec:
  hosts:
  - httpbin.org
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
  location: MESH_EXTERNAL
"""


def test_httpbin_org_dns_mesh_external_parses() -> None:
    parsed = parse_object(yaml.safe_load(HTTPBIN_ORG))
    se = parsed.obj
    assert isinstance(se, ServiceEntry)
    assert parsed.warnings == ()
    assert se.hosts == ("httpbin.org",)
    assert se.resolution == "DNS"
    assert se.location == "MESH_EXTERNAL"
    (port,) = se.ports
    assert (port.number, port.name, port.protocol, port.target_port) == (
        80, "http", Protocol.HTTP, 0)
    assert se.endpoints == () and se.addresses == ()


def test_resolution_and_location_default_to_none_and_mesh_external() -> None:
    # Both are the proto enums' zero values.
    se = parse_entry(entry())
    assert (se.resolution, se.location) == ("NONE", "MESH_EXTERNAL")


def test_port_without_protocol_is_sniffed() -> None:
    # istiod's protocol.Parse("") is Unsupported: the protocol is detected per connection.
    se = parse_entry(entry(ports=[{"number": 5432, "name": "pg"}]))
    assert se.ports[0].protocol is Protocol.UNSUPPORTED


def test_static_endpoints_parse() -> None:
    se = parse_entry(entry(
        hosts=["db.internal"], location="MESH_INTERNAL", resolution="STATIC",
        ports=[{"number": 5432, "name": "pg", "protocol": "TCP", "targetPort": 15432}],
        endpoints=[{"address": "10.0.0.5", "ports": {"pg": 6432}, "labels": {"v": "1"}},
                   {"address": "10.0.0.6", "weight": 3}]))
    assert se.ports[0].target_port == 15432
    first, second = se.endpoints
    assert (first.address, dict(first.ports), dict(first.labels)) == (
        "10.0.0.5", {"pg": 6432}, {"v": "1"})
    assert (second.address, second.weight) == ("10.0.0.6", 3)


def test_addresses_accept_ips_and_cidrs() -> None:
    se = parse_entry(entry(addresses=["240.0.0.1", "10.1.0.0/16"]))
    assert se.addresses == ("240.0.0.1", "10.1.0.0/16")


def test_endpoints_with_resolution_none_are_invalid() -> None:
    errors = errors_of(entry(resolution="NONE", endpoints=[{"address": "1.2.3.4"}]))
    assert list(errors) == ["spec.endpoints"]


def test_static_endpoint_address_must_be_an_ip() -> None:
    errors = errors_of(entry(resolution="STATIC", endpoints=[{"address": "db.example.com"},
                                                             {"address": "10.0.0.1"}]))
    assert list(errors) == ["spec.endpoints[0].address"]


def test_dns_endpoint_may_be_a_hostname() -> None:
    se = parse_entry(entry(resolution="DNS", endpoints=[{"address": "backend.example.com"}]))
    assert se.endpoints[0].address == "backend.example.com"


def test_dns_endpoint_must_be_a_valid_hostname() -> None:
    errors = errors_of(entry(resolution="DNS", endpoints=[{"address": "bad_host!"}]))
    assert list(errors) == ["spec.endpoints[0].address"]


def test_endpoint_ports_must_name_service_entry_ports() -> None:
    errors = errors_of(entry(resolution="STATIC", endpoints=[
        {"address": "10.0.0.1", "ports": {"https": 8443, "grpc": 9000}}]))
    assert list(errors) == ["spec.endpoints[0].ports.grpc"]


def test_star_host_is_invalid() -> None:
    errors = errors_of(entry(hosts=["*"]))
    assert list(errors) == ["spec.hosts"]


def test_hosts_are_required() -> None:
    errors = errors_of(entry(hosts=[]))
    assert list(errors) == ["spec.hosts"]


def test_wildcard_host_with_dns_needs_endpoints() -> None:
    errors = errors_of(entry(hosts=["*.example.com"], resolution="DNS"))
    assert list(errors) == ["spec.hosts"]
    se = parse_entry(entry(hosts=["*.example.com"], resolution="NONE"))
    assert se.hosts == ("*.example.com",)


def test_cidr_addresses_need_resolution_none_or_static() -> None:
    errors = errors_of(entry(addresses=["10.0.0.0/24"], resolution="DNS"))
    assert list(errors) == ["spec.addresses"]


def test_invalid_address_is_reported() -> None:
    errors = errors_of(entry(addresses=["not-an-ip"]))
    assert list(errors) == ["spec.addresses"]


def test_duplicate_port_numbers_and_names_are_invalid() -> None:
    errors = errors_of(entry(ports=[{"number": 80, "name": "http"},
                                    {"number": 80, "name": "http"}]))
    assert set(errors) == {"spec.ports[1].name", "spec.ports[1].number"}


def test_invalid_port_protocol_is_reported() -> None:
    errors = errors_of(entry(ports=[{"number": 80, "name": "http", "protocol": "SPDY"}]))
    assert list(errors) == ["spec.ports[0].protocol"]


def test_workload_selector_and_endpoints_are_exclusive() -> None:
    errors = errors_of(entry(resolution="STATIC", workloadSelector={"labels": {"app": "vm"}},
                             endpoints=[{"address": "10.0.0.1"}]))
    assert list(errors) == ["spec"]


def test_dns_round_robin_allows_one_endpoint() -> None:
    errors = errors_of(entry(resolution="DNS_ROUND_ROBIN", endpoints=[
        {"address": "a.example.com"}, {"address": "b.example.com"}]))
    assert list(errors) == ["spec.endpoints"]


def test_unknown_resolution_is_invalid() -> None:
    errors = errors_of(entry(resolution="MAGIC"))
    assert list(errors) == ["spec.resolution"]
