"""The checked-in list of accepted differences (tests/diff/accepted.yaml).

Each entry says what differs, for a user (`text`, the README's "Differences from istiod"
bullet), and why it is accepted (`reason`). Entries with `match` explain the differences the
tier finds: a difference is accepted when it matches one of the patterns (every given field;
`*` in a pattern matches any text, everything else is literal) and, when the entry names a
`rule`, that rule's check too. Entries without `match` document differences that never show
in the resources (debug endpoints, validation, status writes). An entry with `match` that
explains nothing in a full run is stale and fails the tier."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.diff.compare import MISSING, Difference

ACCEPTED = Path(__file__).with_name("accepted.yaml")
_PATTERN_FIELDS = ("case", "proxy", "type", "resource", "path", "side")

Rule = Callable[[Difference, Any, Any], bool]
"""A check on one difference, given the whole istiod and pilotpy resource it is in."""


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if part == "*" else re.escape(part)
                              for part in re.split(r"(\*)", pattern)) + r"\Z")


@dataclass
class Entry:
    id: str
    text: str
    reason: str
    patterns: list[dict[str, re.Pattern[str]]] = field(default_factory=list)
    rule: str = ""
    used: int = 0

    @property
    def matches_resources(self) -> bool:
        return bool(self.patterns)

    def explains(self, difference: Difference, rules: dict[str, Rule], istiod: Any,
                 pilotpy: Any) -> bool:
        values = {name: str(getattr(difference, name)) for name in _PATTERN_FIELDS}
        if not any(all(p.match(values[name]) for name, p in pattern.items())
                   for pattern in self.patterns):
            return False
        return not self.rule or rules[self.rule](difference, istiod, pilotpy)


def load(path: Path = ACCEPTED) -> list[Entry]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    entries = []
    for item in raw:
        unknown = set(item) - {"id", "text", "reason", "match", "rule"}
        if unknown or not item.get("id") or not item.get("text") or not item.get("reason"):
            raise ValueError(f"{path}: entry {item.get('id')!r} needs id, text and reason "
                             f"(and may have match, rule); unknown keys: {sorted(unknown)}")
        patterns = []
        for pattern in item.get("match") or []:
            bad = set(pattern) - set(_PATTERN_FIELDS)
            if bad:
                raise ValueError(f"{path}: {item['id']}: unknown match fields {sorted(bad)}")
            patterns.append({k: _glob(str(v)) for k, v in pattern.items()})
        entries.append(Entry(item["id"], item["text"].strip(), item["reason"].strip(),
                             patterns, item.get("rule", "")))
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate ids")
    return entries


def explain(entries: Iterable[Entry], rules: dict[str, Rule], difference: Difference,
            istiod: Any, pilotpy: Any) -> Entry | None:
    """The first entry that explains `difference` (its use is counted), or None."""
    for entry in entries:
        if entry.matches_resources and entry.explains(difference, rules, istiod, pilotpy):
            entry.used += 1
            return entry
    return None


def resource_of(side: Any) -> Any:
    return None if side is MISSING else side
