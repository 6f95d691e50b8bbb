"""What a matched route does to a request besides choosing its clusters: the timeout, the
retry policy, faults (the `envoy.filters.http.fault` per-route config), hash policies for
consistent hashing. Reported as configured; the simulator does not play them out (a
request is not delayed, aborted or retried in a simulation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.extensions.filters.http.fault.v3 import fault_pb2

FAULT_FILTER = "envoy.filters.http.fault"
# envoy.type.v3.FractionalPercent.DenominatorType
_DENOMINATORS = {0: 100, 1: 10_000, 2: 1_000_000}


def _seconds(duration: Any) -> float:
    return float(duration.seconds) + int(duration.nanos) / 1e9


def _percent(fraction: Any) -> float:
    """A FractionalPercent as a percentage (unset: 0, as Envoy reads a missing one)."""
    return 100.0 * int(fraction.numerator) / _DENOMINATORS.get(int(fraction.denominator), 100)


@dataclass(frozen=True, slots=True)
class Retries:
    attempts: int  # retries after the first try
    retry_on: str
    per_try_timeout: float | None = None  # seconds
    retriable_status_codes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # "abort" or "delay"
    percent: float  # of requests the fault applies to
    http_status: int | None = None  # abort
    grpc_status: int | None = None  # abort
    delay: float | None = None  # seconds, for a delay


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    timeout: float | None = None  # seconds; None when unset, 0 means none
    retries: Retries | None = None
    faults: tuple[Fault, ...] = ()
    hash_policies: tuple[str, ...] = ()  # what consistent hashing hashes, in words

    def describe(self) -> list[str]:
        """The policy in words, one item per part that is set."""
        out = []
        if self.timeout is not None:
            out.append("no timeout" if self.timeout == 0 else f"timeout {self.timeout:g}s")
        if self.retries is not None:
            retries = self.retries
            text = (f"{retries.attempts} retries on {retries.retry_on or '(nothing)'}"
                    if retries.attempts else "no retries")
            if retries.attempts and retries.per_try_timeout:
                text += f", {retries.per_try_timeout:g}s per try"
            if retries.attempts and retries.retriable_status_codes:
                text += " (status " + ", ".join(map(str, retries.retriable_status_codes)) + ")"
            out.append(text)
        for fault in self.faults:
            if fault.kind == "delay":
                out.append(f"fault: delay {fault.delay:g}s for {fault.percent:g}% of requests")
            else:
                status = (f"HTTP {fault.http_status}" if fault.http_status is not None
                          else f"gRPC status {fault.grpc_status}")
                out.append(f"fault: abort with {status} for {fault.percent:g}% of requests")
        out += [f"consistent hash on {h}" for h in self.hash_policies]
        return out


def _faults(route: Any) -> tuple[Fault, ...]:
    packed = route.typed_per_filter_config.get(FAULT_FILTER)
    if packed is None:
        return ()
    fault = fault_pb2.HTTPFault()
    if not packed.Unpack(fault):
        return ()
    out = []
    if fault.HasField("delay"):
        out.append(Fault("delay", _percent(fault.delay.percentage),
                         delay=_seconds(fault.delay.fixed_delay)))
    if fault.HasField("abort"):
        abort = fault.abort
        which = abort.WhichOneof("error_type")
        out.append(Fault("abort", _percent(abort.percentage),
                         http_status=int(abort.http_status) if which == "http_status" else None,
                         grpc_status=int(abort.grpc_status) if which == "grpc_status" else None))
    return tuple(out)


def _hash_policy(policy: Any) -> str:
    which = policy.WhichOneof("policy_specifier")
    if which == "header":
        return f"header {policy.header.header_name}"
    if which == "cookie":
        return f"cookie {policy.cookie.name}"
    if which == "query_parameter":
        return f"query parameter {policy.query_parameter.name}"
    if which == "connection_properties":
        return "source IP"
    return str(which)


def route_policy(route: Any) -> RoutePolicy:
    """The policy of an Envoy route (a forwarding one: its `route` action)."""
    faults = _faults(route)
    if route.WhichOneof("action") != "route":
        return RoutePolicy(faults=faults)
    action = route.route
    retries = None
    if action.HasField("retry_policy"):
        policy = action.retry_policy
        retries = Retries(
            int(policy.num_retries.value) if policy.HasField("num_retries") else 1,
            str(policy.retry_on),
            _seconds(policy.per_try_timeout) if policy.HasField("per_try_timeout") else None,
            tuple(int(c) for c in policy.retriable_status_codes))
    return RoutePolicy(
        timeout=_seconds(action.timeout) if action.HasField("timeout") else None,
        retries=retries, faults=faults,
        hash_policies=tuple(_hash_policy(p) for p in action.hash_policy))
