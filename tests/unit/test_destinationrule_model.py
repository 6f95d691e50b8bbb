"""DestinationRule parsing and validation (istio's ValidateDestinationRule,
validateTrafficPolicy, validateLoadBalancer, validateOutlierDetection)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotpy.model import parse_object
from pilotpy.model.destinationrule import DestinationRule
from tests.unit.support import errors_of, parse_as

SECOND = 1_000_000_000


def rule(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "bookinfo"},
            "spec": {"host": "reviews", **spec}}


def parse_rule(doc: dict[str, Any]) -> DestinationRule:
    return parse_as(doc, DestinationRule)


def test_bookinfo_subsets_parse() -> None:
    dr = parse_rule(yaml.safe_load("""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
  - name: v3
    labels:
      version: v3
"""))
    assert dr.host == "reviews"
    assert [(s.name, dict(s.labels)) for s in dr.subsets] == [
        ("v1", {"version": "v1"}), ("v2", {"version": "v2"}), ("v3", {"version": "v3"})]
    assert dr.traffic_policy is not None and dr.traffic_policy.load_balancer is not None
    assert dr.traffic_policy.load_balancer.simple == "RANDOM"
    v2 = dr.subset("v2")
    assert v2 is not None and v2.traffic_policy is not None
    assert v2.traffic_policy.load_balancer is not None
    assert v2.traffic_policy.load_balancer.simple == "ROUND_ROBIN"
    assert dr.subset("v4") is None


def test_circuit_breaker_settings_parse() -> None:
    # Bookinfo's circuit-breaking task.
    dr = parse_rule(rule(trafficPolicy={
        "connectionPool": {"tcp": {"maxConnections": 1},
                           "http": {"http1MaxPendingRequests": 1,
                                    "maxRequestsPerConnection": 1}},
        "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s",
                             "baseEjectionTime": "3m", "maxEjectionPercent": 100}}))
    policy = dr.traffic_policy
    assert policy is not None and policy.connection_pool is not None
    assert policy.connection_pool.tcp is not None and policy.connection_pool.http is not None
    assert policy.connection_pool.tcp.max_connections == 1
    assert policy.connection_pool.http.http1_max_pending_requests == 1
    assert policy.connection_pool.http.max_requests_per_connection == 1
    outlier = policy.outlier_detection
    assert outlier is not None
    assert outlier.consecutive_5xx_errors == 1
    assert outlier.interval_ns == SECOND
    assert outlier.base_ejection_time_ns == 180 * SECOND
    assert outlier.max_ejection_percent == 100


def test_consistent_hash_with_maglev_parses() -> None:
    dr = parse_rule(rule(trafficPolicy={"loadBalancer": {"consistentHash": {
        "httpHeaderName": "x-user", "maglev": {"tableSize": 65537}}}}))
    assert dr.traffic_policy is not None and dr.traffic_policy.load_balancer is not None
    ch = dr.traffic_policy.load_balancer.consistent_hash
    assert ch is not None
    assert (ch.http_header_name, ch.maglev_table_size) == ("x-user", 65537)


def test_port_level_settings_parse() -> None:
    dr = parse_rule(rule(trafficPolicy={"portLevelSettings": [
        {"port": {"number": 9080}, "loadBalancer": {"simple": "LEAST_REQUEST"}}]}))
    assert dr.traffic_policy is not None
    (port,) = dr.traffic_policy.port_level_settings
    assert port.port == 9080
    assert port.load_balancer is not None and port.load_balancer.simple == "LEAST_REQUEST"


def test_duplicate_subset_names_are_invalid() -> None:
    errors = errors_of(rule(subsets=[{"name": "v1", "labels": {"version": "v1"}},
                                     {"name": "v1", "labels": {"version": "v2"}}]))
    assert list(errors) == ["spec.subsets[1].name"]


def test_subset_name_must_be_a_dns_label() -> None:
    errors = errors_of(rule(subsets=[{"name": "V1"}]))
    assert list(errors) == ["spec.subsets[0].name"]


def test_subset_needs_a_name() -> None:
    errors = errors_of(rule(subsets=[{"labels": {"version": "v1"}}]))
    assert list(errors) == ["spec.subsets[0].name"]


@pytest.mark.parametrize("size", [1000, 65536, 4, 5000011])
def test_maglev_table_size_must_be_a_prime_below_5000011(size: int) -> None:
    errors = errors_of(rule(trafficPolicy={"loadBalancer": {"consistentHash": {
        "useSourceIp": True, "maglev": {"tableSize": size}}}}))
    assert list(errors) == ["spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize"]


@pytest.mark.parametrize("size", [2, 3, 65537, 4999999])
def test_prime_maglev_table_sizes_are_accepted(size: int) -> None:
    dr = parse_rule(rule(trafficPolicy={"loadBalancer": {"consistentHash": {
        "useSourceIp": True, "maglev": {"tableSize": size}}}}))
    assert dr.traffic_policy is not None and dr.traffic_policy.load_balancer is not None
    ch = dr.traffic_policy.load_balancer.consistent_hash
    assert ch is not None and ch.maglev_table_size == size


def test_maglev_needs_a_table_size() -> None:
    errors = errors_of(rule(trafficPolicy={"loadBalancer": {"consistentHash": {
        "useSourceIp": True, "maglev": {}}}}))
    assert list(errors) == ["spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize"]


def test_ring_hash_and_maglev_are_exclusive() -> None:
    errors = errors_of(rule(trafficPolicy={"loadBalancer": {"consistentHash": {
        "useSourceIp": True, "maglev": {"tableSize": 65537},
        "ringHash": {"minimumRingSize": 1024}}}}))
    assert list(errors) == ["spec.trafficPolicy.loadBalancer.consistentHash"]


def test_simple_and_consistent_hash_are_exclusive() -> None:
    errors = errors_of(rule(trafficPolicy={"loadBalancer": {
        "simple": "RANDOM", "consistentHash": {"useSourceIp": True}}}))
    assert list(errors) == ["spec.trafficPolicy.loadBalancer"]


def test_only_one_hash_key_may_be_set() -> None:
    errors = errors_of(rule(trafficPolicy={"loadBalancer": {"consistentHash": {
        "useSourceIp": True, "httpHeaderName": "x-user"}}}))
    assert list(errors) == ["spec.trafficPolicy.loadBalancer.consistentHash"]


def test_unknown_simple_load_balancer_is_invalid() -> None:
    errors = errors_of(rule(trafficPolicy={"loadBalancer": {"simple": "FASTEST"}}))
    assert list(errors) == ["spec.trafficPolicy.loadBalancer.simple"]


def test_local_origin_failures_need_split_external_local_origin_errors() -> None:
    errors = errors_of(rule(trafficPolicy={"outlierDetection": {
        "consecutiveLocalOriginFailures": 5}}))
    assert list(errors) == [
        "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures"]


@pytest.mark.parametrize("value", [5, {"value": 5}])
def test_local_origin_failures_with_split_are_valid(value: object) -> None:
    dr = parse_rule(rule(trafficPolicy={"outlierDetection": {
        "consecutiveLocalOriginFailures": value, "splitExternalLocalOriginErrors": True}}))
    assert dr.traffic_policy is not None
    outlier = dr.traffic_policy.outlier_detection
    assert outlier is not None and outlier.consecutive_local_origin_failures == 5
    assert outlier.split_external_local_origin_errors


def test_outlier_percentages_above_100_are_invalid() -> None:
    errors = errors_of(rule(trafficPolicy={"outlierDetection": {"maxEjectionPercent": 101,
                                                                "minHealthPercent": -1}}))
    assert set(errors) == {"spec.trafficPolicy.outlierDetection.maxEjectionPercent",
                           "spec.trafficPolicy.outlierDetection.minHealthPercent"}


def test_outlier_interval_must_be_at_least_a_millisecond() -> None:
    errors = errors_of(rule(trafficPolicy={"outlierDetection": {"interval": "500us"}}))
    assert list(errors) == ["spec.trafficPolicy.outlierDetection.interval"]


def test_deprecated_consecutive_errors_is_a_warning() -> None:
    parsed = parse_object(rule(trafficPolicy={"outlierDetection": {"consecutiveErrors": 3}}))
    assert [w.path for w in parsed.warnings] == [
        "spec.trafficPolicy.outlierDetection.consecutiveErrors"]


def test_empty_traffic_policy_is_invalid() -> None:
    errors = errors_of(rule(trafficPolicy={}))
    assert list(errors) == ["spec.trafficPolicy"]


def test_empty_connection_pool_is_invalid() -> None:
    errors = errors_of(rule(trafficPolicy={"connectionPool": {}}))
    assert list(errors) == ["spec.trafficPolicy.connectionPool"]


def test_negative_connection_limits_are_invalid() -> None:
    errors = errors_of(rule(subsets=[{"name": "v1", "trafficPolicy": {"connectionPool": {
        "tcp": {"maxConnections": -1}}}}]))
    assert list(errors) == ["spec.subsets[0].trafficPolicy.connectionPool.tcp.maxConnections"]


def test_connect_timeout_must_be_a_duration() -> None:
    errors = errors_of(rule(trafficPolicy={"connectionPool": {"tcp": {
        "connectTimeout": "fast"}}}))
    assert list(errors) == ["spec.trafficPolicy.connectionPool.tcp.connectTimeout"]


def test_duplicate_port_level_settings_are_invalid() -> None:
    errors = errors_of(rule(trafficPolicy={"portLevelSettings": [
        {"port": {"number": 80}, "loadBalancer": {"simple": "RANDOM"}},
        {"port": {"number": 80}, "loadBalancer": {"simple": "LEAST_REQUEST"}}]}))
    assert list(errors) == ["spec.trafficPolicy.portLevelSettings[1].port"]


def test_mutual_tls_needs_certificates() -> None:
    errors = errors_of(rule(trafficPolicy={"tls": {"mode": "MUTUAL"}}))
    assert errors == {"spec.trafficPolicy.tls.clientCertificate": [
                          "client certificate required for mutual tls"],
                      "spec.trafficPolicy.tls.privateKey": ["private key required for mutual tls"]}


def test_tls_files_parse_without_warnings() -> None:
    parsed = parse_object(rule(trafficPolicy={"tls": {
        "mode": "MUTUAL", "clientCertificate": "/etc/certs/cert-chain.pem",
        "privateKey": "/etc/certs/key.pem", "caCertificates": "/etc/certs/root-cert.pem",
        "caCrl": "/etc/certs/root.crl", "subjectAltNames": ["reviews.example"],
        "sni": "reviews.example"}}))
    assert parsed.warnings == ()
    assert isinstance(parsed.obj, DestinationRule)
    tls = parsed.obj.traffic_policy.tls if parsed.obj.traffic_policy else None
    assert tls is not None and tls.private_key == "/etc/certs/key.pem"


def test_insecure_skip_verify_excludes_ca_and_sans() -> None:
    errors = errors_of(rule(trafficPolicy={"tls": {
        "mode": "SIMPLE", "insecureSkipVerify": True, "caCertificates": "/etc/ca.pem"}}))
    assert list(errors) == ["spec.trafficPolicy.tls.insecureSkipVerify"]


def test_certificate_path_must_look_like_a_path() -> None:
    errors = errors_of(rule(trafficPolicy={"tls": {
        "mode": "SIMPLE", "caCertificates": " /etc/ca.pem"}}))
    assert list(errors) == ["spec.trafficPolicy.tls.caCertificates"]


@pytest.mark.parametrize("tls", [
    {"mode": "SIMPLE", "credentialName": "egress-credential"},
    {"mode": "MUTUAL", "credentialName": "egress-credential"},
    {"mode": "ISTIO_MUTUAL", "sni": "outbound_.80_._.httpbin.default.svc.cluster.local"},
])
def test_credential_and_mesh_tls_are_valid_without_warnings(tls: dict[str, Any]) -> None:
    # Translated per proxy: Secrets for gateways, mesh certificates for agent proxies.
    parsed = parse_object(rule(trafficPolicy={"tls": tls}))
    assert parsed.warnings == ()


def test_credential_name_excludes_files() -> None:
    errors = errors_of(rule(trafficPolicy={"tls": {
        "mode": "SIMPLE", "credentialName": "c", "caCertificates": "/etc/ca.pem"}}))
    assert list(errors) == ["spec.trafficPolicy.tls.credentialName"]


def test_host_is_required_and_validated() -> None:
    assert list(errors_of(rule(host=""))) == ["spec.host"]
    assert list(errors_of(rule(host="bad_host"))) == ["spec.host"]


def test_wildcard_host_is_valid() -> None:
    assert parse_rule(rule(host="*.example.com")).host == "*.example.com"


def test_warmup_numbers_are_plain_and_unset_ones_take_istiods_defaults() -> None:
    """minimumPercent and aggression are DoubleValues: plain numbers in Istio's JSON. Unset,
    istiod writes Envoy's defaults (10%, 1.0); the deprecated warmupDurationSecs does not."""
    lb = parse_rule(rule(trafficPolicy={"loadBalancer": {"simple": "ROUND_ROBIN", "warmup": {
        "duration": "30s", "minimumPercent": 25, "aggression": 1.5}}})).traffic_policy
    assert lb is not None and lb.load_balancer is not None
    warmup = lb.load_balancer.warmup
    assert warmup is not None
    assert (warmup.minimum_percent, warmup.aggression) == (25.0, 1.5)
    defaults = parse_rule(rule(trafficPolicy={"loadBalancer": {"warmup": {"duration": "30s"}}}))
    assert defaults.traffic_policy is not None and defaults.traffic_policy.load_balancer
    warmup = defaults.traffic_policy.load_balancer.warmup
    assert warmup is not None and (warmup.minimum_percent, warmup.aggression) == (10.0, 1.0)
    legacy = parse_rule(rule(trafficPolicy={"loadBalancer": {"warmupDurationSecs": "30s"}}))
    assert legacy.traffic_policy is not None and legacy.traffic_policy.load_balancer
    warmup = legacy.traffic_policy.load_balancer.warmup
    assert warmup is not None and (warmup.minimum_percent, warmup.aggression) == (None, None)
    assert errors_of(rule(trafficPolicy={"loadBalancer": {"warmup": {
        "duration": "30s", "minimumPercent": {"value": 25}, "aggression": 0}}})) == {
        "spec.trafficPolicy.loadBalancer.warmup.minimumPercent": ["expected number, got object"],
        "spec.trafficPolicy.loadBalancer.warmup.aggression": ["aggression must be greater than 0"],
    }
