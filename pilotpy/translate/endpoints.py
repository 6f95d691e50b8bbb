"""ClusterLoadAssignments (istiod's xds/endpoints/endpoint_builder.go)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2

from pilotpy.proxy import ProxyView
from pilotpy.push import Endpoint, Port, PushContext, Resolution, Service
from pilotpy.translate import pb
from pilotpy.translate.names import parse_outbound_cluster_name

HEALTHY = 1


def _subset_of(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return not selector or all(labels.get(k) == v for k, v in selector.items())


_LB_ENDPOINT = ec.LbEndpoint(health_status=HEALTHY, load_balancing_weight=pb.uint32(1))


def _lb_endpoint(address: str, port: int, weight: int) -> ec.LbEndpoint:
    endpoint = ec.LbEndpoint()
    endpoint.CopyFrom(_LB_ENDPOINT)  # cheaper than building the nested message each time
    if weight > 1:
        endpoint.load_balancing_weight.value = weight
    socket = endpoint.endpoint.address.socket_address
    socket.address = address
    socket.port_value = port
    return endpoint


def locality_endpoints(lb_endpoints: list[ec.LbEndpoint]) -> ec.LocalityLbEndpoints:
    """One locality group (pilotpy does not model localities yet) weighted by its members."""
    return ec.LocalityLbEndpoints(
        lb_endpoints=lb_endpoints,
        load_balancing_weight=pb.uint32(sum(e.load_balancing_weight.value for e in lb_endpoints)),
    )


def static_endpoints_for(service: Service, port: Port, subset_labels: Mapping[str, str] | None
                         ) -> list[ec.LbEndpoint]:
    """Endpoints written in a ServiceEntry, or (DNS resolution without endpoints) the host
    itself, as istiod's convertServiceEntryToInstances does."""
    default_port = port.target_port if isinstance(port.target_port, int) else port.number
    if not service.static_endpoints:
        if service.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN) and (
                not subset_labels):
            return [_lb_endpoint(service.hostname, default_port, 1)]
        return []
    return [
        _lb_endpoint(e.address, e.ports.get(port.name, default_port), e.weight)
        for e in service.static_endpoints
        if _subset_of(subset_labels, e.labels)
    ]


def _kube_lb_endpoints(endpoints: Iterable[Endpoint], subset_labels: Mapping[str, str] | None
                       ) -> list[ec.LbEndpoint]:
    chosen = sorted(
        (e for e in endpoints if _subset_of(subset_labels, e.labels)),
        key=lambda e: (e.address, e.port),
    )
    return [_lb_endpoint(e.address, e.port, e.weight) for e in chosen]


def load_assignment(push: PushContext, view: ProxyView, cluster_name: str
                    ) -> endpoint_pb2.ClusterLoadAssignment:
    """The assignment for one EDS cluster name. Unknown names get an empty assignment: Envoy
    waits forever for a requested name left unanswered."""
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    parsed = parse_outbound_cluster_name(cluster_name)
    if parsed is None:
        return out
    port_number, subset, hostname = parsed
    service = push.service(hostname, view.namespace)
    if service is None:
        return out
    port = service.port(port_number)
    if port is None:
        return out
    labels: Mapping[str, str] | None = None
    if subset:
        rule = push.destination_rule(view.namespace, service)
        found = rule.subset(subset) if rule is not None else None
        if found is None:
            return out  # a subset nobody defines selects nothing
        labels = found.labels
    if service.origin.kind == "Service":
        lb_endpoints = _kube_lb_endpoints(push.service_endpoints(service).get(port.name, ()),
                                          labels)
    else:
        lb_endpoints = static_endpoints_for(service, port, labels)
    if lb_endpoints:
        out.endpoints.append(locality_endpoints(lb_endpoints))
    return out


def eds_cluster_names(clusters: Iterable[cluster_pb2.Cluster]) -> list[str]:
    return [c.eds_cluster_config.service_name for c in clusters
            if c.type == cluster_pb2.Cluster.EDS]
