"""RequestAuthentication as Envoy's `envoy.filters.http.jwt_authn` (istiod's
pilot/pkg/security/authn policy_applier.go convertToEnvoyJwtConfig).

Every JWT rule of the policies that apply to a workload is one provider `origins-<i>`
(rules sorted by issuer). A request without a token passes (AuthorizationPolicy decides what
an anonymous request may do); a request with a token no provider accepts gets 401. A verified
token's payload is written to the filter's metadata under `payload`, where
`requestPrincipals` and `request.auth.*` conditions read it.

Keys: an inline `jwks` is used as written (Istio's CRD allows only one of `jwks` and
`jwksUri`). A `jwksUri` is fetched by Envoy itself through
cluster `outbound|<port>||<host>` (istiod's PILOT_JWT_ENABLE_REMOTE_JWKS=envoy behaviour):
the mesh service's cluster when the proxy has it, else a cluster pilotpy adds for that
host and port (TLS for https, verified against the system CA bundle). istiod by default
fetches the keys itself and inlines them; pilotpy's translation does no I/O
(docs/translation.md#differences-from-istiod). A rule with neither (istiod would find the
keys through the issuer's OpenID discovery) gets a key nobody holds the private part of, so
its tokens are refused, and is reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, http_uri_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import empty_pb2

from pilotpy.mesh import MeshConfig
from pilotpy.model import hosts
from pilotpy.model.request_authentication import (
    JwksUri,
    JwtRule,
    RequestAuthentication,
    parse_jwks_uri,
)
from pilotpy.problems import Problem, Reason, Severity
from pilotpy.translate import pb
from pilotpy.translate.authz.matchers import JWT_FILTER, JWT_PAYLOAD
from pilotpy.translate.cluster_tls import SYSTEM_CA_BUNDLE
from pilotpy.translate.names import outbound_cluster_name
from pilotpy.translate.tls_files import tls_transport_socket, validation_context

DEFAULT_TIMEOUT_NS = 5_000_000_000
JWKS_CACHE_SECONDS = 5 * 60
DEFAULT_SPACE_DELIMITED = ("permission", "scope")
# istiod's PublicOnlyJwks: an RSA public key whose private key was discarded when it was
# made; no token verifies against it (fail closed when the keys are unknown). Written as
# istiod writes it (JSON indented by two spaces), so the filters compare equal.
PUBLIC_ONLY_JWKS = json.dumps({"keys": [{"kty": "RSA", "e": "AQAB", "n": (
    "0xObjM0UvS_oaazjpEYlAbwctEJ4L8pH3OuTb7qth7gUwqet-EzQB4dgFdvSdMgrLnSncQGRjpEYz3F3viIbH-"
    "3EN3TxSlPNviHxeOdyiBVfumN8dMxbLvVJUpfNOnvmMxJcl-8NNjAwcOjk4otSALaYgYYyOPyvKtgVdrQr-Fo"
    "ubWX4yrjxW-MJ2-7OBeepUUNOsVwGV23YX03sVkkyvY3otRflkBcY3_HKpBxJl9wk2GyOShN4_PNUF9-vwfnv"
    "OXMbCDX-w4PTef4geeb_GiT40YCKHTKMSPVanGRn5GExIWmki-mmqh94-mPTJyBR74ShspL3BxPZitDL574T1w"
)}]}, indent=2)


@dataclass(frozen=True, slots=True)
class JwtAuthn:
    """The filter (None when no policy applies) and the clusters its providers fetch keys
    through (added when the proxy lacks them)."""

    filter: hcm_pb2.HttpFilter | None = None
    jwks_clusters: tuple[cluster_pb2.Cluster, ...] = ()
    problems: tuple[Problem, ...] = ()


NO_JWT = JwtAuthn()


def space_delimited_claims(claims: Sequence[str]) -> list[str]:
    """`scope` and `permission` always; others added, sorted."""
    if not claims:
        return list(DEFAULT_SPACE_DELIMITED)
    return sorted(set(claims) | set(DEFAULT_SPACE_DELIMITED))


def jwks_cluster(uri: JwksUri, mesh: MeshConfig) -> cluster_pb2.Cluster:
    """A cluster for a JWKS server: its address as written (DNS resolved by the proxy), TLS
    with SNI and a certificate checked against the system CA bundle for https."""
    name = outbound_cluster_name(uri.port, "", uri.host)
    static = hosts.is_ip(uri.host)
    cluster = cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.STATIC if static else cluster_pb2.Cluster.LOGICAL_DNS,
        connect_timeout=pb.duration(mesh.connect_timeout_ns))
    if not static:
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
    endpoint = endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(
            address=uri.host, port_value=uri.port))))
    cluster.load_assignment.CopyFrom(endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])]))
    if uri.tls:
        context = tls_pb2.UpstreamTlsContext(sni="" if static else uri.host)
        context.common_tls_context.validation_context.CopyFrom(
            validation_context(SYSTEM_CA_BUNDLE, (uri.host,)))
        cluster.transport_socket.CopyFrom(tls_transport_socket(context))
    return cluster


def _local_jwks(text: str) -> jwt_pb2.JwtProvider:
    provider = jwt_pb2.JwtProvider()
    provider.local_jwks.CopyFrom(base_pb2.DataSource(inline_string=text))
    return provider


def _keys(rule: JwtRule, timeout_ns: int) -> tuple[jwt_pb2.JwtProvider, JwksUri | None]:
    """The provider with only its key source set, and the URI it fetches from."""
    if rule.jwks or not rule.jwks_uri:
        return _local_jwks(rule.jwks or PUBLIC_ONLY_JWKS), None
    uri = parse_jwks_uri(rule.jwks_uri)
    assert not isinstance(uri, str), "validated by the model"
    provider = jwt_pb2.JwtProvider()
    remote = provider.remote_jwks
    remote.http_uri.CopyFrom(http_uri_pb2.HttpUri(
        uri=rule.jwks_uri, cluster=outbound_cluster_name(uri.port, "", uri.host),
        timeout=pb.duration(timeout_ns)))
    remote.cache_duration.CopyFrom(pb.seconds(JWKS_CACHE_SECONDS))
    return provider, uri


def _provider(rule: JwtRule, *, clear_route_cache: bool
              ) -> tuple[jwt_pb2.JwtProvider, JwksUri | None]:
    provider, uri = _keys(rule, rule.timeout_ns or DEFAULT_TIMEOUT_NS)
    provider.issuer = rule.issuer
    provider.audiences.extend(rule.audiences)
    provider.forward = rule.forward_original_token
    provider.forward_payload_header = rule.output_payload_to_header
    provider.payload_in_metadata = JWT_PAYLOAD
    provider.normalize_payload_in_metadata.space_delimited_claims.extend(
        space_delimited_claims(rule.space_delimited_claims))
    provider.clear_route_cache = clear_route_cache
    for claim in rule.output_claim_to_headers:
        provider.claim_to_headers.add(header_name=claim.header, claim_name=claim.claim)
    for header in rule.from_headers:
        provider.from_headers.add(name=header.name, value_prefix=header.prefix)
    provider.from_params.extend(rule.from_params)
    provider.from_cookies.extend(rule.from_cookies)
    return provider, uri


def _named(name: str) -> jwt_pb2.JwtRequirement:
    return jwt_pb2.JwtRequirement(provider_name=name)


def _optional(name: str) -> jwt_pb2.JwtRequirement:
    """The provider's token when one is present, or none at all."""
    out = jwt_pb2.JwtRequirement()
    out.requires_any.requirements.extend([
        _named(name), jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty())])
    return out


def requirement(names: Sequence[str]) -> jwt_pb2.JwtRequirement:
    """One provider: its token or none. Several: any one provider's token, or for each
    provider its token or none (so every token present must be valid, and providers
    sharing a header still work)."""
    if len(names) == 1:
        return _optional(names[0])
    all_optional = jwt_pb2.JwtRequirement()
    all_optional.requires_all.requirements.extend(_optional(n) for n in names)
    out = jwt_pb2.JwtRequirement()
    out.requires_any.requirements.extend([*(_named(n) for n in names), all_optional])
    return out


def _issuer_only(policy: RequestAuthentication, index: int) -> Problem:
    return Problem(Reason.UNSUPPORTED,
                   "neither jwks nor jwksUri: istiod finds the keys through the issuer's "
                   "OpenID discovery, pilotpy does not; tokens of this issuer are refused",
                   policy.meta.key, f"spec.jwtRules[{index}]", Severity.ERROR)


def jwt_authn(policies: Sequence[RequestAuthentication], mesh: MeshConfig, *,
              clear_route_cache: bool) -> JwtAuthn:
    """`clear_route_cache` on gateways, so routes may match on claims set as headers."""
    rules: list[JwtRule] = []
    problems: list[Problem] = []
    for policy in policies:
        for index, rule in enumerate(policy.jwt_rules):
            rules.append(rule)
            if not rule.jwks and not rule.jwks_uri and not policy.stand_in:
                problems.append(_issuer_only(policy, index))
    if not rules:
        return JwtAuthn(problems=tuple(problems))
    rules.sort(key=lambda r: r.issuer)
    config = jwt_pb2.JwtAuthentication(bypass_cors_preflight=True)
    clusters: dict[str, cluster_pb2.Cluster] = {}
    names = []
    for index, rule in enumerate(rules):
        name = f"origins-{index}"
        provider, uri = _provider(rule, clear_route_cache=clear_route_cache)
        config.providers[name].CopyFrom(provider)
        names.append(name)
        if uri is not None:
            cluster = jwks_cluster(uri, mesh)
            clusters.setdefault(cluster.name, cluster)
    matched = config.rules.add(requires=requirement(names))
    matched.match.prefix = "/"
    return JwtAuthn(hcm_pb2.HttpFilter(name=JWT_FILTER, typed_config=pb.typed(config)),
                    tuple(clusters[n] for n in sorted(clusters)), tuple(problems))
