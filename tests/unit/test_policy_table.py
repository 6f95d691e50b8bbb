"""pilotpy/translate/policy.py, one behaviour per row: which parts of a DestinationRule's traffic
policy reach one cluster (istiod's GetPortLevelTrafficPolicy, MergeSubsetTrafficPolicy,
MergeTrafficPolicy) and which consistent hash one route destination uses
(HashForHTTPDestination)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotpy.model.destinationrule import DestinationRule, TrafficPolicy
from pilotpy.translate.policy import cluster_policy, consistent_hash_for, port_level_policy
from tests.unit.support import parse_as


def rule(text: str) -> DestinationRule:
    """A DestinationRule for host `a` with `text` as its spec (host added), parsed by the model."""
    return parse_as({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                     "metadata": {"name": "a", "namespace": "default"},
                     "spec": {"host": "a", **yaml.safe_load(text)}}, DestinationRule)


def summary(policy: TrafficPolicy | None) -> dict[str, Any] | None:
    """What a row checks of a policy: its load balancer, connection limit, outlier setting and
    TLS mode, each only when set."""
    if policy is None:
        return None
    out: dict[str, Any] = {}
    lb = policy.load_balancer
    if lb is not None:
        out["lb"] = lb.simple or ("hash" if lb.consistent_hash is not None else "")
    pool = policy.connection_pool
    if pool is not None and pool.tcp is not None:
        out["maxConnections"] = pool.tcp.max_connections
    if policy.outlier_detection is not None:
        out["consecutive5xx"] = policy.outlier_detection.consecutive_5xx_errors
    if policy.tls is not None:
        out["tls"] = policy.tls.mode
    return out


RULE = """
trafficPolicy:
  loadBalancer: {simple: ROUND_ROBIN}
  connectionPool: {tcp: {maxConnections: 100}}
  outlierDetection: {consecutive5xxErrors: 5}
  portLevelSettings:
  - port: {number: 9080}
    connectionPool: {tcp: {maxConnections: 7}}
subsets:
- {name: plain, labels: {version: v1}}
- name: pool
  labels: {version: v2}
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 10}}
- name: lb-and-tls
  labels: {version: v3}
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    tls: {mode: SIMPLE}
- name: port-level
  labels: {version: v4}
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    portLevelSettings:
    - port: {number: 8000}
      outlierDetection: {consecutive5xxErrors: 1}
"""
TOP = {"lb": "ROUND_ROBIN", "maxConnections": 100, "consecutive5xx": 5}


@pytest.mark.parametrize(("spec", "subset", "port", "expected"), [
    pytest.param("{}", "", 8000, None, id="a-rule-without-policy-gives-none"),
    pytest.param(RULE, "", 8000, TOP, id="the-rules-policy-for-the-service"),
    pytest.param(RULE, "", 9080, {"maxConnections": 7},
                 id="port-level-settings-replace-without-inheriting"),
    pytest.param(RULE, "plain", 8000, TOP, id="a-subset-without-policy-takes-the-rules"),
    pytest.param(RULE, "missing", 8000, TOP, id="an-unknown-subset-takes-the-rules"),
    pytest.param(RULE, "pool", 8000, {**TOP, "maxConnections": 10},
                 id="a-subset-component-replaces-only-that-component"),
    pytest.param(RULE, "lb-and-tls", 8000, {**TOP, "lb": "RANDOM", "tls": "SIMPLE"},
                 id="several-subset-components-replace-theirs"),
    pytest.param(RULE, "pool", 9080, {"maxConnections": 10},
                 id="subset-merges-over-the-rules-port-level-settings"),
    pytest.param(RULE, "port-level", 8000, {"consecutive5xx": 1},
                 id="subset-port-level-settings-replace-every-component-even-unset-ones"),
    pytest.param(RULE, "port-level", 9080, {"lb": "LEAST_REQUEST", "maxConnections": 7},
                 id="subset-port-level-settings-for-another-port-do-not-apply"),
    pytest.param("""
subsets:
- name: only
  labels: {version: v1}
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
""", "only", 8000, {"lb": "RANDOM"}, id="a-subset-policy-alone"),
])
def test_cluster_policy(spec: str, subset: str, port: int, expected: dict[str, Any] | None
                        ) -> None:
    assert summary(cluster_policy(rule(spec), subset, port)) == expected


def test_cluster_policy_without_a_rule() -> None:
    assert cluster_policy(None, "v1", 8000) is None


@pytest.mark.parametrize(("port", "expected", "replaced"), [
    pytest.param(None, TOP, False, id="no-port-keeps-the-policy"),
    pytest.param(8000, TOP, False, id="a-port-without-settings-keeps-the-policy"),
    pytest.param(9080, {"maxConnections": 7}, True, id="a-port-with-settings-replaces-it"),
])
def test_port_level_policy(port: int | None, expected: dict[str, Any], replaced: bool) -> None:
    policy, found = port_level_policy(rule(RULE).traffic_policy, port)
    assert (summary(policy), found) == (expected, replaced)


def test_port_level_policy_of_no_policy() -> None:
    assert port_level_policy(None, 9080) == (None, False)


HASHES = """
trafficPolicy:
  loadBalancer: {consistentHash: {httpHeaderName: x-rule}}
  portLevelSettings:
  - port: {number: 9080}
    loadBalancer: {consistentHash: {httpHeaderName: x-rule-port}}
  - port: {number: 9090}
    connectionPool: {tcp: {maxConnections: 1}}
subsets:
- {name: plain, labels: {version: v1}}
- name: hashed
  labels: {version: v2}
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-subset}}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {consistentHash: {httpHeaderName: x-subset-port}}
"""


@pytest.mark.parametrize(("spec", "subset", "port", "expected"), [
    pytest.param(HASHES, "", None, "x-rule", id="the-rules-hash"),
    pytest.param(HASHES, "", 9080, "x-rule-port", id="port-level-hash-for-an-explicit-port"),
    pytest.param(HASHES, "", 9090, "x-rule",
                 id="port-level-settings-without-a-hash-keep-the-rules"),
    pytest.param(HASHES, "plain", 9080, "x-rule-port",
                 id="a-subset-without-hash-takes-the-port-level-one"),
    pytest.param(HASHES, "hashed", None, "x-subset", id="the-subsets-hash-beats-the-rules"),
    pytest.param(HASHES, "hashed", 9080, "x-subset-port",
                 id="the-subsets-port-level-hash-beats-everything"),
    pytest.param(HASHES, "hashed", 8000, "x-subset",
                 id="subset-hash-for-a-port-without-settings"),
    pytest.param("{trafficPolicy: {loadBalancer: {simple: RANDOM}}}", "", 9080, None,
                 id="no-consistent-hash-anywhere"),
])
def test_consistent_hash_for(spec: str, subset: str, port: int | None,
                             expected: str | None) -> None:
    found = consistent_hash_for(rule(spec), subset, port)
    assert (found.http_header_name if found is not None else None) == expected
