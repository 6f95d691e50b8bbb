"""The HTTP filters gRPC accepts, as istiod's grpcgen writes them: fault injection on
clients (for VirtualService faults), then the router, which must be last."""

from __future__ import annotations

from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from pilotpy.translate import pb
from pilotpy.translate.routes import FAULT_FILTER

ROUTER_FILTER = "envoy.filters.http.router"


def router_filter() -> hcm.HttpFilter:
    return hcm.HttpFilter(name=ROUTER_FILTER, typed_config=pb.typed(router_pb2.Router()))


def client_filters() -> list[hcm.HttpFilter]:
    """A client listener's filters; gRPC rejects a filter it does not know (grpc_stats,
    cors) and a fault filter on a server."""
    return [hcm.HttpFilter(name=FAULT_FILTER, typed_config=pb.typed(fault_pb2.HTTPFault())),
            router_filter()]
