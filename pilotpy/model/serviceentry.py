"""ServiceEntry (networking.istio.io), validated like istiod's ValidateServiceEntry."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from pilotpy.model import hosts
from pilotpy.model.common import parse_export_to
from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta
from pilotpy.model.protocol import Protocol, parse_protocol

RESOLUTIONS = ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS")
LOCATIONS = ("MESH_EXTERNAL", "MESH_INTERNAL")


@dataclass(frozen=True, slots=True)
class ServiceEntryPort:
    number: int
    protocol: Protocol
    name: str
    target_port: int = 0


@dataclass(frozen=True, slots=True)
class WorkloadEndpoint:
    address: str
    ports: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str = ""
    locality: str = ""
    weight: int = 0
    service_account: str = ""


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    meta: Meta
    hosts: tuple[str, ...]
    ports: tuple[ServiceEntryPort, ...] = ()
    addresses: tuple[str, ...] = ()
    location: str = "MESH_EXTERNAL"
    resolution: str = "NONE"
    endpoints: tuple[WorkloadEndpoint, ...] = ()
    workload_selector: Mapping[str, str] | None = None
    export_to: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()


def _parse_endpoint(f: Fields, port_names: set[str], resolution: str) -> WorkloadEndpoint | None:
    address = f.string("address", required=True)
    if address and not hosts.is_ip(address):
        if address.startswith("unix://"):
            f.error("unix domain socket endpoints are not supported by pilotpy", "address")
        elif resolution == "STATIC":
            f.error(f"{address!r} must be an IP address for resolution STATIC", "address")
        elif hosts.validate_hostname(address, allow_wildcard=False):
            f.error(f"{address!r} is neither an IP address nor a valid FQDN", "address")
    ports = {}
    for name, value in f.integer_map("ports", minimum=1).items():
        if name not in port_names:
            f.error(f"port {name!r} is not defined by the service entry", f"ports.{name}")
        ports[name] = value
    endpoint = WorkloadEndpoint(
        address=address,
        ports=ports,
        labels=f.string_map("labels"),
        network=f.string("network"),
        locality=f.string("locality"),
        weight=f.integer("weight", minimum=0),
        service_account=f.string("serviceAccount"),
    )
    f.unsupported("network", "serviceAccount", reason="only used for mTLS and multi-network, "
                  "which pilotpy does not do yet")
    f.done()
    return endpoint


def parse_service_entry(meta: Meta, spec: Fields) -> ServiceEntry:
    se_hosts = spec.string_list("hosts", required=True)
    resolution = spec.enum("resolution", RESOLUTIONS, default="NONE") or "NONE"
    location = spec.enum("location", LOCATIONS, default="MESH_EXTERNAL") or "MESH_EXTERNAL"
    for host in se_hosts:
        if host == "*":
            spec.error("'*' is not a valid ServiceEntry host", "hosts")
            continue
        problem = hosts.validate_hostname(host, allow_wildcard=True)
        if problem:
            spec.error(problem, "hosts")
        elif resolution in ("DNS", "DNS_ROUND_ROBIN") and hosts.is_wildcard(host) and not (
            spec.raw("endpoints")
        ):
            spec.error(f"wildcard host {host!r} needs endpoints with resolution {resolution}",
                       "hosts")
    addresses = spec.string_list("addresses")
    has_cidr = False
    for address in addresses:
        try:
            network = ipaddress.ip_network(address, strict=False)
        except ValueError:
            spec.error(f"{address!r} is not an IP address or CIDR", "addresses")
            continue
        if "/" in address and network.num_addresses > 1:
            has_cidr = True
    if has_cidr and resolution not in ("NONE", "STATIC"):
        spec.error("CIDR addresses are allowed only with resolution NONE or STATIC", "addresses")
    ports = []
    names: set[str] = set()
    numbers: set[int] = set()
    for item in spec.children("ports"):
        number = item.integer("number", minimum=1, maximum=65535, required=True)
        name = item.string("name", required=True)
        protocol_name = item.string("protocol")
        # No protocol: detected per connection (sniffed), as istiod's protocol.Parse("").
        protocol = parse_protocol(protocol_name) if protocol_name else Protocol.UNSUPPORTED
        if protocol_name and protocol is Protocol.UNSUPPORTED:
            item.error(f"invalid protocol {protocol_name!r}", "protocol")
        target = item.integer("targetPort", minimum=1, maximum=65535)
        item.done()
        if name in names:
            item.error(f"port name {name!r} already defined", "name")
        if number in numbers:
            item.error(f"port {number} already defined", "number")
        names.add(name)
        numbers.add(number)
        ports.append(ServiceEntryPort(number, protocol, name, target))
    endpoints = []
    items = spec.children("endpoints")
    if resolution == "NONE" and items:
        spec.error("endpoints are not allowed with resolution NONE", "endpoints")
    if resolution == "DNS_ROUND_ROBIN" and len(items) > 1:
        spec.error("resolution DNS_ROUND_ROBIN allows at most one endpoint", "endpoints")
    for item in items:
        endpoint = _parse_endpoint(item, names, resolution)
        if endpoint is not None:
            endpoints.append(endpoint)
    selector = None
    ws = spec.child("workloadSelector")
    if ws is not None:
        selector = ws.string_map("labels")
        ws.done()
        spec.unsupported("workloadSelector", reason="endpoints of the selected workloads are "
                         "not built yet")
        if items:
            spec.error("only one of workloadSelector or endpoints may be set")
    if resolution == "DYNAMIC_DNS":
        spec.error("resolution DYNAMIC_DNS is not supported by pilotpy", "resolution")
    export_to = parse_export_to(spec, meta.namespace)
    entry = ServiceEntry(
        meta=meta,
        hosts=se_hosts,
        ports=tuple(ports),
        addresses=addresses,
        location=location,
        resolution=resolution,
        endpoints=tuple(endpoints),
        workload_selector=selector,
        export_to=export_to,
        subject_alt_names=spec.string_list("subjectAltNames"),
    )
    spec.done()
    return entry
