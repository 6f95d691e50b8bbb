"""VirtualService HTTP routes -> Envoy routes, shared by gateways and sidecars
(istiod's pilot/pkg/networking/core/route/route.go)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2

from pilotpy.model.common import Destination, HeaderOperations, Headers, StringMatch
from pilotpy.model.destinationrule import ConsistentHash
from pilotpy.model.ingress import uses_ingress_semantics
from pilotpy.model.labels import Empty, selects
from pilotpy.model.virtualservice import (
    GRPC_STATUS,
    CorsPolicy,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatch,
    HTTPRedirect,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualService,
)
from pilotpy.proxy import ProxyView
from pilotpy.push import PushContext, Service
from pilotpy.translate import pb
from pilotpy.translate.names import outbound_cluster_name, parse_outbound_cluster_name
from pilotpy.translate.policy import consistent_hash_for
from pilotpy.translate.retry import set_retry_policy

MAX_DIRECT_RESPONSE_BODY = 1024 * 1024
FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
REDIRECT_CODES = {
    0: rc.RedirectAction.MOVED_PERMANENTLY,
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


@dataclass(frozen=True, slots=True)
class RouteOptions:
    push: PushContext
    proxy: ProxyView
    listen_port: int  # the Gateway server port (not the target port) or the sidecar port
    gateway_names: frozenset[str]  # `ns/name` of the server's gateway, or {"mesh"}
    is_tls: bool = False

    def service(self, hostname: str, vs: VirtualService) -> Service | None:
        return self.push.service(hostname, self.proxy.namespace, vs.meta.namespace)


def config_path(vs: VirtualService) -> str:
    return (f"/apis/networking.istio.io/v1/namespaces/{vs.meta.namespace}"
            f"/virtual-service/{vs.meta.name}")


# -- matches ---------------------------------------------------------------------------------


def string_matcher(match: StringMatch) -> string_pb2.StringMatcher:
    if match.kind == "exact":
        return string_pb2.StringMatcher(exact=match.value)
    if match.kind == "prefix":
        return string_pb2.StringMatcher(prefix=match.value)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.value))


def header_matcher(name: str, match: StringMatch) -> rc.HeaderMatcher:
    if match.kind == "present":
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=string_matcher(match))


# Envoy's constraint on path_separated_prefix; `/` and the rare prefix Envoy would reject
# stay plain prefixes (istiod would be NACKed on the latter).
_SEPARATED_PREFIX = re.compile(r"^[^?#]+[^?#/]$")


def route_match(match: HTTPMatch | None, *, path_separated: bool = False) -> rc.RouteMatch:
    """`path_separated`: prefixes other than `/` match whole path segments (istiod's
    Ingress route semantics), the trailing `/` trimmed."""
    out = rc.RouteMatch(prefix="/")
    if match is None:
        return out  # istiod's TranslateRouteMatch(nil): no case_sensitive either
    headers = [header_matcher(name, m) for name, m in match.headers.items()]
    for name, m in match.without_headers.items():
        matcher = header_matcher(name, m)
        matcher.invert_match = True
        if m.kind != "present":
            # Envoy would otherwise never match a missing header against an inverted matcher.
            matcher.treat_missing_header_as_empty = True
        headers.append(matcher)
    headers.sort(key=lambda h: h.name)
    uri = match.uri
    if uri is not None:
        if uri.kind == "exact":
            out.path = uri.value
        elif uri.kind == "prefix" and path_separated and _SEPARATED_PREFIX.match(
                uri.value.removesuffix("/")):
            out.path_separated_prefix = uri.value.removesuffix("/")
        elif uri.kind == "prefix":
            out.prefix = uri.value
        elif uri.kind == "regex":
            out.safe_regex.regex = uri.value
    out.case_sensitive.value = not match.ignore_uri_case
    for pseudo, pseudo_match in ((":method", match.method), (":authority", match.authority),
                                 (":scheme", match.scheme)):
        if pseudo_match is not None:
            headers.append(header_matcher(pseudo, pseudo_match))
    out.headers.extend(headers)
    for name, m in sorted(match.query_params.items()):
        if m.kind == "present":
            out.query_parameters.add(name=name, present_match=True)
        else:
            out.query_parameters.add(name=name, string_match=string_matcher(m))
    return out


def is_catch_all(route: rc.Route) -> bool:
    match = route.match
    which = match.WhichOneof("path_specifier")
    catch_all = ((which == "prefix" and match.prefix == "/")
                 or (which == "path_separated_prefix" and match.path_separated_prefix == "/")
                 or (which == "safe_regex" and match.safe_regex.regex == ".*"))
    return catch_all and not match.headers and not match.query_parameters and (
        not match.dynamic_metadata)


def sorted_routes(routes: list[rc.Route]) -> list[rc.Route]:
    """Catch-all routes last, others in order (istiod's SortVHostRoutes)."""
    catch_all = [is_catch_all(r) for r in routes]
    return ([r for r, last in zip(routes, catch_all, strict=True) if not last]
            + [r for r, last in zip(routes, catch_all, strict=True) if last])


def _applies_to_proxy(match: HTTPMatch | None, opts: RouteOptions) -> bool:
    """istiod's sourceMatchHTTP: `gateways`, else `sourceLabels` and `sourceNamespace`."""
    if match is None:
        return True
    if match.gateways:
        return any(g in opts.gateway_names for g in match.gateways)
    labels = opts.proxy.labels
    if not selects(match.source_labels, labels, empty=Empty.ALL):
        return False
    return not match.source_namespace or match.source_namespace == opts.proxy.namespace


# -- headers ---------------------------------------------------------------------------------


def _is_authority(name: str) -> bool:
    return name.lower() in (":authority", "host")


def _header_options(values: Mapping[str, str], append: bool) -> list[base_pb2.HeaderValueOption]:
    action = (base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD if append
              else base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v),
                                   append_action=action)
        for k, v in sorted(values.items())
        if not k.startswith(":") and k.lower() != "host"
    ]


def _authority_of(ops: HeaderOperations) -> str:
    """A set/add of `:authority` or `host` becomes a host rewrite; `set` wins over `add`."""
    for values in (ops.set, ops.add):
        for key, value in values.items():
            if _is_authority(key):
                return value
    return ""


@dataclass(slots=True)
class _HeaderOps:
    request_add: list[base_pb2.HeaderValueOption]
    request_remove: list[str]
    response_add: list[base_pb2.HeaderValueOption]
    response_remove: list[str]
    authority: str


def _translate_headers(headers: Headers) -> _HeaderOps:
    def removable(names: Iterable[str]) -> list[str]:
        return [n for n in names if not n.startswith(":") and n.lower() != "host"]

    req, resp = headers.request, headers.response
    return _HeaderOps(
        request_add=_header_options(req.set, False) + _header_options(req.add, True),
        request_remove=removable(req.remove),
        response_add=_header_options(resp.set, False) + _header_options(resp.add, True),
        response_remove=removable(resp.remove),
        authority=_authority_of(req),
    )


def _apply_header_operations(target: Any, ops: _HeaderOps) -> None:
    """A Route and a weighted cluster carry the same four header lists."""
    target.request_headers_to_add.extend(ops.request_add)
    target.request_headers_to_remove.extend(ops.request_remove)
    target.response_headers_to_add.extend(ops.response_add)
    target.response_headers_to_remove.extend(ops.response_remove)


# -- actions ---------------------------------------------------------------------------------


def destination_cluster(destination: Destination, service: Service | None,
                        listen_port: int) -> str:
    """istiod's GetDestinationCluster: explicit port, else the service's only port, else the
    listener port; ExternalName aliases point at the external host."""
    hostname = destination.host
    if service is not None and service.external_name:
        hostname = service.external_name
    port = listen_port
    if destination.port is not None:
        port = destination.port
    elif service is not None and len(service.ports) == 1:
        port = service.ports[0].number
    return outbound_cluster_name(port, destination.subset, hostname)


def hash_policy(consistent: ConsistentHash) -> rc.RouteAction.HashPolicy | None:
    if consistent.http_header_name:
        return rc.RouteAction.HashPolicy(
            header=rc.RouteAction.HashPolicy.Header(header_name=consistent.http_header_name))
    if consistent.http_cookie is not None:
        cookie = consistent.http_cookie
        out = rc.RouteAction.HashPolicy.Cookie(name=cookie.name, path=cookie.path)
        if cookie.ttl_ns is not None:
            out.ttl.CopyFrom(pb.duration(cookie.ttl_ns))
        for attribute in cookie.attributes:
            out.attributes.add(name=attribute.name, value=attribute.value)
        return rc.RouteAction.HashPolicy(cookie=out)
    if consistent.use_source_ip:
        return rc.RouteAction.HashPolicy(
            connection_properties=rc.RouteAction.HashPolicy.ConnectionProperties(source_ip=True))
    if consistent.http_query_parameter_name:
        return rc.RouteAction.HashPolicy(query_parameter=rc.RouteAction.HashPolicy.QueryParameter(
            name=consistent.http_query_parameter_name))
    return None


def _percent_million(value: float) -> percent_pb2.FractionalPercent:
    # Truncated, as istiod's uint32(p * 10000): 12.34567% is 123456 per million.
    return percent_pb2.FractionalPercent(numerator=int(value * 10000),
                                         denominator=percent_pb2.FractionalPercent.MILLION)


def _percent_hundred(value: int) -> percent_pb2.FractionalPercent:
    return percent_pb2.FractionalPercent(numerator=value,
                                         denominator=percent_pb2.FractionalPercent.HUNDRED)


def _mirror_policy(cluster: str, fraction: percent_pb2.FractionalPercent
                   ) -> rc.RouteAction.RequestMirrorPolicy:
    return rc.RouteAction.RequestMirrorPolicy(
        cluster=cluster,
        runtime_fraction=base_pb2.RuntimeFractionalPercent(default_value=fraction),
        trace_sampled=pb.boolean(False),
    )


def _route_mirror_fraction(route: HTTPRoute) -> percent_pb2.FractionalPercent | None:
    """`mirrorPercentage`, else the legacy integer `mirrorPercent`, else 100%; 0 disables."""
    if route.mirror_percentage is not None:
        return _percent_million(route.mirror_percentage) if route.mirror_percentage > 0 else None
    if route.mirror_percent is not None:
        return _percent_hundred(route.mirror_percent) if route.mirror_percent > 0 else None
    return _percent_hundred(100)


def _apply_destinations(out: rc.Route, action: rc.RouteAction, route: HTTPRoute,
                        vs: VirtualService, opts: RouteOptions) -> None:
    consistent_hash = False
    destinations = [d for d in route.route if d.weight > 0] if len(route.route) > 1 else list(
        route.route)
    if len(destinations) == 1:
        # One destination left after dropping weight-0 ones: a plain cluster, where istiod
        # keeps a one-entry weighted_clusters (docs/translation.md#differences-from-istiod).
        dest = destinations[0]
        service = opts.service(dest.destination.host, vs)
        action.cluster = destination_cluster(dest.destination, service, opts.listen_port)
        if dest.headers is not None:
            ops = _translate_headers(dest.headers)
            _apply_header_operations(out, ops)
            if ops.authority and not action.HasField("host_rewrite_literal"):
                action.host_rewrite_literal = ops.authority
        consistent = _hash_for(dest, service, opts)
        if consistent is not None:
            policy = hash_policy(consistent)
            if policy is not None:
                action.hash_policy.append(policy)
            consistent_hash = True
    else:
        for dest in destinations:
            service = opts.service(dest.destination.host, vs)
            weight = action.weighted_clusters.clusters.add(
                name=destination_cluster(dest.destination, service, opts.listen_port),
                weight=pb.uint32(dest.weight))
            if dest.headers is not None:
                ops = _translate_headers(dest.headers)
                _apply_header_operations(weight, ops)
                if ops.authority:
                    weight.host_rewrite_literal = ops.authority
            consistent = _hash_for(dest, service, opts)
            policy = hash_policy(consistent) if consistent is not None else None
            if policy is not None:
                action.hash_policy.append(policy)
    retries = route.retries if route.retries is not None else (
        opts.push.mesh.default_http_retry_policy)
    set_retry_policy(action, retries, consistent_hash=consistent_hash)


def _hash_for(dest: HTTPRouteDestination, service: Service | None,
              opts: RouteOptions) -> ConsistentHash | None:
    if service is None:
        return None
    rule = opts.push.destination_rule(opts.proxy.namespace, service)
    if rule is None:
        return None
    return consistent_hash_for(rule, dest.destination.subset, dest.destination.port)


def _route_action(out: rc.Route, route: HTTPRoute, vs: VirtualService, opts: RouteOptions,
                  authority: str) -> None:
    action = out.route
    timeout = pb.duration(route.timeout_ns or 0)
    action.timeout.CopyFrom(timeout)
    # A request's grpc-timeout header, capped by the route timeout (0 = uncapped), through
    # the deprecated max_grpc_timeout as istiod does: any `max_stream_duration` on a route,
    # even `grpc_timeout_header_max` alone, puts Envoy's router in its "new timeouts" mode,
    # which ignores `timeout`, so a VirtualService timeout would never fire.
    action.max_grpc_timeout.CopyFrom(timeout)
    rewrite = route.rewrite
    if rewrite is not None:
        if rewrite.uri_regex_match:
            action.regex_rewrite.pattern.regex = rewrite.uri_regex_match
            action.regex_rewrite.substitution = rewrite.uri_regex_rewrite
        elif rewrite.uri:
            action.prefix_rewrite = rewrite.uri
        if rewrite.authority:
            authority = rewrite.authority
    if authority:
        action.host_rewrite_literal = authority
    if route.mirror is not None:
        fraction = _route_mirror_fraction(route)
        if fraction is not None:
            cluster = destination_cluster(route.mirror, opts.service(route.mirror.host, vs),
                                          opts.listen_port)
            action.request_mirror_policies.append(_mirror_policy(cluster, fraction))
    for mirror in route.mirrors:
        fraction = (_percent_hundred(100) if mirror.percentage is None
                    else _percent_million(mirror.percentage) if mirror.percentage > 0 else None)
        if fraction is not None:
            cluster = destination_cluster(mirror.destination,
                                          opts.service(mirror.destination.host, vs),
                                          opts.listen_port)
            action.request_mirror_policies.append(_mirror_policy(cluster, fraction))
    _apply_destinations(out, action, route, vs, opts)


def _redirect(out: rc.Route, redirect: HTTPRedirect, listen_port: int, is_tls: bool) -> None:
    action = out.redirect
    action.host_redirect = redirect.authority
    if redirect.prefix_rewrite:
        action.prefix_rewrite = redirect.prefix_rewrite
    else:
        # Set even when empty, as istiod does; Envoy keeps the path for an empty one.
        action.path_redirect = redirect.uri
    if redirect.scheme:
        action.scheme_redirect = redirect.scheme
    if redirect.port or redirect.derive_port:
        port = redirect.port
        if redirect.derive_port == "FROM_REQUEST_PORT":
            port = listen_port
        scheme = redirect.scheme or ("https" if is_tls else "http")
        if (port == 80 and scheme == "http") or (port == 443 and scheme == "https"):
            port = 0
        if port:
            action.port_redirect = port
    action.response_code = REDIRECT_CODES[redirect.redirect_code]


def _direct_response(out: rc.Route, direct: HTTPDirectResponse) -> None:
    out.direct_response.status = direct.status
    if direct.body_string is not None:
        out.direct_response.body.inline_string = direct.body_string
    elif direct.body_bytes is not None:
        out.direct_response.body.inline_bytes = direct.body_bytes


def fault_config(fault: HTTPFaultInjection) -> fault_pb2.HTTPFault | None:
    out = fault_pb2.HTTPFault()
    if fault.delay is not None:
        delay = common_fault_pb2.FaultDelay(fixed_delay=pb.duration(fault.delay.fixed_delay_ns))
        if fault.delay.percentage is not None:
            delay.percentage.CopyFrom(_percent_million(fault.delay.percentage))
        else:
            delay.percentage.CopyFrom(_percent_hundred(fault.delay.percent or 0))
        out.delay.CopyFrom(delay)
    if fault.abort is not None:
        abort = fault_pb2.FaultAbort()
        if fault.abort.percentage is not None:
            abort.percentage.CopyFrom(_percent_million(fault.abort.percentage))
        if fault.abort.http_status is not None:
            abort.http_status = fault.abort.http_status
        elif fault.abort.grpc_status is not None:
            abort.grpc_status = GRPC_STATUS[fault.abort.grpc_status]
        out.abort.CopyFrom(abort)
    if not out.HasField("delay") and not out.HasField("abort"):
        return None
    return out


def cors_config(cors: CorsPolicy) -> cors_pb2.CorsPolicy:
    out = cors_pb2.CorsPolicy(
        allow_origin_string_match=[string_matcher(o) for o in cors.allow_origins],
        allow_methods=",".join(cors.allow_methods),
        allow_headers=",".join(cors.allow_headers),
        expose_headers=",".join(cors.expose_headers),
        filter_enabled=base_pb2.RuntimeFractionalPercent(default_value=_percent_hundred(100)),
        forward_not_matching_preflights=pb.boolean(cors.unmatched_preflights != "IGNORE"),
    )
    if cors.max_age_ns is not None:
        out.max_age = str(cors.max_age_ns // 1_000_000_000)
    if cors.allow_credentials is not None:
        out.allow_credentials.value = cors.allow_credentials
    return out


def route_operation(out: rc.Route, vs_name: str, port: int) -> str:
    """istiod's GetRouteOperation: `<host>:<port><path>` for one cluster, else the VS name."""
    match = out.match
    which = match.WhichOneof("path_specifier")
    path = "/*"
    if which == "prefix":
        path = match.prefix + "*"
    elif which == "path":
        path = match.path
    elif which == "safe_regex":
        path = match.safe_regex.regex
    if out.WhichOneof("action") == "route" and out.route.WhichOneof("cluster_specifier") == (
            "cluster"):
        parsed = parse_outbound_cluster_name(out.route.cluster)
        if parsed is not None:
            cluster_port, _, hostname = parsed
            return f"{hostname}:{cluster_port}{path}"
    return f"{vs_name}:{port}{path}"


def translate_route(vs: VirtualService, route: HTTPRoute, match: HTTPMatch | None,
                    opts: RouteOptions) -> rc.Route | None:
    """One Envoy route for one `http[]` rule and one of its matches; None when the match
    does not apply to this listener port or proxy."""
    if match is not None and match.port and match.port != opts.listen_port:
        return None
    if not _applies_to_proxy(match, opts):
        return None
    name = route.name
    if match is not None and match.name:
        name = f"{name}.{match.name}"
    out = rc.Route(name=name, match=route_match(
        match, path_separated=uses_ingress_semantics(vs.meta)))
    out.metadata.filter_metadata["istio"].fields["config"].string_value = config_path(vs)
    if match is not None and match.stat_prefix:
        out.stat_prefix = match.stat_prefix
    authority = ""
    if route.headers is not None:
        ops = _translate_headers(route.headers)
        _apply_header_operations(out, ops)
        authority = ops.authority
    if route.redirect is not None:
        _redirect(out, route.redirect, opts.listen_port, opts.is_tls)
    elif route.direct_response is not None:
        _direct_response(out, route.direct_response)
    else:
        _route_action(out, route, vs, opts, authority)
    out.decorator.operation = route_operation(out, vs.meta.name, opts.listen_port)
    if route.fault is not None:
        fault = fault_config(route.fault)
        if fault is not None:
            out.typed_per_filter_config[FAULT_FILTER].CopyFrom(pb.typed(fault))
    if route.cors_policy is not None:
        out.typed_per_filter_config[CORS_FILTER].CopyFrom(pb.typed(cors_config(route.cors_policy)))
    return out


def build_http_routes(vs: VirtualService, opts: RouteOptions) -> list[rc.Route]:
    """istiod's BuildHTTPRoutesForVirtualService: one route per rule and match, in order,
    stopping after a catch-all (nothing after it could match). Empty when no rule applies."""
    out: list[rc.Route] = []
    for route in vs.http:
        if not route.match:
            translated = translate_route(vs, route, None, opts)
            if translated is not None:
                out.append(translated)
            break
        caught_all = False
        for match in route.match:
            translated = translate_route(vs, route, match, opts)
            if translated is None:
                continue
            out.append(translated)
            if is_catch_all(translated):
                caught_all = True
                break
        if caught_all:
            break
    return out
