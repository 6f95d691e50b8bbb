"""VirtualService `tls` routes on a sidecar's TLS-family ports (`https`, `tls`; istiod's tls.go
buildSidecarOutboundTLSFilterChainOpts): one chain per fitting match, selected by SNI
(`sniHosts`) and by `destinationSubnets`, with tcp_proxy to the route's destinations. `tcp`
routes do not apply to these ports. With no fitting match the service's own cluster takes the
port, selected by the service's hostname as SNI only where the listener is shared (the
wildcard or a CIDR)."""

from __future__ import annotations

import ipaddress

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc

from pilotpy.model import hosts
from pilotpy.model.common import Destination
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext, Service
from pilotpy.translate import pb
from pilotpy.translate.chain_match import RoutedChain
from pilotpy.translate.filters import tcp_proxy_filter
from pilotpy.translate.names import ANY_ADDRESS
from pilotpy.translate.routes import config_path, destination_cluster
from pilotpy.translate.sidecar_routes import kubernetes_short_names
from pilotpy.translate.sidecar_scope import SidecarScope
from pilotpy.translate.tcp_routes import fits_proxy, route_destinations_filter


def cidr_range(cidr: str) -> address_pb2.CidrRange:
    network = ipaddress.ip_network(cidr, strict=False)
    return address_pb2.CidrRange(address_prefix=str(network.network_address),
                                 prefix_len=pb.uint32(network.prefixlen))


def _chain(filter_: lc.Filter, sni: list[str], cidrs: list[str]) -> lc.FilterChain:
    chain = lc.FilterChain(filters=[filter_])
    if sni and "*" not in sni:
        chain.filter_chain_match.server_names.extend(sorted(sni))
    if cidrs:
        chain.filter_chain_match.prefix_ranges.extend(cidr_range(c) for c in sorted(cidrs))
    return chain


def tls_route_chains(push: PushContext, view: ProxyView, scope: SidecarScope, service: Service,
                     *, port: int, bind: tuple[str, str]) -> list[RoutedChain]:
    """The chains `service`'s TLS port contributes to listener `bind` (address, CIDR or "")."""
    address, cidr = bind
    listener_cidrs = [cidr] if cidr else []
    out: list[RoutedChain] = []
    handled: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    candidates = [vs for vs in scope.virtual_services_on(port)
                  if any(hosts.matches(h, service.hostname) for h in vs.hosts)]
    for vs in candidates:
        for index, route in enumerate(vs.tls):
            if not route.route:
                continue
            for match_index, match in enumerate(route.match):
                if not fits_proxy(match, port, view):
                    continue
                key = (match.sni_hosts, match.destination_subnets)
                if key in handled:
                    continue
                handled.add(key)
                cidrs = list(match.destination_subnets) or listener_cidrs
                chain = _chain(route_destinations_filter(push, view, vs, route.route, port),
                               list(match.sni_hosts), cidrs)
                chain.metadata.filter_metadata["istio"].fields["config"].string_value = (
                    config_path(vs))
                out.append(RoutedChain(chain, vs.meta.key,
                                       f"spec.tls[{index}].match[{match_index}]",
                                       reads_sni=True))
    if out:
        return out
    cluster = destination_cluster(Destination(service.hostname, "", port), service, port)
    shared = bool(cidr) or address == ANY_ADDRESS
    sni = [service.hostname] if shared else []
    if shared:  # ExternalName aliases of the service answer to its chain too (istiod's tls.go)
        for alias in push.services.aliases_of(service.hostname):
            if alias.visible_to(view.namespace) and scope.allows(alias.namespace,
                                                                 alias.hostname, port):
                sni += [alias.hostname,
                        *kubernetes_short_names(alias.hostname, view.proxy.dns_domain)]
    return [RoutedChain(_chain(tcp_proxy_filter(cluster), sni, listener_cidrs),
                        service.origin, service.port_field(port), reads_sni=bool(sni))]
