"""What one sidecar may reach (istiod's SidecarScope): the services and `mesh`
VirtualServices its Sidecar resource's egress hosts let through, per port, and its outbound
traffic policy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pilotpy.model import hosts
from pilotpy.model.sidecar import EgressHost, EgressListener, Sidecar
from pilotpy.model.virtualservice import VirtualService
from pilotpy.proxy import ProxyView
from pilotpy.push import Port, PushContext, Service
from pilotpy.translate.names import MESH_GATEWAY

REGISTRY_ONLY = "REGISTRY_ONLY"


def _host_matches(entry: EgressHost, namespace: str, hostname: str) -> bool:
    if entry.namespace not in ("*", namespace):
        return False
    return entry.host == "*" or hosts.subset_of(hostname, entry.host)


def _listener_allows(listener: EgressListener, namespace: str, hostname: str) -> bool:
    """Some entry imports the host and no `~` entry excludes it (istiod's selectServices and
    SelectVirtualServices: an exclusion wins over any import)."""
    matching = [h for h in listener.hosts if _host_matches(h, namespace, hostname)]
    return bool(matching) and not any(h.excluded for h in matching)


@dataclass(frozen=True, slots=True)
class SidecarScope:
    """One per namespace and Sidecar resource within a push context, shared by every proxy
    class it applies to (sidecar_scope), with the answers of `allows` kept as they are
    asked: a class asks for every service port, and most classes of a mesh share a scope."""

    sidecar: Sidecar | None
    outbound_mode: str
    services: tuple[Service, ...]  # visible to the namespace, oldest first
    virtual_services: tuple[VirtualService, ...]  # bound to `mesh`, oldest first
    _allowed: dict[tuple[str, str, int], bool] = field(default_factory=dict, repr=False,
                                                       compare=False)
    # ids of `virtual_services`, once asked (see may_see).
    _held: set[int] = field(default_factory=set, repr=False, compare=False)
    _on_port: dict[int, tuple[VirtualService, ...]] = field(default_factory=dict, repr=False,
                                                            compare=False)

    @property
    def registry_only(self) -> bool:
        return self.outbound_mode == REGISTRY_ONLY

    def _listener_for(self, port: int) -> EgressListener | None:
        """The egress listener owning `port`: one declared for it, else the catch-all."""
        assert self.sidecar is not None
        catch_all = None
        for listener in self.sidecar.egress:
            if listener.port == port:
                return listener
            if listener.port is None:
                catch_all = listener
        return catch_all

    def allows(self, namespace: str, hostname: str, port: int) -> bool:
        """Whether config for `hostname` (defined in `namespace`) on `port` is visible."""
        if self.sidecar is None or not self.sidecar.egress:
            return True
        key = (namespace, hostname, port)
        found = self._allowed.get(key)
        if found is None:
            listener = self._listener_for(port)
            found = self._allowed[key] = listener is not None and _listener_allows(
                listener, namespace, hostname)
        return found

    def port_visible(self, service: Service, port: Port) -> bool:
        return self.allows(service.namespace, service.hostname, port.number)

    def may_see(self, vs: VirtualService) -> bool:
        """Whether `vs` (an object of this scope's push context) is one of this scope's
        `mesh` VirtualServices with a host some egress listener imports: on no port can it
        shape this scope's config otherwise."""
        held = self._held
        if not held and self.virtual_services:
            held.update(map(id, self.virtual_services))
        if id(vs) not in held:
            return False
        if self.sidecar is None or not self.sidecar.egress:
            return True
        return any(_listener_allows(listener, vs.meta.namespace, host)
                   for listener in self.sidecar.egress for host in vs.hosts)

    def virtual_services_on(self, port: int) -> tuple[VirtualService, ...]:
        """`mesh` VirtualServices with at least one host visible on `port` (asked by every
        class sharing the scope, found once)."""
        found = self._on_port.get(port)
        if found is None:
            found = self._on_port[port] = tuple(
                vs for vs in self.virtual_services
                if any(self.allows(vs.meta.namespace, h, port) for h in vs.hosts))
        return found


class VirtualServiceOwners:
    """Which VirtualService owns a hostname: among `candidates` (oldest first), the first
    naming it exactly, else the first with a wildcard host covering it."""

    __slots__ = ("_exact", "_wildcards")

    def __init__(self, candidates: Iterable[VirtualService]) -> None:
        self._exact: dict[str, VirtualService] = {}
        self._wildcards: list[tuple[str, VirtualService]] = []
        for vs in candidates:
            for host in vs.hosts:
                if hosts.is_wildcard(host):
                    self._wildcards.append((host, vs))
                else:
                    self._exact.setdefault(host, vs)

    def owner(self, hostname: str) -> VirtualService | None:
        found = self._exact.get(hostname)
        if found is not None:
            return found
        for pattern, vs in self._wildcards:
            if hosts.subset_of(hostname, pattern):
                return vs
        return None


def sidecar_scope(push: PushContext, view: ProxyView) -> SidecarScope:
    sidecar = push.sidecars.for_workload(view.namespace, view.labels)
    # Everything else a scope holds follows from the namespace and the Sidecar resource,
    # which the context holds for its lifetime (so its id names it).
    return push.memoized(("sidecar-scope", view.namespace, id(sidecar)),
                         lambda: _new_scope(push, view.namespace, sidecar))


def _new_scope(push: PushContext, namespace: str, sidecar: Sidecar | None) -> SidecarScope:
    mode = push.mesh.outbound_traffic_policy
    if sidecar is not None and sidecar.outbound_traffic_policy:
        mode = sidecar.outbound_traffic_policy
    virtual_services = push.virtual_services.for_gateway_oldest_first(namespace, MESH_GATEWAY)
    return SidecarScope(sidecar, mode, push.services.visible_to(namespace),
                        tuple(virtual_services))
