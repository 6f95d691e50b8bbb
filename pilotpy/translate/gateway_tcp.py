"""Filter chains of gateway servers that carry no HTTP (istiod's gateway.go
createGatewayTCPFilterChainOpts): opaque `TCP` servers (and `MONGO`, `REDIS`, `MYSQL`) and
`TLS` servers terminating TLS proxy to the first matching VirtualService `tcp` route;
`PASSTHROUGH` servers get one chain per matching `tls` route match, selected by SNI."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.listener.v3 import listener_components_pb2 as lc

from pilotpy.model import hosts
from pilotpy.model.gateway import Gateway, Server
from pilotpy.model.virtualservice import L4Match, VirtualService
from pilotpy.problems import ObjectRef
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext
from pilotpy.translate.chain_match import RoutedChain
from pilotpy.translate.tcp_routes import route_destinations_filter


@dataclass(frozen=True, slots=True)
class GatewayServer:
    gateway: Gateway
    server: Server

    @property
    def gateway_name(self) -> str:
        """How VirtualServices refer to the server's gateway: `ns/name`."""
        return f"{self.gateway.meta.namespace}/{self.gateway.meta.name}"

    @property
    def ref(self) -> ObjectRef:
        return self.gateway.meta.key

    @property
    def field(self) -> str:
        """`spec.servers[<i>]`, for problems."""
        index = next(i for i, s in enumerate(self.gateway.servers) if s is self.server)
        return f"spec.servers[{index}]"

    @property
    def where(self) -> str:
        server = self.server
        return (f"Gateway {self.gateway_name} server "
                f"{server.port.name or server.port.number}")

    def hosts_for(self, namespace: str) -> list[str]:
        """The server hosts a VirtualService in `namespace` may bind to, `ns/` stripped
        (`./host` is the Gateway's namespace, `*/host` any)."""
        own = self.gateway.meta.namespace
        qualified = [f"{own}/{h[2:]}" if h.startswith("./") else h for h in self.server.hosts]
        return hosts.names_for_namespace(qualified, namespace)

    @property
    def sni_hosts(self) -> list[str]:
        """istiod's GetSNIHostsForServer: the hosts with `ns/` stripped, unique, sorted."""
        return sorted({h.partition("/")[2] or h for h in self.server.hosts})


def bound_virtual_services(push: PushContext, view: ProxyView,
                           entry: GatewayServer) -> list[VirtualService]:
    """VirtualServices bound to the server's gateway with a host matching a server host
    (istiod's pickMatchingGatewayHosts: either name may cover the other)."""
    out = []
    for vs in push.virtual_services.for_gateway(view.namespace, entry.gateway_name):
        server_hosts = entry.hosts_for(vs.meta.namespace)
        if any(hosts.matches(s, h) for s in server_hosts for h in vs.hosts):
            out.append(vs)
    return out


def _fits(match: L4Match, entry: GatewayServer) -> bool:
    """istiod's l4SingleMatch: `port` against the Gateway server port, then `gateways`."""
    if match.port and match.port != entry.server.port.number:
        return False
    return not match.gateways or entry.gateway_name in match.gateways


def server_tcp_filter(push: PushContext, view: ProxyView, entry: GatewayServer
                      ) -> lc.Filter | None:
    """The tcp_proxy of the first `tcp` route (of the bound VirtualServices, oldest first)
    whose match fits the server; None when no route does."""
    for vs in bound_virtual_services(push, view, entry):
        for route in vs.tcp:
            if route.route and (not route.match or any(_fits(m, entry) for m in route.match)):
                return route_destinations_filter(push, view, vs, route.route,
                                                 entry.server.port.number)
    return None


def passthrough_chains(push: PushContext, view: ProxyView,
                       entry: GatewayServer) -> list[RoutedChain]:
    """One chain per fitting `tls` route match: `server_names` are its `sniHosts` (none when
    they hold `*`), no TLS context, tcp_proxy to the route's destinations."""
    out = []
    for vs in bound_virtual_services(push, view, entry):
        for index, route in enumerate(vs.tls):
            if not route.route:
                continue
            for match_index, match in enumerate(route.match):
                if not _fits(match, entry):
                    continue
                chain = lc.FilterChain(filters=[route_destinations_filter(
                    push, view, vs, route.route, entry.server.port.number)])
                if "*" not in match.sni_hosts:
                    chain.filter_chain_match.server_names.extend(sorted(match.sni_hosts))
                out.append(RoutedChain(chain, vs.meta.key,
                                       f"spec.tls[{index}].match[{match_index}]",
                                       reads_sni=True))
    return out
