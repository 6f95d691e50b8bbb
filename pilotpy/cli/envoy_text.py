"""Envoy route matches (proto3 JSON, as `pilotpy translate` prints them) in words, for
`pilotpy explain` and `pilotpy diff`: `prefix /, header end-user exact jason`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _condition(matcher: Mapping[str, Any]) -> str:
    """A header or query matcher's condition: `exact jason`, `present`, ..."""
    if matcher.get("presentMatch"):
        return "present"
    string = matcher.get("stringMatch")
    if isinstance(string, Mapping):
        for kind in ("exact", "prefix", "suffix", "contains"):
            if kind in string:
                case = " (any case)" if string.get("ignoreCase") else ""
                return f"{kind} {string[kind]}{case}"
        if "safeRegex" in string:
            return f"regex {string['safeRegex'].get('regex', '')}"
    condition = {k: v for k, v in matcher.items()
                 if k not in ("name", "invertMatch", "treatMissingHeaderAsEmpty")}
    return json.dumps(condition, sort_keys=True)


def match_text(match: Mapping[str, Any]) -> str:
    """An Envoy RouteMatch (proto3 JSON) in words: path, headers, query parameters."""
    parts = []
    for key, words in (("prefix", "prefix"), ("path", "path"),
                       ("pathSeparatedPrefix", "path prefix")):
        if key in match:
            parts.append(f"{words} {match[key]}")
    if "safeRegex" in match:
        parts.append(f"path regex {match['safeRegex'].get('regex', '')}")
    for header in match.get("headers", []):
        text = f"header {header['name']} {_condition(header)}"
        parts.append(("not " if header.get("invertMatch") else "") + text)
    for query in match.get("queryParameters", []):
        parts.append(f"query {query['name']} {_condition(query)}")
    if match.get("caseSensitive") is False:
        parts.append("case-insensitive")
    return ", ".join(parts)

