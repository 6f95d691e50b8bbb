"""VirtualService `tcp` routes on a sidecar's `<vip>_<port>` listeners (istiod's tls.go
buildSidecarOutboundTCPFilterChainOpts): the first route whose match fits this listener and
proxy picks the tcp_proxy destination; several weighted destinations become
`weighted_clusters`."""

from __future__ import annotations

import ipaddress

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilotpy.model.common import Destination
from pilotpy.model.labels import Empty, selects
from pilotpy.model.virtualservice import L4Match, RouteDestination, TCPRoute, VirtualService
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext, Service
from pilotpy.translate import pb
from pilotpy.translate.filters import TCP_PROXY_FILTER, tcp_proxy_filter
from pilotpy.translate.names import MESH_GATEWAY
from pilotpy.translate.routes import config_path, destination_cluster
from pilotpy.translate.sidecar_scope import SidecarScope, VirtualServiceOwners


def _in_subnets(address: str, subnets: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # the wildcard or a CIDR listener: pilotpy makes no per-subnet chains
    return any(ip in ipaddress.ip_network(s, strict=False) for s in subnets)


def fits_proxy(match: L4Match, port: int, view: ProxyView) -> bool:
    """A `tcp` or `tls` match's conditions on the sidecar and the port (istiod's matchTCP /
    matchTLS): `port`, `gateways` (mesh), `sourceLabels`, `sourceNamespace`."""
    if match.port and match.port != port:
        return False
    if match.gateways and MESH_GATEWAY not in match.gateways:
        return False
    if not selects(match.source_labels, view.labels, empty=Empty.ALL):
        return False
    return not match.source_namespace or match.source_namespace == view.namespace


def _fits(match: L4Match, port: int, bind: str, view: ProxyView) -> bool:
    return fits_proxy(match, port, view) and (
        not match.destination_subnets or _in_subnets(bind, match.destination_subnets))


def _first_route(vs: VirtualService, port: int, bind: str, view: ProxyView) -> TCPRoute | None:
    for route in vs.tcp:
        if not route.match or any(_fits(m, port, bind, view) for m in route.match):
            return route
    return None


def tcp_route_filter(push: PushContext, view: ProxyView, scope: SidecarScope,
                     service: Service, *, port: int, bind: str) -> tuple[lc.Filter, str]:
    """The tcp_proxy filter for `service`'s TCP port on listener address `bind`, and the
    VirtualService config path behind it ("" for the service's own cluster)."""
    vs = VirtualServiceOwners(scope.virtual_services_on(port)).owner(service.hostname)
    route = _first_route(vs, port, bind, view) if vs is not None else None
    if vs is None or route is None:
        cluster = destination_cluster(Destination(service.hostname, "", port), service, port)
        return tcp_proxy_filter(cluster), ""
    return route_destinations_filter(push, view, vs, route.route, port), config_path(vs)


def route_destinations_filter(push: PushContext, view: ProxyView, vs: VirtualService,
                              route: tuple[RouteDestination, ...], port: int) -> lc.Filter:
    """The tcp_proxy for a `tcp` or `tls` route's destinations (istiod's
    buildOutboundNetworkFilters): one destination (weight-0 ones dropped, as for HTTP) is a
    plain cluster with the cluster as stat prefix; several are `weighted_clusters` with stat
    prefix `<vs name>.<vs namespace>`. `port` is the listener's (or the Gateway server's)
    port, used when a destination names no port and its service has several."""
    destinations = [d for d in route if d.weight > 0] if len(route) > 1 else list(route)

    def cluster_of(destination: Destination) -> str:
        target = push.service(destination.host, view.namespace, vs.meta.namespace)
        return destination_cluster(destination, target, port)

    if len(destinations) == 1:
        return tcp_proxy_filter(cluster_of(destinations[0].destination))
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=f"{vs.meta.name}.{vs.meta.namespace}")
    for destination in destinations:
        proxy.weighted_clusters.clusters.add(name=cluster_of(destination.destination),
                                             weight=destination.weight)
    return lc.Filter(name=TCP_PROXY_FILTER, typed_config=pb.typed(proxy))
