"""Envoy's connection handling, up to the filter chain: which listener takes a connection
(original-destination hand-off included), what its listener filters detect, and which filter
chain `filter_chain_match` selects.

Rules, as Envoy implements them:
- A connection redirected to a `use_original_dst` listener moves to the listener bound to
  its original destination: one at that exact address and port, else the wildcard one on
  that port, else it stays (connection handler's getBalancedHandlerByAddress).
- Without a listener filter setting it, the transport protocol is `raw_buffer`; the TLS
  inspector sets `tls`, the SNI and the client's ALPN; the HTTP inspector sets ALPN
  `http/1.1` or `h2c` for plaintext HTTP. A filter's `filter_disabled` predicate skips it.
- Filter chains are matched criterion by criterion (filter_chain_manager_impl.cc):
  destination port, destination IP (longest prefix), server name (exact, then the longest
  `*.` suffix), transport protocol, application protocols; at each step the chains naming
  the value win over those leaving it unset, and a step that leaves nothing ends the search
  at the default filter chain. Envoy never backtracks to a less specific branch.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pilotpy.simulate.call import Call, Protocol

TLS_INSPECTOR = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
HTTP_INSPECTOR = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
ORIGINAL_DST = "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
RAW_BUFFER = "raw_buffer"
TLS = "tls"
WILDCARDS = {4: "0.0.0.0", 6: "::"}


def type_name(typed_config: Any) -> str:
    """The message type of an Any (`type.googleapis.com/<name>`)."""
    return str(typed_config.type_url).rpartition("/")[2]


def socket_address(listener: Any) -> tuple[str, int]:
    socket = listener.address.socket_address
    return str(socket.address), int(socket.port_value)


def binds(listener: Any) -> bool:
    """Whether the listener owns a socket (`bind_to_port` unset or true)."""
    return not listener.HasField("bind_to_port") or bool(listener.bind_to_port.value)


def has_listener_filter(listener: Any, name: str) -> bool:
    return any(type_name(f.typed_config) == name for f in listener.listener_filters)


def find_bound(listeners: Iterable[Any], address: str, port: int) -> Any | None:
    """The bound listener a client reaches at `address:port`: the exact address, else the
    wildcard of the address family."""
    return _by_address([lst for lst in listeners if binds(lst)], address, port)


def find_for_original_destination(listeners: Iterable[Any], address: str,
                                  port: int) -> Any | None:
    """The listener a `use_original_dst` hand-off picks (bound or not)."""
    return _by_address(list(listeners), address, port)


def _by_address(listeners: Sequence[Any], address: str, port: int) -> Any | None:
    for listener in listeners:
        if socket_address(listener) == (address, port):
            return listener
    wildcard = WILDCARDS[ipaddress.ip_address(address).version]
    for listener in listeners:
        if socket_address(listener) == (wildcard, port):
            return listener
    return None


def _disabled(predicate: Any, port: int) -> bool:
    """A ListenerFilterChainMatchPredicate evaluated for a connection to `port`."""
    which = predicate.WhichOneof("rule")
    if which == "or_match":
        return any(_disabled(p, port) for p in predicate.or_match.rules)
    if which == "and_match":
        return all(_disabled(p, port) for p in predicate.and_match.rules)
    if which == "not_match":
        return not _disabled(predicate.not_match, port)
    if which == "any_match":
        return bool(predicate.any_match)
    if which == "destination_port_range":
        span = predicate.destination_port_range
        return int(span.start) <= port < int(span.end)
    return False


@dataclass(frozen=True, slots=True)
class Detected:
    """What the listener filters found out about the connection."""

    transport: str
    server_name: str
    alpn: tuple[str, ...]
    notes: tuple[str, ...]


def inspect(listener: Any, call: Call, port: int) -> Detected:
    transport, server_name = "", ""
    alpn: tuple[str, ...] = ()
    notes = []
    for listener_filter in listener.listener_filters:
        kind = type_name(listener_filter.typed_config)
        if kind not in (TLS_INSPECTOR, HTTP_INSPECTOR):
            continue
        short = "tls_inspector" if kind == TLS_INSPECTOR else "http_inspector"
        if listener_filter.HasField("filter_disabled") and _disabled(
                listener_filter.filter_disabled, port):
            notes.append(f"{short} is disabled for port {port}")
            continue
        if kind == TLS_INSPECTOR and call.tls:
            transport, server_name, alpn = TLS, call.server_name, call.client_alpn
            notes.append(f"tls_inspector: TLS, SNI {server_name or '(none)'}, "
                         f"ALPN {list(alpn)}")
        elif kind == HTTP_INSPECTOR and not call.tls and transport in ("", RAW_BUFFER):
            detected = {Protocol.HTTP: "http/1.1", Protocol.HTTP2: "h2c"}.get(call.protocol)
            if detected:
                alpn = (detected,)
                notes.append(f"http_inspector: {detected}")
            else:
                notes.append("http_inspector: not HTTP")
    if not transport:
        transport = RAW_BUFFER
        if call.tls:
            notes.append("no TLS inspector: a TLS connection is seen as raw_buffer, no SNI")
    return Detected(transport, server_name, alpn, tuple(notes))


@dataclass(frozen=True, slots=True)
class ChainChoice:
    """The selected chain (index None: the default chain; chain None: nothing matched), and
    the criterion that decided, in words."""

    index: int | None
    chain: Any
    why: str
    overlapping: bool = False


def _network(cidr: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(f"{cidr.address_prefix}/{cidr.prefix_len.value}", strict=False)


def _server_name_key(name: str) -> str:
    """How Envoy files a server name: `*.example.com` under `.example.com`."""
    name = name.lower()
    return name[1:] if name.startswith("*.") else name


def _narrow(candidates: list[tuple[int, Any]], values: Iterable[str],
            keys_of: Any) -> list[tuple[int, Any]]:
    """The candidates whose key set contains the first of `values` any of them has, else
    those with no key at all (Envoy's `EMPTY_STRING` branch)."""
    for value in values:
        found = [c for c in candidates if value in keys_of(c[1])]
        if found:
            return found
    return [c for c in candidates if not keys_of(c[1])]


def match_of(chain: Any) -> Any:
    return chain.filter_chain_match


def select_filter_chain(listener: Any, address: str, port: int,
                        detected: Detected) -> ChainChoice:
    candidates = list(enumerate(listener.filter_chains))
    steps: list[str] = []

    def fallback(reason: str) -> ChainChoice:
        if listener.HasField("default_filter_chain"):
            return ChainChoice(None, listener.default_filter_chain,
                               f"{reason}; the default filter chain takes it")
        return ChainChoice(None, None, reason)

    # 1. destination port: a chain naming the port beats those without one.
    by_port = [c for c in candidates if match_of(c[1]).HasField("destination_port")
               and match_of(c[1]).destination_port.value == port]
    if by_port:
        candidates = by_port
        steps.append(f"destination port {port}")
    else:
        candidates = [c for c in candidates if not match_of(c[1]).HasField("destination_port")]
    if not candidates:
        return fallback(f"no filter chain matches destination port {port}")
    # 2. destination IP: the longest prefix containing the address; no prefix is /0.
    ip = ipaddress.ip_address(address)
    best: tuple[int, str] | None = None
    for _, chain in candidates:
        ranges = [_network(r) for r in match_of(chain).prefix_ranges]
        for network in ranges or [ipaddress.ip_network("0.0.0.0/0" if ip.version == 4
                                                        else "::/0")]:
            if network.version == ip.version and ip in network and (
                    best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, str(network))

    def in_best(chain: Any) -> bool:
        ranges = [str(_network(r)) for r in match_of(chain).prefix_ranges]
        assert best is not None
        return best[1] in ranges if best[0] > 0 or ranges else True

    if best is None:
        return fallback(f"no filter chain's prefix_ranges contain {address}")
    candidates = [c for c in candidates if in_best(c[1])]
    if best[0] > 0:
        steps.append(f"destination {address} in {best[1]}")
    # 3. server name: exact, then `*.` suffixes from the longest, then chains without names.
    name = detected.server_name
    lookups = [name] if name else []
    dot = name.find(".", 1)
    while 0 <= dot < len(name) - 1:
        lookups.append(name[dot:])
        dot = name.find(".", dot + 1)
    before = candidates
    candidates = _narrow(candidates, lookups, lambda chain: {
        _server_name_key(n) for n in match_of(chain).server_names})
    if not candidates:
        return fallback(f"no filter chain's server_names match SNI {name or '(none)'}")
    if any(match_of(c[1]).server_names for c in candidates):
        steps.append(f"SNI {name}")
    elif any(match_of(c[1]).server_names for c in before):
        steps.append(f"no server_names match SNI {name or '(none)'}; a chain without them")
    # 4. transport protocol.
    candidates = _narrow(candidates, [detected.transport],
                         lambda chain: {match_of(chain).transport_protocol} - {""})
    if not candidates:
        return fallback(f"no filter chain matches transport protocol {detected.transport}")
    if any(match_of(c[1]).transport_protocol for c in candidates):
        steps.append(f"transport {detected.transport}")
    # 5. application protocols, in the client's order.
    candidates = _narrow(candidates, detected.alpn,
                         lambda chain: set(match_of(chain).application_protocols))
    if not candidates:
        return fallback(f"no filter chain matches application protocols "
                        f"{list(detected.alpn) or '(none)'}")
    if any(match_of(c[1]).application_protocols for c in candidates):
        steps.append(f"ALPN {list(detected.alpn)}")
    if len(candidates) > 1:
        indexes = [i for i, _ in candidates]
        return ChainChoice(None, None, f"filter chains {indexes} match alike: Envoy rejects a "
                                       "listener with overlapping matches", overlapping=True)
    index, chain = candidates[0]
    return ChainChoice(index, chain, ", ".join(steps) or "the only chain for any connection")
