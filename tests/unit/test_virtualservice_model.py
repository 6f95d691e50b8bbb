"""VirtualService parsing and validation (istio's pkg/config/validation/virtualservice.go,
validation.go ValidateVirtualService and agent.ValidateHTTPRetry)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotpy.model import InvalidObject, Parsed, parse_object
from pilotpy.model.common import StringMatch
from pilotpy.model.virtualservice import VirtualService
from tests.unit.support import errors_of

SECOND = 1_000_000_000


def parse_yaml(text: str) -> VirtualService:
    parsed = parse_object(yaml.safe_load(text))
    assert isinstance(parsed.obj, VirtualService)
    return parsed.obj


def vs_doc(http: list[dict[str, Any]] | None = None, *, hosts: list[str] | None = None,
           gateways: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"hosts": hosts if hosts is not None else ["reviews"]}
    if http is not None:
        body["http"] = http
    if gateways is not None:
        body["gateways"] = gateways
    body.update(spec)
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "bookinfo"}, "spec": body}


ROUTE = [{"destination": {"host": "reviews"}}]


def route(**fields: Any) -> dict[str, Any]:
    """One http[] rule routing to reviews, plus `fields`."""
    return {"route": ROUTE, **fields}


def parse_vs(doc: dict[str, Any]) -> Parsed:
    return parse_object(doc)


# -- what users write parses to the values they wrote ------------------------------------------

W1_HTTPBIN = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
  namespace: default
spec:
  hosts:
  - httpbin-service
  - httpbin.local
  gateways:
  - httpbin-gateway
  - mesh
  http:
  - retries:
      attempts: 10
    route:
    - destination:
        host: httpbin-service
        subset: v1
      weight: 0
    - destination:
        host: httpbin-service
        subset: v2
      weight: 100
"""


def test_w1_httpbin_virtual_service_parses() -> None:
    vs = parse_yaml(W1_HTTPBIN)
    assert vs.meta.key == ("VirtualService", "default", "httpbin")
    assert vs.hosts == ("httpbin-service", "httpbin.local")
    assert vs.gateways == ("httpbin-gateway", "mesh")
    (rule,) = vs.http
    assert rule.match == ()
    assert rule.retries is not None and rule.retries.attempts == 10
    assert rule.retries.retry_on == "" and rule.retries.per_try_timeout_ns is None
    assert [(d.destination.host, d.destination.subset, d.weight) for d in rule.route] == [
        ("httpbin-service", "v1", 0), ("httpbin-service", "v2", 100)]


BOOKINFO_REVIEWS = """
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v3
      weight: 50
"""


def test_bookinfo_reviews_header_match_and_weights_parse() -> None:
    vs = parse_yaml(BOOKINFO_REVIEWS)
    assert vs.meta.namespace == "default"  # no namespace: the default one
    assert vs.gateways == ()
    jason, rest = vs.http
    (match,) = jason.match
    assert match.headers == {"end-user": StringMatch("exact", "jason")}
    assert match.uri is None
    assert [(d.destination.subset, d.weight) for d in jason.route] == [("v2", 0)]
    assert [(d.destination.subset, d.weight) for d in rest.route] == [("v1", 50), ("v3", 50)]


BOOKINFO_GATEWAY = """
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    - uri: {regex: '^/api/v1/products(/.*)?$'}
    route:
    - destination:
        host: productpage
        port: {number: 9080}
"""


def test_bookinfo_gateway_uri_matches_parse() -> None:
    vs = parse_yaml(BOOKINFO_GATEWAY)
    assert vs.hosts == ("*",)
    (rule,) = vs.http
    assert [m.uri for m in rule.match] == [
        StringMatch("exact", "/productpage"), StringMatch("prefix", "/static"),
        StringMatch("regex", "^/api/v1/products(/.*)?$")]
    assert rule.route[0].destination.port == 9080


def test_timeouts_rewrites_and_faults_parse_to_typed_values() -> None:
    vs = parse_yaml("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 100}}
      abort: {httpStatus: 500, percentage: {value: 12.5}}
    route: [{destination: {host: ratings, subset: v1}}]
  - rewrite: {uri: /productpage}
    timeout: 0.5s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure,503"}
    route: [{destination: {host: ratings, subset: v1}}]
""")
    fault, rewritten = vs.http
    assert fault.fault is not None
    assert fault.fault.delay is not None and fault.fault.delay.fixed_delay_ns == 7 * SECOND
    assert fault.fault.delay.percentage == 100.0
    assert fault.fault.abort is not None and fault.fault.abort.http_status == 500
    assert fault.fault.abort.percentage == 12.5
    assert rewritten.rewrite is not None and rewritten.rewrite.uri == "/productpage"
    assert rewritten.timeout_ns == SECOND // 2
    assert rewritten.retries is not None
    assert rewritten.retries.attempts == 3
    assert rewritten.retries.per_try_timeout_ns == 2 * SECOND
    assert rewritten.retries.retry_on == "gateway-error,connect-failure,503"


def test_mirror_with_percentage_parses() -> None:
    vs = parse_yaml("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route: [{destination: {host: httpbin, subset: v1}, weight: 100}]
    mirror: {host: httpbin, subset: v2}
    mirrorPercentage: {value: 100.0}
""")
    (rule,) = vs.http
    assert rule.mirror is not None and (rule.mirror.host, rule.mirror.subset) == ("httpbin", "v2")
    assert rule.mirror_percentage == 100.0


def test_mirror_and_mirrors_together_are_invalid() -> None:
    doc = vs_doc([route(mirror={"host": "reviews", "subset": "v2"},
                        mirrors=[{"destination": {"host": "reviews", "subset": "v3"}}])])
    assert any("both mirror and mirrors" in m for m in errors_of(doc)["spec.http[0]"])


def test_empty_header_match_and_star_regex_mean_presence() -> None:
    parsed = parse_vs(vs_doc([route(match=[{"headers": {"x-a": {}, "x-b": {"regex": "*"}}}])]))
    assert isinstance(parsed.obj, VirtualService)
    (match,) = parsed.obj.http[0].match
    assert match.headers == {"x-a": StringMatch("present"), "x-b": StringMatch("present")}


def test_a_single_destination_needs_no_weight() -> None:
    parsed = parse_vs(vs_doc([route()]))
    assert isinstance(parsed.obj, VirtualService)
    assert parsed.obj.http[0].route[0].weight == 0


def test_tcp_and_tls_routes_parse() -> None:
    parsed = parse_vs(vs_doc(hosts=["db.example.com"], tcp=[
        {"match": [{"port": 27017}], "route": [{"destination": {"host": "mongo", "port":
                                                                {"number": 5555}}}]}],
        tls=[{"match": [{"sniHosts": ["db.example.com"], "port": 443}],
              "route": [{"destination": {"host": "db.example.com"}}]}]))
    vs = parsed.obj
    assert isinstance(vs, VirtualService)
    assert vs.tcp[0].match[0].port == 27017
    assert vs.tcp[0].route[0].destination.port == 5555
    assert vs.tls[0].match[0].sni_hosts == ("db.example.com",)


# -- destinations and weights ------------------------------------------------------------------


def test_negative_weight_is_reported_at_its_field() -> None:
    errors = errors_of(vs_doc([{"route": [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": -1}]}]))
    assert "spec.http[0].route[1].weight" in errors
    assert "spec.http[0].route[0].weight" not in errors


def test_total_weight_zero_with_several_destinations_is_invalid() -> None:
    errors = errors_of(vs_doc([{"route": [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 0},
        {"destination": {"host": "reviews", "subset": "v2"}}]}]))
    assert list(errors) == ["spec.http[0].route"]
    assert "weight" in errors["spec.http[0].route"][0]


def test_destination_host_star_is_invalid() -> None:
    errors = errors_of(vs_doc([{"route": [{"destination": {"host": "*"}}]}]))
    assert list(errors) == ["spec.http[0].route[0].destination.host"]


def test_destination_without_host_is_invalid() -> None:
    errors = errors_of(vs_doc([{"route": [{"destination": {"subset": "v1"}}]}]))
    assert "spec.http[0].route[0].destination.host" in errors


def test_subset_name_must_be_a_dns_label() -> None:
    errors = errors_of(vs_doc([{"route": [{"destination": {"host": "a", "subset": "V_1"}}]}]))
    assert list(errors) == ["spec.http[0].route[0].destination.subset"]


def test_destination_port_out_of_range_is_invalid() -> None:
    errors = errors_of(vs_doc([{"route": [{"destination": {"host": "a", "port":
                                                          {"number": 70000}}}]}]))
    assert list(errors) == ["spec.http[0].route[0].destination.port.number"]


# -- route actions -----------------------------------------------------------------------------


def test_a_rule_needs_a_route_redirect_or_direct_response() -> None:
    errors = errors_of(vs_doc([{"timeout": "1s"}]))
    assert list(errors) == ["spec.http[0]"]


def test_route_and_redirect_together_are_invalid() -> None:
    errors = errors_of(vs_doc([route(redirect={"uri": "/new"})]))
    assert list(errors) == ["spec.http[0]"]


def test_direct_response_parses() -> None:
    parsed = parse_vs(vs_doc([{"directResponse": {"status": 503, "body": {"string": "down"}}}]))
    assert isinstance(parsed.obj, VirtualService)
    response = parsed.obj.http[0].direct_response
    assert response is not None and (response.status, response.body_string) == (503, "down")


@pytest.mark.parametrize("status", [199, 700])
def test_direct_response_status_out_of_range_is_invalid(status: int) -> None:
    errors = errors_of(vs_doc([{"directResponse": {"status": status}}]))
    assert list(errors) == ["spec.http[0].directResponse.status"]


def test_fault_with_redirect_is_invalid() -> None:
    # istio: "HTTP route cannot contain both fault and redirect"
    errors = errors_of(vs_doc([{"redirect": {"uri": "/x"},
                                "fault": {"abort": {"httpStatus": 500}}}]))
    assert list(errors) == ["spec.http[0]"]


def test_fault_with_direct_response_is_invalid() -> None:
    errors = errors_of(vs_doc([{"directResponse": {"status": 200},
                                "fault": {"delay": {"fixedDelay": "1s"}}}]))
    assert list(errors) == ["spec.http[0]"]


# -- redirect ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_codes_envoy_supports_are_accepted(code: int) -> None:
    parsed = parse_vs(vs_doc([{"redirect": {"uri": "/new", "redirectCode": code}}]))
    assert isinstance(parsed.obj, VirtualService)
    redirect = parsed.obj.http[0].redirect
    assert redirect is not None and redirect.redirect_code == code


@pytest.mark.parametrize("code", [200, 304, 399, 404])
def test_other_redirect_codes_are_rejected(code: int) -> None:
    # Envoy's RedirectAction has no other 3xx codes; istiod would silently drop the action.
    errors = errors_of(vs_doc([{"redirect": {"uri": "/new", "redirectCode": code}}]))
    assert list(errors) == ["spec.http[0].redirect.redirectCode"]


def test_redirect_must_change_something() -> None:
    errors = errors_of(vs_doc([{"redirect": {"redirectCode": 301}}]))
    assert list(errors) == ["spec.http[0].redirect"]


def test_redirect_uri_and_prefix_rewrite_are_exclusive() -> None:
    errors = errors_of(vs_doc([{"redirect": {"uri": "/a", "prefixRewrite": "/b"}}]))
    assert list(errors) == ["spec.http[0].redirect"]


def test_redirect_prefix_rewrite_needs_prefix_uri_matches() -> None:
    errors = errors_of(vs_doc([{"match": [{"uri": {"exact": "/old"}}],
                                "redirect": {"prefixRewrite": "/new"}}]))
    assert list(errors) == ["spec.http[0].redirect.prefixRewrite"]


def test_redirect_prefix_rewrite_with_prefix_matches_is_valid() -> None:
    parsed = parse_vs(vs_doc([{"match": [{"uri": {"prefix": "/old"}}],
                               "redirect": {"prefixRewrite": "/new"}}]))
    assert isinstance(parsed.obj, VirtualService)


def test_redirect_scheme_must_be_http_or_https() -> None:
    errors = errors_of(vs_doc([{"redirect": {"scheme": "ftp"}}]))
    assert list(errors) == ["spec.http[0].redirect.scheme"]


# -- rewrite and authority ---------------------------------------------------------------------


def test_rewrite_uri_and_uri_regex_rewrite_are_exclusive() -> None:
    errors = errors_of(vs_doc([route(rewrite={"uri": "/x", "uriRegexRewrite":
                                              {"match": "^/a", "rewrite": "/b"}})]))
    assert list(errors) == ["spec.http[0].rewrite"]


def test_empty_rewrite_is_invalid() -> None:
    errors = errors_of(vs_doc([route(rewrite={})]))
    assert list(errors) == ["spec.http[0].rewrite"]


def test_uri_regex_rewrite_needs_match_and_rewrite() -> None:
    errors = errors_of(vs_doc([route(rewrite={"uriRegexRewrite": {"match": "^/a"}})]))
    assert list(errors) == ["spec.http[0].rewrite.uriRegexRewrite.rewrite"]


def test_uri_regex_rewrite_pattern_must_compile() -> None:
    errors = errors_of(vs_doc([route(rewrite={"uriRegexRewrite": {"match": "(",
                                                                  "rewrite": "/b"}})]))
    assert list(errors) == ["spec.http[0].rewrite.uriRegexRewrite.match"]


def test_uri_regex_rewrite_parses() -> None:
    parsed = parse_vs(vs_doc([route(rewrite={"uriRegexRewrite": {"match": "^/v1/(.*)",
                                                                 "rewrite": "/\\1"}})]))
    assert isinstance(parsed.obj, VirtualService)
    rewrite = parsed.obj.http[0].rewrite
    assert rewrite is not None
    assert (rewrite.uri_regex_match, rewrite.uri_regex_rewrite) == ("^/v1/(.*)", "/\\1")


def test_authority_rewritten_and_set_as_header_is_invalid() -> None:
    errors = errors_of(vs_doc([route(rewrite={"authority": "a.example.com"},
                                     headers={"request": {"set": {":authority": "b"}}})]))
    assert list(errors) == ["spec.http[0]"]


def test_authority_set_through_host_and_authority_headers_is_invalid() -> None:
    errors = errors_of(vs_doc([route(headers={"request": {"set": {"Host": "b"},
                                                          "add": {":authority": "c"}}})]))
    assert list(errors) == ["spec.http[0]"]


def test_authority_set_once_is_valid() -> None:
    parsed = parse_vs(vs_doc([route(headers={"request": {"set": {"host": "b.example.com"}}})]))
    assert isinstance(parsed.obj, VirtualService)
    headers = parsed.obj.http[0].headers
    assert headers is not None and headers.request.set == {"host": "b.example.com"}


def test_pseudo_headers_cannot_be_set_on_responses() -> None:
    errors = errors_of(vs_doc([route(headers={"response": {"set": {":status": "200"}}})]))
    assert list(errors) == ["spec.http[0].headers.response.set.:status"]


# -- retries -----------------------------------------------------------------------------------


def test_retries_with_zero_attempts_and_retry_on_are_invalid() -> None:
    errors = errors_of(vs_doc([route(retries={"attempts": 0, "retryOn": "5xx"})]))
    assert list(errors) == ["spec.http[0].retries.attempts"]


def test_retries_with_zero_attempts_and_per_try_timeout_are_invalid() -> None:
    errors = errors_of(vs_doc([route(retries={"attempts": 0, "perTryTimeout": "1s"})]))
    assert list(errors) == ["spec.http[0].retries.attempts"]


def test_zero_attempts_alone_disables_retries() -> None:
    parsed = parse_vs(vs_doc([route(retries={"attempts": 0})]))
    assert isinstance(parsed.obj, VirtualService)
    retries = parsed.obj.http[0].retries
    assert retries is not None and retries.attempts == 0


def test_negative_attempts_are_invalid() -> None:
    errors = errors_of(vs_doc([route(retries={"attempts": -1})]))
    assert list(errors) == ["spec.http[0].retries.attempts"]


@pytest.mark.parametrize("retry_on", [
    "5xx", "gateway-error,connect-failure,refused-stream", "503", "5xx,503,504",
    "retriable-status-codes,502", "cancelled,deadline-exceeded,unavailable",
    "reset-before-request", "retriable-4xx,envoy-ratelimited",
])
def test_valid_retry_on_tokens(retry_on: str) -> None:
    parsed = parse_vs(vs_doc([route(retries={"attempts": 2, "retryOn": retry_on})]))
    assert isinstance(parsed.obj, VirtualService)


@pytest.mark.parametrize(("retry_on", "bad"), [
    ("5xx,bogus", "bogus"),
    ("999", "999"),  # not an HTTP status code net/http knows
    ("5XX", "5XX"),  # tokens are case-sensitive in Envoy
    ("5xx,,503", ""),
])
def test_invalid_retry_on_tokens_are_named(retry_on: str, bad: str) -> None:
    errors = errors_of(vs_doc([route(retries={"attempts": 2, "retryOn": retry_on})]))
    assert list(errors) == ["spec.http[0].retries.retryOn"]
    assert repr(bad) in errors["spec.http[0].retries.retryOn"][0]


def test_per_try_timeout_below_a_millisecond_is_invalid() -> None:
    errors = errors_of(vs_doc([route(retries={"attempts": 2, "perTryTimeout": "100us"})]))
    assert list(errors) == ["spec.http[0].retries.perTryTimeout"]


# -- fault injection ---------------------------------------------------------------------------


def test_fault_without_delay_or_abort_is_invalid() -> None:
    errors = errors_of(vs_doc([route(fault={})]))
    assert list(errors) == ["spec.http[0].fault"]


def test_fault_delay_needs_fixed_delay() -> None:
    errors = errors_of(vs_doc([route(fault={"delay": {"percentage": {"value": 10}}})]))
    assert list(errors) == ["spec.http[0].fault.delay.fixedDelay"]


def test_exponential_delay_is_unsupported() -> None:
    errors = errors_of(vs_doc([route(fault={"delay": {"exponentialDelay": "1s"}})]))
    assert "spec.http[0].fault.delay.exponentialDelay" in errors


@pytest.mark.parametrize("status", [199, 700])
def test_fault_abort_http_status_out_of_range_is_invalid(status: int) -> None:
    errors = errors_of(vs_doc([route(fault={"abort": {"httpStatus": status}})]))
    assert list(errors) == ["spec.http[0].fault.abort.httpStatus"]


def test_fault_abort_grpc_status_by_name() -> None:
    parsed = parse_vs(vs_doc([route(fault={"abort": {"grpcStatus": "UNAVAILABLE"}})]))
    assert isinstance(parsed.obj, VirtualService)
    fault = parsed.obj.http[0].fault
    assert fault is not None and fault.abort is not None
    assert fault.abort.grpc_status == "UNAVAILABLE"
    errors = errors_of(vs_doc([route(fault={"abort": {"grpcStatus": "NOPE"}})]))
    assert list(errors) == ["spec.http[0].fault.abort.grpcStatus"]


@pytest.mark.parametrize("value", [-1, 100.5, 150, 0.00001])
def test_fault_percentages_out_of_range_are_invalid(value: float) -> None:
    errors = errors_of(vs_doc([route(fault={"delay": {"fixedDelay": "1s",
                                                      "percentage": {"value": value}}})]))
    assert list(errors) == ["spec.http[0].fault.delay.percentage.value"]


@pytest.mark.parametrize("value", [0, 0.0001, 50, 100])
def test_fault_percentages_in_range_are_kept(value: float) -> None:
    parsed = parse_vs(vs_doc([route(fault={"abort": {"httpStatus": 503,
                                                     "percentage": {"value": value}}})]))
    assert isinstance(parsed.obj, VirtualService)
    fault = parsed.obj.http[0].fault
    assert fault is not None and fault.abort is not None
    assert fault.abort.percentage == value


def test_mirror_percentage_out_of_range_is_invalid() -> None:
    errors = errors_of(vs_doc([route(mirror={"host": "b"}, mirrorPercentage={"value": 101})]))
    assert list(errors) == ["spec.http[0].mirrorPercentage.value"]


def test_legacy_mirror_percent_above_100_is_invalid() -> None:
    errors = errors_of(vs_doc([route(mirror={"host": "b"}, mirrorPercent=101)]))
    assert list(errors) == ["spec.http[0].mirrorPercent"]


# -- hosts -------------------------------------------------------------------------------------


def test_star_host_is_invalid_for_mesh_bound_virtual_services() -> None:
    errors = errors_of(vs_doc([route()], hosts=["*"]))
    assert list(errors) == ["spec.hosts"]


def test_star_host_is_invalid_when_mesh_is_among_the_gateways() -> None:
    errors = errors_of(vs_doc([route()], hosts=["*"], gateways=["gw", "mesh"]))
    assert list(errors) == ["spec.hosts"]


def test_star_host_is_valid_for_gateway_only_virtual_services() -> None:
    parsed = parse_vs(vs_doc([route()], hosts=["*"], gateways=["bookinfo-gateway"]))
    assert isinstance(parsed.obj, VirtualService)
    assert parsed.obj.hosts == ("*",)


@pytest.mark.parametrize("pair", [
    ["reviews", "reviews"],
    ["*.example.com", "a.example.com"],
    ["a.example.com", "*.example.com"],
    ["*.com", "*.example.com"],
])
def test_duplicate_hosts_including_wildcard_overlap_are_invalid(pair: list[str]) -> None:
    errors = errors_of(vs_doc([route()], hosts=pair, gateways=["gw"]))
    assert list(errors) == ["spec.hosts"]
    assert "duplicate" in errors["spec.hosts"][0]


def test_distinct_hosts_are_valid() -> None:
    parsed = parse_vs(vs_doc([route()], hosts=["a.example.com", "b.example.com",
                                               "*.example.org"]))
    assert isinstance(parsed.obj, VirtualService)


def test_a_virtual_service_without_hosts_is_rejected() -> None:
    # Without hosts it would be a delegate, which pilotpy does not translate.
    errors = errors_of(vs_doc([route()], hosts=[]))
    assert list(errors) == ["spec.hosts"]


def test_a_virtual_service_without_routes_is_invalid() -> None:
    errors = errors_of(vs_doc(None))
    assert list(errors) == ["spec"]


@pytest.mark.parametrize("gateway", ["ns/", "/gw", "Bad_NS/gw", "a b"])
def test_invalid_gateway_references(gateway: str) -> None:
    errors = errors_of(vs_doc([route()], gateways=[gateway]))
    assert list(errors) == ["spec.gateways"]


@pytest.mark.parametrize("gateway", ["gw", "./gw", "istio-system/gw", "mesh",
                                     "gw.istio-system.svc.cluster.local"])
def test_valid_gateway_references(gateway: str) -> None:
    parsed = parse_vs(vs_doc([route()], gateways=[gateway]))
    assert isinstance(parsed.obj, VirtualService)


# -- matches -----------------------------------------------------------------------------------


def test_invalid_match_fields_are_all_reported() -> None:
    errors = errors_of(vs_doc([route(match=[{"headers": {"bad header": {"exact": "x"}},
                                             "method": {}, "uri": {"regex": "("}}])]))
    assert set(errors) == {"spec.http[0].match[0].headers.bad header",
                           "spec.http[0].match[0].method",
                           "spec.http[0].match[0].uri.regex"}


def test_lookaround_regex_is_rejected_like_re2() -> None:
    errors = errors_of(vs_doc([route(match=[{"uri": {"regex": "^/(?!admin)"}}])]))
    assert list(errors) == ["spec.http[0].match[0].uri.regex"]


def test_a_string_match_with_two_kinds_is_invalid() -> None:
    errors = errors_of(vs_doc([route(match=[{"uri": {"exact": "/a", "prefix": "/b"}}])]))
    assert list(errors) == ["spec.http[0].match[0].uri"]


def test_source_namespace_must_be_a_namespace_name() -> None:
    errors = errors_of(vs_doc([route(match=[{"sourceNamespace": "Not_A_NS"}])]))
    assert list(errors) == ["spec.http[0].match[0].sourceNamespace"]


def test_tls_routes_need_sni_hosts() -> None:
    errors = errors_of(vs_doc(hosts=["db.example.com"], tls=[
        {"match": [{"port": 443}], "route": [{"destination": {"host": "db"}}]}]))
    assert list(errors) == ["spec.tls[0].match[0].sniHosts"]


def test_tcp_routes_need_destinations() -> None:
    errors = errors_of(vs_doc(hosts=["db"], tcp=[{"match": [{"port": 5432}]}]))
    assert list(errors) == ["spec.tcp[0].route"]


def test_export_to_star_must_be_alone() -> None:
    errors = errors_of(vs_doc([route()], exportTo=["*", "."]))
    assert list(errors) == ["spec.exportTo"]


# -- errors name the object and report everything at once --------------------------------------


def test_error_message_names_kind_object_and_field_path() -> None:
    with pytest.raises(InvalidObject) as info:
        parse_object(vs_doc([{"route": [{"destination": {"host": "reviews"}, "weight": 50},
                                        {"destination": {"host": "reviews"}, "weight": -5}]}]),
                     origin="bookinfo.yaml")
    message = str(info.value)
    assert "VirtualService bookinfo/reviews" in message
    assert "spec.http[0].route[1].weight" in message
    assert "bookinfo.yaml" in message
    assert (info.value.ref.kind, info.value.ref.namespace, info.value.ref.name) == (
        "VirtualService", "bookinfo", "reviews")


def test_several_errors_are_reported_together() -> None:
    errors = errors_of(vs_doc([
        route(retries={"attempts": 0, "retryOn": "5xx"}),
        {"route": [{"destination": {"host": "*"}}], "fault": {}},
        {"redirect": {"uri": "/a", "redirectCode": 200}},
    ], hosts=["*"]))
    assert set(errors) >= {"spec.hosts", "spec.http[0].retries.attempts",
                           "spec.http[1].route[0].destination.host", "spec.http[1].fault",
                           "spec.http[2].redirect.redirectCode"}


def test_misspelt_field_is_a_warning_not_an_error() -> None:
    parsed = parse_vs(vs_doc([route(retires={"attempts": 3})]))
    assert isinstance(parsed.obj, VirtualService)
    assert parsed.obj.http[0].retries is None
    assert [(w.path, w.warning) for w in parsed.warnings] == [("spec.http[0].retires", True)]


def test_unknown_fields_at_every_level_are_warned_about() -> None:
    doc = vs_doc([{"route": [{"destination": {"host": "a", "subnet": "v1"}, "wieght": 5}]}],
                 hotss=["x"])
    parsed = parse_vs(doc)
    assert {w.path for w in parsed.warnings} == {
        "spec.hotss", "spec.http[0].route[0].wieght", "spec.http[0].route[0].destination.subnet"}


def test_wrong_types_are_errors_at_their_path() -> None:
    errors = errors_of(vs_doc([{"route": [{"destination": {"host": "a"}, "weight": "50"}],
                                "timeout": 5}]))
    assert set(errors) == {"spec.http[0].route[0].weight", "spec.http[0].timeout"}


# -- CORS --------------------------------------------------------------------------------------


def test_cors_policy_parses() -> None:
    parsed = parse_vs(vs_doc([route(corsPolicy={
        "allowOrigins": [{"exact": "https://example.com"}, {"regex": "https://.*\\.example\\.org"}],
        "allowMethods": ["GET", "POST"], "allowHeaders": ["x-custom"], "maxAge": "24h",
        "allowCredentials": True})]))
    assert isinstance(parsed.obj, VirtualService)
    cors = parsed.obj.http[0].cors_policy
    assert cors is not None
    assert cors.allow_origins == (StringMatch("exact", "https://example.com"),
                                  StringMatch("regex", "https://.*\\.example\\.org"))
    assert cors.allow_methods == ("GET", "POST")
    assert cors.max_age_ns == 24 * 3600 * SECOND
    assert cors.allow_credentials is True


def test_cors_methods_must_be_http_methods() -> None:
    errors = errors_of(vs_doc([route(corsPolicy={"allowMethods": ["GET", "FETCH"]})]))
    assert list(errors) == ["spec.http[0].corsPolicy.allowMethods"]


def test_cors_max_age_is_whole_seconds() -> None:
    errors = errors_of(vs_doc([route(corsPolicy={"maxAge": "1500ms"})]))
    assert list(errors) == ["spec.http[0].corsPolicy.maxAge"]


def test_cors_origin_needs_a_value() -> None:
    errors = errors_of(vs_doc([route(corsPolicy={"allowOrigins": [{}]})]))
    assert list(errors) == ["spec.http[0].corsPolicy.allowOrigins[0]"]
