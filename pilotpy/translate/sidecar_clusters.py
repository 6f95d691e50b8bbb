"""The clusters only sidecars have: PassthroughCluster, InboundPassthroughCluster and one
`inbound|<port>||` per workload port (istiod's cluster_builder.go buildDefaultPassthroughCluster,
buildInboundPassthroughCluster, buildInboundCluster)."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from pilotpy.mesh import MeshConfig
from pilotpy.proxy import ServiceTarget
from pilotpy.translate import pb
from pilotpy.translate.clusters import HTTP_PROTOCOL_OPTIONS, default_thresholds
from pilotpy.translate.names import (
    INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
    delimited_stat_prefix,
    inbound_cluster_name,
)

# Inbound connections leave the sidecar from this address, so that istio-init's rules let
# them reach the application instead of redirecting them back into the sidecar.
INBOUND_SOURCE_ADDRESS = "127.0.0.6"
# istiod's "never": the largest duration it writes (maxSecondsValue).
NEVER_SECONDS = 9223372035
PASSTHROUGH_IDLE_TIMEOUT_SECONDS = 300


def _original_destination(name: str, mesh: MeshConfig) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.ORIGINAL_DST,
        connect_timeout=pb.duration(mesh.connect_timeout_ns),
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        alt_stat_name=delimited_stat_prefix(name),
    )
    cluster.circuit_breakers.thresholds.append(default_thresholds())
    return cluster


def _bind_inbound_source(cluster: cluster_pb2.Cluster) -> None:
    source = cluster.upstream_bind_config.source_address
    source.address = INBOUND_SOURCE_ADDRESS
    source.port_value = 0


def _downstream_protocol_options() -> hpo.HttpProtocolOptions:
    options = hpo.HttpProtocolOptions()
    options.common_http_protocol_options.idle_timeout.CopyFrom(
        pb.seconds(PASSTHROUGH_IDLE_TIMEOUT_SECONDS))
    options.use_downstream_protocol_config.http_protocol_options.SetInParent()
    options.use_downstream_protocol_config.http2_protocol_options.SetInParent()
    return options


def passthrough_cluster(mesh: MeshConfig) -> cluster_pb2.Cluster:
    """Where ALLOW_ANY sends traffic for destinations outside the registry: the address the
    application connected to."""
    cluster = _original_destination(PASSTHROUGH_CLUSTER, mesh)
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(
        pb.typed(_downstream_protocol_options()))
    return cluster


def inbound_passthrough_cluster(mesh: MeshConfig) -> cluster_pb2.Cluster:
    """Inbound traffic to ports no Service declares, delivered to the workload unchanged."""
    cluster = passthrough_cluster(mesh)
    cluster.name = INBOUND_PASSTHROUGH_CLUSTER
    # Its alt_stat_name stays PassthroughCluster's, as in istiod: inbound and outbound
    # passthrough traffic share one set of stats.
    _bind_inbound_source(cluster)
    return cluster


def inbound_cluster(port: int, targets: Iterable[ServiceTarget], mesh: MeshConfig,
                    *, http2: bool, sniffed: bool) -> cluster_pb2.Cluster:
    """`inbound|<port>||`: meshConfig inboundTrafficPolicy PASSTHROUGH (the default), so the
    connection goes to the pod address at the original port, from 127.0.0.6."""
    cluster = _original_destination(inbound_cluster_name(port), mesh)
    cluster.common_lb_config.SetInParent()
    cluster.cleanup_interval.CopyFrom(pb.seconds(NEVER_SECONDS))
    _bind_inbound_source(cluster)
    services = cluster.metadata.filter_metadata["istio"].fields["services"].list_value
    for target in targets:
        entry = services.values.add().struct_value.fields
        entry["host"].string_value = target.service.hostname
        entry["name"].string_value = target.service.name
        entry["namespace"].string_value = target.service.namespace
    if http2 or sniffed:
        options = hpo.HttpProtocolOptions()
        if http2:
            options.explicit_http_config.http2_protocol_options.SetInParent()
        else:
            # A detected protocol: talk to the workload in whatever the client spoke.
            options.use_downstream_protocol_config.http_protocol_options.SetInParent()
            options.use_downstream_protocol_config.http2_protocol_options.SetInParent()
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(
            pb.typed(options))
    return cluster
