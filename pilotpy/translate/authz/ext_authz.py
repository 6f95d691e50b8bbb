"""AuthorizationPolicy CUSTOM: Envoy's ext_authz filters for meshConfig's external
authorization providers (istiod's pilot/pkg/security/authz/builder/extauthz.go).

A provider's policies become RBAC *shadow* rules (stat prefix `istio_ext_authz_`) whose
matching policy's name (`istio-ext-authz-<provider>-ns[...]-policy[...]-rule[...]`) the RBAC
filter writes to its metadata; the ext_authz filter right after it runs only when that name
starts with `istio-ext-authz-<provider>`, so only the requests the rules select are sent to
the provider. HTTP providers act on HTTP chains only (istiod leaves TCP chains without them);
gRPC providers on TCP chains too, through `envoy.filters.network.ext_authz`.

The provider's service is looked up like istiod's LookupCluster (`host`, unique across
namespaces, or `namespace/host`); its cluster is `outbound|<port>||<host>`. A provider that
cannot be used (unknown name, its service not found) turns its policies into DENY rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as http_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as network_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import metadata_pb2, string_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import duration_pb2

from pilotpy.model.extension_providers import GRPC, ExtAuthzProvider
from pilotpy.push import PushContext
from pilotpy.translate import pb
from pilotpy.translate.names import outbound_cluster_name

HTTP_EXT_AUTHZ = "envoy.filters.http.ext_authz"
NETWORK_EXT_AUTHZ = "envoy.filters.network.ext_authz"
HTTP_RBAC = "envoy.filters.http.rbac"
NETWORK_RBAC = "envoy.filters.network.rbac"
EXT_AUTHZ_PREFIX = "istio-ext-authz"
SHADOW_STAT_PREFIX = "istio_ext_authz_"
SHADOW_POLICY_ID = "shadow_effective_policy_id"
DEFAULT_TIMEOUT_SECONDS = 600
TCP_STAT_PREFIX = "tcp."


@dataclass(frozen=True, slots=True)
class ExtAuthzFilters:
    """A usable provider's filters: HTTP always, TCP for gRPC providers."""

    http: hcm_pb2.HttpFilter
    tcp: lc.Filter | None


def lookup_cluster(push: PushContext, service: str, port: int) -> tuple[str, str] | str:
    """(hostname, cluster) of a provider's service, or why it is not found."""
    namespace, slash, host = service.rpartition("/")
    found = {s.namespace: s for s in push.services.matching(host if slash else service)}
    if slash:
        match = found.get(namespace)
        if match is None:
            return f"could not find service {service} in the service registry"
    elif len(found) > 1:
        return (f"found {service} in multiple namespaces {sorted(found)}, specify the "
                "namespace explicitly in the format of <Namespace>/<Hostname>")
    elif not found:
        return f"could not find service {service} in the service registry"
    else:
        (match,) = found.values()
    return match.hostname, outbound_cluster_name(port, "", match.hostname)


def _list_matcher(headers: Sequence[str]) -> string_pb2.ListStringMatcher | None:
    """Header names: `x*` a prefix, `*x` a suffix, else exact; case-insensitive."""
    if not headers:
        return None
    out = string_pb2.ListStringMatcher()
    for header in headers:
        if header.startswith("*"):
            out.patterns.add(suffix=header[1:], ignore_case=True)
        elif header.endswith("*"):
            out.patterns.add(prefix=header[:-1], ignore_case=True)
        else:
            out.patterns.add(exact=header, ignore_case=True)
    return out


def enabled_metadata(filter_name: str, provider: str) -> metadata_pb2.MetadataMatcher:
    """The RBAC filter's shadow effective policy is one of the provider's."""
    out = metadata_pb2.MetadataMatcher(filter=filter_name)
    out.path.add(key=SHADOW_STAT_PREFIX + SHADOW_POLICY_ID)
    out.value.string_match.prefix = f"{EXT_AUTHZ_PREFIX}-{provider}"
    return out


def _timeout(provider: ExtAuthzProvider) -> duration_pb2.Duration:
    return (pb.duration(provider.timeout_ns) if provider.timeout_ns is not None
            else pb.seconds(DEFAULT_TIMEOUT_SECONDS))


def _common(config: http_pb2.ExtAuthz, provider: ExtAuthzProvider) -> None:
    config.failure_mode_allow = provider.fail_open
    config.transport_api_version = config_source_pb2.V3
    config.filter_enabled_metadata.CopyFrom(enabled_metadata(HTTP_RBAC, provider.name))
    if provider.status_on_error is not None:
        config.status_on_error.CopyFrom(http_status_pb2.HttpStatus(
            code=provider.status_on_error))
    if provider.body is not None:
        config.with_request_body.CopyFrom(http_pb2.BufferSettings(
            max_request_bytes=provider.body.max_request_bytes,
            allow_partial_message=provider.body.allow_partial_message,
            pack_as_bytes=provider.body.pack_as_bytes))


def _http_service(provider: ExtAuthzProvider, hostname: str, cluster: str
                  ) -> http_pb2.ExtAuthz:
    service = http_pb2.HttpService(path_prefix=provider.path_prefix)
    service.server_uri.CopyFrom(http_uri_pb2.HttpUri(
        uri=f"http://{hostname}", cluster=cluster, timeout=_timeout(provider)))
    for key, value in provider.additional_headers:
        service.authorization_request.headers_to_add.add(key=key, value=value)
    upstream = _list_matcher(provider.headers_to_upstream_on_allow)
    on_deny = _list_matcher(provider.headers_to_downstream_on_deny)
    on_allow = _list_matcher(provider.headers_to_downstream_on_allow)
    if upstream or on_deny or on_allow:
        response = service.authorization_response
        for target, matcher in ((response.allowed_upstream_headers, upstream),
                                (response.allowed_client_headers, on_deny),
                                (response.allowed_client_headers_on_success, on_allow)):
            if matcher is not None:
                target.CopyFrom(matcher)
    config = http_pb2.ExtAuthz(http_service=service)
    _common(config, provider)
    allowed = (_list_matcher(provider.include_request_headers)
               or _list_matcher(provider.include_headers))
    if allowed is not None:
        config.allowed_headers.CopyFrom(allowed)
    return config


def ext_authz_filters(provider: ExtAuthzProvider, hostname: str, cluster: str
                      ) -> ExtAuthzFilters:
    if provider.kind != GRPC:
        return ExtAuthzFilters(hcm_pb2.HttpFilter(name=HTTP_EXT_AUTHZ, typed_config=pb.typed(
            _http_service(provider, hostname, cluster))), None)
    grpc = grpc_service_pb2.GrpcService(timeout=_timeout(provider))
    grpc.envoy_grpc.cluster_name = cluster
    grpc.envoy_grpc.authority = hostname
    http = http_pb2.ExtAuthz(grpc_service=grpc)
    _common(http, provider)
    tcp = network_pb2.ExtAuthz(stat_prefix=TCP_STAT_PREFIX, grpc_service=grpc,
                               failure_mode_allow=provider.fail_open,
                               transport_api_version=config_source_pb2.V3)
    tcp.filter_enabled_metadata.CopyFrom(enabled_metadata(NETWORK_RBAC, provider.name))
    return ExtAuthzFilters(
        hcm_pb2.HttpFilter(name=HTTP_EXT_AUTHZ, typed_config=pb.typed(http)),
        lc.Filter(name=NETWORK_EXT_AUTHZ, typed_config=pb.typed(tcp)))


def resolve(push: PushContext, name: str) -> ExtAuthzFilters | str:
    """The filters of provider `name`, or why istiod could not use it."""
    provider = push.mesh.ext_authz_provider(name)
    if provider is None:
        known = sorted(p.name for p in push.mesh.ext_authz_providers)
        return (f"meshConfig extensionProviders has no external authorization provider "
                f"{name!r} (available: {known})")
    found = lookup_cluster(push, provider.service, provider.port)
    if isinstance(found, str):
        return f"provider {name!r}: {found}"
    return ext_authz_filters(provider, *found)
