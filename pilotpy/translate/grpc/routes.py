"""Route configurations for proxyless gRPC clients (istiod's grpcgen rds.go): route
`outbound|<port>||<fqdn>` holds the one virtual host of that service, with the routes of the
`mesh` VirtualService owning its host (else the default route), reachable by every name the
client may dial. gRPC matches the virtual host against `<target host>:<port>` and keeps the
port in the match, so every domain comes with and without `:<port>` (istiod leaves out
ignore_port_in_host_matching for gRPC). A VirtualService timeout becomes
`max_stream_duration`, the only timeout gRPC reads; CORS is left out (gRPC rejects the
filter)."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from pilotpy.model.virtualservice import VirtualService
from pilotpy.proxy import ProxyView
from pilotpy.push import Port, PushContext, Service
from pilotpy.translate.grpc.names import join_host_port
from pilotpy.translate.names import MESH_GATEWAY, outbound_cluster_name, virtual_host_name
from pilotpy.translate.routes import (
    CORS_FILTER,
    RouteOptions,
    build_http_routes,
    sorted_routes,
)
from pilotpy.translate.sidecar_routes import default_route, host_names
from pilotpy.translate.sidecar_scope import SidecarScope, VirtualServiceOwners


def virtual_host_domains(service: Service, port: int, proxy_domain: str) -> list[str]:
    """Each name a client may dial the service by, and each VIP, with and without
    `:<port>`."""
    vips = [a for a in service.addresses if a != "0.0.0.0" and "/" not in a]
    out: dict[str, None] = {}
    for name in [*host_names(service.hostname, proxy_domain), *vips]:
        out[name] = out[join_host_port(name, port)] = None
    return list(out)


def grpc_route(route: rc.Route) -> rc.Route:
    """A VirtualService route as gRPC reads it (istiod's setTimeout for proxyless gRPC)."""
    if route.WhichOneof("action") == "route":
        action = route.route
        action.ClearField("max_grpc_timeout")
        action.max_stream_duration.max_stream_duration.CopyFrom(action.timeout)
    if CORS_FILTER in route.typed_per_filter_config:
        del route.typed_per_filter_config[CORS_FILTER]
    return route


class GrpcRoutes:
    """The route configurations of one gRPC proxy class, and the VirtualServices used."""

    def __init__(self, push: PushContext, view: ProxyView, scope: SidecarScope) -> None:
        self.push, self.view, self.scope = push, view, scope
        self._owners: dict[int, VirtualServiceOwners] = {}
        self._built: dict[tuple[int, int], list[rc.Route]] = {}
        self.used: dict[int, VirtualService] = {}  # by id, in first-use order

    def _routes_of(self, vs: VirtualService, port: int) -> list[rc.Route]:
        key = (id(vs), port)
        found = self._built.get(key)
        if found is None:
            opts = RouteOptions(self.push, self.view, port, frozenset({MESH_GATEWAY}))
            found = self._built[key] = [grpc_route(r) for r in
                                        sorted_routes(build_http_routes(vs, opts))]
        return found

    def configuration(self, service: Service, port: Port) -> route_pb2.RouteConfiguration:
        number = port.number
        owners = self._owners.get(number)
        if owners is None:
            owners = self._owners[number] = VirtualServiceOwners(
                self.scope.virtual_services_on(number))
        vs = owners.owner(service.hostname)
        routes: list[rc.Route] = []
        if vs is not None:
            self.used.setdefault(id(vs), vs)
            routes = self._routes_of(vs, number)
        if not routes:
            routes = [default_route(self.push, self.view, service, number)]
        vhost = rc.VirtualHost(
            name=virtual_host_name(service.hostname, number),
            domains=virtual_host_domains(service, number, self.view.proxy.dns_domain),
            routes=routes, include_request_attempt_count=True)
        return route_pb2.RouteConfiguration(
            name=outbound_cluster_name(number, "", service.hostname), virtual_hosts=[vhost])
