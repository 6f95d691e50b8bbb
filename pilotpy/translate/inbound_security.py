"""What security adds to a sidecar's inbound chains, in one place, so authentication and
authorization slot in where istiod puts them (listener_builder.go buildHTTPConnectionManager,
buildInboundNetworkFilters):

- HTTP chains: the connection manager's filters run `http_filters` first, in istiod's order
  (CUSTOM ext_authz, `envoy.filters.http.jwt_authn`, `envoy.filters.http.rbac`), then
  grpc_stats, fault, CORS and the router (pilotpy/translate/filters.py);
- TCP chains: `network_filters` (`envoy.filters.network.rbac`) before tcp_proxy.

The same filters go on every inbound chain of the proxy, the passthrough chains included:
policies name ports themselves (`destination.port`). Who the caller is reaches them through
the connection: chains terminating mesh mTLS validate the client certificate, so its SPIFFE
id is the connection's principal (pilotpy/translate/mtls.py); plaintext chains carry none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotpy.problems import Problem
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext


@dataclass(frozen=True, slots=True)
class InboundSecurity:
    http_filters: tuple[hcm_pb2.HttpFilter, ...] = ()
    network_filters: tuple[lc.Filter, ...] = ()
    problems: tuple[Problem, ...] = field(default=())


NO_INBOUND_SECURITY = InboundSecurity()


def inbound_security(push: PushContext, view: ProxyView) -> InboundSecurity:
    """The filters the policies selecting this workload add to its inbound chains (none
    yet: RequestAuthentication and AuthorizationPolicy come here)."""
    del push, view
    return NO_INBOUND_SECURITY
