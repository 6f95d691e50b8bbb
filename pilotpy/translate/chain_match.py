"""Keeps a listener's filter chain matches distinct: Envoy rejects a whole listener when two
chains match the same server name (and address range). istiod checks SNI hosts per port
(CheckDuplicates); this checks what actually reaches Envoy."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.listener.v3 import listener_components_pb2 as lc

from pilotpy.problems import ObjectRef, Problem, Reason


@dataclass(frozen=True, slots=True)
class RoutedChain:
    chain: lc.FilterChain
    ref: ObjectRef  # the object that asked for it, and where, for problems
    field: str
    reads_sni: bool = False  # matches on SNI (even `*`): the listener needs the TLS inspector

    def taken(self, names: list[str], listener: str) -> Problem:
        """The problem of a chain refused because an earlier one matches the same names."""
        return Problem(Reason.CONFLICT, f"server names {names} already have a filter chain on "
                       f"listener {listener}; skipped", self.ref, self.field)


def matches_all(chain: lc.FilterChain) -> bool:
    """Selects nothing by SNI or address: only fit as a listener's default chain."""
    match = chain.filter_chain_match
    return not (match.server_names or match.prefix_ranges)


def _keys(match: lc.FilterChainMatch) -> set[tuple[str, ...]]:
    ranges = tuple(sorted(f"{r.address_prefix}/{r.prefix_len.value}"
                          for r in match.prefix_ranges))
    rest = (match.transport_protocol, *sorted(match.application_protocols),
            str(match.destination_port.value), *ranges)
    return {(name, *rest) for name in (match.server_names or [""])}


class DistinctChains:
    """Filter chains accepted so far; `add` refuses a chain overlapping an earlier one."""

    __slots__ = ("_seen", "chains")

    def __init__(self) -> None:
        self._seen: set[tuple[str, ...]] = set()
        self.chains: list[lc.FilterChain] = []

    def add(self, chain: lc.FilterChain) -> list[str]:
        """The server names already taken by an earlier chain ([] when `chain` was added)."""
        keys = _keys(chain.filter_chain_match)
        taken = keys & self._seen
        if taken:
            return sorted({k[0] or "*" for k in taken})
        self._seen |= keys
        self.chains.append(chain)
        return []
