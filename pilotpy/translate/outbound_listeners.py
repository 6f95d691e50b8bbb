"""Outbound listeners of sidecars (istiod's listener.go buildSidecarOutboundListeners and
buildVirtualOutboundListener).

istio-init redirects every outbound TCP connection to `virtualOutbound` (15001), which hands it
to the listener matching the original destination (`use_original_dst`): `<vip>_<port>` for a
TCP or protocol-sniffed service port, else `0.0.0.0_<port>` for HTTP ports, else its own
catch-all chain (PassthroughCluster for ALLOW_ANY, BlackHoleCluster for REGISTRY_ONLY). The
per-port listeners never bind (`bind_to_port: false`): they only receive hand-offs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.model.kinds import Kind
from pilotpy.model.protocol import Protocol
from pilotpy.problems import Problem, Reason
from pilotpy.proxy import ProxyView
from pilotpy.push import Port, PushContext, Resolution, Service
from pilotpy.translate import pb
from pilotpy.translate.chain_match import DistinctChains, matches_all
from pilotpy.translate.filters import (
    http_inspector,
    network_filter,
    sidecar_outbound_connection_manager,
    tcp_proxy_filter,
    tls_inspector,
)
from pilotpy.translate.listener_limits import limit_accepts, limit_handshake
from pilotpy.translate.names import (
    ANY_ADDRESS,
    BLACKHOLE_CLUSTER,
    PASSTHROUGH_CLUSTER,
    PASSTHROUGH_FILTER_CHAIN,
    VIRTUAL_OUTBOUND,
    delimited_stat_prefix,
    listener_name,
    virtual_host_name,
)
from pilotpy.translate.observability import listener_access_logs
from pilotpy.translate.sidecar_scope import SidecarScope
from pilotpy.translate.tcp_routes import tcp_route_filter
from pilotpy.translate.tls_routes import cidr_range, tls_route_chains

HTTP_APPLICATION_PROTOCOLS = ("http/1.1", "h2c")
# (listen address, CIDR range to match or "")
Bind = tuple[str, str]


@dataclass(slots=True)
class OutboundListeners:
    listeners: list[listener_pb2.Listener] = field(default_factory=list)
    # What the listeners ask for over RDS: route `<port>` (with the visible services having an
    # HTTP port of that number, oldest first) and `<fqdn>:<port>`.
    port_routes: dict[int, list[Service]] = field(default_factory=dict)
    sniffed_routes: list[tuple[Service, int]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _outbound_listener(bind: str, port: int) -> listener_pb2.Listener:
    out = listener_pb2.Listener(
        name=listener_name(bind, port),
        traffic_direction=base_pb2.OUTBOUND,
        bind_to_port=pb.boolean(False),
        continue_on_listener_filters_timeout=True,
        listener_filters_timeout=pb.seconds(0),
    )
    out.address.socket_address.address = bind
    out.address.socket_address.port_value = port
    return out


def _catch_all_cluster(scope: SidecarScope) -> str:
    return BLACKHOLE_CLUSTER if scope.registry_only else PASSTHROUGH_CLUSTER


def _http_chain(route_name: str, stat_prefix: str, mesh: MeshConfig) -> lc.FilterChain:
    chain = lc.FilterChain(filters=[network_filter(sidecar_outbound_connection_manager(
        route_name, delimited_stat_prefix(stat_prefix), mesh))])
    chain.filter_chain_match.transport_protocol = "raw_buffer"
    chain.filter_chain_match.application_protocols.extend(HTTP_APPLICATION_PROTOCOLS)
    limit_handshake(chain)
    return chain


def http_listener(port: int, scope: SidecarScope, mesh: MeshConfig) -> listener_pb2.Listener:
    """`0.0.0.0_<port>`: HTTP detected by the inspector goes to route `<port>`; anything else
    takes the PassthroughFilterChain."""
    out = _outbound_listener(ANY_ADDRESS, port)
    out.listener_filters.append(http_inspector())
    name = listener_name(ANY_ADDRESS, port)
    out.filter_chains.append(_http_chain(str(port), f"outbound_{name}", mesh))
    out.default_filter_chain.CopyFrom(_passthrough_filter_chain(scope))
    return out


def _passthrough_filter_chain(scope: SidecarScope) -> lc.FilterChain:
    chain = lc.FilterChain(name=PASSTHROUGH_FILTER_CHAIN,
                           filters=[tcp_proxy_filter(_catch_all_cluster(scope))])
    chain.filter_chain_match.SetInParent()
    return chain


def service_listener(push: PushContext, view: ProxyView, scope: SidecarScope, *, bind: Bind,
                     service: Service, port: Port) -> listener_pb2.Listener:
    """`<address>_<port>`: a TCP port proxies to the service's cluster; a sniffed port
    (no protocol in its name) sends detected HTTP to route `<fqdn>:<port>` first; a `mesh`
    VirtualService's `tcp` routes pick the TCP destination. A CIDR
    address listens on the wildcard and matches its range; other destinations pass through
    (or are blackholed) as on `virtualOutbound`."""
    address, cidr = bind
    out = _outbound_listener(address, port.number)
    tcp_filter, vs_config = tcp_route_filter(push, view, scope, service, port=port.number,
                                             bind=address)
    tcp = lc.FilterChain(filters=[tcp_filter])
    limit_handshake(tcp)
    if vs_config:
        tcp.metadata.filter_metadata["istio"].fields["config"].string_value = vs_config
    if cidr:
        tcp.filter_chain_match.prefix_ranges.append(cidr_range(cidr))
    if port.protocol is Protocol.UNSUPPORTED:
        out.listener_filters.append(http_inspector())
        name = listener_name(address, port.number)
        http = _http_chain(virtual_host_name(service.hostname, port.number), f"outbound_{name}",
                           push.mesh)
        http.filter_chain_match.prefix_ranges.extend(tcp.filter_chain_match.prefix_ranges)
        out.filter_chains.append(http)
        if not cidr:
            out.default_filter_chain.CopyFrom(tcp)
            return out
    out.filter_chains.append(tcp)
    if cidr:
        out.default_filter_chain.CopyFrom(_passthrough_filter_chain(scope))
    return out


@dataclass(slots=True)
class _TLSListener:
    """A TLS-family port's listener: services sharing it (the wildcard, a CIDR) add chains
    told apart by SNI, as long as their matches do not overlap (istiod's mergeTCPFilterChains)."""

    address: str
    port: int
    chains: DistinctChains = field(default_factory=DistinctChains)
    reads_sni: bool = False

    def build(self, scope: SidecarScope) -> listener_pb2.Listener:
        out = _outbound_listener(self.address, self.port)
        if self.reads_sni:
            out.listener_filters.append(tls_inspector())
        match_all: list[lc.FilterChain] = []
        matching: list[lc.FilterChain] = []
        for chain in self.chains.chains:
            limit_handshake(chain)
            (match_all if matches_all(chain) else matching).append(chain)
        if not matching:
            out.filter_chains.extend(match_all)
            return out
        out.filter_chains.extend(matching)
        out.default_filter_chain.CopyFrom(match_all[0] if match_all
                                          else _passthrough_filter_chain(scope))
        return out


def virtual_outbound_listener(scope: SidecarScope, mesh: MeshConfig) -> listener_pb2.Listener:
    port = mesh.proxy_listen_port
    out = listener_pb2.Listener(name=VIRTUAL_OUTBOUND, traffic_direction=base_pb2.OUTBOUND,
                                use_original_dst=pb.boolean(True))
    limit_accepts(out)
    out.access_log.extend(listener_access_logs(mesh))
    out.address.socket_address.address = ANY_ADDRESS
    out.address.socket_address.port_value = port
    # A connection addressed to the capture port itself would loop forever.
    blackhole = out.filter_chains.add(name=f"{VIRTUAL_OUTBOUND}-blackhole")
    blackhole.filter_chain_match.destination_port.value = port
    blackhole.filters.append(tcp_proxy_filter(BLACKHOLE_CLUSTER))
    catch_all = out.filter_chains.add(name=f"{VIRTUAL_OUTBOUND}-catchall-tcp")
    catch_all.filters.append(tcp_proxy_filter(_catch_all_cluster(scope)))
    return out


def _binds(push: PushContext, view: ProxyView, service: Service, port: Port) -> list[Bind]:
    """Where a TCP or sniffed service port listens: its VIPs (a CIDR on the wildcard); for
    a headless Kubernetes service each pod address but the proxy's own (istiod's per-endpoint
    listeners); else the wildcard."""
    if service.addresses:
        binds = [(ANY_ADDRESS, a) if "/" in a else (a, "") for a in service.addresses
                 if a != ANY_ADDRESS]
        return binds or [(ANY_ADDRESS, "")]
    if service.resolution is Resolution.PASSTHROUGH and service.origin.kind == Kind.SERVICE:
        endpoints = push.service_endpoints(service).get(port.name, ())
        return [(a, "") for a in sorted({e.address for e in endpoints
                                         if e.address != view.proxy.ip})]
    return [(ANY_ADDRESS, "")]


def _merge_chains(listener: listener_pb2.Listener, incoming: listener_pb2.Listener) -> None:
    """Adds `incoming`'s filter chains (already checked distinct) and listener filters."""
    listener.filter_chains.extend(incoming.filter_chains)
    names = {f.name for f in listener.listener_filters}
    listener.listener_filters.extend(f for f in incoming.listener_filters if f.name not in names)


def _reserved(mesh: MeshConfig, view: ProxyView) -> frozenset[int]:
    """Ports a wildcard outbound listener may not take: the capture ports and the ports of
    the proxy's own static listeners (health, Prometheus). A listener on a service address
    does not clash with them (istiod's conflictWithReservedListener)."""
    return frozenset({mesh.proxy_listen_port, mesh.proxy_inbound_listen_port,
                      *view.proxy.static_ports})


def outbound_listeners(push: PushContext, view: ProxyView,
                       scope: SidecarScope) -> OutboundListeners:
    mesh = push.mesh
    reserved = _reserved(mesh, view)
    out = OutboundListeners()
    by_name: dict[str, listener_pb2.Listener] = {}
    sniffed: set[tuple[str, int]] = set()
    tls_listeners: dict[str, _TLSListener] = {}
    owners: dict[str, str] = {}  # listener name -> the service that built it
    cidr_chains: dict[str, DistinctChains] = {}  # wildcard listeners of CIDR-bound services
    visible: list[tuple[Service, Port]] = [
        (service, port) for service in scope.services for port in service.ports
        if port.protocol is not Protocol.UDP and scope.port_visible(service, port)
        # An ExternalName alias has no listener, virtual host or cluster of its own: its
        # names are domains of its target's virtual host (sidecar_routes), if the target is
        # in the registry; else its traffic is the catch-all's, like any unknown host.
        and service.resolution is not Resolution.ALIAS]
    http_services: dict[int, list[Service]] = {}
    for service, port in visible:
        if port.protocol.is_http:
            http_services.setdefault(port.number, []).append(service)
    for number in sorted(http_services):
        if number in reserved:
            out.problems += [Problem(
                Reason.NOT_SERVED, f"port {number} is reserved for the sidecar: no outbound "
                f"listener for {s.hostname}:{number}", s.origin, s.port_field(number))
                for s in http_services[number]]
            continue
        listener = http_listener(number, scope, mesh)
        by_name[listener.name] = listener
        out.port_routes[number] = http_services[number]
    for service, port in visible:
        if port.protocol.is_http:
            continue
        for bind in _binds(push, view, service, port):
            name = listener_name(bind[0], port.number)
            if bind[0] == ANY_ADDRESS and port.number in reserved:
                out.problems.append(Problem(
                    Reason.NOT_SERVED, f"port {port.number} is reserved for the sidecar: no "
                    f"outbound listener {name} for {service.hostname}", service.origin,
                    service.port_field(port.number)))
                continue
            if port.protocol.is_tls and name not in by_name:
                tls = tls_listeners.setdefault(name, _TLSListener(bind[0], port.number))
                for routed in tls_route_chains(push, view, scope, service, port=port.number,
                                               bind=bind):
                    taken = tls.chains.add(routed.chain)
                    if taken:
                        out.problems.append(routed.taken(taken, name))
                    else:
                        tls.reads_sni = tls.reads_sni or routed.reads_sni
                continue
            if (bind == (ANY_ADDRESS, "") and port.number in out.port_routes
                    and port.protocol.is_tcp and not port.protocol.is_tls
                    and port.protocol not in (Protocol.MONGO, Protocol.MYSQL)
                    and by_name[name].default_filter_chain.name == PASSTHROUGH_FILTER_CHAIN):
                # TCP over an HTTP port: the listener sniffs, HTTP goes to route `<port>` and
                # the rest to this service instead of passing through (istiod's TCPOverHTTP).
                default = by_name[name].default_filter_chain
                default.Clear()
                default.filters.append(tcp_route_filter(push, view, scope, service,
                                                        port=port.number, bind=ANY_ADDRESS)[0])
                limit_handshake(default)
                continue
            at = bind[1] or (bind[0] if bind[0] != ANY_ADDRESS else "")
            where = f"{service.hostname}:{port.number} ({port.protocol.value})"
            where += f" at {at}" if at else ""
            if name in cidr_chains and bind[1]:
                # CIDR-bound services share the wildcard listener, one chain per address range
                # (istiod: one service per address, chains merged while their ranges differ).
                incoming = service_listener(push, view, scope, bind=bind, service=service,
                                            port=port)
                if any(cidr_chains[name].add(c) for c in incoming.filter_chains):
                    out.problems.append(Problem(
                        Reason.CONFLICT, f"{where}: the range already has a filter chain on "
                        f"listener {name} (from {owners[name]}); skipped", service.origin,
                        "spec.addresses"))
                    continue
                _merge_chains(by_name[name], incoming)
            elif name in by_name or name in tls_listeners:
                # The oldest service keeps the address and port (istiod's conflict rule).
                out.problems.append(Problem(
                    Reason.CONFLICT, f"{where}: conflicts with listener {name} already built "
                    f"for {owners.get(name, 'HTTP services')}; skipped", service.origin,
                    service.port_field(port.number)))
                continue
            else:
                by_name[name] = service_listener(push, view, scope, bind=bind, service=service,
                                                 port=port)
                owners[name] = service.hostname
                if bind[1]:
                    cidr_chains[name] = DistinctChains()
                    for chain in by_name[name].filter_chains:
                        cidr_chains[name].add(chain)
            if port.protocol is Protocol.UNSUPPORTED and (
                    service.hostname, port.number) not in sniffed:
                sniffed.add((service.hostname, port.number))
                out.sniffed_routes.append((service, port.number))
    # Built once, after every service sharing a TLS listener added its chains.
    by_name.update((name, tls.build(scope)) for name, tls in tls_listeners.items())
    out.listeners = [by_name[name] for name in sorted(by_name)]
    return out

