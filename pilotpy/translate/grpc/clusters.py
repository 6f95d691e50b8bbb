"""Clusters for proxyless gRPC (istiod's grpcgen cds.go): one EDS cluster per service port
and DestinationRule subset, `outbound|<port>|<subset>|<fqdn>`, with what gRPC can balance.
gRPC asks for each cluster its routes name; istiod builds only those, and none for a
wildcard, so every one is served only to a subscription naming it.

- load balancing: round robin (gRPC's default, no policy written); ring hash for a
  consistent hash (Maglev too: gRPC has no Maglev); least request as a
  `load_balancing_policy` list falling back to round robin, since the C-core clients (C++,
  Python) reject LEAST_REQUEST and take the first policy of a list they know;
- circuit breaking: `http2MaxRequests` as `max_requests`, the only threshold gRPC reads;
- outlier detection as sidecars get it (gRPC takes the ejection settings; it ejects by
  success rate and failure percentage only, which Istio's API does not set).
Everything else is reported by pilotpy/translate/grpc/limits.py."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2

from pilotpy.model.destinationrule import DestinationRule, LoadBalancer, TrafficPolicy
from pilotpy.push import Port, Service
from pilotpy.translate import pb
from pilotpy.translate.clusters import outlier_detection
from pilotpy.translate.names import delimited_stat_prefix, outbound_cluster_name
from pilotpy.translate.policy import cluster_policy

LEAST_REQUEST_POLICY = "envoy.load_balancing_policies.least_request"
WRR_LOCALITY_POLICY = "envoy.load_balancing_policies.wrr_locality"
ROUND_ROBIN_POLICY = "envoy.load_balancing_policies.round_robin"
LEAST_REQUEST = frozenset({"LEAST_REQUEST", "LEAST_CONN"})
DEFAULT_RING_SIZE = 1024


def eds_cluster(name: str) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, alt_stat_name=delimited_stat_prefix(name),
                                  type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.service_name = name
    cluster.eds_cluster_config.eds_config.CopyFrom(config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource()))
    return cluster


def _least_request_with_fallback(cluster: cluster_pb2.Cluster) -> None:
    round_robin = cluster_pb2.LoadBalancingPolicy()
    entry = round_robin.policies.add().typed_extension_config
    entry.name = ROUND_ROBIN_POLICY
    entry.typed_config.CopyFrom(pb.typed(round_robin_pb2.RoundRobin()))
    policies = cluster.load_balancing_policy.policies
    first = policies.add().typed_extension_config
    first.name = LEAST_REQUEST_POLICY
    first.typed_config.CopyFrom(pb.typed(least_request_pb2.LeastRequest()))
    second = policies.add().typed_extension_config
    second.name = WRR_LOCALITY_POLICY
    second.typed_config.CopyFrom(pb.typed(wrr_locality_pb2.WrrLocality(
        endpoint_picking_policy=round_robin)))


def _apply_load_balancer(cluster: cluster_pb2.Cluster, lb: LoadBalancer | None) -> None:
    if lb is None:
        return
    consistent = lb.consistent_hash
    if consistent is not None:
        cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
        cluster.ring_hash_lb_config.minimum_ring_size.value = (
            consistent.ring_hash_minimum_ring_size or DEFAULT_RING_SIZE)
    elif lb.simple in LEAST_REQUEST:
        _least_request_with_fallback(cluster)


def _apply_traffic_policy(cluster: cluster_pb2.Cluster, policy: TrafficPolicy | None) -> None:
    if policy is None:
        return
    _apply_load_balancer(cluster, policy.load_balancer)
    pool = policy.connection_pool
    if pool is not None and pool.http is not None and pool.http.http2_max_requests > 0:
        cluster.circuit_breakers.thresholds.append(circuit_breaker_pb2.CircuitBreakers.Thresholds(
            max_requests=pb.uint32(pool.http.http2_max_requests)))
    if policy.outlier_detection is not None:
        cluster.outlier_detection.CopyFrom(outlier_detection(policy.outlier_detection))


def grpc_clusters(service: Service, port: Port, rule: DestinationRule | None
                  ) -> list[cluster_pb2.Cluster]:
    """The default cluster of a service port, then one per subset of its DestinationRule."""
    subsets = [""] + ([s.name for s in rule.subsets] if rule is not None else [])
    out = []
    for subset in subsets:
        cluster = eds_cluster(outbound_cluster_name(port.number, subset, service.hostname))
        _apply_traffic_policy(cluster, cluster_policy(rule, subset, port.number))
        out.append(cluster)
    return out
