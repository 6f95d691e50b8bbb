"""Diffs and response bodies shared by the streams of a proxy class, bounded in bytes.

An entry is keyed by the objects it was computed from (resource sets, subscriptions). Those
are held weakly: an entry lives no longer than every object of its key, so what a closed
stream's subscription cost is dropped when the stream goes, and what an old version cost
when no stream holds that version any more. Within that, the least recently used entries go
first once their estimated size passes the budget.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

# What an entry costs besides its value: the key, the bookkeeping, the dict slots.
ENTRY_OVERHEAD = 200

Key = tuple[Hashable, ...]


def _by_identity(part: object) -> bool:
    """Objects that can be watched (they support weak references) are keyed by identity;
    None, strings and frozensets by value."""
    return type(part).__weakrefoffset__ != 0


class Memo:
    def __init__(self, budget_bytes: int = 64 * 1024 * 1024) -> None:
        self.budget_bytes = budget_bytes
        self.size_bytes = 0
        # key -> (value, cost, ids of the key's watched objects)
        self._entries: OrderedDict[Key, tuple[Any, int, tuple[int, ...]]] = OrderedDict()
        # id of a watched key object -> its weak reference and the entries naming it.
        self._watched: dict[int, tuple[weakref.ref[Any], set[Key]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, kind: str, *parts: object) -> Any:
        key = (kind, *(id(p) if _by_identity(p) else p for p in parts))
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[0]

    def put(self, value: Any, cost: int, kind: str, *parts: object) -> Any:
        """Remember `value` (about `cost` bytes of memory of its own) for the key; returns
        it."""
        watched = tuple(p for p in parts if _by_identity(p))
        key = (kind, *(id(p) if _by_identity(p) else p for p in parts))
        self._drop(key)
        cost += ENTRY_OVERHEAD
        self._entries[key] = (value, cost, tuple(id(p) for p in watched))
        self.size_bytes += cost
        for part in watched:
            self._watch(part, key)
        while self.size_bytes > self.budget_bytes and self._entries:
            self._drop(next(iter(self._entries)))
        return value

    def set_budget(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        while self.size_bytes > self.budget_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def _watch(self, part: object, key: Key) -> None:
        ident = id(part)
        watched = self._watched.get(ident)
        if watched is None:
            # The callback runs while `part` is being freed, before its id can be reused.
            ref = weakref.ref(part, lambda _: self._forget(ident))
            watched = self._watched[ident] = (ref, set())
        watched[1].add(key)

    def _forget(self, ident: int) -> None:
        watched = self._watched.get(ident)
        if watched is not None:
            for key in list(watched[1]):
                self._drop(key)
            self._watched.pop(ident, None)

    def _drop(self, key: Key) -> None:
        found = self._entries.pop(key, None)
        if found is None:
            return
        self.size_bytes -= found[1]
        for ident in found[2]:
            watched = self._watched.get(ident)
            if watched is not None:
                watched[1].discard(key)
                if not watched[1]:
                    del self._watched[ident]
