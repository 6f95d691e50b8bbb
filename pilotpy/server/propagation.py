"""Propagation status per object: which connected proxies a config object's latest change
affects, and which of them acknowledged a config version carrying it, rejected it (with the
proxy's message), or have not answered yet.

Discovery knows when each object changed (the push context version that first carried the
change) and which objects each proxy class's config depends on; each stream knows, per xDS
type, the latest config version whose resources its proxy acknowledged or refused
(`pilotpy/xds/status.py`). An object's change has reached a proxy when the proxy
acknowledged, for every type the object shapes, a version at or after the change.
docs/operations.md#propagation-status describes what is reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pilotpy.discovery import Discovery, ObjectChange
from pilotpy.model.kinds import Kind
from pilotpy.model.meta import Key
from pilotpy.model.virtualservice import VirtualService
from pilotpy.problems import Problem
from pilotpy.xds import types
from pilotpy.xds.debug import rfc3339
from pilotpy.xds.server import Connection, XdsServer
from pilotpy.xds.status import StreamStatus

ALL_TYPES = (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE)
# The xDS types whose resources an object of a kind can shape.
_TYPES_BY_KIND: dict[str, tuple[str, ...]] = {
    Kind.GATEWAY: (types.LISTENER, types.ROUTE),
    Kind.DESTINATION_RULE: (types.CLUSTER, types.ENDPOINT),
}


class ProxyState(StrEnum):
    ACKED = "ACKED"  # holds a config version carrying the change
    NACKED = "NACKED"  # refused a config version carrying the change
    PENDING = "PENDING"  # has not answered such a version yet


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    proxy: str  # node id
    proxy_type: str
    state: ProxyState
    type_url: str = ""  # the type refused, for NACKED
    message: str = ""  # the proxy's message, for NACKED

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"proxy": self.proxy, "type": self.proxy_type,
                               "state": self.state.value}
        if self.state is ProxyState.NACKED:
            out.update(typeUrl=self.type_url, message=self.message)
        return out


@dataclass(frozen=True, slots=True)
class ObjectStatus:
    key: Key
    change: ObjectChange | None  # None: pilotpy never served the object
    proxies: tuple[ProxyStatus, ...] = ()
    problems: tuple[Problem, ...] = ()

    def count(self, state: ProxyState) -> int:
        return sum(1 for p in self.proxies if p.state is state)

    def to_json(self) -> dict[str, Any]:
        change = self.change
        out: dict[str, Any] = {"kind": self.key.kind, "namespace": self.key.namespace,
                               "name": self.key.name}
        if change is not None:
            out.update(generation=change.generation, version=change.version,
                       deleted=change.deleted, changedAt=rfc3339(change.at))
        out.update(served=change is not None and not change.deleted,
                   affected=len(self.proxies), acked=self.count(ProxyState.ACKED),
                   nacked=self.count(ProxyState.NACKED), pending=self.count(ProxyState.PENDING),
                   proxies=[p.to_json() for p in self.proxies],
                   problems=[p.to_json() for p in self.problems])
        return out


def relevant_types(key: Key, obj: Any) -> tuple[str, ...]:
    """The xDS types a change to `obj` (None: deleted) can alter for a proxy."""
    if key.kind == Kind.VIRTUAL_SERVICE and isinstance(obj, VirtualService):
        found = ((types.ROUTE,) if obj.http else ()) + (
            (types.LISTENER,) if obj.tcp or obj.tls else ())
        return found or (types.ROUTE,)
    if key.kind == Kind.VIRTUAL_SERVICE:
        return (types.LISTENER, types.ROUTE)
    return _TYPES_BY_KIND.get(key.kind, ALL_TYPES)


def _version(value: str) -> int:
    return int(value) if value.isdigit() else -1


def proxy_state(status: StreamStatus, version: int, type_urls: Iterable[str]
                ) -> tuple[ProxyState, str, str]:
    """Where one proxy stands on a change first carried by config `version`: its state,
    and for a refusal the type and the proxy's message."""
    watched = [(t, s) for t in type_urls if (s := status.types.get(t)) is not None
               and s.sent_nonce]
    if not watched:
        return ProxyState.PENDING, "", ""
    # A version acknowledged at or after the change holds it, whatever was refused later.
    if all(_version(s.acked_snapshot) >= version for _, s in watched):
        return ProxyState.ACKED, "", ""
    for type_url, state in watched:
        if _version(state.acked_snapshot) < version <= _version(state.rejected_snapshot):
            return ProxyState.NACKED, type_url, state.last_error
    return ProxyState.PENDING, "", ""


class Propagation:
    """Joins discovery's object changes with the streams' acknowledgements."""

    def __init__(self, xds: XdsServer, discovery: Discovery) -> None:
        self._xds = xds
        self._discovery = discovery
        # Changes every affected proxy had acknowledged when last looked at: key -> version.
        self._done: dict[Key, int] = {}

    def _proxies(self) -> list[Connection]:
        return sorted((c for c in self._xds.connections.values()
                       if not c.debug and c.handle is not None),
                      key=lambda c: (c.status.node_id, c.status.stream_id))

    def _current(self, key: Key) -> Any:
        push = self._discovery.push
        return push.objects.get(key.kind, {}).get(key) if push is not None else None

    def _problems(self, key: Key, problems: Iterable[Problem] | None = None
                  ) -> tuple[Problem, ...]:
        every = self._discovery.problems.problems() if problems is None else problems
        return tuple(p for p in every if p.concerns(key.kind, key.namespace, key.name))

    def proxies(self, key: Key, change: ObjectChange,
                connections: list[Connection] | None = None) -> tuple[ProxyStatus, ...]:
        """Where each affected connected proxy stands on the object's latest change."""
        wanted = relevant_types(key, self._current(key))
        out = []
        for connection in connections if connections is not None else self._proxies():
            handle: Any = connection.handle
            if key not in self._discovery.dependencies(handle) and (
                    handle.key not in change.before):
                continue
            state, type_url, message = proxy_state(connection.status, change.version, wanted)
            out.append(ProxyStatus(connection.status.node_id, connection.status.node.type,
                                   state, type_url, message))
        return tuple(out)

    def status(self, key: Key, connections: list[Connection] | None = None,
               problems: Iterable[Problem] | None = None) -> ObjectStatus:
        change = self._discovery.object_changes.get(key)
        found = self._problems(key, problems)
        if change is None:
            return ObjectStatus(key, None, (), found)
        return ObjectStatus(key, change, self.proxies(key, change, connections), found)

    def statuses(self, kind: str = "", namespace: str = "", name: str = ""
                 ) -> list[ObjectStatus]:
        """Every followed object matching the filters, by kind, namespace and name."""
        connections = self._proxies()
        problems = self._discovery.problems.problems()
        keys = sorted((k for k in self._discovery.object_changes
                       if (not kind or k.kind == kind) and (not namespace or
                                                            k.namespace == namespace)
                       and (not name or k.name == name)),
                      key=lambda k: (k.kind, k.namespace, k.name))
        return [self.status(k, connections, problems) for k in keys]

    def pending(self, now: float | None = None) -> tuple[int, float]:
        """Objects whose latest change some affected proxy has not acknowledged, and the age
        in seconds of the oldest such change. A change stops counting once every proxy it
        affected had acknowledged it; proxies connecting later are not waited for."""
        now = time.time() if now is None else now
        connections = self._proxies()
        count, oldest = 0, 0.0
        changes: Mapping[Key, ObjectChange] = self._discovery.object_changes
        for key in [k for k in self._done if k not in changes]:
            del self._done[key]
        for key, change in changes.items():
            if self._done.get(key) == change.version:
                continue
            if all(p.state is ProxyState.ACKED
                   for p in self.proxies(key, change, connections)):
                self._done[key] = change.version
                continue
            count += 1
            oldest = max(oldest, now - change.at)
        return count, oldest
