"""What comes out of a simulation: each choice Envoy makes for the call, and where it stops."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pilotpy.simulate.call import Call
from pilotpy.simulate.policy import RoutePolicy


class Outcome(StrEnum):
    """How the call ends. Values other than FORWARDED, REDIRECT and DIRECT_RESPONSE name the
    step where Envoy gives up on it."""

    FORWARDED = "forwarded"  # to an upstream cluster (its endpoints are in the result)
    REDIRECT = "redirect"  # a route's redirect: Envoy answers 3xx itself
    DIRECT_RESPONSE = "direct_response"  # a route's direct response: Envoy answers itself
    NO_LISTENER = "no_listener"  # nothing listens on the address: connection refused
    NO_FILTER_CHAIN = "no_filter_chain"  # no chain and no default chain: connection closed
    OVERLAPPING_FILTER_CHAINS = "overlapping_filter_chains"  # Envoy would reject the listener
    TLS_ERROR = "tls_error"  # plaintext to a chain that terminates TLS: handshake fails
    PROTOCOL_ERROR = "protocol_error"  # TLS or opaque bytes to an HTTP connection manager
    NO_ROUTE_CONFIGURATION = "no_route_configuration"  # RDS never served it: listener warms
    NO_VIRTUAL_HOST = "no_virtual_host"  # 404, response flag NR
    TLS_REDIRECT = "tls_redirect"  # the virtual host requires TLS: 301 to https
    NO_ROUTE = "no_route"  # 404, response flag NR
    NO_CLUSTER = "no_cluster"  # the route names a cluster CDS lacks: 503, NC
    NO_HEALTHY_UPSTREAM = "no_healthy_upstream"  # the cluster has no endpoint: 503 UH / close
    FORBIDDEN = "forbidden"  # an RBAC filter refuses: 403 `RBAC: access denied` / close
    UNSUPPORTED = "unsupported"  # config the simulator does not model (the reason says what)


# What Envoy answers an HTTP request that stops at these steps, and the response flag its
# access log shows.
HTTP_ANSWERS: dict[Outcome, tuple[int, str]] = {
    Outcome.NO_VIRTUAL_HOST: (404, "NR"),
    Outcome.NO_ROUTE: (404, "NR"),
    Outcome.TLS_REDIRECT: (301, ""),
    Outcome.NO_CLUSTER: (503, "NC"),
    Outcome.NO_HEALTHY_UPSTREAM: (503, "UH"),
    Outcome.FORBIDDEN: (403, ""),
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str  # an IP, or a hostname the proxy resolves (DNS clusters)
    port: int
    weight: int = 1

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class Destination:
    """One cluster the call may go to, with its weight among the route's clusters (None for a
    single cluster) and where that cluster sends it."""

    cluster: str
    weight: int | None = None
    found: bool = True  # whether CDS has the cluster
    discovery: str = ""  # the cluster's type: EDS, STATIC, STRICT_DNS, LOGICAL_DNS, ORIGINAL_DST
    endpoints: tuple[Endpoint, ...] = ()


@dataclass(frozen=True, slots=True)
class FilterChainRef:
    """The filter chain chosen: its position in `filter_chains`, None for the listener's
    `default_filter_chain`."""

    index: int | None
    name: str = ""

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return "default_filter_chain" if self.index is None else f"filter_chains[{self.index}]"


@dataclass(frozen=True, slots=True)
class Redirect:
    status: int
    location: str


@dataclass(frozen=True, slots=True)
class DirectResponse:
    status: int
    body: str = ""


@dataclass(frozen=True, slots=True)
class Matched:
    """The Envoy messages chosen at each step (protobuf messages; None where not reached), for
    callers that show the config behind a choice."""

    listener: Any = None
    filter_chain: Any = None
    route_configuration: Any = None
    virtual_host: Any = None
    route: Any = None


@dataclass(frozen=True, slots=True)
class Result:
    """Every choice Envoy makes for `call`, up to where it stops (`outcome`, `reason`).
    Names are empty for steps the call never reached."""

    call: Call
    outcome: Outcome
    reason: str = ""  # why the call ended where it did, in words
    steps: tuple[str, ...] = ()  # each decision, in order, in words
    listener: str = ""
    handed_off_from: str = ""  # the capture listener that handed the connection over
    filter_chain: FilterChainRef | None = None
    route_configuration: str = ""
    virtual_host: str = ""
    route: str = ""  # the route's name
    route_index: int | None = None  # its position in the virtual host
    destinations: tuple[Destination, ...] = ()
    mirrors: tuple[str, ...] = ()  # clusters the request is mirrored to
    upstream_host: str = ""  # the Host sent upstream, after any rewrite
    upstream_path: str = ""  # the path sent upstream, after any rewrite
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    # The matched route's timeout, retries, faults and hashing, as configured.
    policy: RoutePolicy | None = None
    matched: Matched = Matched()

    @property
    def cluster(self) -> str | None:
        """The one cluster the call goes to; None when there is none or a weighted choice."""
        return self.destinations[0].cluster if len(self.destinations) == 1 else None

    @property
    def weights(self) -> dict[str, int]:
        """Cluster -> weight of a weighted choice (a single cluster gets its whole weight)."""
        if len(self.destinations) == 1 and self.destinations[0].weight is None:
            return {self.destinations[0].cluster: 100}
        return {d.cluster: d.weight or 0 for d in self.destinations}

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints of the one cluster the call goes to (empty for a weighted choice)."""
        return self.destinations[0].endpoints if len(self.destinations) == 1 else ()

    @property
    def status(self) -> int | None:
        """The HTTP status Envoy answers itself, None when the request goes upstream (or the
        call is not HTTP)."""
        if self.redirect is not None:
            return self.redirect.status
        if self.direct_response is not None:
            return self.direct_response.status
        if not self.call.is_http or self.filter_chain is None:
            return None
        answer = HTTP_ANSWERS.get(self.outcome)
        return answer[0] if answer is not None and self.route_configuration else None

    @property
    def response_flag(self) -> str:
        answer = HTTP_ANSWERS.get(self.outcome)
        return answer[1] if answer is not None else ""

    def describe(self) -> str:
        """The steps and the outcome, one per line."""
        lines = list(self.steps)
        lines.append(f"=> {self.outcome.value}" + (f": {self.reason}" if self.reason else ""))
        return "\n".join(lines)
