"""What proxyless gRPC cannot do of a VirtualService or DestinationRule, as problems naming
the field: each is reported once per object and proxy class, and never sent to be rejected
(docs/proxyless-grpc.md#what-is-supported). What gRPC would reject is left out of the
config (CORS); what it ignores stays and is reported."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pilotpy.model.authorization import AuthorizationPolicy
from pilotpy.model.destinationrule import DestinationRule, LoadBalancer, TrafficPolicy
from pilotpy.model.request_authentication import RequestAuthentication
from pilotpy.model.virtualservice import HTTPRoute, VirtualService
from pilotpy.problems import Problem, Reason, Severity
from pilotpy.translate.grpc.clusters import LEAST_REQUEST

_CLIENT = "proxyless gRPC clients"


def _route_problems(route: HTTPRoute, at: str) -> Iterator[tuple[Reason, str, str]]:
    if route.cors_policy is not None:
        yield (Reason.UNSUPPORTED, f"{at}.corsPolicy",
               f"{_CLIENT} reject the CORS filter: the policy is left out of their routes")
    if route.redirect is not None:
        yield (Reason.UNSUPPORTED, f"{at}.redirect",
               f"{_CLIENT} cannot redirect: RPCs matching the rule fail with UNAVAILABLE")
    if route.direct_response is not None:
        yield (Reason.UNSUPPORTED, f"{at}.directResponse",
               f"{_CLIENT} cannot answer directly: RPCs matching the rule fail with "
               "UNAVAILABLE")
    for index, match in enumerate(route.match):
        if match.query_params:
            yield (Reason.UNSUPPORTED, f"{at}.match[{index}].queryParams",
                   f"{_CLIENT} skip a route that matches query parameters")
    if route.rewrite is not None:
        yield (Reason.IGNORED, f"{at}.rewrite", f"{_CLIENT} do not rewrite requests")
    if route.mirror is not None or route.mirrors:
        yield (Reason.IGNORED, f"{at}.{'mirror' if route.mirror is not None else 'mirrors'}",
               f"{_CLIENT} do not mirror requests")
    if route.headers is not None and (route.headers.request or route.headers.response):
        yield (Reason.IGNORED, f"{at}.headers", f"{_CLIENT} do not change headers")
    for index, destination in enumerate(route.route):
        headers = destination.headers
        if headers is not None and (headers.request or headers.response):
            yield (Reason.IGNORED, f"{at}.route[{index}].headers",
                   f"{_CLIENT} do not change headers")
    if route.retries is not None and route.retries.per_try_timeout_ns is not None:
        yield (Reason.IGNORED, f"{at}.retries.perTryTimeout",
               f"{_CLIENT} have no per-try timeout")


def virtual_service_problems(vs: VirtualService) -> list[Problem]:
    return [Problem(reason, message, vs.meta.ref, field)
            for index, route in enumerate(vs.http)
            for reason, field, message in _route_problems(route, f"spec.http[{index}]")]


def _load_balancer_problems(lb: LoadBalancer, at: str) -> Iterator[tuple[Reason, str, str]]:
    if lb.simple and lb.simple not in LEAST_REQUEST and lb.simple != "ROUND_ROBIN":
        yield (Reason.UNSUPPORTED, f"{at}.simple",
               f"{_CLIENT} have no {lb.simple} balancing: they balance round robin")
    if lb.warmup is not None:
        yield (Reason.IGNORED, f"{at}.warmup", f"{_CLIENT} have no slow start")
    consistent = lb.consistent_hash
    if consistent is None:
        return
    if consistent.maglev_table_size is not None:
        yield (Reason.UNSUPPORTED, f"{at}.consistentHash.maglev",
               f"{_CLIENT} have no Maglev: they hash onto a ring instead")
    for key, used in (("httpCookie", consistent.http_cookie is not None),
                      ("useSourceIp", consistent.use_source_ip),
                      ("httpQueryParameterName", bool(consistent.http_query_parameter_name))):
        if used:
            yield (Reason.UNSUPPORTED, f"{at}.consistentHash.{key}",
                   f"{_CLIENT} hash only on a header: without one, each RPC goes to a "
                   "random endpoint")


def _policy_problems(policy: TrafficPolicy, at: str) -> Iterator[tuple[Reason, str, str]]:
    if policy.load_balancer is not None:
        yield from _load_balancer_problems(policy.load_balancer, f"{at}.loadBalancer")
    pool = policy.connection_pool
    if pool is not None:
        http = pool.http
        if pool.tcp is not None or (http is not None and (
                http.http1_max_pending_requests or http.max_requests_per_connection
                or http.max_retries or http.idle_timeout_ns is not None
                or http.h2_upgrade_policy or http.use_client_protocol
                or http.max_concurrent_streams)):
            yield (Reason.IGNORED, f"{at}.connectionPool",
                   f"{_CLIENT} take only http.http2MaxRequests of a connection pool")
    outlier = policy.outlier_detection
    if outlier is not None and (outlier.consecutive_5xx_errors is not None
                                or outlier.consecutive_gateway_errors is not None
                                or outlier.consecutive_errors
                                or outlier.consecutive_local_origin_failures is not None):
        yield (Reason.IGNORED, f"{at}.outlierDetection",
               f"{_CLIENT} eject by success rate and failure percentage only, not after "
               "consecutive errors")
    if policy.tls is not None and policy.tls.mode != "DISABLE":
        yield (Reason.NOT_SERVED, f"{at}.tls",
               f"proxyless gRPC is plaintext in pilotpy until its certificate providers "
               f"come with the security work: {policy.tls.mode} is not applied")
    for index, settings in enumerate(policy.port_level_settings):
        port_policy = TrafficPolicy(settings.load_balancer, settings.connection_pool,
                                    settings.outlier_detection, settings.tls)
        yield from _policy_problems(port_policy, f"{at}.portLevelSettings[{index}]")


def destination_rule_problems(rule: DestinationRule) -> list[Problem]:
    found = []
    if rule.traffic_policy is not None:
        found += list(_policy_problems(rule.traffic_policy, "spec.trafficPolicy"))
    for index, subset in enumerate(rule.subsets):
        if subset.traffic_policy is not None:
            found += list(_policy_problems(subset.traffic_policy,
                                           f"spec.subsets[{index}].trafficPolicy"))
    return [Problem(reason, message, rule.meta.ref, field,
                    Severity.ERROR if reason is Reason.NOT_SERVED else Severity.WARNING)
            for reason, field, message in found]


def security_problems(policies: Iterable[AuthorizationPolicy | RequestAuthentication]
                      ) -> list[Problem]:
    """Policies selecting a proxyless gRPC server: pilotpy gives gRPC servers no RBAC or JWT
    filters yet, so they are reported as not enforced there."""
    out = []
    for policy in policies:
        what = ("JWTs are not validated" if isinstance(policy, RequestAuthentication)
                else "their requests are not checked against it")
        out.append(Problem(Reason.NOT_ENFORCED, "not enforced on proxyless gRPC servers by "
                           f"pilotpy: {what}", policy.meta.key, "", Severity.ERROR))
    return out
