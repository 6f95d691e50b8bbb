"""Resources as bytes, grouped per type into immutable sets, and the per-proxy-class snapshot.

A stream never stores per-resource state. What a client holds for one type is always "every
resource of set S within subscription N", so a stream keeps two references (S, N). Diffs and
response bodies are memoized on those objects: a thousand proxies of one class share one diff
and one body per push.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from pilotpy.wire.protowire import field_bytes, field_head, varint
from pilotpy.xds import types, wire
from pilotpy.xds.memo import Memo


class Resource:
    """One resource, serialized once. The SotW entry is built eagerly, or kept as the parts
    it is written from when those are shared with something else that holds them (joined on
    each use: responses are memoized); the Delta wrapper on first use (SotW-only deployments
    never pay for it)."""

    __slots__ = ("_delta_entry", "_parts", "_sotw_entry", "name", "size", "version")

    def __init__(self, name: str, version: str, sotw_entry: bytes) -> None:
        self.name = name
        self.version = version
        self._sotw_entry: bytes | None = sotw_entry
        self._parts: tuple[bytes, ...] = ()
        self.size = len(sotw_entry)  # bytes of the SotW entry
        self._delta_entry: bytes | None = None

    @classmethod
    def of_parts(cls, type_url: str, name: str, parts: Sequence[bytes]) -> Resource:
        """A resource whose serialized message is `parts` joined, kept apart: what
        make_resource(type_url, name, b"".join(parts)) gives, without the joined copy."""
        length = sum(len(p) for p in parts)
        packed_head = _any_type_url(type_url) + (
            field_head(wire.ANY_VALUE, length) if length else b"")
        head = field_head(wire.RESPONSE_RESOURCES, len(packed_head) + length) + packed_head
        out = cls.__new__(cls)
        out.name = name
        out.version = wire.content_version_of_parts(parts)
        out._sotw_entry = None
        out._parts = (head, *parts)
        out.size = len(head) + length
        out._delta_entry = None
        return out

    @property
    def sotw_entry(self) -> bytes:
        """DiscoveryResponse.resources entry (an Any)."""
        entry = self._sotw_entry
        return entry if entry is not None else b"".join(self._parts)

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


# Written by hand below: field 1 (the name) of a RouteConfiguration or ClusterLoadAssignment,
# RouteConfiguration.validate_clusters (field 7) as an empty BoolValue, an Any's two fields.
_NAME_TAG = b"\x0a"
_VALIDATE_CLUSTERS_FALSE = b"\x3a\x00"
_ANY_VALUE_TAG = b"\x12"
_RESOURCE_TAG = field_bytes(wire.RESPONSE_RESOURCES, b"")[:1]


@lru_cache(maxsize=8192)
def empty_resource(type_url: str, name: str) -> Resource | None:
    """What a requested but unknown name gets: Envoy waits forever for a name left
    unanswered (initial_fetch_timeout 0s). None for types without a neutral empty value.
    Written as protobuf writes a RouteConfiguration or ClusterLoadAssignment of just its
    name, without building one: a subscription may name 100,000 unknown resources."""
    if type_url not in (types.ROUTE, types.ENDPOINT):
        return None
    encoded = name.encode()
    value = _NAME_TAG + varint(len(encoded)) + encoded if encoded else b""
    if type_url == types.ROUTE:
        value += _VALIDATE_CLUSTERS_FALSE
    packed = _any_type_url(type_url)
    if value:
        packed += _ANY_VALUE_TAG + varint(len(value)) + value
    return Resource(name, wire.content_version(value),
                    _RESOURCE_TAG + varint(len(packed)) + packed)


@lru_cache(maxsize=16)
def _any_type_url(type_url: str) -> bytes:
    return wire.field_str(wire.ANY_TYPE_URL, type_url)


class ResourceSet:
    """All resources of one type for one proxy class and version. Immutable.

    `by_name` is what a wildcard subscription gets. `named_only` resources exist too, but
    only for a subscription that names them (a proxyless gRPC client's listener under a
    short name, an xDS server's inbound listener): a wildcard does not include them."""

    __slots__ = ("__weakref__", "_known", "by_name", "named_only", "size", "type_url",
                 "version")

    def __init__(self, type_url: str, resources: Iterable[Resource],
                 named_only: Iterable[Resource] = ()) -> None:
        self.type_url = type_url
        self.by_name: dict[str, Resource] = {r.name: r for r in resources}
        self.named_only: dict[str, Resource] = {r.name: r for r in named_only
                                                if r.name not in self.by_name}
        digest = "\n".join(f"{r.name}\t{r.version}" for r in self.by_name.values())
        if self.named_only:
            digest += "\n\n" + "\n".join(f"{r.name}\t{r.version}"
                                          for r in self.named_only.values())
        self.version = wire.content_version(digest.encode())
        self.size = sum(r.size for r in self.every())  # bytes
        self._known: frozenset[str] | None = None

    def get(self, name: str) -> Resource | None:
        """A resource by name; unknown RDS/EDS names resolve to their empty value."""
        found = self.by_name.get(name)
        if found is None:
            found = self.named_only.get(name)
        return found if found is not None else empty_resource(self.type_url, name)

    @property
    def known(self) -> frozenset[str]:
        """The names of every resource held (named-only ones included)."""
        if self._known is None:
            self._known = frozenset(self.by_name.keys() | self.named_only.keys())
        return self._known

    def every(self) -> list[Resource]:
        """Every resource, named-only ones included (for debug dumps)."""
        return [*self.by_name.values(), *self.named_only.values()]

    def replacing(self, resources: Iterable[Resource]) -> ResourceSet:
        """A new set with some resources replaced (same names, same order)."""
        by_name = dict(self.by_name)
        named_only = dict(self.named_only)
        for resource in resources:
            if resource.name in named_only:
                named_only[resource.name] = resource
            else:
                by_name[resource.name] = resource
        return ResourceSet(self.type_url, by_name.values(), named_only.values())

    def __len__(self) -> int:
        return len(self.by_name) + len(self.named_only)


class NameSet:
    """An interned subscription: explicit names, and whether it is also a wildcard (`*`
    plus names). A wildcard without names is None where a subscription is expected. Equal
    subscriptions are the same object, which makes memoized diffs shareable across
    streams."""

    __slots__ = ("__weakref__", "names", "wildcard")

    def __init__(self, names: frozenset[str], wildcard: bool = False) -> None:
        self.names = names
        self.wildcard = wildcard


_interned: weakref.WeakValueDictionary[tuple[bool, frozenset[str]], NameSet] = (
    weakref.WeakValueDictionary())


def names(values: Iterable[str], *, wildcard: bool = False) -> NameSet:
    key = (wildcard, frozenset(values))
    found = _interned.get(key)
    if found is None:
        found = NameSet(key[1], wildcard)
        _interned[key] = found
    return found


def subscription(wildcard: bool, values: Iterable[str]) -> NameSet | None:
    """The subscription to `values`, plus everything when `wildcard`: None for a wildcard
    without names."""
    explicit = frozenset(values)
    if wildcard and not explicit:
        return None
    return names(explicit, wildcard=wildcard)


def gains(old: NameSet | None, new: NameSet | None) -> bool:
    """Whether `new` may cover resources `old` did not: it became a wildcard or names more."""
    old_wildcard = old is None or old.wildcard
    new_wildcard = new is None or new.wildcard
    if new_wildcard and not old_wildcard:
        return True
    return new is not None and bool(new.names - (old.names if old is not None else frozenset()))


def covers(scope: NameSet | None, name: str) -> bool:
    return scope is None or scope.wildcard or name in scope.names


def visible(resources: ResourceSet, scope: NameSet | None) -> Mapping[str, Resource]:
    """What a subscription gets of a set: a wildcard everything but named-only resources,
    plus the names it gives; unknown RDS and EDS names resolve to empty resources, unknown
    LDS and CDS names to nothing."""
    if scope is None:
        return resources.by_name
    out: dict[str, Resource] = dict(resources.by_name) if scope.wildcard else {}
    for name in sorted(scope.names):
        if name not in out and (found := resources.get(name)) is not None:
            out[name] = found
    return out


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


def compute_diff(old: ResourceSet | None, new: ResourceSet, scope: NameSet | None
                 ) -> Diff:
    """What a client holding `old` within `scope` (None: wildcard) needs to reach
    `new`: changed resources, and names it holds that no longer exist. Explicitly
    subscribed RDS and EDS names are never removed: unknown ones resolve to empty."""
    if old is None or scope is None or scope.wildcard:
        return transition_diff(old, scope, new, scope)
    # A name neither set holds resolves to the same placeholder (or to nothing) in both:
    # only the names some set holds can differ, so the cost follows the config, not the
    # subscription (which a client may fill with 100,000 names).
    subscribed = scope.names
    candidates = sorted(n for n in old.known | new.known if n in subscribed)
    changed = []
    removed = []
    for name in candidates:
        now, held = new.get(name), old.get(name)
        if now is None:
            if held is not None:
                removed.append(name)
        elif held is None or held.version != now.version:
            changed.append(now)
    return Diff(tuple(changed), tuple(removed))


def transition_diff(old: ResourceSet | None, old_scope: NameSet | None, new: ResourceSet,
                    new_scope: NameSet | None) -> Diff:
    """What a client holding `old` within `old_scope` needs to hold `new` within
    `new_scope`. Names that left the scope are not removed: the client drops them itself."""
    now = visible(new, new_scope)
    held = visible(old, old_scope) if old is not None else {}
    changed = tuple(r for n, r in now.items()
                    if (previous := held.get(n)) is None or previous.version != r.version)
    removed = tuple(n for n in held if n not in now and covers(new_scope, n))
    return Diff(changed, removed)


def diff_from_versions(known: Mapping[str, str], new: ResourceSet,
                       scope: NameSet | None) -> Diff:
    """Like compute_diff, against versions a reconnecting Delta client says it has."""
    now = visible(new, scope)
    changed = tuple(r for n, r in now.items() if known.get(n) != r.version)
    removed = tuple(sorted(n for n in known if n not in now and covers(scope, n)))
    return Diff(changed, removed)


# The memory of a Resource object besides its entry bytes (slots, name and version strings).
RESOURCE_OVERHEAD = 160


def diff_cost(diff: Diff, new: ResourceSet) -> int:
    """The memory a memoized diff holds of its own: references, plus the placeholders of
    unknown names (resources `new` does not hold)."""
    cost = 8 * (len(diff.changed) + len(diff.removed)) + sum(len(n) for n in diff.removed)
    for resource in diff.changed:
        if new.by_name.get(resource.name) is not resource and (
                new.named_only.get(resource.name) is not resource):
            cost += resource.size + RESOURCE_OVERHEAD
    return cost


def memoized_diff(memo: Memo, old: ResourceSet | None, new: ResourceSet,
                  scope: NameSet | None) -> Diff:
    """compute_diff, once per (old, new, scope) for every stream of a class."""
    found: Diff | None = memo.get("diff", old, new, scope)
    if found is None:
        found = compute_diff(old, new, scope)
        memo.put(found, diff_cost(found, new), "diff", old, new, scope)
    return found
