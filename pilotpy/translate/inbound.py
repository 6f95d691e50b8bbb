"""The inbound side of sidecars (istiod's listener_inbound.go, filterchain_options.go):
`virtualInbound` on 15006 receives every connection istio-init redirects to the pod, restores
its original destination (`original_dst` listener filter) and picks a chain by destination
port, transport (TLS or not, by the TLS inspector) and ALPN:

- a blackhole for 15006 itself;
- passthrough chains for ports no Service declares (to InboundPassthroughCluster), and for
  ports only a PeerAuthentication's `portLevelMtls` names;
- per workload port a Service targets (the oldest Service decides its protocol): HTTP through
  an inline route, TCP straight through, to cluster `inbound|<port>||`.

Each port gets the chains of its mTLS mode (PeerAuthentication, pilotpy/push/peer_authn.py):
STRICT mTLS chains only, PERMISSIVE mTLS and plaintext, DISABLE plaintext; the mTLS chains
terminate the mesh certificate of pilot-agent's SDS (pilotpy/translate/mtls.py). A proxy
without pilot-agent cannot terminate mesh mTLS: its PERMISSIVE ports take plaintext, and its
STRICT ports refuse every connection (docs/architecture.md#proxies-with-and-without-pilot-agent).
Every chain but the blackhole enforces the workload's AuthorizationPolicies and
RequestAuthentications (pilotpy/translate/security.py): on mTLS chains the caller's SPIFFE id
is the connection's principal, plaintext chains carry none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.model.protocol import Protocol
from pilotpy.problems import Problem, Reason
from pilotpy.proxy import ProxyView, ServiceTarget
from pilotpy.push import PushContext
from pilotpy.push.peer_authn import MtlsMode, WorkloadMtls
from pilotpy.translate import pb
from pilotpy.translate.filters import (
    http_inspector,
    network_filter,
    original_dst,
    sidecar_inbound_connection_manager,
    tcp_proxy_filter,
    tls_inspector,
)
from pilotpy.translate.listener_limits import limit_accepts
from pilotpy.translate.mtls import ChainProtocol, inbound_tls_context
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
from pilotpy.translate.tls_files import tls_transport_socket

INBOUND_RETRY_ON = "reset-before-request"
RAW_BUFFER = "raw_buffer"
TLS = "tls"
INBOUND_RETRIES = 2
CATCHALL_HTTP_CHAIN = f"{VIRTUAL_INBOUND}-catchall-http"
# ALPNs a client sidecar's mTLS carries (istiod's listener.go): Istio's ALPN filter on
# istio-proxy rewrites HTTP traffic to `istio-http/*`; a stock Envoy client sends `istio`.
MTLS_HTTP_ALPNS = ("istio-http/1.0", "istio-http/1.1", "istio-h2")
ALL_ISTIO_MTLS_ALPNS = ("istio", "istio-peer-exchange", *MTLS_HTTP_ALPNS)
MTLS_TCP_ALPNS = ("istio-peer-exchange", "istio")
PLAINTEXT_HTTP_ALPNS = HTTP_APPLICATION_PROTOCOLS


@dataclass(frozen=True, slots=True)
class ChainOption:
    """One filter chain of a port (istiod's FilterChainMatchOptions)."""

    protocol: ChainProtocol
    transport: str
    alpn: tuple[str, ...] = ()
    mtls: bool = False  # terminates mesh mTLS (the client certificate is required)
    refuse: bool = False  # closes every connection (STRICT on a proxy without pilot-agent)


_HTTP, _TCP = ChainProtocol.HTTP, ChainProtocol.TCP
# Per port protocol (HTTP-family, TCP-family, or sniffed) and mode, istiod's tables.
_HTTP_OPTIONS = {
    MtlsMode.STRICT: (ChainOption(_HTTP, TLS, mtls=True),),
    MtlsMode.PERMISSIVE: (ChainOption(_HTTP, TLS, ALL_ISTIO_MTLS_ALPNS, mtls=True),
                          ChainOption(_HTTP, RAW_BUFFER)),
    MtlsMode.DISABLE: (ChainOption(_HTTP, RAW_BUFFER),),
}
_TCP_OPTIONS = {
    MtlsMode.STRICT: (ChainOption(_TCP, TLS, mtls=True),),
    MtlsMode.PERMISSIVE: (ChainOption(_TCP, TLS, ALL_ISTIO_MTLS_ALPNS, mtls=True),
                          ChainOption(_TCP, TLS),
                          ChainOption(_TCP, RAW_BUFFER)),
    MtlsMode.DISABLE: (ChainOption(_TCP, RAW_BUFFER),),
}
_SNIFFED_OPTIONS = {
    MtlsMode.STRICT: (ChainOption(_HTTP, TLS, MTLS_HTTP_ALPNS, mtls=True),
                      ChainOption(_TCP, TLS, mtls=True)),
    MtlsMode.PERMISSIVE: (ChainOption(_HTTP, TLS, MTLS_HTTP_ALPNS, mtls=True),
                          ChainOption(_HTTP, RAW_BUFFER, PLAINTEXT_HTTP_ALPNS),
                          ChainOption(_TCP, TLS, MTLS_TCP_ALPNS, mtls=True),
                          ChainOption(_TCP, RAW_BUFFER),
                          ChainOption(_TCP, TLS)),
    MtlsMode.DISABLE: (ChainOption(_HTTP, RAW_BUFFER, PLAINTEXT_HTTP_ALPNS),
                       ChainOption(_TCP, RAW_BUFFER)),
}
_REFUSE = (ChainOption(_TCP, "", refuse=True),)


def chain_options(protocol: Protocol | None, mode: MtlsMode, *, agent: bool
                  ) -> tuple[ChainOption, ...]:
    """The chains of a port of `protocol` (None: the passthrough chains, sniffed) under
    `mode`. Without pilot-agent there is no mesh certificate: PERMISSIVE takes plaintext
    only, STRICT refuses everything."""
    if not agent and mode is MtlsMode.STRICT:
        return _REFUSE
    if not agent or mode is MtlsMode.UNKNOWN:
        mode = MtlsMode.DISABLE
    if protocol is None or protocol is Protocol.UNSUPPORTED:
        return _SNIFFED_OPTIONS[mode]
    return (_HTTP_OPTIONS if protocol.is_http else _TCP_OPTIONS)[mode]


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


def _passthrough_http_route() -> route_pb2.RouteConfiguration:
    # No service, no port: istiod's operation for it is ":0/*".
    return _inbound_route_configuration(INBOUND_PASSTHROUGH_CLUSTER, 0, ":0/*", grpc=False)


@dataclass(frozen=True, slots=True)
class _ChainTarget:
    """Where one group of chains sends traffic: a workload port, or the passthrough."""

    port: int  # 0: any port (the catch-all passthrough)
    cluster: str
    route: route_pb2.RouteConfiguration
    stat_prefix: str
    http2: bool
    passthrough: bool

    def name(self, protocol: ChainProtocol) -> str:
        if self.passthrough:
            return CATCHALL_HTTP_CHAIN if protocol is ChainProtocol.HTTP else VIRTUAL_INBOUND
        return listener_name(ANY_ADDRESS, self.port)


def _chain(target: _ChainTarget, option: ChainOption, mesh: MeshConfig,
           security: SecurityFilters) -> lc.FilterChain:
    chain = lc.FilterChain(name=target.name(option.protocol))
    match = chain.filter_chain_match
    if target.port:
        match.destination_port.value = target.port
    match.transport_protocol = option.transport
    match.application_protocols.extend(option.alpn)
    if option.refuse:
        chain.filters.append(tcp_proxy_filter(BLACKHOLE_CLUSTER))
        return chain
    if option.protocol is ChainProtocol.HTTP:
        chain.filters.append(network_filter(sidecar_inbound_connection_manager(
            target.route, target.stat_prefix, mesh, http2=target.http2,
            security=security.http)))
    else:
        chain.filters.extend(security.tcp)
        chain.filters.append(tcp_proxy_filter(target.cluster))
    if option.mtls:
        context = inbound_tls_context(MtlsMode.STRICT, option.protocol, mesh)
        assert context is not None
        chain.transport_socket.CopyFrom(tls_transport_socket(context))
    return chain


def _port_target(port: InboundPort) -> _ChainTarget:
    name = listener_name(ANY_ADDRESS, port.number)
    return _ChainTarget(port.number, inbound_cluster_name(port.number), inbound_route(port),
                        delimited_stat_prefix(f"inbound_{name}"), port.protocol.is_http2,
                        passthrough=False)


def _passthrough_target(port: int) -> _ChainTarget:
    return _ChainTarget(port, INBOUND_PASSTHROUGH_CLUSTER, _passthrough_http_route(),
                        delimited_stat_prefix(INBOUND_PASSTHROUGH_CLUSTER), False,
                        passthrough=True)


def _inspector_ports(chains: Iterable[lc.FilterChain]) -> dict[int, tuple[bool, bool]]:
    """Per destination port (0: chains matching any), whether some chain there needs the
    TLS inspector (it matches `tls`) and the HTTP inspector (it matches http/1.1 or h2c)."""
    out: dict[int, tuple[bool, bool]] = {}
    for chain in chains:
        match = chain.filter_chain_match
        port = match.destination_port.value
        needs_tls, needs_http = out.get(port, (False, False))
        out[port] = (needs_tls or match.transport_protocol == TLS,
                     needs_http or any(p in PLAINTEXT_HTTP_ALPNS
                                       for p in match.application_protocols))
    return out


def _listener_filters(chains: Sequence[lc.FilterChain]) -> list[lc.ListenerFilter]:
    """original_dst, then each inspector only where a chain reads what it finds (istiod's
    populateListenerFilters); the HTTP inspector after the TLS one, which marks TLS first."""
    out = [original_dst()]
    inspectors = _inspector_ports(chains)
    if any(tls for tls, _ in inspectors.values()):
        if inspectors.get(0, (False, False))[0]:
            out.append(tls_inspector(sorted(p for p, (tls, _) in inspectors.items()
                                            if p and not tls)))
        else:
            out.append(tls_inspector(only_ports=sorted(p for p, (tls, _) in inspectors.items()
                                                       if p and tls)))
    if any(http for _, http in inspectors.values()):
        out.append(http_inspector(sorted(p for p, (_, http) in inspectors.items() if not http)))
    return out


def _refusal(view: ProxyView, workload: WorkloadMtls, port: int) -> Problem:
    where = f"port {port}" if port else "ports no Service declares"
    return Problem(Reason.NOT_SERVED, f"mTLS is STRICT on {where} of {view.proxy.id}, whose "
                   "proxy runs without pilot-agent and so has no mesh certificate: the port "
                   "refuses every connection", workload.policy_for_port(port))


@dataclass(frozen=True, slots=True)
class VirtualInbound:
    listener: listener_pb2.Listener
    problems: tuple[Problem, ...]


def virtual_inbound(push: PushContext, view: ProxyView,
                    security: SecurityFilters = NO_SECURITY) -> VirtualInbound:
    """Every chain but the blackhole one for the capture port enforces the workload's
    policies (`security`: translate/security.py), the passthrough ones included; the
    listener's problems include the policies'."""
    mesh = push.mesh
    capture_port = mesh.proxy_inbound_listen_port
    ports = inbound_ports(view, mesh)
    workload = push.peer_authn.for_workload(view.namespace, view.labels)
    agent = view.agent_sds
    problems: list[Problem] = list(security.problems)
    out = listener_pb2.Listener(
        name=VIRTUAL_INBOUND, traffic_direction=base_pb2.INBOUND,
        continue_on_listener_filters_timeout=True, listener_filters_timeout=pb.seconds(0))
    limit_accepts(out)
    out.access_log.extend(listener_access_logs(mesh))
    out.address.socket_address.address = ANY_ADDRESS
    out.address.socket_address.port_value = capture_port
    blackhole = out.filter_chains.add(name=f"{VIRTUAL_INBOUND}-blackhole")
    blackhole.filter_chain_match.destination_port.value = capture_port
    blackhole.filters.append(tcp_proxy_filter(BLACKHOLE_CLUSTER))
    declared = {p.number for p in ports}
    # The passthrough: any port, then ports only portLevelMtls names (istiod's ForPassthrough).
    groups: list[tuple[_ChainTarget, Protocol | None, MtlsMode]] = [
        (_passthrough_target(0), None, workload.mode)]
    groups += [(_passthrough_target(port), None, mode)
               for port, mode in workload.per_port.items() if port not in declared]
    groups += [(_port_target(p), p.protocol, workload.for_port(p.number)) for p in ports]
    for target, protocol, mode in groups:
        options = chain_options(protocol, mode, agent=agent)
        if options is _REFUSE:
            problems.append(_refusal(view, workload, target.port))
        out.filter_chains.extend(_chain(target, o, mesh, security) for o in options)
    out.listener_filters.extend(_listener_filters(out.filter_chains))
    return VirtualInbound(out, tuple(problems))


def inbound_clusters(view: ProxyView, mesh: MeshConfig) -> list[cluster_pb2.Cluster]:
    out = []
    for port in inbound_ports(view, mesh):
        unique = list({(t.service.hostname, t.service.namespace): t
                       for t in port.targets}.values())
        out.append(inbound_cluster(port.number, unique, mesh, http2=port.protocol.is_http2,
                                   sniffed=port.protocol is Protocol.UNSUPPORTED))
    return out
