"""meshConfig `extensionProviders` of the external authorization kinds (`envoyExtAuthzHttp`,
`envoyExtAuthzGrpc`), which AuthorizationPolicy CUSTOM names, validated like istiod's
validateExtensionProvider (pkg/config/validation/agent): an invalid one makes the mesh config
invalid. Providers of other kinds (tracing, logging, metrics) are accepted and ignored."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pilotpy.model import hosts
from pilotpy.model.fields import Fields
from pilotpy.model.meta import is_dns1123_label

HTTP = "http"
GRPC = "grpc"
# Envoy's envoy.type.v3.StatusCode values: what statusOnError may name.
STATUS_CODES = frozenset({
    100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307,
    308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416,
    417, 421, 422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508,
    510, 511,
})
_PROVIDER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The other provider kinds: telemetry, which pilotpy does not translate.
OTHER_KINDS = ("zipkin", "lightstep", "datadog", "stackdriver", "opencensus", "skywalking",
               "opentelemetry", "prometheus", "envoyFileAccessLog", "envoyHttpAls",
               "envoyTcpAls", "envoyOtelAls", "sds")


@dataclass(frozen=True, slots=True)
class RequestBody:
    max_request_bytes: int = 0
    allow_partial_message: bool = False
    pack_as_bytes: bool = False


@dataclass(frozen=True, slots=True)
class ExtAuthzProvider:
    name: str
    kind: str  # HTTP or GRPC
    service: str  # `host` or `namespace/host`
    port: int
    timeout_ns: int | None = None
    fail_open: bool = False
    status_on_error: int | None = None
    body: RequestBody | None = None
    # HTTP only.
    path_prefix: str = ""
    include_request_headers: tuple[str, ...] = ()
    include_headers: tuple[str, ...] = ()  # the deprecated includeHeadersInCheck
    additional_headers: tuple[tuple[str, str], ...] = ()
    headers_to_upstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_deny: tuple[str, ...] = ()
    headers_to_downstream_on_allow: tuple[str, ...] = ()


def _service_problem(service: str) -> str:
    if not service:
        return "service must not be empty"
    namespace, slash, host = service.rpartition("/")
    if slash and not (namespace == "*" or is_dns1123_label(namespace)):
        return f"invalid service {service!r}: bad namespace {namespace!r}"
    target = host if slash else service
    if hosts.is_ip(target):
        return ""
    problem = hosts.validate_hostname(target, allow_wildcard=bool(slash))
    return f"invalid service {service!r}: {problem}" if problem else ""


def _headers(f: Fields, key: str) -> tuple[str, ...]:
    values = f.string_list(key)
    for index, value in enumerate(values):
        if value == "*":
            f.error("a single wildcard (\"*\") is not supported, change it to either prefix or "
                    "suffix match", f"{key}[{index}]")
    return values


def _body(f: Fields | None) -> RequestBody | None:
    if f is None:
        return None
    body = RequestBody(f.integer("maxRequestBytes", minimum=0, maximum=2**32 - 1),
                       f.boolean("allowPartialMessage"), f.boolean("packAsBytes"))
    f.done()
    return body


def _provider(name: str, kind: str, f: Fields) -> ExtAuthzProvider:
    service = f.string("service")
    problem = _service_problem(service)
    if problem:
        f.error(problem, "service")
    port = f.integer("port", minimum=1, maximum=65535, required=True)
    status = None
    raw_status = f.string("statusOnError")
    if raw_status:
        if not raw_status.isdigit() or int(raw_status) not in STATUS_CODES:
            f.error(f"unsupported statusOnError value {raw_status}", "statusOnError")
        else:
            status = int(raw_status)
    timeout = f.duration_ns("timeout", minimum_ns=1)
    fail_open = f.boolean("failOpen")
    body = _body(f.child("includeRequestBodyInCheck"))
    f.unsupported("clearRouteCache", reason="istiod does not apply it either")
    if kind == GRPC:
        f.done()
        return ExtAuthzProvider(name, kind, service, port, timeout, fail_open, status, body)
    prefix = f.string("pathPrefix")
    if prefix and not prefix.startswith("/"):
        f.error(f"pathPrefix should begin with `/` but found {prefix!r}", "pathPrefix")
    extra = f.string_map("includeAdditionalHeadersInCheck")
    provider = ExtAuthzProvider(
        name, kind, service, port, timeout, fail_open, status, body,
        path_prefix=prefix, include_request_headers=_headers(f, "includeRequestHeadersInCheck"),
        include_headers=_headers(f, "includeHeadersInCheck"),
        additional_headers=tuple(sorted(extra.items())),
        headers_to_upstream_on_allow=_headers(f, "headersToUpstreamOnAllow"),
        headers_to_downstream_on_deny=_headers(f, "headersToDownstreamOnDeny"),
        headers_to_downstream_on_allow=_headers(f, "headersToDownstreamOnAllow"))
    f.done()
    return provider


def read_extension_providers(f: Fields) -> tuple[ExtAuthzProvider, ...]:
    """The external authorization providers of meshConfig (`f`); names must be unique
    (checked across every provider kind) and, for these, DNS-1123 labels."""
    out: list[ExtAuthzProvider] = []
    seen: set[str] = set()
    for item in f.children("extensionProviders"):
        name = item.string("name")
        if not name:
            item.error("empty extension provider name", "name")
        elif name in seen:
            item.error(f"duplicate extension provider name {name}", "name")
        seen.add(name)
        for key, kind in (("envoyExtAuthzHttp", HTTP), ("envoyExtAuthzGrpc", GRPC)):
            config = item.child(key)
            if config is None:
                continue
            if name and not _PROVIDER_NAME.match(name):
                item.error(f"provider name {name!r} must be lower-case letters, digits and "
                           "hyphens", "name")
            out.append(_provider(name, kind, config))
        # Tracing, logging and metrics providers: Telemetry is not translated.
        item.done(ignore=OTHER_KINDS)
    return tuple(out)
