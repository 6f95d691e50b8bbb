"""Everything a proxyless gRPC proxy class gets (istiod's GrpcConfigGenerator): listeners,
route configurations and clusters for every service port its Sidecar scope lets it reach,
inbound listeners for the ports Services selecting it target, and the problems of the
VirtualServices and DestinationRules it uses."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from pilotpy.model import hosts
from pilotpy.model.destinationrule import DestinationRule
from pilotpy.model.protocol import Protocol
from pilotpy.problems import Problem, Reason, Severity
from pilotpy.proxy import ProxyView
from pilotpy.push import Port, PushContext, Resolution, Service
from pilotpy.translate.grpc.clusters import grpc_clusters
from pilotpy.translate.grpc.limits import (
    destination_rule_problems,
    security_problems,
    virtual_service_problems,
)
from pilotpy.translate.grpc.listeners import client_listeners, inbound_listeners
from pilotpy.translate.grpc.routes import GrpcRoutes
from pilotpy.translate.names import outbound_cluster_name
from pilotpy.translate.sidecar_scope import sidecar_scope


@dataclass(frozen=True, slots=True)
class GrpcConfig:
    listeners: list[listener_pb2.Listener]  # what a wildcard gets: `<fqdn>:<port>`
    # Served only to a subscription naming them: short names, inbound listeners, clusters.
    named_only_listeners: list[listener_pb2.Listener]
    routes: list[route_pb2.RouteConfiguration]
    named_only_clusters: list[cluster_pb2.Cluster]
    problems: tuple[Problem, ...]


def _dns_problem(service: Service) -> Problem | None:
    """gRPC takes only IP addresses from EDS; hostnames of DNS ServiceEntries are left out."""
    if service.resolution not in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN):
        return None
    if service.static_endpoints and all(hosts.is_ip(e.address)
                                        for e in service.static_endpoints):
        return None
    return Problem(Reason.NOT_SERVED, f"proxyless gRPC clients take IP endpoints only: the "
                   f"endpoints of {service.hostname} that DNS would resolve are left out",
                   service.origin, "spec.resolution", Severity.ERROR)


def grpc_config(push: PushContext, view: ProxyView) -> GrpcConfig:
    scope = sidecar_scope(push, view)
    ports: list[tuple[Service, Port]] = [
        (service, port) for service in scope.services for port in service.ports
        # An ExternalName alias has nothing of its own; gRPC speaks no UDP.
        if service.resolution is not Resolution.ALIAS and port.protocol is not Protocol.UDP
        and scope.port_visible(service, port)]
    listeners = client_listeners(view, ports)
    routes = GrpcRoutes(push, view, scope)
    by_name: dict[str, route_pb2.RouteConfiguration] = {}
    for service, port in ports:
        name = outbound_cluster_name(port.number, "", service.hostname)
        if name not in by_name:  # the oldest service's, as sidecars
            by_name[name] = routes.configuration(service, port)
    clusters: dict[str, cluster_pb2.Cluster] = {}
    rules: dict[int, DestinationRule] = {}
    problems: list[Problem] = []
    for service, port in ports:
        rule = push.destination_rule(view.namespace, service)
        if rule is not None:
            rules.setdefault(id(rule), rule)
        for cluster in grpc_clusters(service, port, rule):
            clusters.setdefault(cluster.name, cluster)  # the oldest service's, as sidecars
        found = _dns_problem(service)
        if found is not None:
            problems.append(found)
    for vs in routes.used.values():
        problems += virtual_service_problems(vs)
    for rule in rules.values():
        problems += destination_rule_problems(rule)
    if view.service_targets:  # a server
        policies = push.authorization.for_workload(view.namespace, view.labels)
        problems += security_problems([*policies.custom, *policies.deny, *policies.allow,
                                       *policies.audit, *push.request_authentication
                                       .for_workload(view.namespace, view.labels)])
    return GrpcConfig(
        listeners=listeners.by_fqdn,
        named_only_listeners=[*listeners.by_short_name, *inbound_listeners(view)],
        routes=[by_name[name] for name in sorted(by_name)],
        named_only_clusters=[clusters[name] for name in sorted(clusters)],
        problems=tuple(dict.fromkeys(problems)),
    )
