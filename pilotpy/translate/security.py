"""What a proxy's inbound (sidecar) and gateway chains enforce: AuthorizationPolicy as RBAC
filters (translate/authz) and RequestAuthentication as jwt_authn (translate/jwt_authn), in
istiod's order (listener_builder.go buildHTTPConnectionManager, networkfilter.go
buildCompleteNetworkFilters):

- HTTP connection managers: the CUSTOM filters (RBAC selecting requests for ext_authz),
  `envoy.filters.http.jwt_authn`, then the RBAC filters (AUDIT, DENY, ALLOW), before
  pilotpy's usual filters and the router;
- TCP chains: the CUSTOM filters of gRPC providers, then the network RBAC filters, before
  `tcp_proxy`.

Sidecars' outbound chains get none (policies protect the workload they select)."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotpy.problems import Problem
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext
from pilotpy.translate.authz.builder import authorization_filters
from pilotpy.translate.authz.ext_authz import resolve as resolve_provider
from pilotpy.translate.authz.trust_domain import TrustDomains
from pilotpy.translate.clusters import AnyCluster
from pilotpy.translate.jwt_authn import jwt_authn


@dataclass(frozen=True, slots=True)
class SecurityFilters:
    http: tuple[hcm_pb2.HttpFilter, ...] = ()
    tcp: tuple[lc.Filter, ...] = ()
    # Clusters the JWT providers fetch keys through; added where the proxy lacks them.
    clusters: tuple[cluster_pb2.Cluster, ...] = ()
    problems: tuple[Problem, ...] = ()

    def with_clusters(self, clusters: list[AnyCluster]) -> list[AnyCluster]:
        """`clusters` plus the JWKS clusters not among them (after them)."""
        names = {c.name for c in clusters}
        return [*clusters, *(c for c in self.clusters if c.name not in names)]


NO_SECURITY = SecurityFilters()


def security_filters(push: PushContext, view: ProxyView) -> SecurityFilters:
    mesh = push.mesh
    policies = push.authorization.for_workload(view.namespace, view.labels)
    requests = push.request_authentication.for_workload(view.namespace, view.labels)
    if not policies and not requests:
        return NO_SECURITY
    authz = authorization_filters(
        policies, TrustDomains((mesh.trust_domain, *mesh.trust_domain_aliases)),
        lambda provider: resolve_provider(push, provider))
    jwt = jwt_authn(requests, mesh, clear_route_cache=view.proxy.is_router)
    http = [*authz.http_custom, *([jwt.filter] if jwt.filter else []), *authz.http]
    return SecurityFilters(tuple(http), authz.tcp, jwt.jwks_clusters,
                           (*authz.problems, *jwt.problems))
