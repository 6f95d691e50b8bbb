"""Config analysis with istioctl analyze's codes and levels (pkg/config/analysis/msg/
messages.yaml), for `pilotpy analyze` and for every change set at ingest.

- IST0101 ReferencedResourceNotFound (Error): a VirtualService names a Gateway, a host or a
  DestinationRule subset that does not exist.
- IST0106 SchemaValidationError (Error): an object pilotpy rejects.
- IST0109 ConflictingMeshGatewayVirtualServiceHosts (Error): two mesh VirtualServices for one
  host that some namespace sees from both: the same host exported everywhere by both, or to
  one namespace by both, or a host exported to some namespaces that overlaps (wildcards
  included) a host exported everywhere.
- IST0132 VirtualServiceHostNotFoundInGateway (Warning): a VirtualService host that none of
  its Gateway's servers accepts.
- IST0145 ConflictingGateways (Error): Gateways on one workload (the same selector, or
  selectors that one Pod of the input both matches) with a server on one port, with the same
  bind, naming the same host string.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pilotpy.analysis.unenforced import unenforced
from pilotpy.mesh import MeshConfig
from pilotpy.model import hosts
from pilotpy.model.common import Destination
from pilotpy.model.destinationrule import DestinationRule
from pilotpy.model.gateway import Gateway, Server
from pilotpy.model.kinds import Kind
from pilotpy.model.kube import Pod
from pilotpy.model.labels import Empty, selects
from pilotpy.model.meta import Key
from pilotpy.model.virtualservice import VirtualService
from pilotpy.problems import ObjectRef, Problem, Reason, Severity
from pilotpy.push.services import (
    Service,
    from_kube_service,
    from_service_entry,
    resolve_export_to,
)

ERROR, WARNING = "Error", "Warning"
NAMES = {
    "IST0101": "ReferencedResourceNotFound",
    "IST0106": "SchemaValidationError",
    "IST0109": "ConflictingMeshGatewayVirtualServiceHosts",
    "IST0132": "VirtualServiceHostNotFoundInGateway",
    "IST0145": "ConflictingGateways",
}
DOCS = "https://istio.io/latest/docs/reference/config/analysis/{}/"
Objects = Mapping[str, Mapping[Key, Any]]


# Each code's level and reason (istioctl's messages.yaml levels).
_CODES: Mapping[str, tuple[Severity, Reason]] = {
    "IST0101": (Severity.ERROR, Reason.NOT_FOUND),
    "IST0106": (Severity.ERROR, Reason.INVALID),
    "IST0109": (Severity.ERROR, Reason.CONFLICT),
    "IST0132": (Severity.WARNING, Reason.NOT_FOUND),
    "IST0145": (Severity.ERROR, Reason.CONFLICT),
}


def finding(code: str, ref: ObjectRef | None, field: str, message: str, hint: str, *,
            source: str = "") -> Problem:
    """One of istioctl analyze's messages, as a Problem carrying its code."""
    severity, reason = _CODES[code]
    return Problem(reason, message, ref, field, severity, source, code, hint)


def to_json(problem: Problem) -> dict[str, Any]:
    """istioctl analyze -o json's fields, plus the field and the hint."""
    code = problem.code
    return {"code": code or str(problem.reason), "name": NAMES.get(code, str(problem.reason)),
            "level": str(problem.severity), "origin": str(problem.ref or ""),
            "reference": problem.source, "field": problem.field, "message": problem.message,
            "hint": problem.hint, "documentationUrl": DOCS.format(code.lower()) if code else ""}


def _name(key_or_obj: Any) -> str:
    meta = getattr(key_or_obj, "meta", None)
    return f"{meta.namespace}/{meta.name}" if meta is not None else str(key_or_obj)


def _values(objects: Objects, kind: str) -> list[Any]:
    return sorted(objects.get(kind, {}).values(), key=_name)


# -- IST0106 ---------------------------------------------------------------------------------


def schema_errors(problems: Iterable[Problem]) -> list[Problem]:
    """Objects (and files) pilotpy rejected while reading them."""
    return [finding("IST0106", p.ref, p.field, f"Schema validation error: {p.message}",
                    "correct the field; until then pilotpy keeps serving the last valid "
                    "version of the object", source=p.source)
            for p in problems if p.is_error and p.reason in (Reason.INVALID, Reason.UNREADABLE)]


# -- IST0101 ---------------------------------------------------------------------------------


class _Registry:
    """Hostnames of Services and ServiceEntries, exact and wildcard."""

    def __init__(self, objects: Objects, mesh: MeshConfig,
                 services: Iterable[Service] | None = None) -> None:
        if services is None:
            services = [from_kube_service(s, mesh.domain_suffix)
                        for s in _values(objects, Kind.SERVICE)]
            for entry in _values(objects, Kind.SERVICE_ENTRY):
                services.extend(from_service_entry(entry))
        services = list(services)
        self.exact = {s.hostname for s in services if not hosts.is_wildcard(s.hostname)}
        self.wildcards = [s.hostname for s in services if hosts.is_wildcard(s.hostname)]

    def knows(self, host: str) -> bool:
        if hosts.is_wildcard(host):
            return True  # a wildcard destination is checked at request time, not here
        return host in self.exact or any(hosts.subset_of(host, w) for w in self.wildcards)


def _destinations(vs: VirtualService) -> Iterator[tuple[str, Destination]]:
    for i, route in enumerate(vs.http):
        for j, dest in enumerate(route.route):
            yield f"spec.http[{i}].route[{j}].destination", dest.destination
        if route.mirror is not None:
            yield f"spec.http[{i}].mirror", route.mirror
        for j, mirror in enumerate(route.mirrors):
            yield f"spec.http[{i}].mirrors[{j}].destination", mirror.destination
    for i, tcp in enumerate(vs.tcp):
        for j, l4 in enumerate(tcp.route):
            yield f"spec.tcp[{i}].route[{j}].destination", l4.destination
    for i, tls in enumerate(vs.tls):
        for j, l4 in enumerate(tls.route):
            yield f"spec.tls[{i}].route[{j}].destination", l4.destination


def _subsets(rules: Iterable[DestinationRule], mesh: MeshConfig) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for rule in rules:
        host = hosts.resolve_short_name(rule.host, rule.meta.namespace, mesh.domain_suffix)
        out[host.lower()].update(s.name for s in rule.subsets)
    return out


def _gateway_refs(vs: VirtualService) -> Iterator[tuple[str, str]]:
    for i, name in enumerate(vs.gateways):
        yield f"spec.gateways[{i}]", name
    for i, route in enumerate(vs.http):
        for j, match in enumerate(route.match):
            for k, name in enumerate(match.gateways):
                yield f"spec.http[{i}].match[{j}].gateways[{k}]", name


def missing_references(objects: Objects, mesh: MeshConfig,
                       services: Iterable[Service] | None = None) -> list[Problem]:
    gateways = {_name(g) for g in _values(objects, Kind.GATEWAY)}
    registry = _Registry(objects, mesh, services)
    subsets = _subsets(_values(objects, Kind.DESTINATION_RULE), mesh)
    out = []
    for vs in _values(objects, Kind.VIRTUAL_SERVICE):
        resource, ns = vs.meta.key, vs.meta.namespace
        for field, name in _gateway_refs(vs):
            resolved = hosts.resolve_gateway_name(name, ns)
            if resolved != "mesh" and resolved not in gateways:
                out.append(finding("IST0101", resource, field,
                                   f'Referenced gateway not found: "{resolved}"',
                                   "create that Gateway, or name an existing one as "
                                   "<namespace>/<name>"))
        for field, dest in _destinations(vs):
            host = hosts.resolve_short_name(dest.host, ns, mesh.domain_suffix).lower()
            if not registry.knows(host):
                out.append(finding("IST0101", resource, f"{field}.host",
                                   f'Referenced host not found: "{dest.host}"',
                                   "create a Service or ServiceEntry for the host, or fix the "
                                   "host name"))
            elif dest.subset and dest.subset not in subsets.get(host, set()):
                out.append(finding("IST0101", resource, f"{field}.subset",
                                   "Referenced host+subset in destinationrule not found: "
                                   f'"{dest.host}+{dest.subset}"',
                                   "define the subset in a DestinationRule for the host"))
    return out


# -- IST0109, IST0132 ------------------------------------------------------------------------


def _bindings(vs: VirtualService, mesh: MeshConfig) -> tuple[list[str], list[str]]:
    """The hosts and gateways of `vs` as resolve_virtual_service resolves them (only these:
    resolving its routes too cost most of an analysis of every change)."""
    ns = vs.meta.namespace
    resolved_hosts = {hosts.resolve_short_name(h, ns, mesh.domain_suffix).lower()
                      for h in vs.hosts}
    gateways = {hosts.resolve_gateway_name(g, ns) for g in vs.gateways} or {"mesh"}
    return sorted(resolved_hosts), sorted(gateways)


def duplicate_hosts(objects: Objects, mesh: MeshConfig) -> dict[tuple[str, str], list[str]]:
    """(gateway or `mesh`, host) -> the VirtualServices defining it, where more than one does
    (istiod's pilot_vservice_dup_domain counts these)."""
    owners: dict[tuple[str, str], list[str]] = defaultdict(list)
    for vs in _values(objects, Kind.VIRTUAL_SERVICE):
        resolved_hosts, gateways = _bindings(vs, mesh)
        for gateway in gateways:
            for host in resolved_hosts:
                owners[(gateway, host)].append(_name(vs))
    return {k: v for k, v in sorted(owners.items()) if len(v) > 1}


@dataclass(frozen=True, slots=True)
class _MeshHost:
    """One entry of a mesh VirtualService's `hosts`: the object and the entry's index."""

    vs: VirtualService
    index: int


# (namespace the host is exported to, or "*" for all; FQDN) -> the VirtualServices defining it
_ScopedHosts = dict[tuple[str, str], list[_MeshHost]]


def _bound_to_mesh(vs: VirtualService) -> bool:
    # istioctl looks at spec.gateways only: empty means the mesh.
    return not vs.gateways or "mesh" in vs.gateways


def _mesh_hosts(objects: Objects, mesh: MeshConfig) -> _ScopedHosts:
    out: _ScopedHosts = defaultdict(list)
    for vs in _values(objects, Kind.VIRTUAL_SERVICE):
        if not _bound_to_mesh(vs):
            continue
        ns = vs.meta.namespace
        for scope in sorted(resolve_export_to(vs.export_to, ns)):
            for index, host in enumerate(vs.hosts):
                fqdn = hosts.resolve_short_name(host, ns, mesh.domain_suffix).lower()
                out[(scope, fqdn)].append(_MeshHost(vs, index))
    return out


def _rivals(scope: str, fqdn: str, scoped: _ScopedHosts,
            public: list[tuple[str, list[_MeshHost]]]) -> list[_MeshHost]:
    """The entries that meet (scope, fqdn): those of the same key and, for a host exported to
    some namespaces, every host exported to all (`public`) that overlaps it, a wildcard
    included. Two hosts both exported to all meet only when equal, as in istioctl."""
    found = list(scoped[(scope, fqdn)])
    if scope != "*":
        found += [entry for other, entries in public if hosts.matches(fqdn, other)
                  for entry in entries]
    return found


def mesh_host_conflicts(objects: Objects, mesh: MeshConfig) -> list[Problem]:
    """istioctl's ConflictingMeshGatewayHostsAnalyzer: one message per VirtualService, for
    the first conflict found in (scope, host) order; the host is written `scope/fqdn`."""
    scoped = _mesh_hosts(objects, mesh)
    public = [(fqdn, entries) for (scope, fqdn), entries in sorted(scoped.items())
              if scope == "*"]
    reported: set[str] = set()
    out = []
    for scope, fqdn in sorted(scoped):
        rivals = _rivals(scope, fqdn, scoped, public)
        # Distinct objects: one VirtualService naming a host twice (short and FQDN) is one.
        names = sorted({_name(entry.vs) for entry in rivals})
        if len(names) < 2:
            continue
        for entry in rivals:
            if _name(entry.vs) in reported:
                continue
            reported.add(_name(entry.vs))
            out.append(finding(
                "IST0109", entry.vs.meta.key, f"spec.hosts[{entry.index}]",
                f"The VirtualServices {','.join(names)} associated with mesh gateway define the "
                f"same host {scope}/{fqdn} which can lead to undefined behavior. This can be "
                "fixed by merging the conflicting VirtualServices into a single resource.",
                "merge the VirtualServices into one, bind all but one to gateways only, or "
                "export them to different namespaces"))
    return out


def hosts_missing_from_gateways(objects: Objects, mesh: MeshConfig) -> list[Problem]:
    gateways: dict[str, Gateway] = {_name(g): g for g in _values(objects, Kind.GATEWAY)}
    out = []
    for vs in _values(objects, Kind.VIRTUAL_SERVICE):
        _, bound = _bindings(vs, mesh)
        for name in bound:
            gateway = gateways.get(name)
            if gateway is None:
                continue  # IST0101 says so
            accepted = [h for server in gateway.servers
                        for h in hosts.names_for_namespace(server.hosts, vs.meta.namespace)]
            missing = [h for h in vs.hosts if not any(
                hosts.matches(hosts.resolve_short_name(h, vs.meta.namespace,
                                                       mesh.domain_suffix).lower(), a)
                for a in accepted)]
            if missing:
                out.append(finding(
                    "IST0132", vs.meta.key, "spec.hosts",
                    f"one or more host [{' '.join(missing)}] defined in VirtualService "
                    f"{_name(vs)} not found in Gateway {name}.",
                    f"add the hosts to a server of Gateway {name}, or remove them from the "
                    "VirtualService"))
    return out


# -- IST0145 ---------------------------------------------------------------------------------


def _selector_text(gateway: Gateway) -> str:
    # Kubernetes' label selector string: keys sorted, `k=v` joined by commas.
    return ",".join(f"{k}={v}" for k, v in sorted(gateway.selector.items()))


def _share_workload(gateway: Gateway, other: Gateway, pods: Sequence[Pod]) -> bool:
    """The same selector, or some Pod both select: that proxy gets the servers of both."""
    if dict(gateway.selector) == dict(other.selector):
        return True
    return any(selects(gateway.selector, pod.meta.labels, empty=Empty.ALL)
               and selects(other.selector, pod.meta.labels, empty=Empty.ALL)
               for pod in pods)


def _same_hosts(server: Server, other: Server) -> bool:
    """istiod's duplicate check when it merges the servers of one port: a host string in
    both, with the same bind. `*.a.com` and `b.a.com` are not duplicates."""
    return (server.port.number == other.port.number and server.bind == other.bind
            and not set(server.hosts).isdisjoint(other.hosts))


def conflicting_gateways(objects: Objects) -> list[Problem]:
    """istioctl's ConflictingGatewayAnalyzer: one message per server of a Gateway that
    repeats a host of another Gateway on the same workload and port."""
    gateways: list[Gateway] = _values(objects, Kind.GATEWAY)
    pods: list[Pod] = _values(objects, Kind.POD)
    out = []
    for gateway in gateways:
        for index, server in enumerate(gateway.servers):
            # Hosts first: the Pods are looked at only for the rare pairs that share a host.
            names = sorted(_name(other) for other in gateways if other is not gateway
                           and any(_same_hosts(server, s) for s in other.servers)
                           and _share_workload(gateway, other, pods))
            if names:
                out.append(finding(
                    "IST0145", gateway.meta.key, f"spec.servers[{index}]",
                    f"Conflict with gateways {','.join(names)} (workload selector "
                    f"{_selector_text(gateway)}, port {server.port.number}, hosts "
                    f"{','.join(server.hosts)}).",
                    "serve each host and port from one Gateway per workload, or give the "
                    "Gateways selectors that no Pod matches together"))
    return out


# -- everything ------------------------------------------------------------------------------


def analyze(objects: Objects, mesh: MeshConfig, problems: Iterable[Problem] = (),
            services: Iterable[Service] | None = None) -> list[Problem]:
    """Every finding, errors first, then by resource. `services`: the registry when a push
    context already holds it (else built from `objects`)."""
    found = (schema_errors(problems) + missing_references(objects, mesh, services)
             + mesh_host_conflicts(objects, mesh) + hosts_missing_from_gateways(objects, mesh)
             + conflicting_gateways(objects) + unenforced(objects, mesh))
    return sorted(found, key=lambda m: (not m.is_error, str(m.ref), m.code, m.field))
