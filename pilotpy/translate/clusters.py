"""Outbound clusters (istiod's cluster.go, cluster_builder.go, cluster_traffic_policy.go)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.network.dns_resolver.cares.v3 import cares_dns_resolver_pb2 as cares_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.v3 import percent_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.model.destinationrule import (
    ClientTLS,
    ConnectionPool,
    DestinationRule,
    LoadBalancer,
    OutlierDetection,
    TrafficPolicy,
    Warmup,
)
from pilotpy.model.kinds import Kind
from pilotpy.model.protocol import Protocol
from pilotpy.problems import ObjectRef, Problem, Reason
from pilotpy.proxy import ProxyView
from pilotpy.push import Port, PushContext, Resolution, Service
from pilotpy.push.peer_authn import MtlsMode
from pilotpy.translate import pb
from pilotpy.translate.cluster_tls import credential_resources, upstream_tls
from pilotpy.translate.config_source import ads_config_source
from pilotpy.translate.credentials import missing_credential, upstream_referenced_names
from pilotpy.translate.endpoints import add_locality_group, static_targets
from pilotpy.translate.mtls import TLS_MODE_ISTIO, TLS_MODE_LABEL, IstioMutual, apply_istio_mutual
from pilotpy.translate.names import (
    BLACKHOLE_CLUSTER,
    delimited_stat_prefix,
    outbound_cluster_name,
)
from pilotpy.translate.policy import cluster_policy

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def default_thresholds() -> circuit_breaker_pb2.CircuitBreakers.Thresholds:
    return circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=pb.uint32(pb.UINT32_MAX),
        max_pending_requests=pb.uint32(pb.UINT32_MAX),
        max_requests=pb.uint32(pb.UINT32_MAX),
        max_retries=pb.uint32(pb.UINT32_MAX),
    )


def blackhole_cluster(mesh: MeshConfig) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=BLACKHOLE_CLUSTER,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=pb.duration(mesh.connect_timeout_ns),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        alt_stat_name=delimited_stat_prefix(BLACKHOLE_CLUSTER),
    )


def _new_cluster(connect_timeout_ns: int, eds: bool) -> cluster_pb2.Cluster:
    """A new outbound cluster with what every one starts with, copied from a cached prototype
    (cheaper than building it) that never leaves this module."""
    cluster = cluster_pb2.Cluster()
    cluster.CopyFrom(_prototype(connect_timeout_ns, eds))
    return cluster


@lru_cache(maxsize=32)
def _prototype(connect_timeout_ns: int, eds: bool) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        type=cluster_pb2.Cluster.EDS if eds else cluster_pb2.Cluster.STRICT_DNS,
        connect_timeout=pb.duration(connect_timeout_ns),
        lb_policy=cluster_pb2.Cluster.LEAST_REQUEST,
    )
    cluster.common_lb_config.SetInParent()
    cluster.circuit_breakers.thresholds.append(default_thresholds())
    if eds:
        cluster.eds_cluster_config.eds_config.CopyFrom(ads_config_source())
    return cluster


# istiod's PILOT_DNS_JITTER_DURATION and PILOT_DNS_CARES_UDP_MAX_QUERIES defaults: refreshes
# of many DNS clusters are spread out, and c-ares switches to a fresh UDP socket (a new
# source port) after this many queries.
DNS_JITTER_NS = 100_000_000
DNS_UDP_MAX_QUERIES = 100
CARES_RESOLVER = "envoy.network.dns_resolver.cares"


def _apply_dns_resolver(cluster: cluster_pb2.Cluster) -> None:
    cluster.dns_jitter.CopyFrom(pb.duration(DNS_JITTER_NS))
    resolver = cluster.typed_dns_resolver_config
    resolver.name = CARES_RESOLVER
    resolver.typed_config.CopyFrom(pb.typed(cares_pb2.CaresDnsResolverConfig(
        udp_max_queries=pb.uint32(DNS_UDP_MAX_QUERIES))))


class _ProtocolOptions:
    """Collects HttpProtocolOptions; emitted only when something was set."""

    def __init__(self) -> None:
        self._options: hpo.HttpProtocolOptions | None = None
        self.used = False

    @property
    def options(self) -> hpo.HttpProtocolOptions:
        if self._options is None:
            self._options = hpo.HttpProtocolOptions()
        return self._options

    def h2(self) -> None:
        self.used = True
        if self.options.WhichOneof("upstream_protocol_options") is None:
            self.options.explicit_http_config.http2_protocol_options.SetInParent()

    def use_downstream(self) -> None:
        self.used = True
        downstream = self.options.use_downstream_protocol_config
        downstream.http_protocol_options.SetInParent()
        downstream.http2_protocol_options.SetInParent()

    def common(self) -> protocol_pb2.HttpProtocolOptions:
        self.used = True
        return self.options.common_http_protocol_options

    def upstream(self) -> protocol_pb2.UpstreamHttpProtocolOptions:
        self.used = True
        return self.options.upstream_http_protocol_options

    @property
    def is_h2(self) -> bool:
        return self._options is not None and self._options.explicit_http_config.HasField(
            "http2_protocol_options")

    def apply(self, cluster: cluster_pb2.Cluster) -> None:
        if not self.used:
            return
        if self.options.WhichOneof("upstream_protocol_options") is None:
            self.options.explicit_http_config.http_protocol_options.SetInParent()
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(
            pb.typed(self.options))


def _should_upgrade_h2(port: Port, mesh: MeshConfig, pool: ConnectionPool | None) -> bool:
    if pool is not None and pool.http is not None:
        if pool.http.use_client_protocol:
            return False
        if pool.http.h2_upgrade_policy == "UPGRADE":
            return True
        if pool.http.h2_upgrade_policy == "DO_NOT_UPGRADE":
            return False
    return port.protocol.is_http and mesh.h2_upgrade_policy == "UPGRADE"


def _apply_connection_pool(cluster: cluster_pb2.Cluster, pool: ConnectionPool | None,
                           options: _ProtocolOptions) -> None:
    if pool is None:
        return  # the prototype's defaults stand
    thresholds = cluster.circuit_breakers.thresholds[0]
    idle_ns = max_duration_ns = None
    per_connection = max_streams = 0
    if pool.http is not None:
        http = pool.http
        if http.http2_max_requests > 0:
            thresholds.max_requests.value = http.http2_max_requests
        if http.http1_max_pending_requests > 0:
            thresholds.max_pending_requests.value = http.http1_max_pending_requests
        if http.max_retries > 0:
            thresholds.max_retries.value = http.max_retries
        idle_ns = http.idle_timeout_ns
        per_connection = http.max_requests_per_connection
        max_streams = http.max_concurrent_streams
    if pool.tcp is not None:
        tcp = pool.tcp
        if tcp.connect_timeout_ns is not None:
            cluster.connect_timeout.CopyFrom(pb.duration(tcp.connect_timeout_ns))
        if tcp.max_connections > 0:
            thresholds.max_connections.value = tcp.max_connections
        max_duration_ns = tcp.max_connection_duration_ns
        if idle_ns is None:
            idle_ns = tcp.idle_timeout_ns
        if tcp.tcp_keepalive is not None:
            keepalive = cluster.upstream_connection_options.tcp_keepalive
            keepalive.SetInParent()
            if tcp.tcp_keepalive.probes:
                keepalive.keepalive_probes.value = tcp.tcp_keepalive.probes
            if tcp.tcp_keepalive.time_ns is not None:
                keepalive.keepalive_time.value = tcp.tcp_keepalive.time_ns // 1_000_000_000
            if tcp.tcp_keepalive.interval_ns is not None:
                keepalive.keepalive_interval.value = (
                    tcp.tcp_keepalive.interval_ns // 1_000_000_000)
    if idle_ns is not None or max_duration_ns is not None or per_connection or max_streams:
        common = options.common()
        common.SetInParent()  # present even when only HTTP/2 settings follow, as istiod's
        if idle_ns is not None:
            common.idle_timeout.CopyFrom(pb.duration(idle_ns))
        if per_connection:
            common.max_requests_per_connection.value = per_connection
        if max_duration_ns is not None:
            common.max_connection_duration.CopyFrom(pb.duration(max_duration_ns))
        explicit = options.options.explicit_http_config
        if max_streams and explicit.HasField("http2_protocol_options"):
            explicit.http2_protocol_options.max_concurrent_streams.value = max_streams
    if pool.http is not None and pool.http.use_client_protocol:
        options.use_downstream()


def _slow_start(warmup: Warmup) -> cluster_pb2.Cluster.SlowStartConfig:
    """istiod's setWarmup (both values, defaults filled in by the model) or, for the
    deprecated warmupDurationSecs, setSlowStartConfig (the window alone)."""
    config = cluster_pb2.Cluster.SlowStartConfig(slow_start_window=pb.duration(warmup.duration_ns))
    if warmup.aggression is not None:
        config.aggression.default_value = warmup.aggression
        config.aggression.runtime_key = "("
    if warmup.minimum_percent is not None:
        config.min_weight_percent.value = warmup.minimum_percent
    return config


def _apply_load_balancer(cluster: cluster_pb2.Cluster, lb: LoadBalancer | None) -> None:
    if cluster.type == cluster_pb2.Cluster.ORIGINAL_DST:
        cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
        return
    simple = lb.simple if lb is not None else ""
    warmup = lb.warmup if lb is not None else None
    if simple == "RANDOM":
        cluster.lb_policy = cluster_pb2.Cluster.RANDOM
    elif simple == "ROUND_ROBIN":
        cluster.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
        if warmup is not None:
            cluster.round_robin_lb_config.slow_start_config.CopyFrom(_slow_start(warmup))
    elif simple == "PASSTHROUGH":
        cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
        cluster.type = cluster_pb2.Cluster.ORIGINAL_DST
        cluster.ClearField("load_assignment")
        cluster.ClearField("eds_cluster_config")
    else:  # LEAST_REQUEST, LEAST_CONN and unset: istiod's default since 1.14
        cluster.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST
        if warmup is not None:
            cluster.least_request_lb_config.slow_start_config.CopyFrom(_slow_start(warmup))
    consistent = lb.consistent_hash if lb is not None else None
    if consistent is None:
        return
    if consistent.maglev_table_size is not None:
        cluster.lb_policy = cluster_pb2.Cluster.MAGLEV
        cluster.maglev_lb_config.table_size.value = consistent.maglev_table_size
    else:
        cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
        cluster.ClearField("lb_config")
        size = consistent.ring_hash_minimum_ring_size or 1024
        cluster.ring_hash_lb_config.minimum_ring_size.value = size


def _apply_outlier_detection(cluster: cluster_pb2.Cluster,
                             outlier: OutlierDetection | None) -> None:
    if outlier is None:
        return
    cluster.outlier_detection.CopyFrom(outlier_detection(outlier))
    # istiod always sets the panic threshold with outlier detection; 0 disables panic mode.
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
        percent_pb2.Percent(value=float(outlier.min_health_percent)))


def outlier_detection(outlier: OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    """A DestinationRule's outlierDetection as Envoy's (istiod's applyOutlierDetection)."""
    out = outlier_detection_pb2.OutlierDetection(enforcing_success_rate=pb.uint32(0))
    if outlier.consecutive_5xx_errors is not None:
        value = outlier.consecutive_5xx_errors
        out.consecutive_5xx.value = value
        out.enforcing_consecutive_5xx.value = 100 if value > 0 else 0
    if outlier.consecutive_gateway_errors is not None:
        value = outlier.consecutive_gateway_errors
        out.consecutive_gateway_failure.value = value
        out.enforcing_consecutive_gateway_failure.value = 100 if value > 0 else 0
    if outlier.interval_ns is not None:
        out.interval.CopyFrom(pb.duration(outlier.interval_ns))
    if outlier.base_ejection_time_ns is not None:
        out.base_ejection_time.CopyFrom(pb.duration(outlier.base_ejection_time_ns))
    if outlier.max_ejection_percent > 0:
        out.max_ejection_percent.value = outlier.max_ejection_percent
    if outlier.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if outlier.consecutive_local_origin_failures:
            out.consecutive_local_origin_failure.value = outlier.consecutive_local_origin_failures
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.value = 0
    return out


def _apply_traffic_policy(cluster: cluster_pb2.Cluster, port: Port, policy: TrafficPolicy | None,
                          mesh: MeshConfig, options: _ProtocolOptions) -> None:
    pool = policy.connection_pool if policy is not None else None
    if _should_upgrade_h2(port, mesh, pool):
        options.h2()
    _apply_connection_pool(cluster, pool, options)
    _apply_outlier_detection(cluster, policy.outlier_detection if policy is not None else None)
    _apply_load_balancer(cluster, policy.load_balancer if policy is not None else None)


def _apply_upstream_tls(cluster: cluster_pb2.Cluster, service: Service,
                        policy: TrafficPolicy | None, options: _ProtocolOptions,
                        mesh: MeshConfig, *, gateway: bool) -> None:
    origination = upstream_tls(policy.tls if policy is not None else None,
                               http2=options.is_h2, service_sans=service.subject_alt_names,
                               mesh=mesh, credentials=gateway)
    if origination is None:
        return
    cluster.transport_socket.CopyFrom(origination.transport_socket)
    if origination.auto_sni:
        options.upstream().auto_sni = True
    if origination.auto_san_validation:
        options.upstream().auto_san_validation = True


def _check_credentials(push: PushContext, view: ProxyView, name: str, tls: ClientTLS, *,
                       rule: DestinationRule | None, problems: list[Problem]) -> None:
    """A credentialName is served to gateways only (istiod ignores it on sidecars, for
    DestinationRules without workloadSelector); its Secret must exist."""
    if tls.mode not in ("SIMPLE", "MUTUAL"):
        return
    if not view.proxy.is_router:
        problems.append(Problem(
            Reason.IGNORED, f"cluster {name}: tls.credentialName applies to gateways only "
            "(as in istiod); this sidecar's cluster stays plaintext", _rule_key(rule)))
        return
    for resource in credential_resources(tls):
        missing = missing_credential(push, resource, view.namespace)
        if missing:
            problems.append(Problem(Reason.NOT_FOUND, f"cluster {name}: {missing}; TLS to it "
                                    "fails until it is", _rule_key(rule)))


def _rule_key(rule: DestinationRule | None) -> ObjectRef | None:
    return rule.meta.key if rule is not None else None


def istio_mtls_sni(port: int, subset: str, hostname: str) -> str:
    """`outbound_.9080_.v1_.reviews.default.svc.cluster.local` (istiod's
    BuildDNSSrvSubsetKey): the SNI mesh mTLS sends, which east-west gateways route on."""
    return f"outbound_.{port}_.{subset}_.{hostname}"


def _passthrough_mode(push: PushContext, service: Service, port: Port) -> MtlsMode:
    """A passthrough destination gets mTLS only when every endpoint has a sidecar
    (istiod's BestEffortInferServiceMTLSMode); DISABLE otherwise, or without endpoints."""
    endpoints = push.service_endpoints(service).get(port.name, ())
    if not endpoints or any(e.labels.get(TLS_MODE_LABEL) != TLS_MODE_ISTIO for e in endpoints):
        return MtlsMode.DISABLE
    return MtlsMode.UNKNOWN


def _service_mtls_mode(push: PushContext, service: Service, port: Port,
                       policy: TrafficPolicy | None) -> MtlsMode:
    if service.mesh_external:
        return MtlsMode.UNKNOWN
    passthrough = (policy is not None and policy.load_balancer is not None
                   and policy.load_balancer.simple == "PASSTHROUGH")
    if ((service.resolution is Resolution.PASSTHROUGH or passthrough)
            and _passthrough_mode(push, service, port) is MtlsMode.DISABLE):
        return MtlsMode.DISABLE
    mode = push.peer_authn.namespace_mode(service.namespace)
    return mode if mode is not MtlsMode.UNKNOWN else MtlsMode.PERMISSIVE


@dataclass(frozen=True, slots=True)
class ClusterKind:
    """What of the proxy an outbound cluster depends on: its type, and whether pilot-agent
    serves it the mesh certificate (`ProxyView.agent_sds`)."""

    sidecar: bool = False
    gateway: bool = False
    agent_sds: bool = False


def istio_mutual_for(push: PushContext, agent_sds: bool, service: Service, port: Port, *,
                     subset: str, policy: TrafficPolicy | None) -> IstioMutual | None:
    """istiod's buildUpstreamTLSSettings for mesh mTLS: DestinationRule ISTIO_MUTUAL (its SNI
    and SANs, else the defaults), else auto-mTLS unless it is off, the service is outside
    the mesh, or its mode is DISABLE; None when the cluster gets no mesh mTLS."""
    tls = policy.tls if policy is not None else None
    sni = istio_mtls_sni(port.number, subset, service.hostname)
    if tls is not None:
        if tls.mode != "ISTIO_MUTUAL":
            return None
        return IstioMutual(tls.subject_alt_names or push.service_accounts(service),
                           tls.sni or sni, auto=False)
    if not push.mesh.enable_auto_mtls or not agent_sds:
        return None
    mode = _service_mtls_mode(push, service, port, policy)
    if mode in (MtlsMode.UNKNOWN, MtlsMode.DISABLE):
        return None
    return IstioMutual(push.service_accounts(service), sni, auto=True)


def _apply_mesh_mtls(push: PushContext, kind: ClusterKind, cluster: cluster_pb2.Cluster,
                     service: Service, port: Port, *, subset: str,
                     rule: DestinationRule | None, policy: TrafficPolicy | None,
                     options: _ProtocolOptions, problems: list[Problem]) -> None:
    mutual = istio_mutual_for(push, kind.agent_sds, service, port, subset=subset,
                              policy=policy)
    if mutual is None:
        return
    if not kind.agent_sds:
        # DestinationRule ISTIO_MUTUAL on a proxy without pilot-agent: it has no mesh
        # certificate. Plaintext opens nothing: a server requiring mTLS refuses it.
        problems.append(Problem(
            Reason.NOT_SERVED, f"cluster {cluster.name}: tls.mode ISTIO_MUTUAL needs the "
            "mesh certificate pilot-agent serves (this proxy runs without it); the cluster "
            "stays plaintext", _rule_key(rule)))
        return
    apply_istio_mutual(cluster, mutual, http2=options.is_h2)


def _istio_metadata(cluster: cluster_pb2.Cluster, service: Service, rule: DestinationRule | None,
                    subset: str, policy: TrafficPolicy | None) -> None:
    """`filter_metadata.istio`: services, the DestinationRule, the subset, external."""
    fields = cluster.metadata.filter_metadata["istio"].fields
    entry = fields["services"].list_value.values.add().struct_value.fields
    entry["host"].string_value = service.hostname
    entry["name"].string_value = service.name
    entry["namespace"].string_value = service.namespace
    if rule is not None:
        fields["config"].string_value = (
            f"/apis/networking.istio.io/v1/namespaces/{rule.meta.namespace}"
            f"/destination-rule/{rule.meta.name}")
    if subset:
        fields["subset"].string_value = subset
    if policy is not None and policy.tls is not None and (
            policy.tls.mode in ("SIMPLE", "MUTUAL")):
        # For Istio's ALPN filter: keep the application's ALPN on TLS it originates.
        fields["alpn_override"].string_value = "false"
    if service.mesh_external:
        fields["external"].bool_value = True


def _discovery_type(service: Service, sidecar: bool) -> Any:
    if service.resolution is Resolution.DNS:
        return cluster_pb2.Cluster.STRICT_DNS
    if service.resolution is Resolution.DNS_ROUND_ROBIN:
        return cluster_pb2.Cluster.LOGICAL_DNS
    if service.resolution is Resolution.PASSTHROUGH and sidecar:
        # A sidecar connects where the application connected (a pod address it resolved).
        return cluster_pb2.Cluster.ORIGINAL_DST
    # Gateways reach headless and NONE services through EDS.
    return cluster_pb2.Cluster.EDS


def build_outbound_cluster(push: PushContext, service: Service, port: Port, *, subset: str,
                           rule: DestinationRule | None, subset_labels: dict[str, str] | None,
                           kind: ClusterKind = ClusterKind()
                           ) -> tuple[cluster_pb2.Cluster | None, tuple[Problem, ...]]:
    """The cluster, None when a DNS cluster would have no endpoints (istiod omits it), and
    what could not be served as written."""
    mesh = push.mesh
    sidecar = kind.sidecar
    problems: list[Problem] = []
    name = outbound_cluster_name(port.number, subset, service.hostname)
    discovery_type = _discovery_type(service, sidecar)
    cluster = _new_cluster(mesh.connect_timeout_ns, discovery_type == cluster_pb2.Cluster.EDS)
    cluster.name = name
    cluster.alt_stat_name = delimited_stat_prefix(name)
    if discovery_type == cluster_pb2.Cluster.EDS:
        cluster.eds_cluster_config.service_name = name
    elif discovery_type == cluster_pb2.Cluster.ORIGINAL_DST:
        cluster.type = discovery_type
    else:
        cluster.type = discovery_type
        targets = static_targets(service, port, subset_labels)
        if not targets:
            return None, ()
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
        cluster.dns_refresh_rate.CopyFrom(pb.duration(mesh.dns_refresh_rate_ns))
        cluster.respect_dns_ttl = True
        _apply_dns_resolver(cluster)
        cluster.load_assignment.cluster_name = name
        add_locality_group(cluster.load_assignment, targets)
    options = _ProtocolOptions()
    if port.protocol.is_http2:
        options.h2()
    elif sidecar and port.protocol is Protocol.UNSUPPORTED:
        options.use_downstream()  # sniffed: speak whatever the application spoke
    policy = cluster_policy(rule, subset, port.number)
    _apply_traffic_policy(cluster, port, policy, mesh, options)
    if not cluster.common_lb_config.HasField("healthy_panic_threshold"):
        # Unhealthy endpoints are sent (endpoints.py): panic mode must not route to them.
        cluster.common_lb_config.healthy_panic_threshold.SetInParent()
    _apply_upstream_tls(cluster, service, policy, options, mesh, gateway=kind.gateway)
    _apply_mesh_mtls(push, kind, cluster, service, port, subset=subset, rule=rule,
                     policy=policy, options=options, problems=problems)
    options.apply(cluster)
    _istio_metadata(cluster, service, rule, subset, policy)
    return cluster, tuple(problems)


@dataclass(frozen=True, slots=True)
class SharedCluster:
    """An outbound cluster built once per push context and handed to every class, kept as its
    bytes with what generation reads of it: a cluster message holds a protobuf arena of 2-3
    kB, its bytes about 300 (S1's 10k clusters held 27 MB as messages)."""

    name: str
    data: bytes  # SerializeToString(deterministic=True)
    # eds_cluster_config.service_name when set, and whether the cluster's type is EDS.
    eds_service_name: str | None
    eds: bool
    # The SDS names its own TLS (a DestinationRule's credentialName) fetches over ADS.
    secret_names: tuple[str, ...]

    @classmethod
    def of(cls, cluster: cluster_pb2.Cluster) -> SharedCluster:
        name = cluster.name
        eds_name = (cluster.eds_cluster_config.service_name
                    if cluster.HasField("eds_cluster_config") else None)
        return cls(name, cluster.SerializeToString(deterministic=True),
                   name if eds_name == name else eds_name,  # one string, not two
                   cluster.type == cluster_pb2.Cluster.EDS,
                   tuple(upstream_referenced_names(upstream_contexts([cluster]))))

    def message(self) -> cluster_pb2.Cluster:
        return cluster_pb2.Cluster.FromString(self.data)


AnyCluster: TypeAlias = cluster_pb2.Cluster | SharedCluster


def as_messages(clusters: Iterable[AnyCluster]) -> list[cluster_pb2.Cluster]:
    """For readers (not the xDS path): shared clusters parsed back into messages."""
    return [c.message() if isinstance(c, SharedCluster) else c for c in clusters]


def upstream_contexts(clusters: Iterable[cluster_pb2.Cluster]
                      ) -> Iterable[tls_pb2.UpstreamTlsContext]:
    """The TLS contexts of clusters that originate TLS themselves (a DestinationRule's tls;
    auto-mTLS uses transport_socket_matches and names no Secret)."""
    for cluster in clusters:
        if cluster.HasField("transport_socket"):
            context = tls_pb2.UpstreamTlsContext()
            if cluster.transport_socket.typed_config.Unpack(context):
                yield context


def _build_shared(push: PushContext, service: Service, port: Port, *, subset: str,
                  rule: DestinationRule | None, subset_labels: dict[str, str] | None,
                  kind: ClusterKind) -> tuple[SharedCluster | None, tuple[Problem, ...]]:
    cluster, problems = build_outbound_cluster(push, service, port, subset=subset, rule=rule,
                                               subset_labels=subset_labels, kind=kind)
    return (SharedCluster.of(cluster) if cluster is not None else None), problems


def _reporting_tls(tls: ClientTLS | None) -> bool:
    return tls is not None and (tls.mode == "ISTIO_MUTUAL" or bool(tls.credential_name))


def _reporting_policy(policy: TrafficPolicy | None) -> bool:
    return policy is not None and (_reporting_tls(policy.tls) or any(
        _reporting_tls(p.tls) for p in policy.port_level_settings))


def clusters_report(push: PushContext) -> bool:
    """Whether some DestinationRule's tls (`ISTIO_MUTUAL`, `credentialName`) can make
    outbound clusters report problems or name Secrets: a generation that keeps its clusters
    from an earlier one must then still build them for those."""
    def find() -> bool:
        return any(_reporting_policy(rule.traffic_policy) or any(
            _reporting_policy(s.traffic_policy) for s in rule.subsets)
            for rule in push.objects.get(Kind.DESTINATION_RULE, {}).values()
            if isinstance(rule, DestinationRule))
    return push.memoized(("clusters-report",), find)


def outbound_clusters(push: PushContext, view: ProxyView,
                      visible: Callable[[Service, Port], bool] | None = None,
                      problems: list[Problem] | None = None) -> list[SharedCluster]:
    """One cluster per visible service port and DestinationRule subset, plus the blackhole.
    A name defined twice (conflicting definitions) keeps the oldest service's cluster.
    `visible` narrows the ports further (a sidecar's egress scope); what cannot be served
    as written goes to `problems`.

    A cluster depends on its service, port, subset, DestinationRule and the proxy's
    `ClusterKind` alone: each is built once per push context (its memo) and the same
    `SharedCluster` (bytes) is handed to every class."""
    out: dict[str, SharedCluster] = {}
    found: list[Problem] = [] if problems is None else problems
    kind = ClusterKind(sidecar=view.proxy.is_sidecar, gateway=view.proxy.is_router,
                       agent_sds=view.agent_sds)
    for service in push.visible_services(view.namespace):
        if service.resolution is Resolution.ALIAS:
            continue  # routes to an ExternalName point at the target host's cluster
        rule = push.destination_rule(view.namespace, service)
        for port in service.ports:
            if port.protocol is Protocol.UDP:
                continue
            if visible is not None and not visible(service, port):
                continue
            subsets: list[tuple[str, dict[str, str] | None]] = [("", None)]
            if rule is not None:
                subsets += [(s.name, dict(s.labels)) for s in rule.subsets]
            for subset, labels in subsets:
                name = outbound_cluster_name(port.number, subset, service.hostname)
                if name in out:
                    continue
                cluster, found_here = push.memoized(
                    ("outbound-cluster", id(service), port.number, subset, id(rule), kind),
                    functools.partial(_build_shared, push, service, port, subset=subset,
                                      rule=rule, subset_labels=labels, kind=kind))
                found.extend(found_here)
                policy = cluster_policy(rule, subset, port.number)
                if policy is not None and policy.tls is not None and policy.tls.credential_name:
                    _check_credentials(push, view, name, policy.tls, rule=rule, problems=found)
                if cluster is not None:
                    out[name] = cluster
    out[BLACKHOLE_CLUSTER] = push.memoized(
        ("blackhole-cluster",), lambda: SharedCluster.of(blackhole_cluster(push.mesh)))
    return [out[name] for name in sorted(out)]

