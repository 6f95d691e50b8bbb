"""Everything a `sidecar` proxy gets (istiod's BuildListeners, BuildClusters and RDS for
sidecars): outbound listeners and routes for what its Sidecar scope lets it reach,
`virtualOutbound`, `virtualInbound`, and the clusters behind them."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.listener.v3 import listener_pb2

from pilotpy.problems import Problem
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext
from pilotpy.translate import pb
from pilotpy.translate.clusters import AnyCluster, clusters_report, outbound_clusters
from pilotpy.translate.inbound import inbound_clusters, virtual_inbound
from pilotpy.translate.outbound_listeners import outbound_listeners, virtual_outbound_listener
from pilotpy.translate.security import security_filters
from pilotpy.translate.sidecar_clusters import inbound_passthrough_cluster, passthrough_cluster
from pilotpy.translate.sidecar_routes import port_route_configuration, sniffed_route_configuration
from pilotpy.translate.sidecar_scope import sidecar_scope


@dataclass(frozen=True, slots=True)
class SidecarConfig:
    clusters: list[AnyCluster]  # outbound ones shared by every class, as bytes
    listeners: list[listener_pb2.Listener]
    serialized_routes: list[pb.Serialized]  # see sidecar_routes: written as bytes
    problems: tuple[Problem, ...]


def sidecar_config(push: PushContext, view: ProxyView, *, clusters: bool = True
                   ) -> SidecarConfig:
    mesh = push.mesh
    scope = sidecar_scope(push, view)
    security = security_filters(push, view)
    outbound = outbound_listeners(push, view, scope)
    routes = [port_route_configuration(push, view, scope, port, services)
              for port, services in outbound.port_routes.items()]
    routes += [sniffed_route_configuration(push, view, scope, service, port)
               for service, port in outbound.sniffed_routes]
    inbound = virtual_inbound(push, view, security)
    # Listeners in istiod's LDS order: per-port outbound, virtualOutbound, virtualInbound.
    listeners = [*outbound.listeners, virtual_outbound_listener(scope, mesh), inbound.listener]
    problems = [*outbound.problems, *inbound.problems]
    built: list[AnyCluster] = []
    if clusters or clusters_report(push):  # see generate(): their problems are still wanted
        built = outbound_clusters(push, view, scope.port_visible, problems)
    if clusters:
        built += [passthrough_cluster(mesh), inbound_passthrough_cluster(mesh),
                  *inbound_clusters(view, mesh)]
        built = security.with_clusters(built)
        built.sort(key=lambda c: c.name)
    else:
        built = []
    return SidecarConfig(built, listeners, sorted(routes, key=lambda r: r.name),
                         tuple(problems))
