"""The translator's entry points: pure functions from (push context, proxy) to Envoy
resources. No I/O, no clocks, no globals; same input, same messages in the same order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from pilotpy.problems import Problem
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext
from pilotpy.translate import pb
from pilotpy.translate.clusters import (
    AnyCluster,
    SharedCluster,
    as_messages,
    clusters_report,
    outbound_clusters,
    upstream_contexts,
)
from pilotpy.translate.credentials import referenced_names, secrets_for, upstream_referenced_names
from pilotpy.translate.endpoints import load_assignment
from pilotpy.translate.gateway import (
    gateway_listeners,
    gateway_route_configuration,
    gateway_route_names,
    merge_gateways,
)
from pilotpy.translate.grpc.config import grpc_config
from pilotpy.translate.grpc.endpoints import grpc_assignment
from pilotpy.translate.observability import tracing_clusters
from pilotpy.translate.security import security_filters
from pilotpy.translate.sidecar import sidecar_config


@dataclass(frozen=True, slots=True)
class GeneratedConfig:
    """Clusters, listeners and routes for one proxy class. Endpoints are generated on their
    own (`endpoints_for`), so an endpoint change never rebuilds the rest."""

    # The clusters: outbound ones as the bytes every class shares (`SharedCluster`), the
    # class's own as messages; `clusters` has them all as messages.
    cluster_entries: list[AnyCluster]
    listeners: list[listener_pb2.Listener]
    # Route configurations as bytes: a sidecar's are written as bytes from shared parts
    # (sidecar_routes), so xDS takes them as they are.
    serialized_routes: list[pb.Serialized]
    # Problems found while translating (e.g. a Gateway server that cannot be served), each
    # naming the object that caused it.
    problems: tuple[Problem, ...] = ()
    # Served only to a proxy naming them, never to a wildcard subscription (proxyless gRPC:
    # listeners under short names, xDS servers' inbound listeners, every cluster).
    named_only_listeners: list[listener_pb2.Listener] = field(default_factory=list)
    named_only_clusters: list[cluster_pb2.Cluster] = field(default_factory=list)
    # Kubernetes Secrets the config references (`kubernetes://<name>`), served over SDS in
    # the ADS stream to proxies allowed to read them (pilotpy/translate/credentials.py).
    secrets: list[secret_pb2.Secret] = field(default_factory=list)

    @property
    def clusters(self) -> list[cluster_pb2.Cluster]:
        """The clusters as messages, for readers (not the xDS path)."""
        return as_messages(self.cluster_entries)

    @property
    def routes(self) -> list[route_pb2.RouteConfiguration]:
        """The route configurations as messages, for readers (not the xDS path)."""
        return [route_pb2.RouteConfiguration.FromString(r.data) for r in self.serialized_routes]


def _serialized(routes: list[route_pb2.RouteConfiguration]) -> list[pb.Serialized]:
    return [pb.serialized(r.name, r.SerializeToString(deterministic=True)) for r in routes]


def _upstream_secret_names(clusters: Iterable[AnyCluster]) -> list[str]:
    names: dict[str, None] = {}
    for cluster in clusters:
        found = (cluster.secret_names if isinstance(cluster, SharedCluster)
                 else upstream_referenced_names(upstream_contexts([cluster])))
        names.update(dict.fromkeys(found))
    return list(names)


def generate(push: PushContext, view: ProxyView, *, clusters: bool = True) -> GeneratedConfig:
    """`clusters=False` leaves the clusters out (a caller that still holds them for an
    unchanged cluster input); listeners and routes do not depend on them. Clusters are still
    built when a DestinationRule's tls makes them report problems or name Secrets
    (`clusters_report`): the problems and Secrets of a generation are all of them."""
    if view.proxy.is_grpc:
        grpc = grpc_config(push, view)
        return GeneratedConfig(cluster_entries=[], listeners=grpc.listeners,
                               serialized_routes=_serialized(grpc.routes),
                               problems=grpc.problems,
                               named_only_listeners=grpc.named_only_listeners,
                               named_only_clusters=grpc.named_only_clusters)
    if view.proxy.is_router:
        merged = merge_gateways(push, view)
        security = security_filters(push, view)
        listeners = gateway_listeners(push, view, merged, security)
        problems = [*merged.problems, *security.problems]
        built = (outbound_clusters(push, view, problems=problems)
                 if clusters or clusters_report(push) else [])
        # Missing Secrets were reported where they are referenced (the server is skipped).
        secrets, _ = secrets_for(push, view, [*referenced_names(listeners),
                                              *_upstream_secret_names(built)])
        return GeneratedConfig(
            cluster_entries=(security.with_clusters([*built, *tracing_clusters(push.mesh)])
                             if clusters else []),
            listeners=listeners,
            serialized_routes=[gateway_route_configuration(push, view, merged, name)
                               for name in gateway_route_names(merged)],
            problems=tuple(problems),
            secrets=secrets,
        )
    if view.proxy.is_sidecar:
        config = sidecar_config(push, view, clusters=clusters)
        return GeneratedConfig(cluster_entries=(
                                   [*config.clusters, *tracing_clusters(push.mesh)]
                                   if clusters else []),
                               listeners=config.listeners,
                               serialized_routes=config.serialized_routes,
                               problems=config.problems)
    return GeneratedConfig(cluster_entries=[], listeners=[], serialized_routes=[])


def endpoints_for(push: PushContext, view: ProxyView, cluster_names: Iterable[str]
                  ) -> list[endpoint_pb2.ClusterLoadAssignment]:
    assignments = [load_assignment(push, view, name) for name in sorted(set(cluster_names))]
    if view.proxy.is_grpc:
        return [grpc_assignment(a) for a in assignments]
    return assignments

