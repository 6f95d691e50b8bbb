"""Route retry policies (istiod's route/retry/retry.go, 1.24+ defaults)."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2

from pilotpy.model.virtualservice import HTTP_STATUS_CODES, HTTPRetry
from pilotpy.translate import pb

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_ATTEMPTS = 2
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"


_PREVIOUS_HOSTS = rc.RetryPolicy.RetryHostPredicate(
    name=PREVIOUS_HOSTS, typed_config=pb.typed(previous_hosts_pb2.PreviousHostsPredicate()))
# Built once: nearly every route carries one of these, and copying is cheaper than building.
# Private, and only ever the source of a CopyFrom: no caller holds them to change them.
_DEFAULT = rc.RetryPolicy(retry_on=DEFAULT_RETRY_ON, num_retries=pb.uint32(DEFAULT_ATTEMPTS),
                          host_selection_retry_max_attempts=5,
                          retry_host_predicate=[_PREVIOUS_HOSTS])
# Retrying on another host defeats consistent hashing, so istiod leaves the predicate out then.
_DEFAULT_CONSISTENT_HASH = rc.RetryPolicy(retry_on=DEFAULT_RETRY_ON,
                                          num_retries=pb.uint32(DEFAULT_ATTEMPTS),
                                          host_selection_retry_max_attempts=5)


def _default_policy(consistent_hash: bool) -> rc.RetryPolicy:
    policy = rc.RetryPolicy()
    policy.CopyFrom(_DEFAULT_CONSISTENT_HASH if consistent_hash else _DEFAULT)
    return policy


def _split_retry_on(retry_on: str) -> tuple[str, list[int]]:
    """Integer tokens are HTTP status codes to retry on; the rest are Envoy retry conditions."""
    conditions, codes = [], []
    for token in retry_on.split(","):
        token = token.strip()
        if not token:
            continue
        if token.isdigit() and int(token) in HTTP_STATUS_CODES:
            codes.append(int(token))
        else:
            conditions.append(token)
    return ",".join(conditions), codes


def set_retry_policy(action: rc.RouteAction, retries: HTTPRetry | None, *,
                     consistent_hash: bool) -> None:
    """Sets `action.retry_policy` (left unset for `attempts: 0`). Nearly every route takes
    the default, copied straight from the prototype."""
    if retries is None:
        action.retry_policy.CopyFrom(_DEFAULT_CONSISTENT_HASH if consistent_hash else _DEFAULT)
        return
    policy = retry_policy(retries, consistent_hash=consistent_hash)
    if policy is not None:
        action.retry_policy.CopyFrom(policy)


def retry_policy(retries: HTTPRetry | None, *, consistent_hash: bool) -> rc.RetryPolicy | None:
    """A new retry policy; None means none at all (`attempts: 0`). `retries` None is the
    mesh default."""
    if retries is None:
        return _default_policy(consistent_hash)
    if retries.attempts <= 0:
        return None
    policy = _default_policy(consistent_hash)
    policy.num_retries.value = retries.attempts
    if retries.retry_on:
        policy.retry_on, codes = _split_retry_on(retries.retry_on)
        if codes:
            policy.retriable_status_codes.extend(codes)
            if "retriable-status-codes" not in policy.retry_on:
                policy.retry_on += ",retriable-status-codes"
    if retries.per_try_timeout_ns is not None:
        policy.per_try_timeout.CopyFrom(pb.duration(retries.per_try_timeout_ns))
    if retries.retry_ignore_previous_hosts is not None:
        del policy.retry_host_predicate[:]
        if retries.retry_ignore_previous_hosts:
            policy.retry_host_predicate.append(_PREVIOUS_HOSTS)
    if retries.retry_remote_localities:
        policy.retry_priority.name = PREVIOUS_PRIORITIES
        policy.retry_priority.typed_config.CopyFrom(pb.typed(
            previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=2)))
    if retries.backoff_ns is not None:
        policy.retry_back_off.base_interval.CopyFrom(pb.duration(retries.backoff_ns))
    return policy
