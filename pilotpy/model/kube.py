"""The Kubernetes registry: Service, EndpointSlice, Pod, Namespace (only what translation reads)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pilotpy.model import hosts
from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta
from pilotpy.model.protocol import Protocol, kube_port_protocol
from pilotpy.problems import Reason

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    target_port: int | str  # a number, or the name of a container port
    protocol: Protocol
    l4_protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Service:
    meta: Meta
    ports: tuple[ServicePort, ...]
    # None means "no selector" (endpoints managed by hand); {} selects nothing in Istio.
    selector: Mapping[str, str] | None = None
    cluster_ip: str = ""
    type: str = "ClusterIP"
    external_name: str = ""

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"


@dataclass(frozen=True, slots=True)
class EndpointRef:
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    addresses: tuple[str, ...]
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None
    target_ref: EndpointRef | None = None
    node_name: str = ""
    zone: str = ""


@dataclass(frozen=True, slots=True)
class SlicePort:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    meta: Meta
    service_name: str
    address_type: str
    endpoints: tuple[SliceEndpoint, ...] = ()
    ports: tuple[SlicePort, ...] = ()


@dataclass(frozen=True, slots=True)
class Pod:
    meta: Meta
    ip: str = ""
    ips: tuple[str, ...] = ()
    # Named container ports, for Services whose targetPort is a name.
    container_ports: Mapping[str, int] = field(default_factory=dict)
    node_name: str = ""
    service_account: str = ""
    phase: str = ""


@dataclass(frozen=True, slots=True)
class Namespace:
    meta: Meta


def parse_service(meta: Meta, spec: Fields) -> Service:
    ports = []
    names: set[str] = set()
    items = spec.children("ports")
    for item in items:
        number = item.integer("port", minimum=1, maximum=65535, required=True)
        name = item.string("name")
        if len(items) > 1 and not name:
            item.error("required when a Service has more than one port", "name")
        if name in names and name:
            item.error(f"duplicate port name {name!r}", "name")
        names.add(name)
        raw_target = item.raw("targetPort")
        target: int | str = number
        if isinstance(raw_target, str) and raw_target:
            target = int(raw_target) if raw_target.isdigit() else raw_target
        elif raw_target is not None:
            target = item.integer("targetPort", minimum=1, maximum=65535) or number
        l4 = item.enum("protocol", ("TCP", "UDP", "SCTP"), default="TCP") or "TCP"
        app_protocol = item.string("appProtocol") or None
        item.done(ignore=("nodePort",))
        ports.append(ServicePort(name, number, target,
                                 kube_port_protocol(number, name, l4, app_protocol), l4))
    raw_selector = spec.raw("selector")
    selector = spec.string_map("selector") if raw_selector is not None else None
    svc_type = spec.enum("type", ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"),
                         default="ClusterIP") or "ClusterIP"
    cluster_ip = spec.string("clusterIP")
    if cluster_ip and cluster_ip != "None" and not hosts.is_ip(cluster_ip):
        spec.error(f"{cluster_ip!r} is not an IP address or None", "clusterIP")
    external_name = spec.string("externalName")
    if svc_type == "ExternalName" and not external_name:
        spec.error("required for type ExternalName", "externalName")
    service = Service(
        meta=meta,
        ports=tuple(ports),
        selector=selector,
        cluster_ip=cluster_ip,
        type=svc_type,
        external_name=external_name,
    )
    # publishNotReadyAddresses: the EndpointSlice controller has already marked those ready.
    spec.done(ignore=("clusterIPs", "sessionAffinity", "ipFamilies", "ipFamilyPolicy",
                      "publishNotReadyAddresses", "internalTrafficPolicy",
                      "externalTrafficPolicy", "externalIPs",
                      "loadBalancerIP", "loadBalancerSourceRanges", "allocateLoadBalancerNodePorts",
                      "healthCheckNodePort", "sessionAffinityConfig", "trafficDistribution",
                      "loadBalancerClass"))
    return service


def parse_endpoint_slice(meta: Meta, doc: Fields) -> EndpointSlice:
    """EndpointSlice keeps its fields at the top level (no `spec`)."""
    service_name = meta.labels.get(SERVICE_NAME_LABEL, "")
    if not service_name:
        doc.warn(f"no {SERVICE_NAME_LABEL} label: the slice belongs to no Service",
                 "metadata.labels", Reason.IGNORED)
    address_type = doc.enum("addressType", ("IPv4", "IPv6", "FQDN"), default="IPv4") or "IPv4"
    endpoints = []
    for item in doc.children("endpoints"):
        addresses = item.string_list("addresses", required=True)
        if address_type != "FQDN":
            for address in addresses:
                if not hosts.is_ip(address):
                    item.error(f"{address!r} is not an IP address", "addresses")
        conditions = item.child("conditions")
        ready = serving = terminating = None
        if conditions is not None:
            ready = conditions.optional_boolean("ready")
            serving = conditions.optional_boolean("serving")
            terminating = conditions.optional_boolean("terminating")
            conditions.done()
        ref = None
        r = item.child("targetRef")
        if r is not None:
            ref = EndpointRef(r.string("kind"), r.string("namespace") or meta.namespace,
                              r.string("name"))
            r.done(ignore=("uid", "resourceVersion", "apiVersion", "fieldPath"))
        endpoints.append(SliceEndpoint(addresses, ready, serving, terminating, ref,
                                       item.string("nodeName"), item.string("zone")))
        item.done(ignore=("hostname", "hints", "deprecatedTopology"))
    ports = []
    for item in doc.children("ports"):
        ports.append(SlicePort(item.string("name"), item.integer("port", minimum=1, maximum=65535),
                               item.string("protocol") or "TCP"))
        item.done(ignore=("appProtocol",))
    return EndpointSlice(meta, service_name, address_type, tuple(endpoints), tuple(ports))


def parse_pod(meta: Meta, spec: Fields | None, status: Fields | None) -> Pod:
    container_ports: dict[str, int] = {}
    node_name = service_account = ""
    if spec is not None:
        node_name = spec.string("nodeName")
        service_account = spec.string("serviceAccountName") or spec.string("serviceAccount")
        for container in spec.children("containers"):
            for port in container.children("ports"):
                name = port.string("name")
                number = port.integer("containerPort", minimum=1, maximum=65535)
                if name and number:
                    container_ports[name] = number
    ip = ""
    ips: tuple[str, ...] = ()
    phase = ""
    if status is not None:
        ip = status.string("podIP")
        ips = tuple(i.string("ip") for i in status.children("podIPs")) or ((ip,) if ip else ())
        phase = status.string("phase")
        for address in ips:
            if address and not hosts.is_ip(address):
                status.error(f"{address!r} is not an IP address", "podIPs")
    return Pod(meta, ip, ips, container_ports, node_name, service_account, phase)
