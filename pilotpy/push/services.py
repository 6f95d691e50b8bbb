"""The service registry as translation sees it: Kubernetes Services and ServiceEntry hosts as
one kind of `Service` (istiod's model.Service), indexed by hostname."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pilotpy.model import hosts
from pilotpy.model.kinds import Kind
from pilotpy.model.kube import Service as KubeService
from pilotpy.model.meta import Key
from pilotpy.model.protocol import Protocol
from pilotpy.model.serviceentry import ServiceEntry

EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


class Resolution(StrEnum):
    CLIENT_SIDE_LB = "ClientSideLB"  # EDS
    PASSTHROUGH = "Passthrough"  # headless / resolution NONE
    DNS = "DNS"  # STRICT_DNS
    DNS_ROUND_ROBIN = "DNSRoundRobin"  # LOGICAL_DNS
    ALIAS = "Alias"  # ExternalName


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    number: int
    protocol: Protocol
    # The endpoint port: a number, or (Kubernetes) the name of a container port.
    target_port: int | str


@dataclass(frozen=True, slots=True)
class StaticEndpoint:
    """An endpoint written into a ServiceEntry (`endpoints[]`)."""

    address: str
    ports: Mapping[str, int]
    labels: Mapping[str, str]
    locality: str = ""
    weight: int = 0
    service_account: str = ""


@dataclass(frozen=True, slots=True)
class Service:
    hostname: str
    namespace: str
    name: str
    ports: tuple[Port, ...]
    resolution: Resolution
    origin: Key
    age_order: tuple[str, str, str]
    mesh_external: bool = False
    addresses: tuple[str, ...] = ()
    external_name: str = ""
    # ServiceEntry subjectAltNames: the SANs upstream TLS verifies when its own are unset.
    subject_alt_names: tuple[str, ...] = ()
    # Namespaces that may see the service; "*" means all. Empty means hidden ("~").
    export_to: frozenset[str] = frozenset({"*"})
    selector: Mapping[str, str] | None = None
    static_endpoints: tuple[StaticEndpoint, ...] = field(default=())

    def port(self, number: int) -> Port | None:
        for port in self.ports:
            if port.number == number:
                return port
        return None

    def port_field(self, number: int) -> str:
        """Where port `number` is declared, for problems: `spec.ports[<i>]`."""
        for index, port in enumerate(self.ports):
            if port.number == number:
                return f"spec.ports[{index}]"
        return "spec.ports"

    def visible_to(self, namespace: str) -> bool:
        return "*" in self.export_to or namespace in self.export_to


def resolve_export_to(values: Iterable[str], own_namespace: str) -> frozenset[str]:
    out: set[str] = set()
    values = list(values)
    if not values:
        return frozenset({"*"})
    for value in values:
        if value == "*":
            return frozenset({"*"})
        if value == ".":
            out.add(own_namespace)
        elif value == "~":
            continue
        else:
            out.add(value)
    return frozenset(out)


def from_kube_service(svc: KubeService, domain_suffix: str) -> Service:
    meta = svc.meta
    if svc.type == "ExternalName":
        resolution = Resolution.ALIAS
    elif svc.headless:
        resolution = Resolution.PASSTHROUGH
    else:
        resolution = Resolution.CLIENT_SIDE_LB
    export = meta.annotations.get(EXPORT_TO_ANNOTATION)
    export_to = resolve_export_to(
        [v.strip() for v in export.split(",") if v.strip()] if export else [], meta.namespace)
    addresses = (svc.cluster_ip,) if svc.cluster_ip and not svc.headless else ()
    return Service(
        hostname=f"{meta.name}.{meta.namespace}.svc.{domain_suffix}",
        namespace=meta.namespace,
        name=meta.name,
        ports=tuple(Port(p.name, p.port, p.protocol, p.target_port) for p in svc.ports),
        resolution=resolution,
        origin=meta.key,
        age_order=meta.age_order,
        mesh_external=svc.type == "ExternalName",
        addresses=addresses,
        external_name=svc.external_name.lower().rstrip("."),
        export_to=export_to,
        selector=svc.selector,
    )


_SE_RESOLUTION = {
    "NONE": Resolution.PASSTHROUGH,
    "STATIC": Resolution.CLIENT_SIDE_LB,
    "DNS": Resolution.DNS,
    "DNS_ROUND_ROBIN": Resolution.DNS_ROUND_ROBIN,
}


def from_service_entry(se: ServiceEntry) -> list[Service]:
    """One Service per host (istiod's convertServices); addresses are shared by all hosts."""
    meta = se.meta
    ports = tuple(Port(p.name, p.number, p.protocol, p.target_port or p.number)
                  for p in se.ports)
    endpoints = tuple(
        StaticEndpoint(e.address, dict(e.ports), dict(e.labels), e.locality, e.weight,
                       e.service_account)
        for e in se.endpoints
    )
    addresses = tuple(a[:-3] if a.endswith("/32") else a for a in se.addresses)
    export_to = resolve_export_to(se.export_to, meta.namespace)
    return [
        Service(
            hostname=host,
            namespace=meta.namespace,
            name=host,
            ports=ports,
            resolution=_SE_RESOLUTION.get(se.resolution, Resolution.PASSTHROUGH),
            origin=meta.key,
            age_order=meta.age_order,
            mesh_external=se.location == "MESH_EXTERNAL",
            addresses=addresses,
            export_to=export_to,
            selector=se.workload_selector,
            static_endpoints=endpoints,
            subject_alt_names=se.subject_alt_names,
        )
        for host in se.hosts
    ]


class ServiceIndex:
    """Services by hostname. Several namespaces may define the same ServiceEntry host."""

    __slots__ = ("_aliases", "_by_host", "_by_name", "_kube_by_namespace", "_visible", "all",
                 "has_passthrough")

    def __init__(self, services: Iterable[Service]) -> None:
        ordered = sorted(services, key=lambda s: (s.age_order, s.hostname))
        self.all: tuple[Service, ...] = tuple(ordered)
        self._by_host: dict[str, list[Service]] = {}
        self._by_name: dict[tuple[str, str], Service] = {}
        self._kube_by_namespace: dict[str, list[Service]] = {}
        # Sidecars of a mesh with headless services get per-pod-address listeners, which
        # leave out the proxy's own address: their config then depends on it.
        self.has_passthrough = any(s.resolution is Resolution.PASSTHROUGH for s in ordered)
        for svc in ordered:
            self._by_host.setdefault(svc.hostname, []).append(svc)
            if svc.origin.kind == Kind.SERVICE:
                self._by_name[(svc.namespace, svc.name)] = svc
                self._kube_by_namespace.setdefault(svc.namespace, []).append(svc)
        self._aliases = _aliases_by_target(ordered)
        # namespace -> the services visible to it, once asked (the index outlives push
        # contexts while services do not change).
        self._visible: dict[str, tuple[Service, ...]] = {}

    def visible_to(self, namespace: str) -> tuple[Service, ...]:
        """The services visible to `namespace` (exportTo), oldest first."""
        found = self._visible.get(namespace)
        if found is None:
            found = self._visible[namespace] = tuple(s for s in self.all
                                                      if s.visible_to(namespace))
        return found

    def for_host(self, hostname: str, namespace: str, prefer_namespace: str = "") -> Service | None:
        """The service with that hostname visible to `namespace`; one in `prefer_namespace`
        (e.g. the VirtualService's) wins, then one in the proxy's namespace, then the oldest."""
        candidates = self._by_host.get(hostname)
        if not candidates:
            return None
        visible = [s for s in candidates if s.visible_to(namespace)]
        for preferred in (prefer_namespace, namespace):
            for svc in visible:
                if preferred and svc.namespace == preferred:
                    return svc
        return visible[0] if visible else None

    def kube_services_in(self, namespace: str) -> list[Service]:
        """Kubernetes Services of one namespace, oldest first."""
        return self._kube_by_namespace.get(namespace, [])

    def kube_service(self, namespace: str, name: str) -> Service | None:
        return self._by_name.get((namespace, name))

    def aliases_of(self, hostname: str) -> tuple[Service, ...]:
        """The ExternalName services that resolve, through any chain of aliases, to
        `hostname`, by namespace then hostname (istiod's Aliases attribute)."""
        return self._aliases.get(hostname, ())

    def matching(self, pattern: str) -> list[Service]:
        """Services whose hostname is covered by `pattern` (which may be a wildcard)."""
        if not hosts.is_wildcard(pattern):
            return list(self._by_host.get(pattern, ()))
        return [s for s in self.all if hosts.subset_of(s.hostname, pattern)]


def _aliases_by_target(services: Iterable[Service]) -> dict[str, tuple[Service, ...]]:
    """Concrete hostname -> the aliases that resolve to it (istiod's resolveServiceAliases).
    An alias of an alias is followed to the end; a loop resolves to nothing (Kubernetes DNS
    answers NXDOMAIN for it)."""
    aliases = [s for s in services if s.resolution is Resolution.ALIAS and s.external_name]
    target_of = {s.hostname: s.external_name for s in aliases}
    out: dict[str, list[Service]] = {}
    for alias in aliases:
        seen = {alias.hostname}
        target: str | None = alias.external_name
        while target is not None and target in target_of:
            if target in seen:
                target = None
                break
            seen.add(target)
            target = target_of[target]
        if target is not None:
            out.setdefault(target, []).append(alias)
    return {host: tuple(sorted(found, key=lambda s: (s.namespace, s.hostname)))
            for host, found in out.items()}
