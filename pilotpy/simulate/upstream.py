"""Where a cluster sends a call: its endpoints from EDS (by `eds_cluster_config.service_name`,
else the cluster name), from its inline `load_assignment` (STATIC and DNS clusters, whose
addresses may be hostnames the proxy resolves), or, for ORIGINAL_DST, the address the
client dialled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilotpy.simulate.result import Destination, Endpoint

DISCOVERY_TYPES = {0: "STATIC", 1: "STRICT_DNS", 2: "LOGICAL_DNS", 3: "EDS", 4: "ORIGINAL_DST"}


def _endpoints(assignment: Any) -> tuple[Endpoint, ...]:
    out = []
    for locality in assignment.endpoints:
        for lb_endpoint in locality.lb_endpoints:
            socket = lb_endpoint.endpoint.address.socket_address
            weight = (int(lb_endpoint.load_balancing_weight.value)
                      if lb_endpoint.HasField("load_balancing_weight") else 1)
            out.append(Endpoint(str(socket.address), int(socket.port_value), weight))
    return tuple(out)


def destination(name: str, weight: int | None, clusters: Mapping[str, Any],
                assignments: Mapping[str, Any], original: tuple[str, int]) -> Destination:
    cluster = clusters.get(name)
    if cluster is None:
        return Destination(name, weight, found=False)
    discovery = DISCOVERY_TYPES.get(int(cluster.type), str(cluster.type))
    if discovery == "ORIGINAL_DST":
        endpoints: tuple[Endpoint, ...] = (Endpoint(*original),)
    elif discovery == "EDS":
        service = cluster.eds_cluster_config.service_name or name
        assignment = assignments.get(service)
        endpoints = _endpoints(assignment) if assignment is not None else ()
    else:
        endpoints = _endpoints(cluster.load_assignment)
    return Destination(name, weight, True, discovery, endpoints)
