"""The mesh's trust domain and its aliases in peer principals (istiod's
pilot/pkg/security/trustdomain): a principal naming the local trust domain, an alias of it,
or `cluster.local` (which always means the local one) is matched in each of them, so
policies keep working across a trust domain migration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CLUSTER_LOCAL = "cluster.local"


def _prefix_match(value: str, pattern: str) -> bool:
    return pattern.endswith("*") and value.startswith(pattern[:-1])


def _suffix_match(value: str, pattern: str) -> bool:
    return pattern.startswith("*") and value.endswith(pattern[1:])


def _matches_any(value: str, domains: Sequence[str]) -> bool:
    return any(d in (value, "*") or _prefix_match(value, d) or _prefix_match(d, value)
               or _suffix_match(value, d) or _suffix_match(d, value) for d in domains)


@dataclass(frozen=True, slots=True)
class TrustDomains:
    """The local trust domain first, then its aliases."""

    domains: tuple[str, ...] = (CLUSTER_LOCAL,)

    def replace_aliases(self, principals: Sequence[str]) -> tuple[str, ...]:
        """Each `<td>/ns/<ns>/sa/<sa>` principal whose trust domain is ours, an alias or
        `cluster.local`, once per trust domain; others unchanged."""
        out: list[str] = []
        for principal in principals:
            parts = principal.split("/")
            if len(parts) != 5 or parts[0] == "*":
                out.append(principal)  # no trust domain enforced
                continue
            domain = parts[0]
            if not (_matches_any(domain, self.domains) or domain == CLUSTER_LOCAL):
                out.append(principal)
                continue
            variants: list[str] = []
            for local in self.domains:
                variant = (principal if _suffix_match(local, domain)
                           else "/".join([local, *parts[1:]]))
                if variant not in variants:
                    variants.append(variant)
            out.extend(variants)
        return tuple(out)

    def expand_aliases(self, values: Sequence[str]) -> tuple[str, ...]:
        """A `trustDomains` value naming ours or an alias stands for all of them."""
        out: list[str] = []
        for value in values:
            for expanded in (self.domains if value in self.domains else (value,)):
                if expanded not in out:
                    out.append(expanded)
        return tuple(out)
