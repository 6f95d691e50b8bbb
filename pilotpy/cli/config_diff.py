"""Field-level differences between two proxies' Envoy resources (proto3 JSON, as `pilotpy
translate` prints them), for `pilotpy diff`.

Resources are matched by name per type. Inside a resource, lists whose elements all carry a
distinct `name` (virtual hosts, weighted clusters, filter chains with names) are matched by
name, and routes by their match (`routes[prefix /, header end-user exact jason]`), so one
inserted element does not shift every other; other lists are aligned on equal elements
(difflib), and elements replaced one for one are compared field by field.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pilotpy.cli.envoy_text import match_text

# The field naming each resource of a type.
NAME_FIELD = {"listeners": "name", "routes": "name", "clusters": "name",
              "endpoints": "clusterName"}
MISSING = object()  # a value absent on one side


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str  # `virtualHosts[reviews:9080].routes[0].route.timeout`
    old: Any = MISSING
    new: Any = MISSING

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.old is not MISSING:
            out["old"] = self.old
        if self.new is not MISSING:
            out["new"] = self.new
        return out

    def __str__(self) -> str:
        if self.old is MISSING:
            return f"+ {self.path}: {_short(self.new)}"
        if self.new is MISSING:
            return f"- {self.path}: {_short(self.old)}"
        return f"~ {self.path}: {_short(self.old)} -> {_short(self.new)}"


@dataclass(frozen=True, slots=True)
class ResourceChange:
    type: str  # listeners, routes, clusters, endpoints
    name: str
    action: str  # added, removed, changed
    fields: tuple[FieldChange, ...] = field(default_factory=tuple)
    resource: Any = None  # the whole resource, added or removed

    def to_json(self) -> dict[str, Any]:
        out = {"type": self.type, "name": self.name, "action": self.action,
               "fields": [f.to_json() for f in self.fields]}
        if self.resource is not None:
            out["resource"] = self.resource
        return out


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _labels(items: Sequence[Any]) -> list[str] | None:
    """How to tell the elements apart, when every one can be: their distinct `name`s, else
    (routes, often unnamed) their distinct matches in words."""
    if not all(isinstance(item, Mapping) for item in items):
        return None
    names = [item.get("name") for item in items]
    if all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names):
        return [str(n) for n in names]
    if all(isinstance(item.get("match"), Mapping) for item in items):
        matches = [match_text(item["match"]) for item in items]
        if len(set(matches)) == len(matches):
            return matches
    return None


def field_changes(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Every leaf or subtree that differs, with its path."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[FieldChange] = []
        for key in sorted(old.keys() | new.keys()):
            child = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append(FieldChange(child, old=old[key]))
            elif key not in old:
                out.append(FieldChange(child, new=new[key]))
            else:
                out += field_changes(old[key], new[key], child)
        return out
    if isinstance(old, list) and isinstance(new, list):
        return _list_changes(old, new, path)
    return [] if old == new else [FieldChange(path, old, new)]


def _list_changes(old: list[Any], new: list[Any], path: str) -> list[FieldChange]:
    old_names, new_names = _labels(old), _labels(new)
    out: list[FieldChange] = []
    if old_names is not None and new_names is not None:
        return _keyed(old, new, path, old_names, new_names)
    matcher = difflib.SequenceMatcher(a=[_canonical(v) for v in old],
                                      b=[_canonical(v) for v in new], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:
            for offset in range(i2 - i1):
                out += field_changes(old[i1 + offset], new[j1 + offset], f"{path}[{j1 + offset}]")
            continue
        out += [FieldChange(f"{path}[{i}]", old=old[i]) for i in range(i1, i2)]
        out += [FieldChange(f"{path}[{j}]", new=new[j]) for j in range(j1, j2)]
    return out


def _keyed(old: list[Any], new: list[Any], path: str, old_names: list[str],
           new_names: list[str]) -> list[FieldChange]:
    before = dict(zip(old_names, old, strict=True))
    after = dict(zip(new_names, new, strict=True))
    out = [FieldChange(f"{path}[{name}]", old=before[name])
           for name in old_names if name not in after]
    for name in new_names:
        child = f"{path}[{name}]"
        if name not in before:
            out.append(FieldChange(child, new=after[name]))
        else:
            out += field_changes(before[name], after[name], child)
    if not out and old_names != new_names:
        out.append(FieldChange(f"{path}(order)", old_names, new_names))
    return out


def resource_changes(old: Mapping[str, list[dict[str, Any]]],
                     new: Mapping[str, list[dict[str, Any]]]) -> list[ResourceChange]:
    """Per type (listeners, routes, clusters, endpoints), in that order: resources added,
    removed and changed, by name."""
    out: list[ResourceChange] = []
    for type_name, key in NAME_FIELD.items():
        before = {str(r.get(key, "")): r for r in old.get(type_name, [])}
        after = {str(r.get(key, "")): r for r in new.get(type_name, [])}
        for name in sorted(before.keys() | after.keys()):
            if name not in after:
                out.append(ResourceChange(type_name, name, "removed", resource=before[name]))
            elif name not in before:
                out.append(ResourceChange(type_name, name, "added", resource=after[name]))
            elif before[name] != after[name]:
                out.append(ResourceChange(type_name, name, "changed",
                                          tuple(field_changes(before[name], after[name]))))
    return out
