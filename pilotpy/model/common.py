"""Istio API types shared by several kinds (networking.istio.io)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pilotpy.model import hosts
from pilotpy.model.fields import Fields
from pilotpy.model.meta import is_dns1123_label

MatchKind = Literal["exact", "prefix", "regex", "present"]


@dataclass(frozen=True, slots=True)
class StringMatch:
    """`{exact|prefix|regex: value}`; `present` is the empty match `{}` (or regex `*`)."""

    kind: MatchKind
    value: str = ""


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    subset: str = ""
    port: int | None = None


@dataclass(frozen=True, slots=True)
class HeaderOperations:
    set: Mapping[str, str] = field(default_factory=dict)
    add: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


@dataclass(frozen=True, slots=True)
class Headers:
    request: HeaderOperations = field(default_factory=HeaderOperations)
    response: HeaderOperations = field(default_factory=HeaderOperations)


_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Pseudo-headers may be matched on (`:authority`) and set for authority rewrites.
_PSEUDO_OR_HEADER = re.compile(r"^:?[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def valid_regex(pattern: str) -> str | None:
    """Envoy uses RE2; Python's `re` accepts a superset for the syntax users write, so a
    pattern Python rejects is certainly invalid. Returns the error, or None."""
    if len(pattern) > 1024:
        return "regex is too large, max length allowed is 1024"
    if "(?=" in pattern or "(?!" in pattern or "(?<" in pattern:
        return "lookaround is not supported by RE2"
    try:
        re.compile(pattern)
    except re.error as err:
        return f"invalid regex: {err}"
    return None


def parse_string_match(f: Fields | None, *, allow_empty: bool = True) -> StringMatch | None:
    if f is None:
        return None
    present = [k for k in ("exact", "prefix", "regex") if f.has(k)]
    f.done()
    if not present:
        if not allow_empty:
            f.error("one of exact, prefix or regex is required")
            return None
        return StringMatch("present")
    if len(present) > 1:
        f.error(f"only one of exact, prefix or regex may be set, got {', '.join(present)}")
        return None
    kind = present[0]
    value = f.string(kind)
    if kind == "regex":
        if value == "*":
            # `*` is not RE2; istiod turns it into a presence match.
            return StringMatch("present")
        if not value:
            f.error("regex must not be empty", kind)
            return None
        problem = valid_regex(value)
        if problem:
            f.error(problem, kind)
            return None
    if kind == "prefix" and not value and not allow_empty:
        f.error("prefix must not be empty", kind)
        return None
    return StringMatch(kind, value)  # type: ignore[arg-type]


def parse_port_selector(f: Fields | None) -> int | None:
    if f is None:
        return None
    number = f.integer("number", minimum=1, maximum=65535, required=True)
    f.done()
    return number or None


def parse_destination(f: Fields | None, *, required: bool = True) -> Destination | None:
    if f is None:
        return None
    host = f.string("host", required=required)
    if host:
        if host == "*":
            f.error("a destination host cannot be '*'", "host")
        else:
            problem = hosts.validate_hostname(host, allow_wildcard=True)
            if problem:
                f.error(problem, "host")
    subset = f.string("subset")
    if subset and not is_dns1123_label(subset):
        f.error(f"subset name {subset!r} is not a DNS-1123 label", "subset")
    port = parse_port_selector(f.child("port"))
    f.done()
    return Destination(host, subset, port)


def parse_percent(f: Fields | None) -> float | None:
    """`{value: 12.5}`: 0, or 0.0001..100."""
    if f is None:
        return None
    value = f.number("value")
    f.done()
    if value < 0 or value > 100 or 0 < value < 0.0001:
        f.error(f"percentage {value:g} is neither 0 nor in range [0.0001, 100]", "value")
        return None
    return value


def valid_header_name(name: str, *, allow_pseudo: bool = False) -> bool:
    return bool((_PSEUDO_OR_HEADER if allow_pseudo else _HEADER_NAME).match(name))


def _parse_header_operations(f: Fields | None, *, request: bool) -> HeaderOperations:
    if f is None:
        return HeaderOperations()
    result = {}
    for op in ("set", "add"):
        values = f.string_map(op)
        for name, value in values.items():
            allowed = request and name.lower() in (":authority", "host")
            if not allowed and (name.startswith(":") or not valid_header_name(name)):
                f.error(f"invalid header name {name!r}", f"{op}.{name}")
            if "\n" in value or "\r" in value:
                f.error("header values must not contain line breaks", f"{op}.{name}")
        result[op] = values
    remove = f.string_list("remove")
    for name in remove:
        if name.startswith(":") or not valid_header_name(name):
            f.error(f"invalid header name {name!r}", "remove")
    f.done()
    return HeaderOperations(result["set"], result["add"], remove)


def parse_headers(f: Fields | None) -> Headers | None:
    if f is None:
        return None
    headers = Headers(
        request=_parse_header_operations(f.child("request"), request=True),
        response=_parse_header_operations(f.child("response"), request=False),
    )
    f.done()
    return headers


def parse_export_to(f: Fields, namespace: str) -> tuple[str, ...]:
    values = f.string_list("exportTo")
    for value in values:
        bare = value.removeprefix("~") if value != "~" else value
        if bare not in (".", "*", "~") and not is_dns1123_label(bare):
            f.error(f"{value!r} is not '.', '*', '~' or a namespace name", "exportTo")
    if "*" in values and len(values) > 1:
        f.error("'*' must be the only entry", "exportTo")
    return values
