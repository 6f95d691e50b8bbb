"""Hostname rules of Istio's `host.Name` (pkg/config/host): wildcards, subsets, intersections,
short-name resolution and the `ns/host` forms of Gateway servers."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache

_LABEL = re.compile(r"^[a-z0-9A-Z]([-a-z0-9A-Z]*[a-z0-9A-Z])?$")
_WILDCARD_LABEL = re.compile(r"^(\*|\*?[a-z0-9A-Z]([-a-z0-9A-Z]*[a-z0-9A-Z])?)$")


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(\.{_OCTET}){{3}}")


def is_ip(value: str) -> bool:
    # Every name and address of every object passes here: dotted quads (what ipaddress
    # accepts: no leading zeros) and names without ':' are answered without it.
    if _IPV4.fullmatch(value):
        return True
    if ":" not in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def validate_hostname(host: str, *, allow_wildcard: bool) -> str | None:
    """DNS-1123 with an optional leading `*` label; IPs are accepted. Returns the problem."""
    if is_ip(host):
        return None
    if not host:
        return "empty host"
    if len(host) > 255:
        return f"host {host!r} is too long (max 255)"
    first, _, rest = host.partition(".")
    if len(first) > 63:
        return f"host {host!r} is invalid (label {first!r} is longer than 63 characters)"
    if allow_wildcard:
        if not _WILDCARD_LABEL.match(first) or (first != "*" and "*" in first):
            return (f"host {host!r} is invalid (label {first!r}; a wildcard must be a whole "
                    "'*.' prefix)")
    elif not _LABEL.match(first):
        return f"host {host!r} is invalid (label {first!r})"
    if rest:
        labels = rest.split(".")
        if labels[-1] == "":
            labels = labels[:-1]
        if labels and labels[-1].isdigit():
            return f"host {host!r} is invalid (top level domain cannot be all-numeric)"
        for label in labels:
            if not _LABEL.match(label) or len(label) > 63:
                return f"host {host!r} is invalid (label {label!r})"
    return None


def is_wildcard(host: str) -> bool:
    return host.startswith("*")


def subset_of(host: str, other: str) -> bool:
    """`host` is covered by `other` (`a.b.com` ⊆ `*.b.com` ⊆ `*`)."""
    if is_wildcard(host):
        if is_wildcard(other):
            return len(host) >= len(other) and host[1:].endswith(other[1:])
        return False
    if is_wildcard(other):
        return host.endswith(other[1:])
    return host == other


def matches(host: str, other: str) -> bool:
    """Either host covers the other."""
    return subset_of(host, other) or subset_of(other, host)


def intersection(left: Iterable[str], right: Iterable[str]) -> list[str]:
    """For each pair the more specific name wins; order follows `left` (istiod's
    `Names.Intersection`)."""
    rights = list(right)
    out: list[str] = []
    for a in left:
        for b in rights:
            if subset_of(a, b):
                if a not in out:
                    out.append(a)
            elif subset_of(b, a) and b not in out:
                out.append(b)
    return out


def names_for_namespace(hosts: Iterable[str], namespace: str) -> list[str]:
    """Server hosts visible to a VirtualService in `namespace` (`ns/host`, `*/host`, `host`)."""
    out = []
    for host in hosts:
        ns, slash, name = host.partition("/")
        if slash:
            if ns not in (namespace, "*"):
                continue
            host = name
        out.append(host)
    return out


@lru_cache(maxsize=65536)
def resolve_short_name(host: str, namespace: str, domain_suffix: str) -> str:
    """`reviews` in namespace `default` -> `reviews.default.svc.cluster.local`.

    Names with a dot, IPs and `*` are already qualified (istiod's ResolveShortnameToFQDN).
    """
    if not host or host == "*" or "." in host or is_ip(host):
        return host
    out = f"{host}.{namespace}" if namespace else host
    return f"{out}.svc.{domain_suffix}" if domain_suffix else out


def resolve_gateway_name(name: str, namespace: str) -> str:
    """`gw` and `./gw` -> `ns/gw`; legacy `gw.ns.svc.cluster.local` -> `ns/gw`; `mesh` kept."""
    if name == "mesh":
        return name
    if "/" not in name:
        if "." not in name:
            return f"{namespace}/{name}"
        short, _, rest = name.partition(".")
        return f"{rest.split('.', 1)[0]}/{short}"
    ns, _, short = name.partition("/")
    return f"{namespace}/{short}" if ns == "." else name
