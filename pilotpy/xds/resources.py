"""Resources as bytes, grouped per type into immutable sets, and the per-proxy-class snapshot.

A stream never stores per-resource state. What a client holds for one type is always "every
resource of set S within subscription N", so a stream keeps two references (S, N). Diffs and
response bodies are memoized on those objects: a thousand proxies of one class share one diff
and one body per push.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2

from pilotpy.wire.protowire import field_bytes
from pilotpy.xds import types, wire
from pilotpy.xds.memo import Memo


class Resource:
    """One resource, serialized once. The SotW entry is built eagerly; the Delta wrapper on
    first use (SotW-only deployments never pay for it)."""

    __slots__ = ("_delta_entry", "name", "sotw_entry", "version")

    def __init__(self, name: str, version: str, sotw_entry: bytes) -> None:
        self.name = name
        self.version = version
        self.sotw_entry = sotw_entry  # DiscoveryResponse.resources entry (an Any)
        self._delta_entry: bytes | None = None

    @property
    def delta_entry(self) -> bytes:
        """DeltaDiscoveryResponse.resources entry (a Resource wrapper around the same Any)."""
        if self._delta_entry is None:
            packed = self.sotw_entry[len(wire.varint_prefix(self.sotw_entry)):]
            wrapper = (wire.field_str(wire.RESOURCE_VERSION, self.version)
                       + field_bytes(wire.RESOURCE_RESOURCE, packed)
                       + wire.field_str(wire.RESOURCE_NAME, self.name))
            self._delta_entry = field_bytes(wire.DELTA_RESOURCES, wrapper)
        return self._delta_entry


def make_resource(type_url: str, name: str, value: bytes) -> Resource:
    """`value` is the message serialized with deterministic=True."""
    return Resource(name, wire.content_version(value),
                    field_bytes(wire.RESPONSE_RESOURCES, wire.any_bytes(type_url, value)))


@lru_cache(maxsize=8192)
def empty_resource(type_url: str, name: str) -> Resource | None:
    """What a requested but unknown name gets: Envoy waits forever for a name left
    unanswered (initial_fetch_timeout 0s). None for types without a neutral empty value."""
    message: Any
    if type_url == types.ROUTE:
        message = route_pb2.RouteConfiguration(name=name,
                                                validate_clusters=wrappers_pb2.BoolValue())
    elif type_url == types.ENDPOINT:
        message = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    else:
        return None
    return make_resource(type_url, name, message.SerializeToString(deterministic=True))


class ResourceSet:
    """All resources of one type for one proxy class and version. Immutable."""

    __slots__ = ("__weakref__", "by_name", "size", "type_url", "version")

    def __init__(self, type_url: str, resources: Iterable[Resource]) -> None:
        self.type_url = type_url
        self.by_name: dict[str, Resource] = {r.name: r for r in resources}
        digest = "\n".join(f"{r.name}\t{r.version}" for r in self.by_name.values())
        self.version = wire.content_version(digest.encode())
        self.size = sum(len(r.sotw_entry) for r in self.by_name.values())  # bytes

    def get(self, name: str) -> Resource | None:
        """A resource by name; unknown RDS/EDS names resolve to their empty value."""
        found = self.by_name.get(name)
        return found if found is not None else empty_resource(self.type_url, name)

    def replacing(self, resources: Iterable[Resource]) -> ResourceSet:
        """A new set with some resources replaced (same names, same order)."""
        by_name = dict(self.by_name)
        for resource in resources:
            by_name[resource.name] = resource
        return ResourceSet(self.type_url, by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)


class NameSet:
    """An interned subscription. Equal subscriptions are the same object, which makes
    memoized diffs shareable across streams."""

    __slots__ = ("__weakref__", "names")

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names


_interned: weakref.WeakValueDictionary[frozenset[str], NameSet] = weakref.WeakValueDictionary()


def names(values: Iterable[str]) -> NameSet:
    key = frozenset(values)
    found = _interned.get(key)
    if found is None:
        found = NameSet(key)
        _interned[key] = found
    return found


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """Everything one proxy class gets for one version."""

    version: str
    resources: Mapping[str, ResourceSet]
    # EDS resource name of each EDS cluster, for pushing assignments after Delta CDS updates.
    eds_names_by_cluster: Mapping[str, str] = field(default_factory=dict)

    def get(self, type_url: str) -> ResourceSet:
        found = self.resources.get(type_url)
        return found if found is not None else _empty_set(type_url)

    @property
    def size(self) -> int:
        """Bytes of every resource, serialized."""
        return sum(s.size for s in self.resources.values())


@lru_cache(maxsize=64)
def _empty_set(type_url: str) -> ResourceSet:
    return ResourceSet(type_url, ())


@dataclass(frozen=True, slots=True)
class Diff:
    changed: tuple[Resource, ...]
    removed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)


def _scope(resources: ResourceSet, subscription: NameSet | None) -> Iterable[str]:
    return resources.by_name.keys() if subscription is None else sorted(subscription.names)


def compute_diff(old: ResourceSet | None, new: ResourceSet, subscription: NameSet | None
                 ) -> Diff:
    """What a client holding `old` within `subscription` (None: wildcard) needs to reach
    `new`. Explicitly subscribed names are never removed: unknown ones resolve to empty."""
    changed = []
    for name in _scope(new, subscription):
        resource = new.get(name)
        if resource is None:
            continue
        previous = old.get(name) if old is not None else None
        if previous is None or previous.version != resource.version:
            changed.append(resource)
    removed: tuple[str, ...] = ()
    if subscription is None and old is not None:
        removed = tuple(n for n in old.by_name if n not in new.by_name)
    return Diff(tuple(changed), removed)


def diff_from_versions(known: Mapping[str, str], new: ResourceSet,
                       subscription: NameSet | None) -> Diff:
    """Like compute_diff, against versions a reconnecting Delta client says it has."""
    changed = []
    for name in _scope(new, subscription):
        resource = new.get(name)
        if resource is not None and known.get(name) != resource.version:
            changed.append(resource)
    removed: tuple[str, ...] = ()
    if subscription is None:
        removed = tuple(sorted(n for n in known if n not in new.by_name))
    return Diff(tuple(changed), removed)


# The memory of a Resource object besides its entry bytes (slots, name and version strings).
RESOURCE_OVERHEAD = 160


def diff_cost(diff: Diff, new: ResourceSet) -> int:
    """The memory a memoized diff holds of its own: references, plus the placeholders of
    unknown names (resources `new` does not hold)."""
    cost = 8 * (len(diff.changed) + len(diff.removed)) + sum(len(n) for n in diff.removed)
    by_name = new.by_name
    for resource in diff.changed:
        if by_name.get(resource.name) is not resource:
            cost += len(resource.sotw_entry) + RESOURCE_OVERHEAD
    return cost


def memoized_diff(memo: Memo, old: ResourceSet | None, new: ResourceSet,
                  subscription: NameSet | None) -> Diff:
    """compute_diff, once per (old, new, subscription) for every stream of a class."""
    found: Diff | None = memo.get("diff", old, new, subscription)
    if found is None:
        found = compute_diff(old, new, subscription)
        memo.put(found, diff_cost(found, new), "diff", old, new, subscription)
    return found
