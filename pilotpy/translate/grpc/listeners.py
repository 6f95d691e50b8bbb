"""Listeners for proxyless gRPC (istiod's grpcgen lds.go).

A client gets an API listener per service port, named `<host>:<port>` after the target a
channel dials, whose connection manager takes routes `outbound|<port>||<fqdn>` over RDS.
istiod builds them for the names a client asks; pilotpy builds every name a client may ask
once per proxy class: the FQDN forms are what a wildcard gets, the short forms (`echo:9080`
in the client's namespace) are served only to a client naming them. An xDS server gets the
inbound listener it names, `xds.istio.io/grpc/lds/inbound/<ip>:<port>`, for each port a
Service selecting it targets: one plaintext filter chain whose inline route accepts every
RPC (a server's routes must not forward)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from pilotpy.proxy import ProxyView
from pilotpy.push import Port, Service
from pilotpy.translate import pb
from pilotpy.translate.grpc.filters import client_filters, router_filter
from pilotpy.translate.grpc.names import inbound_listener_name, join_host_port, requested_hosts
from pilotpy.translate.names import ANY_ADDRESS, outbound_cluster_name

# The addresses a server may listen on for every port: the unspecified IPv4 and IPv6 ones.
ANY_ADDRESSES = (ANY_ADDRESS, "::")
INBOUND_ROUTE = "inbound"
PLAINTEXT = "plaintext"


@dataclass
class ClientListeners:
    by_fqdn: list[listener_pb2.Listener] = field(default_factory=list)
    by_short_name: list[listener_pb2.Listener] = field(default_factory=list)


def _socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(
        address=address, port_value=port))


def api_listener(name: str, service: Service, port: Port) -> listener_pb2.Listener:
    manager = hcm.HttpConnectionManager(
        http_filters=client_filters(),
        rds=hcm.Rds(config_source=config_source_pb2.ConfigSource(
            ads=config_source_pb2.AggregatedConfigSource()),
            route_config_name=outbound_cluster_name(port.number, "", service.hostname)),
    )
    address = service.addresses[0] if service.addresses else ANY_ADDRESS
    listener = listener_pb2.Listener(name=name, address=_socket_address(address, port.number))
    listener.api_listener.api_listener.CopyFrom(pb.typed(manager))
    return listener


def client_listeners(view: ProxyView, ports: Iterable[tuple[Service, Port]]
                     ) -> ClientListeners:
    """Every `<host>:<port>` a client may ask for. A name two services claim (a
    ServiceEntry host `echo` and the Kubernetes `echo` of the client's namespace) is the
    one whose hostname it is, else the oldest service's."""
    out = ClientListeners()
    claimed: set[str] = set()
    pending: list[tuple[str, Service, Port]] = []
    proxy = view.proxy
    for service, port in ports:
        name = join_host_port(service.hostname, port.number)
        if name not in claimed:
            claimed.add(name)
            out.by_fqdn.append(api_listener(name, service, port))
        pending += [(join_host_port(host, port.number), service, port)
                    for host in requested_hosts(service.hostname, proxy.namespace,
                                                proxy.dns_domain)[1:]]
    for name, service, port in pending:
        if name not in claimed:
            claimed.add(name)
            out.by_short_name.append(api_listener(name, service, port))
    out.by_fqdn.sort(key=lambda li: li.name)
    out.by_short_name.sort(key=lambda li: li.name)
    return out


def _inbound_filter_chain() -> listener_components_pb2.FilterChain:
    accept_all = rc.Route(match=rc.RouteMatch(prefix="/"))
    accept_all.non_forwarding_action.SetInParent()
    manager = hcm.HttpConnectionManager(
        route_config=route_pb2.RouteConfiguration(
            name=INBOUND_ROUTE,
            virtual_hosts=[rc.VirtualHost(domains=["*"], routes=[accept_all])]),
        http_filters=[router_filter()],
    )
    return listener_components_pb2.FilterChain(
        name=f"inbound-{PLAINTEXT}",
        filters=[listener_components_pb2.Filter(name=f"inbound-hcm{PLAINTEXT}",
                                                typed_config=pb.typed(manager))])


def inbound_listeners(view: ProxyView) -> list[listener_pb2.Listener]:
    """The listener of each port a Service selecting the server targets, on each address
    it may serve on: the unspecified ones and its own."""
    ports = sorted({t.target_port for t in view.service_targets})
    addresses = list(dict.fromkeys((*ANY_ADDRESSES, *view.proxy.ips)))
    out = []
    for port in ports:
        for address in addresses:
            # No listener filters and no use_original_dst: a gRPC server rejects them.
            out.append(listener_pb2.Listener(
                name=inbound_listener_name(address, port),
                address=_socket_address(address, port),
                filter_chains=[_inbound_filter_chain()]))
    return out
