"""ClusterLoadAssignments as gRPC reads them: the EDS of sidecars, with every locality group
named (gRPC rejects a group without `locality`), each address once (gRPC rejects an
assignment naming one twice) and only IP addresses (gRPC resolves no hostnames from EDS)."""

from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_pb2

from pilotpy.model import hosts


def grpc_assignment(assignment: endpoint_pb2.ClusterLoadAssignment
                    ) -> endpoint_pb2.ClusterLoadAssignment:
    seen: set[tuple[str, int]] = set()
    for group in assignment.endpoints:
        group.locality.SetInParent()
        dropped = []
        for index, lb in enumerate(group.lb_endpoints):
            socket = lb.endpoint.address.socket_address
            key = (socket.address, socket.port_value)
            if key in seen or not hosts.is_ip(socket.address):
                dropped.append(index)
            seen.add(key)
        for index in reversed(dropped):
            del group.lb_endpoints[index]
        if dropped:
            group.load_balancing_weight.value = sum(
                lb.load_balancing_weight.value or 1 for lb in group.lb_endpoints)
    for group_index in reversed(range(len(assignment.endpoints))):
        if not assignment.endpoints[group_index].lb_endpoints:
            del assignment.endpoints[group_index]
    return assignment
