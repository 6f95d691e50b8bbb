"""pilotpy/translate/retry.py, one behaviour per row (istiod's route/retry/retry.go
ConvertPolicy): VirtualService `retries` (as the model parses them) -> Envoy RetryPolicy."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.config.route.v3 import route_components_pb2 as rc

from pilotpy.model.virtualservice import HTTPRetry, VirtualService
from pilotpy.translate.retry import retry_policy, set_retry_policy
from pilotpy.wire.protojson import message_to_json
from tests.unit.support import parse_as

DEFAULT_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
PREVIOUS_HOSTS = [{"name": "envoy.retry_host_predicates.previous_hosts", "typedConfig": {
    "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
             "PreviousHostsPredicate"}}]
PREVIOUS_PRIORITIES = {"name": "envoy.retry_priorities.previous_priorities", "typedConfig": {
    "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3."
             "PreviousPrioritiesConfig", "updateFrequency": 2}}
DEFAULT = {"retryOn": DEFAULT_ON, "numRetries": 2, "retryHostPredicate": PREVIOUS_HOSTS,
           "hostSelectionRetryMaxAttempts": "5"}


def retries(text: str | HTTPRetry | None) -> HTTPRetry | None:
    """`retries` as a VirtualService spells it, parsed by the model."""
    if text is None or isinstance(text, HTTPRetry):
        return text
    vs = parse_as({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": "r", "namespace": "default"},
                   "spec": {"hosts": ["a"], "http": [{
                       "retries": yaml.safe_load(text),
                       "route": [{"destination": {"host": "a"}}]}]}}, VirtualService)
    parsed = vs.http[0].retries
    assert parsed is not None
    return parsed


def with_(**fields: Any) -> dict[str, Any]:
    """The default policy with `fields` replaced (None removes one)."""
    out = {**DEFAULT, **fields}
    return {k: v for k, v in out.items() if v is not None}


ROWS = [
    pytest.param(None, False, DEFAULT, id="no-retries-field-gives-the-default"),
    pytest.param(None, True, with_(retryHostPredicate=None),
                 id="default-under-consistent-hash-drops-previous-hosts"),
    pytest.param("attempts: 0", False, None, id="attempts-0-disables-retries"),
    pytest.param("attempts: 5", False, with_(numRetries=5), id="attempts-keep-default-conditions"),
    pytest.param("{attempts: 3, retryOn: gateway-error}", False,
                 with_(numRetries=3, retryOn="gateway-error"), id="retry-on-replaces-conditions"),
    pytest.param("{attempts: 3, retryOn: '503,reset'}", False,
                 with_(numRetries=3, retryOn="reset,retriable-status-codes",
                       retriableStatusCodes=[503]),
                 id="status-codes-become-retriable-status-codes"),
    pytest.param("{attempts: 3, retryOn: '502,retriable-status-codes'}", False,
                 with_(numRetries=3, retryOn="retriable-status-codes", retriableStatusCodes=[502]),
                 id="retriable-status-codes-not-added-twice"),
    # The model refuses these two (as istiod's validation does); the translator still splits
    # them as istiod's parseRetryOn would.
    pytest.param(HTTPRetry(3, retry_on="5xx,999"), False,
                 with_(numRetries=3, retryOn="5xx,999"),
                 id="a-number-that-is-no-status-stays-a-condition"),
    pytest.param(HTTPRetry(3, retry_on=" 5xx , ,reset "), False,
                 with_(numRetries=3, retryOn="5xx,reset"), id="blanks-and-empty-tokens-dropped"),
    pytest.param("{attempts: 2, perTryTimeout: 1.5s}", False, with_(perTryTimeout="1.500s"),
                 id="per-try-timeout"),
    pytest.param("{attempts: 2, retryIgnorePreviousHosts: false}", False,
                 with_(retryHostPredicate=None), id="ignore-previous-hosts-false-drops-it"),
    pytest.param("{attempts: 2, retryIgnorePreviousHosts: true}", True, DEFAULT,
                 id="ignore-previous-hosts-true-restores-it-under-consistent-hash"),
    pytest.param("{attempts: 2, retryRemoteLocalities: true}", False,
                 with_(retryPriority=PREVIOUS_PRIORITIES), id="remote-localities"),
    pytest.param("{attempts: 2, retryRemoteLocalities: false}", False, DEFAULT,
                 id="remote-localities-false-adds-nothing"),
    pytest.param("{attempts: 2, backoff: 250ms}", False,
                 with_(retryBackOff={"baseInterval": "0.250s"}), id="backoff-base-interval"),
]


@pytest.mark.parametrize(("text", "consistent_hash", "expected"), ROWS)
def test_retry_policy(text: str | HTTPRetry | None, consistent_hash: bool,
                      expected: dict[str, Any] | None) -> None:
    policy = retry_policy(retries(text), consistent_hash=consistent_hash)
    assert (message_to_json(policy) if policy is not None else None) == expected


@pytest.mark.parametrize(("text", "consistent_hash", "expected"), ROWS)
def test_set_retry_policy_sets_the_same_policy(text: str | HTTPRetry | None,
                                               consistent_hash: bool,
                                               expected: dict[str, Any] | None) -> None:
    action = rc.RouteAction()
    set_retry_policy(action, retries(text), consistent_hash=consistent_hash)
    found = message_to_json(action.retry_policy) if action.HasField("retry_policy") else None
    assert found == expected


def test_each_call_returns_a_policy_of_its_own() -> None:
    first = retry_policy(None, consistent_hash=False)
    assert first is not None
    first.num_retries.value = 99
    del first.retry_host_predicate[:]
    assert message_to_json(retry_policy(None, consistent_hash=False) or rc.RetryPolicy()) == (
        DEFAULT)
