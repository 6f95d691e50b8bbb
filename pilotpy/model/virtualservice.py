"""VirtualService (networking.istio.io v1 / v1beta1 / v1alpha3), parsed and validated the way
istiod's validation webhook does (pkg/config/validation/virtualservice.go)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pilotpy.model import hosts
from pilotpy.model.common import (
    Destination,
    Headers,
    StringMatch,
    parse_destination,
    parse_export_to,
    parse_headers,
    parse_percent,
    parse_string_match,
    valid_header_name,
    valid_regex,
)
from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta, is_dns1123_label

RETRY_ON_POLICIES = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
    "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
    "envoy-ratelimited", "http3-post-connect-failure",
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})
CORS_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT",
                          "OPTIONS", "TRACE"})
GRPC_STATUS = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
# http.StatusText(i) != "" in Go: the codes net/http knows.
HTTP_STATUS_CODES = frozenset({
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303,
    304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413,
    414, 415, 416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502,
    503, 504, 505, 506, 507, 508, 510, 511,
})
MILLISECOND = 1_000_000


@dataclass(frozen=True, slots=True)
class HTTPMatch:
    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: Mapping[str, StringMatch] = field(default_factory=dict)
    without_headers: Mapping[str, StringMatch] = field(default_factory=dict)
    query_params: Mapping[str, StringMatch] = field(default_factory=dict)
    port: int = 0
    source_labels: Mapping[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    ignore_uri_case: bool = False
    source_namespace: str = ""
    stat_prefix: str = ""


@dataclass(frozen=True, slots=True)
class HTTPRouteDestination:
    destination: Destination
    weight: int = 0
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class HTTPRedirect:
    uri: str = ""
    authority: str = ""
    port: int = 0
    derive_port: str = ""  # "", FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT
    scheme: str = ""
    redirect_code: int = 0
    prefix_rewrite: str = ""


@dataclass(frozen=True, slots=True)
class HTTPDirectResponse:
    status: int
    body_string: str | None = None
    body_bytes: bytes | None = None


@dataclass(frozen=True, slots=True)
class HTTPRewrite:
    uri: str = ""
    authority: str = ""
    uri_regex_match: str = ""
    uri_regex_rewrite: str = ""


@dataclass(frozen=True, slots=True)
class HTTPRetry:
    attempts: int = 0
    per_try_timeout_ns: int | None = None
    retry_on: str = ""
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff_ns: int | None = None


@dataclass(frozen=True, slots=True)
class FaultDelay:
    fixed_delay_ns: int
    percentage: float | None = None
    percent: int | None = None  # deprecated integer percent


@dataclass(frozen=True, slots=True)
class FaultAbort:
    http_status: int | None = None
    grpc_status: str | None = None
    percentage: float | None = None


@dataclass(frozen=True, slots=True)
class HTTPFaultInjection:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True, slots=True)
class HTTPMirrorPolicy:
    destination: Destination
    percentage: float | None = None


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_ns: int | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: str = ""  # "", FORWARD, IGNORE


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    name: str = ""
    match: tuple[HTTPMatch, ...] = ()
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    rewrite: HTTPRewrite | None = None
    timeout_ns: int | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: tuple[HTTPMirrorPolicy, ...] = ()
    mirror_percent: int | None = None  # deprecated integer percent
    mirror_percentage: float | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class RouteDestination:
    destination: Destination
    weight: int = 0


@dataclass(frozen=True, slots=True)
class L4Match:
    destination_subnets: tuple[str, ...] = ()
    port: int = 0
    source_labels: Mapping[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    source_namespace: str = ""
    sni_hosts: tuple[str, ...] = ()  # TLS matches only


@dataclass(frozen=True, slots=True)
class TCPRoute:
    match: tuple[L4Match, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class TLSRoute:
    match: tuple[L4Match, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class VirtualService:
    meta: Meta
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    http: tuple[HTTPRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()
    tls: tuple[TLSRoute, ...] = ()
    export_to: tuple[str, ...] = ()


# -- parsing ---------------------------------------------------------------------------------


def _validate_gateway_names(f: Fields, key: str, names: tuple[str, ...]) -> None:
    for name in names:
        if name == "mesh":
            continue
        ns, slash, short = name.partition("/")
        if not slash:
            if hosts.validate_hostname(name, allow_wildcard=False):
                f.error(f"invalid gateway name {name!r}", key)
            continue
        if not ns or not short:
            f.error(f"gateway {name!r}: namespace and name cannot be empty", key)
        elif (ns != "." and not is_dns1123_label(ns)) or not is_dns1123_label(short):
            f.error(f"invalid gateway reference {name!r} (expected name, ./name or ns/name)", key)


def _parse_match_map(f: Fields, key: str, *, allow_present_regex: bool) -> dict[str, StringMatch]:
    out = {}
    for name, item in sorted(f.child_map(key).items()):
        if not name.startswith("@request.auth.claims") and not valid_header_name(name):
            f.error(f"invalid header name {name!r}", f"{key}.{name}")
        parsed = parse_string_match(item, allow_empty=True)
        if parsed is None:
            continue
        if parsed.kind == "prefix" and not parsed.value and not allow_present_regex:
            item.error("prefix must not be empty", "prefix")
            continue
        out[name] = parsed
    return out


def _parse_http_match(f: Fields) -> HTTPMatch:
    uri = parse_string_match(f.child("uri"))
    # Envoy accepts an empty URI prefix; scheme, method and authority need a value.
    scheme = parse_string_match(f.child("scheme"), allow_empty=False)
    method = parse_string_match(f.child("method"), allow_empty=False)
    authority = parse_string_match(f.child("authority"), allow_empty=False)
    headers = _parse_match_map(f, "headers", allow_present_regex=False)
    without = _parse_match_map(f, "withoutHeaders", allow_present_regex=True)
    query = {}
    for name, item in sorted(f.child_map("queryParams").items()):
        parsed = parse_string_match(item, allow_empty=True)
        if parsed is not None:
            query[name] = parsed
    port = f.integer("port", minimum=1, maximum=65535)
    gateways = f.string_list("gateways")
    _validate_gateway_names(f, "gateways", gateways)
    source_namespace = f.string("sourceNamespace")
    if source_namespace and not is_dns1123_label(source_namespace):
        f.error(f"{source_namespace!r} is not a namespace name", "sourceNamespace")
    match = HTTPMatch(
        name=f.string("name"),
        uri=uri,
        scheme=scheme,
        method=method,
        authority=authority,
        headers=headers,
        without_headers=without,
        query_params=query,
        port=port,
        source_labels=f.string_map("sourceLabels"),
        gateways=gateways,
        ignore_uri_case=f.boolean("ignoreUriCase"),
        source_namespace=source_namespace,
        stat_prefix=f.string("statPrefix"),
    )
    f.done()
    return match


def _parse_route_destinations(f: Fields, key: str) -> tuple[HTTPRouteDestination, ...]:
    out = []
    total = 0
    items = f.children(key)
    for item in items:
        destination = parse_destination(item.child("destination"))
        if destination is None:
            item.error("required", "destination")
        weight = item.integer("weight", minimum=0)
        headers = parse_headers(item.child("headers"))
        item.done()
        total += weight
        if destination is not None:
            out.append(HTTPRouteDestination(destination, weight, headers))
    if len(items) > 1 and total == 0:
        f.error("total destination weight is 0", key)
    return tuple(out)


def _parse_redirect(f: Fields | None, matches: tuple[HTTPMatch, ...]) -> HTTPRedirect | None:
    if f is None:
        return None
    uri = f.string("uri")
    prefix_rewrite = f.string("prefixRewrite")
    port = f.integer("port", minimum=1, maximum=65535)
    derive_port = f.enum("derivePort", ("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"))
    if port and derive_port:
        f.error("only one of port or derivePort may be set")
    scheme = f.string("scheme")
    authority = f.string("authority")
    code = f.integer("redirectCode")
    f.done()
    if uri and prefix_rewrite:
        f.error("redirect may only specify one of uri or prefixRewrite")
    if prefix_rewrite and any(m.uri is not None and m.uri.kind != "prefix" for m in matches):
        f.error("redirect prefixRewrite requires all URI matches to use prefix match type",
                "prefixRewrite")
    if not (uri or prefix_rewrite or authority or port or derive_port or scheme):
        f.error("redirect must specify uri, authority, scheme or port")
    if code and code not in (301, 302, 303, 307, 308):
        # Envoy's RedirectAction has no other codes; istiod would emit a route with no action.
        f.error(f"{code} is not a supported redirect code (301, 302, 303, 307 or 308)",
                "redirectCode")
    if scheme and scheme not in ("http", "https"):
        f.error('invalid redirect scheme, must be "http" or "https"', "scheme")
    return HTTPRedirect(uri, authority, port, derive_port, scheme, code, prefix_rewrite)


def _parse_direct_response(f: Fields | None) -> HTTPDirectResponse | None:
    if f is None:
        return None
    status = f.integer("status", required=True)
    if status and not 200 <= status <= 599:
        f.error(f"HTTP status {status} is not in range 200-599", "status")
    body = f.child("body")
    body_string = body_bytes = None
    if body is not None:
        has_string, has_bytes = body.has("string"), body.has("bytes")
        if has_string and has_bytes:
            body.error("only one of string or bytes may be set")
        if has_string:
            body_string = body.string("string")
        if has_bytes and not has_string:
            import base64
            import binascii

            try:
                body_bytes = base64.b64decode(body.string("bytes"), validate=True)
            except binascii.Error:
                body.error("bytes must be base64", "bytes")
        body.done()
        size = len(body_string or "") + len(body_bytes or b"")
        if size > 1024 * 1024:
            body.error("direct response bodies must be smaller than 1MB")
    f.done()
    return HTTPDirectResponse(status, body_string, body_bytes)


def _parse_rewrite(f: Fields | None) -> HTTPRewrite | None:
    if f is None:
        return None
    uri = f.string("uri")
    authority = f.string("authority")
    regex = f.child("uriRegexRewrite")
    match = rewrite = ""
    if regex is not None:
        match = regex.string("match", required=True)
        rewrite = regex.string("rewrite", required=True)
        if match:
            problem = valid_regex(match)
            if problem:
                regex.error(problem, "match")
        regex.done()
    f.done()
    if uri and regex is not None:
        f.error("rewrite may only contain one of uri or uriRegexRewrite")
    if not uri and regex is None and not authority:
        f.error("rewrite must specify at least one of uri, uriRegexRewrite or authority")
    return HTTPRewrite(uri, authority, match, rewrite)


def parse_retry(f: Fields | None) -> HTTPRetry | None:
    if f is None:
        return None
    attempts = f.integer("attempts", minimum=0)
    per_try = f.duration_ns("perTryTimeout", minimum_ns=MILLISECOND)
    retry_on = f.string("retryOn")
    remote = f.optional_boolean("retryRemoteLocalities")
    ignore_previous = f.optional_boolean("retryIgnorePreviousHosts")
    backoff = f.duration_ns("backoff", minimum_ns=MILLISECOND)
    f.done()
    if attempts == 0 and (per_try is not None or retry_on or remote is not None):
        f.error("retry policy configured while attempts is 0 (retries disabled)", "attempts")
    for policy in retry_on.split(",") if retry_on else ():
        token = policy.strip()
        if token.isdigit() and int(token) in HTTP_STATUS_CODES:
            continue
        if token not in RETRY_ON_POLICIES:
            f.error(f"{token!r} is not a valid retryOn policy", "retryOn")
    return HTTPRetry(attempts, per_try, retry_on, remote, ignore_previous, backoff)


def _parse_fault(f: Fields | None) -> HTTPFaultInjection | None:
    if f is None:
        return None
    delay = abort = None
    d = f.child("delay")
    if d is not None:
        fixed = d.duration_ns("fixedDelay", minimum_ns=MILLISECOND)
        d.reject("exponentialDelay", "exponentialDelay is not supported")
        if fixed is None and not d.has("fixedDelay") and not d.has("exponentialDelay"):
            d.error("fixedDelay is required", "fixedDelay")
        percentage = parse_percent(d.child("percentage"))
        percent = d.optional_integer("percent", minimum=0, maximum=100)
        d.done()
        if fixed is not None:
            delay = FaultDelay(fixed, percentage, percent)
    a = f.child("abort")
    if a is not None:
        percentage = parse_percent(a.child("percentage"))
        http_status = a.optional_integer("httpStatus")
        grpc_status: str | None = a.string("grpcStatus") or None
        a.reject("http2Error", "HTTP/2 abort fault injection is not supported")
        if http_status is not None:
            grpc_status = None
            if not 200 <= http_status <= 599:
                a.error(f"HTTP status {http_status} is not in range 200-599", "httpStatus")
        elif grpc_status is not None:
            if grpc_status not in GRPC_STATUS:
                a.error(f"gRPC status {grpc_status!r} is not supported (e.g. NOT_FOUND)",
                        "grpcStatus")
        elif not a.has("http2Error") and not a.has("httpStatus"):
            a.error("one of httpStatus or grpcStatus is required")
        a.done()
        if http_status is not None or grpc_status is not None:
            abort = FaultAbort(http_status, grpc_status, percentage)
    f.done()
    if d is None and a is None:
        f.error("fault injection must have an abort and/or a delay")
    return HTTPFaultInjection(delay, abort)


def _parse_cors(f: Fields | None) -> CorsPolicy | None:
    if f is None:
        return None
    origins = []
    for item in f.children("allowOrigins"):
        parsed = parse_string_match(item, allow_empty=False)
        if parsed is not None:
            if not parsed.value:
                item.error("an empty origin is not a valid match")
            else:
                origins.append(parsed)
    legacy = f.string_list("allowOrigin")
    if not origins and legacy:
        origins = [StringMatch("exact", o) for o in legacy]
    methods = f.string_list("allowMethods")
    for method in methods:
        if method not in CORS_METHODS:
            f.error(f"{method!r} is not a supported HTTP method", "allowMethods")
    allow_headers = f.string_list("allowHeaders")
    expose_headers = f.string_list("exposeHeaders")
    for key, names in (("allowHeaders", allow_headers), ("exposeHeaders", expose_headers)):
        for name in names:
            if name != "*" and not valid_header_name(name):
                f.error(f"invalid header name {name!r}", key)
    max_age = f.duration_ns("maxAge", minimum_ns=MILLISECOND)
    if max_age is not None and max_age % 1_000_000_000:
        f.error("maxAge is accurate only to seconds", "maxAge")
    policy = CorsPolicy(
        allow_origins=tuple(origins),
        allow_methods=methods,
        allow_headers=allow_headers,
        expose_headers=expose_headers,
        max_age_ns=max_age,
        allow_credentials=f.optional_boolean("allowCredentials"),
        unmatched_preflights=f.enum("unmatchedPreflights",
                                    ("UNSPECIFIED", "FORWARD", "IGNORE")),
    )
    f.done()
    return policy


def _validate_authority_once(f: Fields, rewrite: HTTPRewrite | None,
                             headers: Headers | None) -> None:
    seen = 1 if rewrite is not None and rewrite.authority else 0
    if headers is not None:
        for ops in (headers.request.set, headers.request.add):
            seen += sum(1 for k in ops if k.lower() in (":authority", "host"))
    if seen > 1:
        f.error("the authority can be rewritten in only one place (rewrite.authority or a "
                "single :authority/host header operation)")


def _parse_http_route(f: Fields) -> HTTPRoute:
    matches = tuple(_parse_http_match(m) for m in f.children("match"))
    route = _parse_route_destinations(f, "route")
    redirect = _parse_redirect(f.child("redirect"), matches)
    direct = _parse_direct_response(f.child("directResponse"))
    f.reject("delegate", "delegate VirtualServices are not supported by pilotpy")
    rewrite = _parse_rewrite(f.child("rewrite"))
    headers = parse_headers(f.child("headers"))
    _validate_authority_once(f, rewrite, headers)
    mirror = parse_destination(f.child("mirror"))
    mirrors = []
    for item in f.children("mirrors"):
        destination = parse_destination(item.child("destination"))
        if destination is None:
            item.error("required", "destination")
            continue
        mirrors.append(HTTPMirrorPolicy(destination, parse_percent(item.child("percentage"))))
        item.done()
    mirror_percent = None
    legacy = f.raw("mirrorPercent")
    if legacy is not None:
        # UInt32Value: a bare integer or {value: N}.
        if isinstance(legacy, dict):
            mp = f.child("mirrorPercent")
            mirror_percent = mp.integer("value", minimum=0, maximum=100) if mp else None
            if mp:
                mp.done()
        else:
            mirror_percent = f.optional_integer("mirrorPercent", minimum=0, maximum=100)
    route_obj = HTTPRoute(
        name=f.string("name"),
        match=matches,
        route=route,
        redirect=redirect,
        direct_response=direct,
        rewrite=rewrite,
        timeout_ns=f.duration_ns("timeout", minimum_ns=0),
        retries=parse_retry(f.child("retries")),
        fault=_parse_fault(f.child("fault")),
        mirror=mirror,
        mirrors=tuple(mirrors),
        mirror_percent=mirror_percent,
        mirror_percentage=parse_percent(f.child("mirrorPercentage")),
        cors_policy=_parse_cors(f.child("corsPolicy")),
        headers=headers,
    )
    f.done()
    actions = [name for name, value in (("route", route), ("redirect", redirect),
                                        ("directResponse", direct)) if value]
    if len(actions) > 1:
        f.error(f"only one of route, redirect or directResponse may be set, got "
                f"{', '.join(actions)}")
    if not actions:
        f.error("one of route, redirect or directResponse is required")
    if mirror is not None and mirrors:
        f.error("an HTTP route cannot contain both mirror and mirrors")
    if (redirect or direct) and (rewrite or mirror or mirrors):
        f.error("rewrite and mirror apply to routed traffic, not to redirect or directResponse")
    if (redirect or direct) and route_obj.fault is not None:
        f.error("fault injection applies to routed traffic, not to redirect or directResponse")
    return route_obj


def _parse_l4_match(f: Fields, *, tls: bool) -> L4Match:
    import ipaddress

    subnets = f.string_list("destinationSubnets")
    for subnet in subnets:
        try:
            ipaddress.ip_network(subnet, strict=False)
        except ValueError:
            f.error(f"{subnet!r} is not an IP address or CIDR", "destinationSubnets")
    gateways = f.string_list("gateways")
    _validate_gateway_names(f, "gateways", gateways)
    sni = f.string_list("sniHosts", required=True) if tls else ()
    for host in sni:
        problem = hosts.validate_hostname(host, allow_wildcard=True)
        if problem:
            f.error(problem, "sniHosts")
    match = L4Match(
        destination_subnets=subnets,
        port=f.integer("port", minimum=1, maximum=65535),
        source_labels=f.string_map("sourceLabels"),
        gateways=gateways,
        source_namespace=f.string("sourceNamespace"),
        sni_hosts=sni,
    )
    f.done(ignore=("sourceSubnet",))
    return match


def _parse_l4_destinations(f: Fields) -> tuple[RouteDestination, ...]:
    out = []
    total = 0
    items = f.children("route")
    if not items:
        f.error("at least one route destination is required", "route")
    for item in items:
        destination = parse_destination(item.child("destination"))
        if destination is None:
            item.error("required", "destination")
        weight = item.integer("weight", minimum=0)
        item.done()
        total += weight
        if destination is not None:
            out.append(RouteDestination(destination, weight))
    if len(items) > 1 and total == 0:
        f.error("total destination weight is 0", "route")
    return tuple(out)


def parse_virtual_service(meta: Meta, spec: Fields) -> VirtualService:
    vs_hosts = spec.string_list("hosts")
    gateways = spec.string_list("gateways")
    _validate_gateway_names(spec, "gateways", gateways)
    applies_to_mesh = not gateways or "mesh" in gateways
    for host in vs_hosts:
        problem = hosts.validate_hostname(host, allow_wildcard=True)
        if problem:
            spec.error(problem, "hosts")
        elif host == "*" and applies_to_mesh:
            spec.error("wildcard host '*' is not allowed for VirtualServices bound to the mesh",
                       "hosts")
    for i, a in enumerate(vs_hosts):
        for b in vs_hosts[i + 1:]:
            if hosts.matches(a, b):
                spec.error(f"duplicate hosts in virtual service: {a} & {b}", "hosts")
    if not vs_hosts:
        spec.error("at least one host is required (delegate VirtualServices are not supported)",
                   "hosts")
    http = tuple(_parse_http_route(r) for r in spec.children("http"))
    tcp_routes = []
    for r in spec.children("tcp"):
        matches = tuple(_parse_l4_match(m, tls=False) for m in r.children("match"))
        tcp_routes.append(TCPRoute(matches, _parse_l4_destinations(r)))
        r.done()
    tls_routes = []
    for r in spec.children("tls"):
        matches = tuple(_parse_l4_match(m, tls=True) for m in r.children("match"))
        if not matches:
            r.error("at least one match with sniHosts is required", "match")
        for sni in dict.fromkeys(h for m in matches for h in m.sni_hosts):
            if vs_hosts and not any(hosts.subset_of(sni, h) for h in vs_hosts):
                r.error(f"SNI host {sni!r} is not a compatible subset of any of the "
                        f"VirtualService hosts {list(vs_hosts)}", "match.sniHosts")
        tls_routes.append(TLSRoute(matches, _parse_l4_destinations(r)))
        r.done()
    if not (http or tcp_routes or tls_routes):
        spec.error("http, tcp or tls must be provided")
    export_to = parse_export_to(spec, meta.namespace)
    spec.done()
    return VirtualService(meta, vs_hosts, gateways, http, tuple(tcp_routes), tuple(tls_routes),
                          export_to)
