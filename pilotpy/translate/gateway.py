"""Listeners and routes for `router` proxies (istiod's gateway.go, model/gateway.go).

Gateways select the proxy by labels; their servers are merged per listening port after port
translation through the Services selecting the proxy (80 -> targetPort 8080 gives
`0.0.0.0_8080`). Plain-text HTTP servers on one port share a listener and the route
`http.<server port>`, as the Istio releases of the walkthroughs name it (current istiod uses
the listening port; docs/architecture.md#deliberate-differences-from-istiod). A route with no
matching VirtualService answers 404 from
the `blackhole:<port>` virtual host. Servers with TLS (`HTTPS`, `TLS`) share a listener as
one filter chain each (several for PASSTHROUGH), told apart by SNI; a terminating HTTPS server
gets its own route `https.<server port>.<port name>.<gateway>.<namespace>`. An opaque `TCP`
server owns its listener.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from pilotpy.model import hosts
from pilotpy.model.gateway import Server
from pilotpy.model.labels import Empty, selects
from pilotpy.model.protocol import Protocol
from pilotpy.model.virtualservice import VirtualService
from pilotpy.problems import Problem, Reason
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext
from pilotpy.translate import pb
from pilotpy.translate.chain_match import DistinctChains, RoutedChain
from pilotpy.translate.credentials import missing_credential, unsupported_scheme
from pilotpy.translate.downstream_tls import (
    TERMINATING_MODES,
    credential_resources,
    downstream_tls_context,
)
from pilotpy.translate.filters import gateway_connection_manager, network_filter, tls_inspector
from pilotpy.translate.gateway_tcp import GatewayServer, passthrough_chains, server_tcp_filter
from pilotpy.translate.listener_limits import limit_accepts, limit_handshake
from pilotpy.translate.names import (
    ANY_ADDRESS,
    DEFAULT_ROUTE_NAME,
    delimited_stat_prefix,
    gateway_http_route_name,
    gateway_https_route_name,
    listener_name,
    virtual_host_name,
)
from pilotpy.translate.observability import listener_access_logs
from pilotpy.translate.routes import (
    MAX_DIRECT_RESPONSE_BODY,
    RouteOptions,
    build_http_routes,
    is_catch_all,
)
from pilotpy.translate.security import NO_SECURITY, SecurityFilters
from pilotpy.translate.tls_files import tls_transport_socket

PASSTHROUGH_MODES = frozenset({"", "PASSTHROUGH"})

__all__ = ["GatewayServer", "MergedGateway", "gateway_listeners", "gateway_route_configuration",
           "gateway_route_names", "merge_gateways"]


@dataclass(slots=True)
class GatewayListener:
    bind: str
    port: int  # the listening (target) port
    # Plain-text HTTP-family servers: one connection manager, route `http.<port>`.
    servers: list[GatewayServer] = field(default_factory=list)
    # TCP, TLS and HTTPS servers: filter chains of their own.
    l4_servers: list[GatewayServer] = field(default_factory=list)

    @property
    def route_name(self) -> str:
        return gateway_http_route_name(min(s.server.port.number for s in self.servers),
                                       self.bind if self.bind != ANY_ADDRESS else "")


@dataclass(slots=True)
class MergedGateway:
    listeners: dict[tuple[str, int], GatewayListener] = field(default_factory=dict)
    # Terminating HTTPS servers by route name.
    https_routes: dict[str, GatewayServer] = field(default_factory=dict)
    # Hosts of TLS servers per listening port and bind (istiod's CheckDuplicates).
    tls_hosts: dict[tuple[str, int], dict[str, GatewayServer]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def skip(self, entry: GatewayServer, reason: Reason, message: str) -> None:
        self.problems.append(Problem(reason, f"{message}; skipped", entry.ref, entry.field))

    def servers_for_route(self, route_name: str) -> list[GatewayServer] | None:
        for listener in self.listeners.values():
            if listener.servers and listener.route_name == route_name:
                return listener.servers
        https = self.https_routes.get(route_name)
        return [https] if https is not None else None


def _translated_port(number: int, view: ProxyView) -> int:
    """The first Service port equal to the server port gives the target port; otherwise the
    server port itself (istiod's legacy selector gateways)."""
    for target in view.service_targets:
        if target.port.number == number:
            return target.target_port
    return number


def is_tls_server(server: Server) -> bool:
    """istiod's IsTLSServer: TLS settings on a protocol other than plain HTTP."""
    return server.tls is not None and not server.port.protocol.is_http


def is_https_termination(server: Server) -> bool:
    return (server.tls is not None and server.port.protocol is Protocol.HTTPS
            and server.tls.mode not in PASSTHROUGH_MODES)


def https_route_name(entry: GatewayServer) -> str:
    server = entry.server
    return gateway_https_route_name(server.port.number, server.port.name,
                                    entry.gateway.meta.name, entry.gateway.meta.namespace,
                                    server.bind)


def _unservable_tls(push: PushContext, view: ProxyView, server: Server
                    ) -> tuple[Reason, str] | None:
    """Why pilotpy cannot serve this TLS server to this gateway (None when it can)."""
    tls = server.tls
    if tls is None or not is_tls_server(server):
        return None
    if tls.mode == "AUTO_PASSTHROUGH":
        return Reason.UNSUPPORTED, ("tls.mode AUTO_PASSTHROUGH (SNI-DNAT to mesh clusters) is "
                                    "not supported by pilotpy yet")
    if tls.mode == "ISTIO_MUTUAL" and not view.agent_sds:
        return Reason.NOT_SERVED, ("tls.mode ISTIO_MUTUAL terminates with the gateway's mesh "
                                   "certificate, which pilot-agent serves, and this gateway "
                                   "runs without pilot-agent")
    if tls.mode not in TERMINATING_MODES or not (tls.credential_name or tls.credential_names):
        return None  # the model refused terminating servers without a certificate source
    for name in (*tls.credential_names, tls.credential_name, tls.ca_cert_credential_name):
        scheme = unsupported_scheme(name)
        if scheme:
            return Reason.UNSUPPORTED, (f"credential {name!r}: {scheme} credentials are not "
                                        "served by pilotpy; use a Kubernetes Secret name")
    for resource in credential_resources(tls):
        missing = missing_credential(push, resource, view.namespace)
        if missing:
            return Reason.NOT_FOUND, missing
    return None


def _add_server(push: PushContext, view: ProxyView, merged: MergedGateway,
                entry: GatewayServer, port: int) -> None:
    server = entry.server
    bind = server.bind or ANY_ADDRESS
    listener = merged.listeners.get((bind, port))
    if server.is_plain_http:
        if listener is not None and listener.l4_servers:
            merged.skip(entry, Reason.CONFLICT,
                        f"port {port} already serves {listener.l4_servers[0].where} "
                        f"({listener.l4_servers[0].server.port.protocol.value}); plain-text "
                        "HTTP cannot share it")
            return
        listener = merged.listeners.setdefault((bind, port), GatewayListener(bind, port))
        listener.servers.append(entry)
        return
    unservable = _unservable_tls(push, view, server)
    if unservable is not None:
        merged.skip(entry, *unservable)
        return
    if listener is not None:
        taken = listener.servers[0] if listener.servers else listener.l4_servers[0]
        if listener.servers or not is_tls_server(server) or not is_tls_server(taken.server):
            merged.skip(entry, Reason.CONFLICT,
                        f"port {port} already serves {taken.where} "
                        f"({taken.server.port.protocol.value}); only TLS servers (told apart "
                        "by SNI) share a port")
            return
    if is_tls_server(server):
        known = merged.tls_hosts.setdefault((bind, port), {})
        duplicates = [h for h in server.hosts if h in known]
        if duplicates:
            merged.skip(entry, Reason.CONFLICT,
                        f"hosts {duplicates} are already served on port {port} by "
                        f"{known[duplicates[0]].where}")
            return
        if is_https_termination(server):
            route = https_route_name(entry)
            if route in merged.https_routes:
                merged.skip(entry, Reason.CONFLICT,
                            f"route {route} already belongs to another server (port names "
                            "must be unique per port)")
                return
            merged.https_routes[route] = entry
        known.update(dict.fromkeys(server.hosts, entry))
    listener = merged.listeners.setdefault((bind, port), GatewayListener(bind, port))
    listener.l4_servers.append(entry)


def merge_gateways(push: PushContext, view: ProxyView) -> MergedGateway:
    merged = MergedGateway()
    for gateway in push.gateways:
        if not selects(gateway.selector, view.labels, empty=Empty.ALL):
            continue
        for server in gateway.servers:
            _add_server(push, view, merged, GatewayServer(gateway, server),
                        _translated_port(server.port.number, view))
    return merged


def _https_chain(push: PushContext, entry: GatewayServer, listener: str,
                 security: SecurityFilters) -> lc.FilterChain:
    """A terminating HTTPS server: SNI match on its hosts (none for `*`), TLS from files,
    a connection manager on its own route; its stat prefix is the server `name` if set."""
    server = entry.server
    assert server.tls is not None
    stat_prefix = server.name or delimited_stat_prefix(f"outbound_{listener}")
    manager = gateway_connection_manager(https_route_name(entry), stat_prefix, push.mesh,
                                         security.http)
    chain = lc.FilterChain(filters=[network_filter(manager)],
                           transport_socket=tls_transport_socket(
                               downstream_tls_context(server.tls)))
    _match_server_hosts(chain, entry)
    return chain


def _match_server_hosts(chain: lc.FilterChain, entry: GatewayServer) -> None:
    sni = entry.sni_hosts
    if "*" not in sni:
        chain.filter_chain_match.server_names.extend(sni)


def _unrouted(entry: GatewayServer, route_kind: str) -> Problem:
    return Problem(Reason.NOT_FOUND, f"no VirtualService `{route_kind}` route bound to "
                   f"{entry.gateway_name} matches it; no filter chain", entry.ref, entry.field)


def _l4_chains(push: PushContext, view: ProxyView, entry: GatewayServer, listener: str,
               problems: list[Problem], *, security: SecurityFilters) -> list[RoutedChain]:
    """Chains of TLS and TCP servers; those that carry no HTTP enforce the gateway's
    policies with network RBAC filters before their tcp_proxy."""
    server = entry.server
    if is_https_termination(server):
        return [RoutedChain(_https_chain(push, entry, listener, security), entry.ref,
                            entry.field)]
    if server.tls is not None and server.tls.mode in PASSTHROUGH_MODES:
        chains = passthrough_chains(push, view, entry)
        if not chains:
            problems.append(_unrouted(entry, "tls"))
        for routed in chains:
            if security.tcp:
                filters = [*security.tcp, *routed.chain.filters]
                del routed.chain.filters[:]
                routed.chain.filters.extend(filters)
        return chains
    tcp = server_tcp_filter(push, view, entry)
    if tcp is None:
        problems.append(_unrouted(entry, "tcp"))
        return []
    chain = lc.FilterChain(filters=[*security.tcp, tcp])
    if server.tls is not None:  # a TLS server terminating TLS, then opaque TCP
        chain.transport_socket.CopyFrom(tls_transport_socket(
            downstream_tls_context(server.tls, tcp=True)))
        _match_server_hosts(chain, entry)
    return [RoutedChain(chain, entry.ref, entry.field)]


def _listener_chains(push: PushContext, view: ProxyView, listener: GatewayListener,
                     name: str, problems: list[Problem], *, security: SecurityFilters
                     ) -> tuple[list[lc.FilterChain], bool]:
    """The listener's chains, and whether it needs the TLS inspector (some chain reads SNI or
    terminates TLS with ALPN)."""
    if listener.servers:
        manager = gateway_connection_manager(listener.route_name,
                                             delimited_stat_prefix(f"outbound_{name}"),
                                             push.mesh, security.http)
        return [lc.FilterChain(filters=[network_filter(manager)])], False
    distinct = DistinctChains()
    for entry in listener.l4_servers:
        for routed in _l4_chains(push, view, entry, name, problems, security=security):
            taken = distinct.add(routed.chain)
            if taken:
                problems.append(routed.taken(taken, name))
    return distinct.chains, any(is_tls_server(e.server) for e in listener.l4_servers)


def gateway_listeners(push: PushContext, view: ProxyView, merged: MergedGateway,
                      security: SecurityFilters = NO_SECURITY) -> list[listener_pb2.Listener]:
    out = []
    for (bind, port), listener in sorted(merged.listeners.items()):
        name = listener_name(bind, port)
        chains, inspect_tls = _listener_chains(push, view, listener, name, merged.problems,
                                               security=security)
        if not chains:
            continue  # istiod drops a listener left with no filter chain
        message = listener_pb2.Listener(name=name, traffic_direction=base_pb2.OUTBOUND)
        limit_accepts(message)
        message.access_log.extend(listener_access_logs(push.mesh))
        if inspect_tls:
            message.listener_filters.append(tls_inspector())
        for chain in chains:
            limit_handshake(chain)
            message.filter_chains.append(chain)
        message.address.socket_address.address = bind
        message.address.socket_address.port_value = port
        out.append(message)
    return out


def _blackhole_virtual_host(port: int) -> rc.VirtualHost:
    """A 404 for every request: an explicit direct response on route `default`, where istiod
    leaves the virtual host without routes
    (docs/architecture.md#deliberate-differences-from-istiod)."""
    route = rc.Route(name=DEFAULT_ROUTE_NAME, match=rc.RouteMatch(prefix="/"))
    route.direct_response.status = 404
    return rc.VirtualHost(name=virtual_host_name("blackhole", port), domains=["*"],
                          routes=[route])


def empty_route_configuration(name: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, validate_clusters=pb.boolean(False))


class _Routes(NamedTuple):
    """One VirtualService's gateway routes, serialized as VirtualHost.routes entries: kept
    across push contexts as bytes, since a route message holds a protobuf arena of a few kB
    (the 20k routes of S1's 10k-route gateway held 54 MB as messages)."""

    others: bytes
    catch_alls: bytes  # istiod's SortVHostRoutes puts these last in a virtual host

    def __bool__(self) -> bool:
        return bool(self.others or self.catch_alls)


def _kept_routes(vs: VirtualService, opts: RouteOptions) -> _Routes:
    others: list[bytes] = []
    catch_alls: list[bytes] = []
    for route in build_http_routes(vs, opts):
        entry = pb.entry(rc.VirtualHost.ROUTES_FIELD_NUMBER,
                         route.SerializeToString(deterministic=True))
        (catch_alls if is_catch_all(route) else others).append(entry)
    return _Routes(b"".join(others), b"".join(catch_alls))


@dataclass(slots=True)
class _VirtualHost:
    name: str
    domains: list[str]
    routes: list[_Routes]  # one per VirtualService
    require_tls: bool

    def serialized(self) -> list[bytes]:
        """A RouteConfiguration.virtual_hosts entry: its fields in number order, name and
        domains (1, 2), the routes (3, catch-alls last), require_tls (4) and
        include_request_attempt_count (14), as protobuf writes the message; the kept route
        bytes are parts of it, not copied."""
        head = rc.VirtualHost(name=self.name, domains=self.domains).SerializeToString()
        return pb.entry_parts(route_pb2.RouteConfiguration.VIRTUAL_HOSTS_FIELD_NUMBER, head, [
            *(r.others for r in self.routes), *(r.catch_alls for r in self.routes),
            _REQUIRE_TLS_TAIL if self.require_tls else _ATTEMPT_COUNT])


_REQUIRE_TLS = rc.VirtualHost(require_tls=rc.VirtualHost.ALL).SerializeToString()
_ATTEMPT_COUNT = rc.VirtualHost(include_request_attempt_count=True).SerializeToString()
_REQUIRE_TLS_TAIL = _REQUIRE_TLS + _ATTEMPT_COUNT
# The options of every gateway route configuration with virtual hosts (fields 7, 11, 14),
# after its name (1) and virtual hosts (2).
_OPTIONS = route_pb2.RouteConfiguration(
    validate_clusters=pb.boolean(False),
    ignore_port_in_host_matching=True,
    max_direct_response_body_size_bytes=pb.uint32(MAX_DIRECT_RESPONSE_BODY),
).SerializeToString(deterministic=True)


def _collapse(vhosts: dict[str, _VirtualHost]) -> list[_VirtualHost]:
    """Hostnames that got the very same routes (one VirtualService, several hosts) share one
    virtual host; the alphabetically first keeps its name (istiod's collapseDuplicateRoutes)."""
    out: list[_VirtualHost] = []
    by_routes: dict[tuple[int, ...], _VirtualHost] = {}
    for hostname in sorted(vhosts):
        vhost = vhosts[hostname]
        identity = (*(id(r) for r in vhost.routes), int(vhost.require_tls))
        existing = by_routes.get(identity)
        if existing is not None and vhost.routes:
            existing.domains.extend(vhost.domains)
            continue
        by_routes[identity] = vhost
        out.append(vhost)
    return out


def gateway_route_configuration(push: PushContext, view: ProxyView, merged: MergedGateway,
                                route_name: str) -> pb.Serialized:
    """Written as parts from each VirtualService's serialized routes (`_Routes`), byte-identical
    to the message's deterministic serialization."""
    servers = merged.servers_for_route(route_name)
    if not servers:
        return _serialized(empty_route_configuration(route_name))
    built: dict[tuple[str, str, str, int], _Routes] = {}
    class_key = view.class_key
    vhosts: dict[str, _VirtualHost] = {}
    for entry in servers:
        server, gateway_name = entry.server, entry.gateway_name
        port = server.port.number
        https_redirect = bool(server.tls and server.tls.https_redirect)
        services: list[VirtualService] = push.virtual_services.for_gateway(
            view.namespace, gateway_name)
        for vs in services:
            server_hosts = entry.hosts_for(vs.meta.namespace)
            matching = hosts.intersection(server_hosts, vs.hosts)
            if not matching:
                continue
            key = (gateway_name, vs.meta.namespace, vs.meta.name, port)
            routes = built.get(key)
            if routes is None:
                opts = RouteOptions(push, view, port, frozenset({gateway_name}),
                                    is_tls=server.tls is not None)
                # Kept across contexts while only VirtualServices and Gateways change.
                routes = built[key] = push.kept(
                    class_key, ("gateway-routes", *key, opts.is_tls), vs,
                    functools.partial(_kept_routes, vs, opts))
            if not routes:
                continue
            for hostname in matching:
                hostname = hostname.lower()
                vhost = vhosts.get(hostname)
                if vhost is None:
                    vhosts[hostname] = _VirtualHost(virtual_host_name(hostname, port),
                                                    [hostname], [routes], https_redirect)
                else:
                    vhost.routes.append(routes)
                    vhost.require_tls = vhost.require_tls or https_redirect
        if https_redirect:
            # A redirect-only server still needs its virtual host, with no routes.
            for hostname in server.hosts:
                hostname = hostname.partition("/")[2] or hostname
                vhost = vhosts.setdefault(hostname.lower(), _VirtualHost(
                    virtual_host_name(hostname.lower(), port), [hostname.lower()], [], True))
                vhost.require_tls = True
    head = route_pb2.RouteConfiguration(name=route_name).SerializeToString()
    if not vhosts:
        blackhole = _blackhole_virtual_host(servers[0].server.port.number)
        entries = [[pb.entry(route_pb2.RouteConfiguration.VIRTUAL_HOSTS_FIELD_NUMBER,
                             blackhole.SerializeToString(deterministic=True))]]
    else:
        collapsed = sorted(_collapse(vhosts), key=lambda v: v.name)
        entries = [vhost.serialized() for vhost in collapsed]
    return pb.Serialized(route_name, (head, *(p for entry in entries for p in entry),
                                      _OPTIONS))


def _serialized(message: route_pb2.RouteConfiguration) -> pb.Serialized:
    return pb.serialized(message.name, message.SerializeToString(deterministic=True))


def gateway_route_names(merged: MergedGateway) -> list[str]:
    names = {listener.route_name for listener in merged.listeners.values() if listener.servers}
    return sorted(names | set(merged.https_routes))
