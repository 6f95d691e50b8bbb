"""The store: current objects by (kind, namespace, name), fed by sources, read by discovery.

Sources publish whole partitions (a file, one kind of a kube informer) or single objects.
Storing an object equal to the stored one is a no-op. Bursts are coalesced like istiod's
debounce: a change set is handed over once nothing changed for 100 ms, or 10 s after its
first change, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pilotpy.model import Key

log = logging.getLogger("pilotpy.store")


@dataclass
class Debounce:
    """When to hand over a change set. Pure: callers pass the time."""

    quiet: float = 0.1
    max_wait: float = 10.0
    first: float | None = None
    last: float | None = None

    def event(self, now: float) -> None:
        if self.first is None:
            self.first = now
        self.last = now

    @property
    def pending(self) -> bool:
        return self.first is not None

    def deadline(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        return min(self.last + self.quiet, self.first + self.max_wait)

    def due(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def reset(self) -> None:
        self.first = self.last = None


@dataclass(frozen=True, slots=True)
class ChangeSet:
    objects: Mapping[str, Mapping[Key, Any]]  # kind -> key -> object; never mutated later
    changed: frozenset[Key]
    version: int
    # From the first change of the set to its hand-over (istiod's pilot_debounce_time).
    debounce_seconds: float = 0.0


@dataclass
class _Partition:
    objects: dict[Key, Any] = field(default_factory=dict)


class Store:
    def __init__(self, *, quiet: float = 0.1, max_wait: float = 10.0,
                 clock: Callable[[], float] | None = None) -> None:
        self._partitions: dict[str, _Partition] = {}
        # The winning object per key, and which partition it came from.
        self._objects: dict[str, dict[Key, Any]] = {}
        self._holders: dict[Key, set[str]] = {}
        self._changed: set[Key] = set()
        self._debounce = Debounce(quiet, max_wait)
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._version = 0
        self._frozen: dict[str, Mapping[Key, Any]] = {}
        # (kind, add|update|delete) -> count, for istiod's pilot_k8s_cfg_events.
        self.events: Counter[tuple[str, str]] = Counter()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    # -- writes (from sources) -------------------------------------------------------------

    def replace_partition(self, partition: str, objects: Mapping[Key, Any]) -> None:
        """Make `partition` hold exactly `objects` (a file's content, a re-list)."""
        old = self._partitions.pop(partition, _Partition()).objects
        if objects:
            self._partitions[partition] = _Partition(dict(objects))
        for key in old.keys() - objects.keys():
            self._release(partition, key)
        for key in objects.keys() - old.keys():
            self._holders.setdefault(key, set()).add(partition)
        self._recompute(old.keys() | objects.keys())

    def upsert(self, partition: str, key: Key, obj: Any) -> None:
        self._partitions.setdefault(partition, _Partition()).objects[key] = obj
        self._holders.setdefault(key, set()).add(partition)
        self._recompute({key})

    def delete(self, partition: str, key: Key) -> None:
        found = self._partitions.get(partition)
        if found is not None and found.objects.pop(key, None) is not None:
            self._release(partition, key)
            self._recompute({key})

    def _release(self, partition: str, key: Key) -> None:
        holders = self._holders.get(key)
        if holders is not None:
            holders.discard(partition)
            if not holders:
                del self._holders[key]

    def _recompute(self, keys: Iterable[Key]) -> None:
        changed = False
        for key in keys:
            winner = self._winner(key)
            by_kind = self._objects.setdefault(key.kind, {})
            current = by_kind.get(key)
            if winner is None:
                if current is not None:
                    del by_kind[key]
                    self._mark(key)
                    self.events[(key.kind, "delete")] += 1
                    changed = True
                continue
            obj = winner
            if current is None or current != obj:
                self.events[(key.kind, "add" if current is None else "update")] += 1
                by_kind[key] = obj
                self._mark(key)
                changed = True
        if changed:
            self._debounce.event(self._now())
            self._wakeup.set()

    def _winner(self, key: Key) -> Any:
        """The same key in two partitions (two files): the last partition by name wins, as
        the last file does for `kubectl apply -f dir` (which applies them in name order)."""
        holders = self._holders.get(key)
        if not holders:
            return None
        last = max(holders)
        if len(holders) > 1:
            log.warning("%s is defined in %s; using %s (the last, as kubectl apply -f would)",
                        key, ", ".join(sorted(holders)), last)
        return self._partitions[last].objects[key]

    def _mark(self, key: Key) -> None:
        self._changed.add(key)
        self._frozen.pop(key.kind, None)

    # -- reads (by discovery) --------------------------------------------------------------

    def snapshot(self) -> ChangeSet:
        """Take the pending change set now, debounce or not."""
        for kind, objects in self._objects.items():
            if kind not in self._frozen:
                self._frozen[kind] = dict(objects)
        changed = frozenset(self._changed)
        self._changed.clear()
        waited = 0.0
        if self._debounce.first is not None:
            with contextlib.suppress(RuntimeError):  # no clock and no running loop
                waited = max(0.0, self._now() - self._debounce.first)
        self._debounce.reset()
        self._wakeup.clear()
        self._version += 1
        return ChangeSet(dict(self._frozen), changed, self._version, waited)

    @property
    def pending(self) -> bool:
        return bool(self._changed)

    async def changes(self) -> AsyncIterator[ChangeSet]:
        """Debounced change sets, forever."""
        while True:
            await self._wakeup.wait()
            while True:
                deadline = self._debounce.deadline()
                if deadline is None:
                    break
                delay = deadline - self._now()
                if delay <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)
            if self._changed:
                yield self.snapshot()
            else:
                self._wakeup.clear()
