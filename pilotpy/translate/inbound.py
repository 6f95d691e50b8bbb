"""The inbound side of sidecars (istiod's listener_inbound.go): `virtualInbound` on 15006
receives every connection istio-init redirects to the pod, restores its original destination
(`original_dst` listener filter) and picks a chain by destination port: one per workload port
that a Service targets (HTTP through an inline route, TCP straight through), to cluster
`inbound|<port>||`; ports no Service declares pass through to InboundPassthroughCluster.
Plaintext only: mTLS waits for the security work
(docs/architecture.md#deliberate-differences-from-istiod)."""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.model.protocol import Protocol
from pilotpy.proxy import ProxyView, ServiceTarget
from pilotpy.translate import pb
from pilotpy.translate.filters import (
    http_inspector,
    network_filter,
    original_dst,
    sidecar_inbound_connection_manager,
    tcp_proxy_filter,
)
from pilotpy.translate.listener_limits import limit_accepts
from pilotpy.translate.names import (
    ANY_ADDRESS,
    BLACKHOLE_CLUSTER,
    DEFAULT_ROUTE_NAME,
    INBOUND_PASSTHROUGH_CLUSTER,
    VIRTUAL_INBOUND,
    delimited_stat_prefix,
    inbound_cluster_name,
    listener_name,
)
from pilotpy.translate.observability import listener_access_logs
from pilotpy.translate.outbound_listeners import HTTP_APPLICATION_PROTOCOLS
from pilotpy.translate.security import NO_SECURITY, SecurityFilters
from pilotpy.translate.sidecar_clusters import inbound_cluster

INBOUND_RETRY_ON = "reset-before-request"
RAW_BUFFER = "raw_buffer"
INBOUND_RETRIES = 2


@dataclass(slots=True)
class InboundPort:
    """One workload port: the Service ports targeting it, oldest Service first."""

    number: int
    targets: list[ServiceTarget] = field(default_factory=list)

    @property
    def first(self) -> ServiceTarget:
        return self.targets[0]

    @property
    def protocol(self) -> Protocol:
        # The oldest Service decides the port's protocol (istiod's conflict rule).
        return self.first.port.protocol


def inbound_ports(view: ProxyView, mesh: MeshConfig) -> list[InboundPort]:
    # The capture ports belong to the sidecar: a chain for one would clash with the blackhole.
    capture = {mesh.proxy_listen_port, mesh.proxy_inbound_listen_port}
    ports: dict[int, InboundPort] = {}
    for target in view.service_targets:
        if target.port.protocol is Protocol.UDP or target.target_port in capture:
            continue
        ports.setdefault(target.target_port, InboundPort(target.target_port)).targets.append(
            target)
    return [ports[n] for n in sorted(ports)]


def _inbound_route_configuration(cluster: str, service_port: int, operation: str, *,
                                 grpc: bool) -> route_pb2.RouteConfiguration:
    """Everything to `cluster`, with no timeout, retried only when the request never reached
    the workload (istiod's BuildDefaultHTTPInboundRoute)."""
    route = rc.Route(name=DEFAULT_ROUTE_NAME, match=rc.RouteMatch(prefix="/"))
    action = route.route
    action.cluster = cluster
    action.timeout.CopyFrom(pb.seconds(0))
    action.max_stream_duration.max_stream_duration.CopyFrom(pb.seconds(0))
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(pb.seconds(0))
    if not grpc:
        action.retry_policy.retry_on = INBOUND_RETRY_ON
        action.retry_policy.num_retries.value = INBOUND_RETRIES
    route.decorator.operation = operation
    vhost = rc.VirtualHost(name=f"inbound|http|{service_port}", domains=["*"], routes=[route])
    return route_pb2.RouteConfiguration(name=cluster, virtual_hosts=[vhost],
                                        validate_clusters=pb.boolean(False))


def inbound_route(port: InboundPort) -> route_pb2.RouteConfiguration:
    """The inline route of an HTTP workload port: everything to `inbound|<port>||`."""
    target = port.first
    return _inbound_route_configuration(
        inbound_cluster_name(port.number), target.port.number,
        f"{target.service.hostname}:{target.port.number}/*", grpc=port.protocol.is_grpc)


def _inbound_chains(port: InboundPort, mesh: MeshConfig,
                    security: SecurityFilters) -> list[lc.FilterChain]:
    """HTTP ports through the inline route, TCP ports straight through; a port with no
    protocol in its name gets both, told apart by the HTTP inspector (istiod's sniffing).
    Either kind enforces the workload's policies (`security`)."""
    name = listener_name(ANY_ADDRESS, port.number)
    chains = []
    sniffed = port.protocol is Protocol.UNSUPPORTED
    if port.protocol.is_http or sniffed:
        http = lc.FilterChain(name=name)
        http.filter_chain_match.destination_port.value = port.number
        # Every plaintext chain names raw_buffer, as istiod's inboundPlainText options: Envoy
        # never falls back from the raw_buffer branch to a chain naming no transport, so a
        # sniffed port's TCP chain without it would be unreachable.
        http.filter_chain_match.transport_protocol = RAW_BUFFER
        if sniffed:
            http.filter_chain_match.application_protocols.extend(HTTP_APPLICATION_PROTOCOLS)
        http.filters.append(network_filter(sidecar_inbound_connection_manager(
            inbound_route(port), delimited_stat_prefix(f"inbound_{name}"), mesh,
            http2=port.protocol.is_http2, security=security.http)))
        chains.append(http)
    if not port.protocol.is_http:
        tcp = lc.FilterChain(name=name)
        tcp.filter_chain_match.destination_port.value = port.number
        tcp.filter_chain_match.transport_protocol = RAW_BUFFER
        tcp.filters.extend([*security.tcp, tcp_proxy_filter(inbound_cluster_name(port.number))])
        chains.append(tcp)
    return chains


def _passthrough_http_route() -> route_pb2.RouteConfiguration:
    # No service, no port: istiod's operation for it is ":0/*".
    return _inbound_route_configuration(INBOUND_PASSTHROUGH_CLUSTER, 0, ":0/*", grpc=False)


def virtual_inbound_listener(view: ProxyView, mesh: MeshConfig,
                             security: SecurityFilters = NO_SECURITY) -> listener_pb2.Listener:
    """The ports no Service declares enforce the workload's policies too (istiod's
    passthrough chains); the blackhole chain for 15006 itself does not."""
    capture_port = mesh.proxy_inbound_listen_port
    ports = inbound_ports(view, mesh)
    out = listener_pb2.Listener(
        name=VIRTUAL_INBOUND, traffic_direction=base_pb2.INBOUND,
        continue_on_listener_filters_timeout=True, listener_filters_timeout=pb.seconds(0))
    limit_accepts(out)
    out.access_log.extend(listener_access_logs(mesh))
    out.address.socket_address.address = ANY_ADDRESS
    out.address.socket_address.port_value = capture_port
    # The inspector only matters where a chain matches on the detected protocol: undeclared
    # and sniffed ports. Declared ports skip it, so server-first protocols are not held up.
    declared = [p.number for p in ports if p.protocol is not Protocol.UNSUPPORTED]
    out.listener_filters.extend([original_dst(),
                                 http_inspector(sorted([capture_port, *declared]))])
    blackhole = out.filter_chains.add(name=f"{VIRTUAL_INBOUND}-blackhole")
    blackhole.filter_chain_match.destination_port.value = capture_port
    blackhole.filters.append(tcp_proxy_filter(BLACKHOLE_CLUSTER))
    for port in ports:
        out.filter_chains.extend(_inbound_chains(port, mesh, security))
    http = out.filter_chains.add(name=f"{VIRTUAL_INBOUND}-catchall-http")
    http.filter_chain_match.transport_protocol = RAW_BUFFER
    http.filter_chain_match.application_protocols.extend(HTTP_APPLICATION_PROTOCOLS)
    http.filters.append(network_filter(sidecar_inbound_connection_manager(
        _passthrough_http_route(), delimited_stat_prefix(INBOUND_PASSTHROUGH_CLUSTER), mesh,
        http2=False, security=security.http)))
    tcp = out.filter_chains.add(name=VIRTUAL_INBOUND)
    tcp.filter_chain_match.transport_protocol = RAW_BUFFER
    tcp.filters.extend([*security.tcp, tcp_proxy_filter(INBOUND_PASSTHROUGH_CLUSTER)])
    return out


def inbound_clusters(view: ProxyView, mesh: MeshConfig) -> list[cluster_pb2.Cluster]:
    out = []
    for port in inbound_ports(view, mesh):
        unique = list({(t.service.hostname, t.service.namespace): t
                       for t in port.targets}.values())
        out.append(inbound_cluster(port.number, unique, mesh, http2=port.protocol.is_http2,
                                   sniffed=port.protocol is Protocol.UNSUPPORTED))
    return out
