"""Field-by-field differences between what istiod and pilotpy send one proxy.

Both sides are JSON trees (tests/diff/tojson.py) by type and resource name. Lists of objects
that all carry a distinct `name` (filters, virtual hosts, routes, clusters of a weighted
route, named filter chains) are paired by name, so one extra filter reads as one difference
instead of a shifted list; where Envoy evaluates such a list in order, a different order of
the common names is a difference of its own (`<path>[order]`). Filter chains without
distinct names are paired by their match (`filterChains[match=destinationPort=8000,...]`).
Other lists are paired by position, after normalize.py sorted the ones whose order Envoy
ignores; such lists of strings (domains, server names) are compared as sets, one difference
per string only one side has (`<path>[=<string>]`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from pilotpy.xds.types import short_name
from tests.diff.normalize import UNORDERED_LISTS


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class Difference:
    case: str
    proxy: str
    type: str  # cds, eds, lds, rds
    resource: str
    path: str  # "" for the whole resource; JSON field names, `[name=...]` or `[index]`
    istiod: Any  # MISSING where only pilotpy has it
    pilotpy: Any  # MISSING where only istiod has it

    @property
    def side(self) -> str:
        """Who has it: `istiod` (only), `pilotpy` (only) or `both` (different values)."""
        if self.pilotpy is MISSING:
            return "istiod"
        if self.istiod is MISSING:
            return "pilotpy"
        return "both"

    def describe(self) -> str:
        where = f"{self.type} {self.resource}" + (f" {self.path}" if self.path else "")
        return (f"{self.case} [{self.proxy}] {where}: istiod {_show(self.istiod)}; "
                f"pilotpy {_show(self.pilotpy)}")

    def as_json(self) -> dict[str, Any]:
        return {"case": self.case, "proxy": self.proxy, "type": self.type,
                "resource": self.resource, "path": self.path, "side": self.side,
                "istiod": None if self.istiod is MISSING else self.istiod,
                "pilotpy": None if self.pilotpy is MISSING else self.pilotpy}


def _show(value: Any, limit: int = 160) -> str:
    if value is MISSING:
        return "-"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "…"


def _names(items: list[Any]) -> list[str] | None:
    """The `name` of every item, when all items are objects with distinct names."""
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str)
                            for i in items):
        return None
    names = [i["name"] for i in items]
    return names if len(set(names)) == len(names) else None


def tree_differences(istiod: Any, pilotpy: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, istiod value, pilotpy value) for every place the trees differ."""
    if isinstance(istiod, dict) and isinstance(pilotpy, dict):
        for key in sorted(istiod.keys() | pilotpy.keys()):
            sub = f"{path}.{key}" if path else key
            yield from tree_differences(istiod.get(key, MISSING), pilotpy.get(key, MISSING),
                                        sub)
        return
    if isinstance(istiod, list) and isinstance(pilotpy, list):
        yield from _list_differences(istiod, pilotpy, path)
        return
    if istiod != pilotpy:
        yield path, istiod, pilotpy


def _list_differences(istiod: list[Any], pilotpy: list[Any],
                      path: str) -> Iterator[tuple[str, Any, Any]]:
    if _last_key(path) in UNORDERED_LISTS and not any(
            isinstance(v, dict | list) for v in (*istiod, *pilotpy)):
        # A set of strings (domains, server names): each one only one side has.
        for value in sorted(set(istiod) ^ set(pilotpy), key=str):
            present = value in istiod
            yield (f"{path}[={value}]", value if present else MISSING,
                   MISSING if present else value)
        return
    left, right = _names(istiod), _names(pilotpy)
    if (left is None or right is None) and _last_key(path) == "filterChains":
        left, right = chain_matches(istiod), chain_matches(pilotpy)
        if left is not None and right is not None:
            by_left = dict(zip(left, istiod, strict=True))
            by_right = dict(zip(right, pilotpy, strict=True))
            for match in sorted(by_left.keys() | by_right.keys()):
                yield from tree_differences(by_left.get(match, MISSING),
                                            by_right.get(match, MISSING),
                                            f"{path}[match={match}]")
            return
    if left is not None and right is not None:
        by_left = dict(zip(left, istiod, strict=True))
        by_right = dict(zip(right, pilotpy, strict=True))
        common_left = [n for n in left if n in by_right]
        common_right = [n for n in right if n in by_left]
        if common_left != common_right and _last_key(path) not in UNORDERED_LISTS:
            yield f"{path}[order]", common_left, common_right
        for name in [*left, *(n for n in right if n not in by_left)]:
            yield from tree_differences(by_left.get(name, MISSING), by_right.get(name, MISSING),
                                        f"{path}[name={name}]")
        return
    for index in range(max(len(istiod), len(pilotpy))):
        yield from tree_differences(istiod[index] if index < len(istiod) else MISSING,
                                    pilotpy[index] if index < len(pilotpy) else MISSING,
                                    f"{path}[{index}]")


def chain_matches(chains: list[Any]) -> list[str] | None:
    """Each filter chain's `filterChainMatch` as a label (`destinationPort=8000,
    transportProtocol=tls`, list values joined by `|`), when all are distinct: Envoy picks
    a chain by its match, never by its place, and chains that share a name (a port's mTLS
    and plaintext chains) are told apart by it."""
    if not all(isinstance(c, dict) for c in chains):
        return None
    labels = []
    for chain in chains:
        match = chain.get("filterChainMatch") or {}
        labels.append(",".join(
            f"{key}=" + ("|".join(_label(v) for v in value) if isinstance(value, list)
                         else _label(value))
            for key, value in sorted(match.items())))
    return labels if len(set(labels)) == len(labels) else None


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return "/".join(f"{v}" for _, v in sorted(value.items()))
    return str(value)


def _last_key(path: str) -> str:
    return path.rsplit(".", 1)[-1].split("[", 1)[0]


def differences(case: str, proxy: str, istiod: dict[str, dict[str, Any]],
                pilotpy: dict[str, dict[str, Any]]) -> list[Difference]:
    out: list[Difference] = []
    for type_url in sorted(istiod.keys() | pilotpy.keys()):
        left, right = istiod.get(type_url, {}), pilotpy.get(type_url, {})
        for name in sorted(left.keys() | right.keys()):
            if name not in right or name not in left:
                out.append(Difference(case, proxy, short_name(type_url), name, "",
                                      left.get(name, MISSING), right.get(name, MISSING)))
                continue
            out.extend(Difference(case, proxy, short_name(type_url), name, path, a, b)
                       for path, a, b in tree_differences(left[name], right[name]))
    return out
