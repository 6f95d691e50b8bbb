"""pilotpy/translate/routes.py, one behaviour per row (istiod's route/route.go): matches, catch-all
handling, destination clusters, hash policies, faults, CORS, decorators, and whole routes built
from VirtualService rules as the model parses them."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import yaml
from envoy.config.route.v3 import route_components_pb2 as rc

from pilotpy.model.common import Destination, StringMatch
from pilotpy.model.destinationrule import ConsistentHash, DestinationRule, HTTPCookie
from pilotpy.model.virtualservice import HTTPMatch, VirtualService
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.push import PushContext
from pilotpy.push.config import resolve_virtual_service
from pilotpy.translate.routes import (
    RouteOptions,
    build_http_routes,
    config_path,
    cors_config,
    destination_cluster,
    fault_config,
    hash_policy,
    header_matcher,
    is_catch_all,
    route_match,
    route_operation,
    sorted_routes,
    string_matcher,
    translate_route,
)
from pilotpy.wire.protojson import message_to_json
from tests.unit.support import context, parse_as

NODE = "sidecar~10.244.0.20~sleep-5d6f-abcde.default~default.svc.cluster.local"
HTTPBIN = "outbound|8000||httpbin.default.svc.cluster.local"


def doc(kind: str, name: str, spec: dict[str, Any], *, api: str = "networking.istio.io/v1",
        **meta: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind,
            "metadata": {"name": name, "namespace": "default", **meta}, "spec": spec}


REGISTRY = [
    doc("Service", "httpbin", {"clusterIP": "10.96.0.20", "selector": {"app": "httpbin"},
                               "ports": [{"name": "http", "port": 8000}]}, api="v1"),
    doc("Service", "multi", {"clusterIP": "10.96.0.21", "selector": {"app": "multi"},
                             "ports": [{"name": "http", "port": 8000},
                                       {"name": "http-admin", "port": 9000}]}, api="v1"),
    doc("Service", "alias", {"type": "ExternalName",
                             "externalName": "httpbin.default.svc.cluster.local",
                             "ports": [{"name": "http", "port": 8000}]}, api="v1"),
    doc("Service", "hashed", {"clusterIP": "10.96.0.22", "selector": {"app": "hashed"},
                              "ports": [{"name": "http", "port": 8000}]}, api="v1"),
    doc("DestinationRule", "hashed", {"host": "hashed", "trafficPolicy": {"loadBalancer": {
        "consistentHash": {"httpHeaderName": "x-user"}}}}),
]


@cache
def push() -> PushContext:
    return context(*REGISTRY)


def options(port: int = 8000, gateways: frozenset[str] = frozenset({"mesh"}),
            labels: dict[str, str] | None = None, is_tls: bool = False) -> RouteOptions:
    view = view_proxy(parse_proxy(NODE, {"LABELS": labels or {"app": "sleep"}}), push())
    return RouteOptions(push(), view, port, gateways, is_tls=is_tls)


def virtual_service(http: str, *, annotations: dict[str, str] | None = None) -> VirtualService:
    """A VirtualService `r` for host httpbin with the rules `http` (YAML), parsed by the model
    and with short names resolved, as the push context hands it to translation."""
    meta: dict[str, Any] = {"annotations": annotations} if annotations else {}
    parsed = parse_as(doc("VirtualService", "r", {"hosts": ["httpbin"],
                                                  "http": yaml.safe_load(http)}, **meta),
                      VirtualService)
    return resolve_virtual_service(parsed, "cluster.local")


def match(text: str) -> HTTPMatch:
    """One `match` entry (YAML), parsed by the model."""
    vs = virtual_service(f"[{{match: [{text}], route: [{{destination: {{host: httpbin}}}}]}}]")
    return vs.http[0].match[0]


def pick(value: Any, path: str) -> Any:
    """`value` (proto3 JSON) at a dotted path; None where it is absent."""
    for key in path.split("."):
        if isinstance(value, list):
            value = value[int(key)]
        elif isinstance(value, dict):
            value = value.get(key)
        if value is None:
            return None
    return value


# -- string and header matchers --------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    pytest.param(StringMatch("exact", "a"), {"exact": "a"}, id="exact"),
    pytest.param(StringMatch("prefix", "a"), {"prefix": "a"}, id="prefix"),
    pytest.param(StringMatch("regex", "a.*"), {"safeRegex": {"regex": "a.*"}},
                 id="regex-becomes-safe-regex"),
])
def test_string_matcher(given: StringMatch, expected: dict[str, Any]) -> None:
    assert message_to_json(string_matcher(given)) == expected


@pytest.mark.parametrize(("given", "expected"), [
    pytest.param(StringMatch("present"), {"name": "x", "presentMatch": True},
                 id="present-becomes-present-match"),
    pytest.param(StringMatch("exact", "v"), {"name": "x", "stringMatch": {"exact": "v"}},
                 id="a-value-becomes-string-match"),
])
def test_header_matcher(given: StringMatch, expected: dict[str, Any]) -> None:
    assert message_to_json(header_matcher("x", given)) == expected


# -- route matches ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("{uri: {exact: /a}}", {"path": "/a", "caseSensitive": True},
                 id="exact-uri-becomes-path"),
    pytest.param("{uri: {prefix: /a}}", {"prefix": "/a", "caseSensitive": True},
                 id="prefix-uri-stays-prefix"),
    pytest.param("{uri: {regex: '/a/[0-9]+'}}",
                 {"safeRegex": {"regex": "/a/[0-9]+"}, "caseSensitive": True},
                 id="regex-uri-becomes-safe-regex"),
    pytest.param("{uri: {prefix: /A}, ignoreUriCase: true}", {"prefix": "/A",
                                                              "caseSensitive": False},
                 id="ignore-uri-case"),
    pytest.param("{headers: {b: {exact: '1'}, a: {prefix: x}}}", {
        "prefix": "/", "caseSensitive": True,
        "headers": [{"name": "a", "stringMatch": {"prefix": "x"}},
                    {"name": "b", "stringMatch": {"exact": "1"}}]},
        id="headers-sorted-by-name"),
    pytest.param("{headers: {a: {}, b: {regex: '*'}}}", {
        "prefix": "/", "caseSensitive": True,
        "headers": [{"name": "a", "presentMatch": True}, {"name": "b", "presentMatch": True}]},
        id="empty-match-and-regex-star-are-presence"),
    pytest.param("{withoutHeaders: {a: {exact: x}, b: {}}}", {
        "prefix": "/", "caseSensitive": True,
        "headers": [{"name": "a", "stringMatch": {"exact": "x"}, "invertMatch": True,
                     "treatMissingHeaderAsEmpty": True},
                    {"name": "b", "presentMatch": True, "invertMatch": True}]},
        id="without-headers-invert-and-treat-missing-as-empty-except-presence"),
    pytest.param("{method: {exact: GET}, authority: {prefix: a}, scheme: {exact: https}, "
                 "headers: {z: {exact: '1'}}}", {
        "prefix": "/", "caseSensitive": True,
        "headers": [{"name": "z", "stringMatch": {"exact": "1"}},
                    {"name": ":method", "stringMatch": {"exact": "GET"}},
                    {"name": ":authority", "stringMatch": {"prefix": "a"}},
                    {"name": ":scheme", "stringMatch": {"exact": "https"}}]},
        id="method-authority-scheme-after-the-named-headers"),
    pytest.param("{queryParams: {b: {exact: '2'}, a: {}}}", {
        "prefix": "/", "caseSensitive": True,
        "queryParameters": [{"name": "a", "presentMatch": True},
                            {"name": "b", "stringMatch": {"exact": "2"}}]},
        id="query-params-sorted-presence-or-string-match"),
])
def test_route_match(text: str, expected: dict[str, Any]) -> None:
    assert message_to_json(route_match(match(text))) == expected


def test_no_match_is_a_bare_prefix() -> None:
    assert message_to_json(route_match(None)) == {"prefix": "/"}


@pytest.mark.parametrize(("prefix", "expected"), [
    pytest.param("/api/", {"pathSeparatedPrefix": "/api"}, id="trailing-slash-trimmed"),
    pytest.param("/api", {"pathSeparatedPrefix": "/api"}, id="segments-not-characters"),
    pytest.param("/", {"prefix": "/"}, id="root-stays-a-prefix"),
    pytest.param("/a?b", {"prefix": "/a?b"}, id="what-envoy-would-reject-stays-a-prefix"),
])
def test_ingress_semantics_prefix(prefix: str, expected: dict[str, Any]) -> None:
    found = message_to_json(route_match(match(f"{{uri: {{prefix: '{prefix}'}}}}"),
                                        path_separated=True))
    assert {k: v for k, v in found.items() if k != "caseSensitive"} == expected


# -- catch-all -------------------------------------------------------------------------------


def _route(**match_fields: Any) -> rc.Route:
    return rc.Route(name=str(match_fields), match=rc.RouteMatch(**match_fields))


@pytest.mark.parametrize(("route", "catch_all"), [
    pytest.param(_route(prefix="/"), True, id="prefix-root"),
    pytest.param(_route(path_separated_prefix="/"), True, id="path-separated-root"),
    pytest.param(_route(safe_regex={"regex": ".*"}), True, id="regex-dot-star"),
    pytest.param(_route(prefix="/a"), False, id="another-prefix"),
    pytest.param(_route(path="/"), False, id="an-exact-path"),
    pytest.param(_route(prefix="/", headers=[rc.HeaderMatcher(name="a", present_match=True)]),
                 False, id="with-a-header-match"),
    pytest.param(_route(prefix="/", query_parameters=[
        rc.QueryParameterMatcher(name="a", present_match=True)]), False,
        id="with-a-query-parameter-match"),
])
def test_is_catch_all(route: rc.Route, catch_all: bool) -> None:
    assert is_catch_all(route) is catch_all


def test_sorted_routes_move_catch_alls_last_keeping_order() -> None:
    routes = [_route(prefix="/"), _route(prefix="/a"), _route(safe_regex={"regex": ".*"}),
              _route(path="/b")]
    assert [r.name for r in sorted_routes(routes)] == [r.name for r in (
        routes[1], routes[3], routes[0], routes[2])]


# -- destination clusters --------------------------------------------------------------------


@pytest.mark.parametrize(("destination", "port", "expected"), [
    pytest.param(Destination("httpbin.default.svc.cluster.local", port=9999), 80,
                 "outbound|9999||httpbin.default.svc.cluster.local", id="explicit-port"),
    pytest.param(Destination("httpbin.default.svc.cluster.local"), 80, HTTPBIN,
                 id="a-single-port-service-uses-its-port"),
    pytest.param(Destination("multi.default.svc.cluster.local"), 80,
                 "outbound|80||multi.default.svc.cluster.local",
                 id="a-multi-port-service-uses-the-listener-port"),
    pytest.param(Destination("unknown.example.com"), 443, "outbound|443||unknown.example.com",
                 id="no-service-uses-the-listener-port"),
    pytest.param(Destination("httpbin.default.svc.cluster.local", "v2"), 80,
                 "outbound|8000|v2|httpbin.default.svc.cluster.local", id="subset"),
    pytest.param(Destination("alias.default.svc.cluster.local"), 80, HTTPBIN,
                 id="an-external-name-alias-points-at-its-target"),
])
def test_destination_cluster(destination: Destination, port: int, expected: str) -> None:
    service = push().service(destination.host, "default")
    assert destination_cluster(destination, service, port) == expected


# -- hash policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(("consistent", "expected"), [
    pytest.param(ConsistentHash(http_header_name="x-user"), {"header": {"headerName": "x-user"}},
                 id="header"),
    pytest.param(ConsistentHash(http_cookie=HTTPCookie("s", "/", 3_000_000_000)),
                 {"cookie": {"name": "s", "path": "/", "ttl": "3s"}}, id="cookie"),
    pytest.param(ConsistentHash(use_source_ip=True),
                 {"connectionProperties": {"sourceIp": True}}, id="source-ip"),
    pytest.param(ConsistentHash(http_query_parameter_name="u"), {"queryParameter": {"name": "u"}},
                 id="query-parameter"),
])
def test_hash_policy(consistent: ConsistentHash, expected: dict[str, Any]) -> None:
    policy = hash_policy(consistent)
    assert policy is not None and message_to_json(policy) == expected


def test_a_consistent_hash_with_no_key_has_no_policy() -> None:
    assert hash_policy(ConsistentHash(ring_hash_minimum_ring_size=1024)) is None


def test_cookie_attributes_follow() -> None:
    rule = parse_as(doc("DestinationRule", "c", {"host": "a", "trafficPolicy": {"loadBalancer": {
        "consistentHash": {"httpCookie": {"name": "s", "attributes": [
            {"name": "SameSite", "value": "Strict"}]}}}}}), DestinationRule)
    assert rule.traffic_policy is not None and rule.traffic_policy.load_balancer is not None
    consistent = rule.traffic_policy.load_balancer.consistent_hash
    assert consistent is not None
    policy = hash_policy(consistent)
    assert policy is not None
    assert message_to_json(policy)["cookie"]["attributes"] == [
        {"name": "SameSite", "value": "Strict"}]


# -- faults and CORS -------------------------------------------------------------------------


def _fault(text: str) -> dict[str, Any] | None:
    rule = virtual_service(f"[{{fault: {text}, route: [{{destination: {{host: httpbin}}}}]}}]")
    assert rule.http[0].fault is not None
    found = fault_config(rule.http[0].fault)
    return message_to_json(found) if found is not None else None


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("{delay: {fixedDelay: 2s, percentage: {value: 12.34567}}}", {"delay": {
        "fixedDelay": "2s", "percentage": {"numerator": 123456, "denominator": "MILLION"}}},
        id="delay-percentage-per-million-truncated"),
    pytest.param("{delay: {fixedDelay: 1s, percent: 30}}",
                 {"delay": {"fixedDelay": "1s", "percentage": {"numerator": 30}}},
                 id="legacy-integer-percent-per-hundred"),
    pytest.param("{delay: {fixedDelay: 1s}}", {"delay": {"fixedDelay": "1s", "percentage": {}}},
                 id="delay-without-percentage-is-zero-per-hundred"),
    pytest.param("{abort: {httpStatus: 503, percentage: {value: 50}}}", {"abort": {
        "httpStatus": 503, "percentage": {"numerator": 500000, "denominator": "MILLION"}}},
        id="abort-http-status"),
    pytest.param("{abort: {grpcStatus: UNAVAILABLE}}", {"abort": {"grpcStatus": 14}},
                 id="abort-grpc-status-without-percentage"),
])
def test_fault_config(text: str, expected: dict[str, Any]) -> None:
    assert _fault(text) == expected


def _cors(text: str) -> dict[str, Any]:
    rule = virtual_service(f"[{{corsPolicy: {text}, route: [{{destination: {{host: httpbin}}}}]}}]")
    assert rule.http[0].cors_policy is not None
    return message_to_json(cors_config(rule.http[0].cors_policy))


@pytest.mark.parametrize(("text", "path", "expected"), [
    pytest.param("{allowOrigins: [{exact: a}, {regex: 'b.*'}]}", "allowOriginStringMatch",
                 [{"exact": "a"}, {"safeRegex": {"regex": "b.*"}}], id="origins-as-matchers"),
    pytest.param("{allowMethods: [GET, POST]}", "allowMethods", "GET,POST",
                 id="methods-joined"),
    pytest.param("{maxAge: 90s}", "maxAge", "90", id="max-age-in-seconds"),
    pytest.param("{allowCredentials: false}", "allowCredentials", False,
                 id="credentials-when-set"),
    pytest.param("{}", "allowCredentials", None, id="credentials-absent-when-unset"),
    pytest.param("{}", "filterEnabled", {"defaultValue": {"numerator": 100}},
                 id="filter-enabled-for-all"),
    pytest.param("{}", "forwardNotMatchingPreflights", True,
                 id="unmatched-preflights-forwarded-by-default"),
    pytest.param("{unmatchedPreflights: IGNORE}", "forwardNotMatchingPreflights", False,
                 id="unmatched-preflights-ignored"),
])
def test_cors_config(text: str, path: str, expected: Any) -> None:
    assert pick(_cors(text), path) == expected


# -- decorators ------------------------------------------------------------------------------


def _action_route(cluster: str = "", weighted: bool = False, **match_fields: Any) -> rc.Route:
    route = rc.Route(match=rc.RouteMatch(**match_fields))
    if weighted:
        route.route.weighted_clusters.clusters.add(name=HTTPBIN)
    elif cluster:
        route.route.cluster = cluster
    else:
        route.direct_response.status = 200
    return route


@pytest.mark.parametrize(("route", "expected"), [
    pytest.param(_action_route(HTTPBIN, prefix="/a"),
                 "httpbin.default.svc.cluster.local:8000/a*", id="one-cluster-prefix"),
    pytest.param(_action_route(HTTPBIN, path="/a"), "httpbin.default.svc.cluster.local:8000/a",
                 id="one-cluster-path"),
    pytest.param(_action_route(HTTPBIN, safe_regex={"regex": "/a.*"}),
                 "httpbin.default.svc.cluster.local:8000/a.*", id="one-cluster-regex"),
    pytest.param(_action_route(weighted=True, prefix="/"), "vs:80/*",
                 id="weighted-names-the-virtual-service"),
    pytest.param(_action_route(prefix="/"), "vs:80/*",
                 id="no-cluster-names-the-virtual-service"),
    pytest.param(_action_route("PassthroughCluster", prefix="/"), "vs:80/*",
                 id="a-cluster-that-is-no-service-names-the-virtual-service"),
])
def test_route_operation(route: rc.Route, expected: str) -> None:
    assert route_operation(route, "vs", 80) == expected


# -- whole routes ----------------------------------------------------------------------------


def translated(http: str, *, index: int = 0, opts: RouteOptions | None = None,
               annotations: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The first rule's route for its match `index` (or its only, match-less route)."""
    vs = virtual_service(http, annotations=annotations)
    rule = vs.http[0]
    found = translate_route(vs, rule, rule.match[index] if rule.match else None,
                            opts or options())
    return message_to_json(found) if found is not None else None


ROUTE_TO_HTTPBIN = "route: [{destination: {host: httpbin}}]"


@pytest.mark.parametrize(("http", "path", "expected"), [
    pytest.param(f"[{{{ROUTE_TO_HTTPBIN}}}]", "route.cluster", HTTPBIN,
                 id="one-destination-is-a-cluster"),
    pytest.param(f"[{{{ROUTE_TO_HTTPBIN}}}]", "metadata.filterMetadata.istio.config",
                 "/apis/networking.istio.io/v1/namespaces/default/virtual-service/r",
                 id="config-path-metadata"),
    pytest.param(f"[{{{ROUTE_TO_HTTPBIN}}}]", "route.timeout", "0s",
                 id="no-timeout-is-zero"),
    pytest.param(f"[{{timeout: 3s, {ROUTE_TO_HTTPBIN}}}]", "route.maxGrpcTimeout", "3s",
                 id="timeout-caps-grpc-timeout"),
    pytest.param("[{route: [{destination: {host: httpbin, subset: v1}, weight: 0}, "
                 "{destination: {host: httpbin, subset: v2}, weight: 100}]}]", "route.cluster",
                 "outbound|8000|v2|httpbin.default.svc.cluster.local",
                 id="weight-0-dropped-one-left-is-a-cluster"),
    pytest.param("[{route: [{destination: {host: httpbin, subset: v1}, weight: 30}, "
                 "{destination: {host: httpbin, subset: v2}, weight: 70}]}]",
                 "route.weightedClusters.clusters.1.weight", 70, id="weighted-clusters"),
    pytest.param(f"[{{headers: {{request: {{set: {{host: h.example}}}}}}, {ROUTE_TO_HTTPBIN}}}]",
                 "route.hostRewriteLiteral", "h.example", id="a-host-header-set-rewrites-host"),
    pytest.param(f"[{{rewrite: {{authority: r, uri: /v2}}, {ROUTE_TO_HTTPBIN}}}]",
                 "route.hostRewriteLiteral", "r", id="rewrite-authority-rewrites-host"),
    pytest.param(f"[{{rewrite: {{uri: /v2}}, {ROUTE_TO_HTTPBIN}}}]", "route.prefixRewrite",
                 "/v2", id="rewrite-uri-is-a-prefix-rewrite"),
    pytest.param("[{route: [{destination: {host: httpbin}, headers: {request: {add: "
                 "{':authority': d}}}}]}]", "route.hostRewriteLiteral", "d",
                 id="a-destinations-authority-rewrites-host"),
    pytest.param(f"[{{mirror: {{host: httpbin, subset: v2}}, {ROUTE_TO_HTTPBIN}}}]",
                 "route.requestMirrorPolicies.0.runtimeFraction.defaultValue",
                 {"numerator": 100}, id="mirror-defaults-to-100-percent"),
    pytest.param(f"[{{mirror: {{host: httpbin}}, mirrorPercentage: {{value: 0}}, "
                 f"{ROUTE_TO_HTTPBIN}}}]", "route.requestMirrorPolicies", None,
                 id="mirror-percentage-0-disables-it"),
    pytest.param(f"[{{mirror: {{host: httpbin}}, mirrorPercent: 20, {ROUTE_TO_HTTPBIN}}}]",
                 "route.requestMirrorPolicies.0.runtimeFraction.defaultValue",
                 {"numerator": 20}, id="legacy-mirror-percent-per-hundred"),
    pytest.param("[{route: [{destination: {host: hashed}}]}]", "route.hashPolicy.0.header",
                 {"headerName": "x-user"}, id="the-destination-rules-hash-policy"),
    pytest.param("[{route: [{destination: {host: hashed}}]}]",
                 "route.retryPolicy.retryHostPredicate", None,
                 id="consistent-hash-drops-previous-hosts"),
    pytest.param("[{redirect: {uri: /b, authority: x}}]", "redirect",
                 {"hostRedirect": "x", "pathRedirect": "/b"},  # 301 is the enum's zero
                 id="redirect-defaults-to-301"),
    pytest.param("[{redirect: {uri: /b, redirectCode: 307}}]", "redirect.responseCode",
                 "TEMPORARY_REDIRECT", id="redirect-code"),
    pytest.param("[{redirect: {scheme: https, derivePort: FROM_REQUEST_PORT}}]",
                 "redirect.portRedirect", 8000, id="redirect-derives-the-listener-port"),
    pytest.param("[{directResponse: {status: 204}}]", "directResponse", {"status": 204},
                 id="direct-response-without-body"),
])
def test_translate_route(http: str, path: str, expected: Any) -> None:
    found = translated(http)
    assert found is not None
    assert pick(found, path) == expected


def test_fault_and_cors_go_to_their_filters() -> None:
    found = translated(f"[{{fault: {{abort: {{httpStatus: 500}}}}, corsPolicy: {{}}, "
                       f"{ROUTE_TO_HTTPBIN}}}]")
    assert found is not None
    assert sorted(found["typedPerFilterConfig"]) == ["envoy.filters.http.cors",
                                                    "envoy.filters.http.fault"]


@pytest.mark.parametrize(("port", "scheme", "expected"), [
    pytest.param(80, "", None, id="http-on-80-drops-the-port"),
    pytest.param(443, "https", None, id="https-on-443-drops-the-port"),
    pytest.param(443, "", 443, id="http-on-443-keeps-it"),
])
def test_redirect_drops_default_ports(port: int, scheme: str, expected: int | None) -> None:
    scheme_field = f"scheme: {scheme}, " if scheme else ""
    found = translated(f"[{{redirect: {{{scheme_field}port: {port}}}}}]")
    assert found is not None and pick(found, "redirect.portRedirect") == expected


@pytest.mark.parametrize(("http", "opts", "applies"), [
    pytest.param(f"[{{match: [{{port: 9000}}], {ROUTE_TO_HTTPBIN}}}]", options(port=8000),
                 False, id="a-match-for-another-port"),
    pytest.param(f"[{{match: [{{port: 8000}}], {ROUTE_TO_HTTPBIN}}}]", options(port=8000),
                 True, id="a-match-for-this-port"),
    pytest.param(f"[{{match: [{{gateways: [default/gw]}}], {ROUTE_TO_HTTPBIN}}}]", options(),
                 False, id="a-match-for-another-gateway"),
    pytest.param(f"[{{match: [{{gateways: [mesh]}}], {ROUTE_TO_HTTPBIN}}}]", options(), True,
                 id="a-match-for-mesh"),
    pytest.param(f"[{{match: [{{sourceLabels: {{app: other}}}}], {ROUTE_TO_HTTPBIN}}}]",
                 options(), False, id="source-labels-the-proxy-lacks"),
    pytest.param(f"[{{match: [{{sourceLabels: {{app: sleep}}}}], {ROUTE_TO_HTTPBIN}}}]",
                 options(), True, id="source-labels-the-proxy-has"),
    pytest.param(f"[{{match: [{{sourceNamespace: other}}], {ROUTE_TO_HTTPBIN}}}]", options(),
                 False, id="another-source-namespace"),
    pytest.param(f"[{{match: [{{gateways: [mesh], sourceLabels: {{app: other}}}}], "
                 f"{ROUTE_TO_HTTPBIN}}}]", options(), True,
                 id="gateways-decide-before-source-labels"),
])
def test_translate_route_applies_to_the_proxy(http: str, opts: RouteOptions,
                                              applies: bool) -> None:
    assert (translated(http, opts=opts) is not None) is applies


def test_route_and_match_names_join_and_stat_prefix_follows() -> None:
    found = translated(f"[{{name: api, match: [{{name: v1, statPrefix: s}}], {ROUTE_TO_HTTPBIN}}}]")
    assert found is not None and (found["name"], found["statPrefix"]) == ("api.v1", "s")


def test_ingress_route_semantics_use_path_separated_prefixes() -> None:
    found = translated(f"[{{match: [{{uri: {{prefix: /api}}}}], {ROUTE_TO_HTTPBIN}}}]",
                       annotations={"internal.istio.io/route-semantics": "ingress"})
    assert found is not None and found["match"]["pathSeparatedPrefix"] == "/api"


@pytest.mark.parametrize(("http", "expected"), [
    pytest.param(f"[{{{ROUTE_TO_HTTPBIN}}}, {{match: [{{uri: {{prefix: /x}}}}], "
                 f"{ROUTE_TO_HTTPBIN}}}]", ["/"], id="a-rule-without-match-ends-the-list"),
    pytest.param(f"[{{match: [{{uri: {{prefix: /a}}}}, {{uri: {{prefix: /}}}}, "
                 f"{{uri: {{prefix: /b}}}}], {ROUTE_TO_HTTPBIN}}}, {{{ROUTE_TO_HTTPBIN}}}]",
                 ["/a", "/"], id="a-catch-all-match-ends-the-list"),
    pytest.param(f"[{{match: [{{port: 1}}], {ROUTE_TO_HTTPBIN}}}, {{match: [{{uri: "
                 f"{{prefix: /b}}}}], {ROUTE_TO_HTTPBIN}}}]", ["/b"],
                 id="matches-that-do-not-apply-are-skipped"),
    pytest.param(f"[{{match: [{{port: 1}}], {ROUTE_TO_HTTPBIN}}}]", [],
                 id="nothing-applies-nothing-built"),
    pytest.param(f"[{{match: [{{port: 1}}], {ROUTE_TO_HTTPBIN}}}, {{{ROUTE_TO_HTTPBIN}}}]", ["/"],
                 id="a-match-less-rule-after-skipped-ones"),
])
def test_build_http_routes(http: str, expected: list[str]) -> None:
    routes = build_http_routes(virtual_service(http), options())
    assert [r.match.prefix for r in routes] == expected


def test_config_path() -> None:
    assert config_path(virtual_service(f"[{{{ROUTE_TO_HTTPBIN}}}]")) == (
        "/apis/networking.istio.io/v1/namespaces/default/virtual-service/r")
