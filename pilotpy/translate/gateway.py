"""Listeners and routes for `router` proxies (istiod's gateway.go, model/gateway.go).

Gateways select the proxy by labels; their servers are merged per listening port after port
translation through the Services selecting the proxy (80 -> targetPort 8080 gives
`0.0.0.0_8080`). Plain-text HTTP servers on one port share a listener and the route
`http.<server port>` (DESIGN.md §4). A route with no matching VirtualService answers 404 from
the `blackhole:<port>` virtual host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from pilotpy.model import hosts
from pilotpy.model.gateway import Gateway, Server
from pilotpy.model.virtualservice import VirtualService
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext
from pilotpy.translate import pb
from pilotpy.translate.filters import gateway_connection_manager, network_filter
from pilotpy.translate.names import (
    DEFAULT_ROUTE_NAME,
    gateway_http_route_name,
    listener_name,
    virtual_host_name,
)
from pilotpy.translate.routes import (
    MAX_DIRECT_RESPONSE_BODY,
    RouteOptions,
    build_http_routes,
    sorted_routes,
)

WILDCARD_BIND = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class GatewayServer:
    gateway: Gateway
    server: Server

    @property
    def gateway_name(self) -> str:
        """How VirtualServices refer to the server's gateway: `ns/name`."""
        return f"{self.gateway.meta.namespace}/{self.gateway.meta.name}"


@dataclass(slots=True)
class HTTPListener:
    bind: str
    port: int  # the listening (target) port
    servers: list[GatewayServer] = field(default_factory=list)

    @property
    def route_name(self) -> str:
        return gateway_http_route_name(min(s.server.port.number for s in self.servers),
                                       self.bind if self.bind != WILDCARD_BIND else "")


@dataclass(slots=True)
class MergedGateway:
    listeners: dict[tuple[str, int], HTTPListener] = field(default_factory=dict)
    diagnostics: list[str] = field(default_factory=list)

    def servers_for_route(self, route_name: str) -> list[GatewayServer] | None:
        for listener in self.listeners.values():
            if listener.route_name == route_name:
                return listener.servers
        return None


def selects(gateway: Gateway, labels: Mapping[str, str]) -> bool:
    """An empty selector applies to every gateway proxy."""
    return all(labels.get(k) == v for k, v in gateway.selector.items())


def _translated_port(number: int, view: ProxyView) -> int:
    """The first Service port equal to the server port gives the target port; otherwise the
    server port itself (istiod's legacy selector gateways)."""
    for target in view.service_targets:
        if target.port.number == number:
            return target.target_port
    return number


def merge_gateways(push: PushContext, view: ProxyView) -> MergedGateway:
    merged = MergedGateway()
    for gateway in push.gateways:
        if not selects(gateway, view.labels):
            continue
        for server in gateway.servers:
            where = (f"Gateway {gateway.meta.namespace}/{gateway.meta.name} server "
                     f"{server.port.name or server.port.number}")
            if not server.is_plain_http:
                merged.diagnostics.append(
                    f"{where}: {server.port.protocol.value} servers"
                    f"{' with TLS termination' if server.tls and server.tls.mode else ''} "
                    "are not supported by pilotpy yet; skipped")
                continue
            port = _translated_port(server.port.number, view)
            bind = server.bind or WILDCARD_BIND
            listener = merged.listeners.setdefault((bind, port), HTTPListener(bind, port))
            listener.servers.append(GatewayServer(gateway, server))
    return merged


def gateway_listeners(push: PushContext, merged: MergedGateway) -> list[listener_pb2.Listener]:
    out = []
    for (bind, port), listener in sorted(merged.listeners.items()):
        name = listener_name(bind, port)
        manager = gateway_connection_manager(listener.route_name, f"outbound_{name};", push.mesh)
        chain = lc.FilterChain(filters=[network_filter(manager)],
                               transport_socket_connect_timeout=pb.seconds(15))
        listener = listener_pb2.Listener(name=name, traffic_direction=base_pb2.OUTBOUND,
                            filter_chains=[chain])
        listener.address.socket_address.address = bind
        listener.address.socket_address.port_value = port
        out.append(listener)
    return out


def _blackhole_virtual_host(port: int) -> rc.VirtualHost:
    """A 404 for every request (DESIGN.md §4: an explicit direct response, route `default`)."""
    route = rc.Route(name=DEFAULT_ROUTE_NAME, match=rc.RouteMatch(prefix="/"))
    route.direct_response.status = 404
    return rc.VirtualHost(name=virtual_host_name("blackhole", port), domains=["*"],
                          routes=[route])


def empty_route_configuration(name: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, validate_clusters=pb.boolean(False))


@dataclass(slots=True)
class _VirtualHost:
    name: str
    domains: list[str]
    routes: list[rc.Route]
    require_tls: bool


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
                                route_name: str) -> route_pb2.RouteConfiguration:
    servers = merged.servers_for_route(route_name)
    if not servers:
        return empty_route_configuration(route_name)
    built: dict[tuple[str, str, str, int], list[rc.Route]] = {}
    vhosts: dict[str, _VirtualHost] = {}
    for entry in servers:
        server, gateway_name = entry.server, entry.gateway_name
        port = server.port.number
        https_redirect = bool(server.tls and server.tls.https_redirect)
        services: list[VirtualService] = push.virtual_services.for_gateway(
            view.namespace, gateway_name)
        for vs in services:
            server_hosts = hosts.names_for_namespace(server.hosts, vs.meta.namespace)
            matching = hosts.intersection(server_hosts, vs.hosts)
            if not matching:
                continue
            key = (gateway_name, vs.meta.namespace, vs.meta.name, port)
            routes = built.get(key)
            if routes is None:
                opts = RouteOptions(push, view, port, frozenset({gateway_name}),
                                    is_tls=server.tls is not None)
                routes = built[key] = build_http_routes(vs, opts)
            if not routes:
                continue
            for hostname in matching:
                hostname = hostname.lower()
                vhost = vhosts.get(hostname)
                if vhost is None:
                    vhosts[hostname] = _VirtualHost(virtual_host_name(hostname, port),
                                                    [hostname], list(routes), https_redirect)
                else:
                    vhost.routes.extend(routes)
                    vhost.require_tls = vhost.require_tls or https_redirect
        if https_redirect:
            # A redirect-only server still needs its virtual host, with no routes.
            for hostname in server.hosts:
                hostname = hostname.partition("/")[2] or hostname
                vhost = vhosts.setdefault(hostname.lower(), _VirtualHost(
                    virtual_host_name(hostname.lower(), port), [hostname.lower()], [], True))
                vhost.require_tls = True
    out = route_pb2.RouteConfiguration(
        name=route_name,
        validate_clusters=pb.boolean(False),
        ignore_port_in_host_matching=True,
        max_direct_response_body_size_bytes=pb.uint32(MAX_DIRECT_RESPONSE_BODY),
    )
    if not vhosts:
        out.virtual_hosts.append(_blackhole_virtual_host(servers[0].server.port.number))
        return out
    collapsed = sorted(_collapse(vhosts), key=lambda v: v.name)
    for vhost in collapsed:
        message = out.virtual_hosts.add(name=vhost.name, domains=vhost.domains,
                                        routes=sorted_routes(vhost.routes),
                                        include_request_attempt_count=True)
        if vhost.require_tls:
            message.require_tls = rc.VirtualHost.ALL
    return out


def gateway_route_names(merged: MergedGateway) -> list[str]:
    return sorted({listener.route_name for listener in merged.listeners.values()})
