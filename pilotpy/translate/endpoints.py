"""ClusterLoadAssignments (istiod's xds/endpoints/endpoint_builder.go)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2

from pilotpy.model.destinationrule import DestinationRule
from pilotpy.model.kinds import Kind
from pilotpy.model.labels import Empty, selects
from pilotpy.proxy import ProxyView
from pilotpy.push import Endpoint, Port, PushContext, Resolution, Service
from pilotpy.push.peer_authn import MtlsMode
from pilotpy.translate import pb
from pilotpy.translate.mtls import TLS_MODE_ISTIO, TLS_MODE_LABEL, tls_mode_metadata
from pilotpy.translate.names import parse_outbound_cluster_name
from pilotpy.translate.policy import cluster_policy

# envoy.config.core.v3.HealthStatus: what istiod sends for Kubernetes endpoints. ServiceEntry
# endpoints carry UNKNOWN (0, left out), which Envoy treats as healthy too.
UNKNOWN, HEALTHY, UNHEALTHY = 0, 1, 2


_LB_ENDPOINT = ec.LbEndpoint(load_balancing_weight=pb.uint32(1))
# (address, port, weight, health status) of one endpoint, before it becomes a message.
Target = tuple[str, int, int, int]


def add_locality_group(assignment: endpoint_pb2.ClusterLoadAssignment,
                       targets: Iterable[Target], mtls: Sequence[bool] = ()) -> None:
    """One locality group (pilotpy does not model localities yet), weighted by its members;
    `mtls[i]`: target i takes mesh mTLS (`tlsMode: istio` metadata). Endpoints are built in
    place: copying a prototype beats building each one."""
    group = assignment.endpoints.add()
    group.locality.SetInParent()
    add = group.lb_endpoints.add
    total = 0
    for index, (address, port, weight, health) in enumerate(targets):
        endpoint = add()
        endpoint.CopyFrom(_LB_ENDPOINT)
        if health:
            endpoint.health_status = health
        if weight > 1:
            endpoint.load_balancing_weight.value = weight
        if mtls and mtls[index]:
            tls_mode_metadata(endpoint.metadata)
        socket = endpoint.endpoint.address.socket_address
        socket.address = address
        socket.port_value = port
        total += max(weight, 1)
    group.load_balancing_weight.value = total


def static_targets(service: Service, port: Port, subset_labels: Mapping[str, str] | None
                   ) -> list[Target]:
    """Endpoints written in a ServiceEntry, or (DNS resolution without endpoints) the host
    itself, as istiod's convertServiceEntryToInstances does."""
    default_port = port.target_port if isinstance(port.target_port, int) else port.number
    if not service.static_endpoints:
        if service.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN) and (
                not subset_labels):
            return [(service.hostname, default_port, 1, UNKNOWN)]
        return []
    return [(e.address, e.ports.get(port.name, default_port), e.weight, UNKNOWN)
            for e in service.static_endpoints if selects(subset_labels, e.labels, empty=Empty.ALL)]


def _kube_endpoints(endpoints: Iterable[Endpoint], subset_labels: Mapping[str, str] | None,
                    with_unhealthy: bool) -> list[Endpoint]:
    # The endpoint index keeps them sorted by address and port.
    return [e for e in endpoints
            if (with_unhealthy or e.healthy) and (
                not subset_labels or selects(subset_labels, e.labels, empty=Empty.ALL))]


def _endpoint_mtls(push: PushContext, service: Service, endpoints: Sequence[Endpoint], *,
                   rule: DestinationRule | None, subset: str, port: int) -> list[bool]:
    """Which endpoints take mesh mTLS (`tlsMode: istio` metadata; istiod's mtlsChecker):
    those with a sidecar (`security.istio.io/tlsMode: istio`), none when the cluster's
    DestinationRule tls is DISABLE; unless it is ISTIO_MUTUAL, not those whose workload's
    PeerAuthentication disables mTLS on the endpoint's port."""
    policy = cluster_policy(rule, subset, port)
    mode = policy.tls.mode if policy is not None and policy.tls is not None else ""
    sidecars = [e.labels.get(TLS_MODE_LABEL) == TLS_MODE_ISTIO for e in endpoints]
    if mode == "DISABLE" or not any(sidecars):
        return []
    if mode == "ISTIO_MUTUAL":
        return sidecars
    authn = push.peer_authn
    return [sidecar and authn.for_workload(service.namespace, e.labels).for_port(e.port)
            is not MtlsMode.DISABLE for sidecar, e in zip(sidecars, endpoints, strict=True)]


def assignment_sources(push: PushContext, namespace: str, cluster_name: str
                       ) -> tuple[Service | None, DestinationRule | None]:
    """All load_assignment reads for a proxy in `namespace` besides the cluster name (and
    the proxy's generator): the service the name resolves to there and the DestinationRule
    that applies to it there. Proxies of other namespaces that resolve both to the same
    objects get the same assignment."""
    parsed = parse_outbound_cluster_name(cluster_name)
    if parsed is None:
        return None, None
    service = push.service(parsed[2], namespace)
    if service is None:
        return None, None
    return service, push.destination_rule(namespace, service)


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
    rule = push.destination_rule(view.namespace, service)
    if subset:
        found = rule.subset(subset) if rule is not None else None
        if found is None:
            return out  # a subset nobody defines selects nothing
        labels = found.labels
    if service.origin.kind == Kind.SERVICE:
        endpoints = _kube_endpoints(push.service_endpoints(service).get(port.name, ()), labels,
                                    _sends_unhealthy(rule, subset, port.number))
        if endpoints:
            add_locality_group(
                out, [(e.address, e.port, e.weight, HEALTHY if e.healthy else UNHEALTHY)
                      for e in endpoints],
                _endpoint_mtls(push, service, endpoints, rule=rule, subset=subset,
                               port=port.number))
        return out
    targets = static_targets(service, port, labels)
    if targets:
        add_locality_group(out, targets)
    return out


def _sends_unhealthy(rule: DestinationRule | None, subset: str, port: int) -> bool:
    """Unhealthy endpoints go to Envoy unless outlier detection keeps a minimum of healthy
    hosts: Envoy's panic mode would then route to them (istiod's supportsUnhealthyEndpoints)."""
    policy = cluster_policy(rule, subset, port)
    outlier = policy.outlier_detection if policy is not None else None
    return outlier is None or outlier.min_health_percent == 0


def eds_cluster_names(clusters: Iterable[cluster_pb2.Cluster]) -> list[str]:
    return [c.eds_cluster_config.service_name for c in clusters
            if c.type == cluster_pb2.Cluster.EDS]
