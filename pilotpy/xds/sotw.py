"""State-of-the-world ADS (StreamAggregatedResources), one instance per stream.

Rules (xDS spec; istiod's pkg/xds/server.go ShouldRespond;
docs/architecture.md#xds-protocol-rules):
- a request with error_detail is a NACK: recorded, never answered;
- a nonce that is not the latest sent for its type is stale: ignored;
- an empty nonce opens or renews a subscription and is always answered, even when it
  carries a version (Envoy sends its last version after reconnecting);
- an ACK is answered only when it subscribes to new names (or to `*`);
- CDS and LDS are wildcard types: no names on every request so far (the legacy form), or
  `*` among them, subscribes to the full set; names without `*` to exactly those (a
  proxyless gRPC client names its listeners). Their responses carry everything the
  subscription covers, since a client takes an LDS or CDS name missing from a response as
  removed. Once names were given, an empty list subscribes to nothing;
- RDS and EDS responses carry every requested name on subscription (unknown names get
  empty resources) and only changed ones on pushes;
- after a CDS push, the next EDS request is answered with the assignments of the clusters
  that changed, since those clusters warm until they get a fresh assignment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from envoy.service.discovery.v3 import discovery_pb2

from pilotpy.runtime.logtext import clip
from pilotpy.xds import types, wire
from pilotpy.xds.limits import StreamLimits
from pilotpy.xds.memo import Memo
from pilotpy.xds.resources import (
    Diff,
    NameSet,
    Resource,
    ResourceSet,
    Snapshot,
    compute_diff,
    diff_cost,
    gains,
    memoized_diff,
    names,
    subscription,
    visible,
)
from pilotpy.xds.status import NONCE_CHARS, StreamStatus, XdsStats, record_nack

log = logging.getLogger("pilotpy.xds")
# Subscriptions naming this many resources have their first answer built off the loop.
LARGE_SUBSCRIPTION = 5000


@dataclass(slots=True)
class _Watch:
    subscription: NameSet | None  # None: wildcard (CDS, LDS)
    sent: ResourceSet | None = None  # what the client holds, within the subscription
    nonce: str = ""
    # Assignments to include in the next EDS answer regardless of version (warming clusters).
    force: frozenset[str] = frozenset()
    # Whether any request for the type named resources: then an empty list is no wildcard.
    named: bool = False


def _wildcard_subscription(requested: list[str], watch: _Watch | None) -> NameSet | None:
    """An LDS or CDS request's subscription (the xDS spec's wildcard rules)."""
    if types.WILDCARD_NAME in requested:
        return subscription(True, (n for n in requested if n != types.WILDCARD_NAME))
    if not requested and (watch is None or not watch.named):
        return None  # the legacy wildcard: no names on any request so far
    return names(requested)


def _subscription_diff(sent: ResourceSet | None, current: ResourceSet, old: NameSet,
                       new: NameSet, force: frozenset[str]) -> Diff:
    """Changes since `sent` within `new`, plus names new to the subscription or forced."""
    changed = []
    for name in sorted(new.names):
        resource = current.get(name)
        if resource is None:
            continue
        if name not in old.names or name in force or sent is None:
            changed.append(resource)
            continue
        previous = sent.get(name)
        if previous is None or previous.version != resource.version:
            changed.append(resource)
    return Diff(tuple(changed), ())


class SotwStream:
    def __init__(self, status: StreamStatus, stats: XdsStats, memo: Memo,
                 limits: StreamLimits | None = None) -> None:
        # A SotW request names its whole subscription: the server bounds it per request.
        del limits
        self.status = status
        self._stats = stats
        self._memo = memo
        self._watches: dict[str, _Watch] = {}
        self._snapshot = ""  # the version of the snapshot being answered from

    # -- responses -------------------------------------------------------------------------

    @staticmethod
    def _body(current: ResourceSet, resources: Iterable[Resource]) -> bytes:
        return (wire.field_str(wire.RESPONSE_VERSION_INFO, current.version)
                + b"".join(r.sotw_entry for r in resources)
                + wire.field_str(wire.RESPONSE_TYPE_URL, current.type_url))

    @classmethod
    def full_body(cls, current: ResourceSet, scope: NameSet | None) -> bytes:
        """The body of a response with everything `scope` covers of `current`. Reads only
        immutable objects: it may run in a worker thread."""
        return cls._body(current, visible(current, scope).values())

    def prepare(self, request: discovery_pb2.DiscoveryRequest, snapshot: Snapshot
                ) -> tuple[ResourceSet, NameSet, Callable[[], bytes]] | None:
        """For a request opening a large subscription to RDS or EDS names: what its answer
        is memoized under and how to build it, for the caller to run in a worker thread and
        `memoize` before on_request (a client may name 100,000 resources; the loop serves
        everyone else meanwhile). None when there is nothing large to build."""
        if (request.HasField("error_detail") or request.response_nonce
                or request.type_url in types.WILDCARD_TYPES
                or len(request.resource_names) < LARGE_SUBSCRIPTION):
            return None
        current = snapshot.get(request.type_url)
        scope = names(request.resource_names)
        if self._memo.get("sotw-full", current, scope) is not None:
            return None
        return current, scope, lambda: self.full_body(current, scope)

    def memoize(self, current: ResourceSet, scope: NameSet, body: bytes) -> None:
        self._memo.put(body, len(body), "sotw-full", current, scope)

    def _respond(self, watch: _Watch, current: ResourceSet, resources: tuple[Resource, ...],
                 body: bytes | None = None) -> bytes:
        nonce = self.status.next_nonce()
        watch.nonce = nonce
        watch.sent = current
        type_url = current.type_url
        self.status.sent(type_url, nonce, current.version, self._snapshot)
        if body is None:
            body = self._body(current, resources)
        out = body + wire.field_str(wire.RESPONSE_NONCE, nonce)
        self._stats.sent(type_url, len(out))
        return out

    def _full(self, watch: _Watch, current: ResourceSet) -> bytes:
        body: bytes | None = self._memo.get("sotw-full", current, watch.subscription)
        if body is None:
            body = self.full_body(current, watch.subscription)
            self._memo.put(body, len(body), "sotw-full", current, watch.subscription)
        return self._respond(watch, current, (), body)

    def _diff_body(self, watch: _Watch, current: ResourceSet, diff: Diff) -> bytes:
        """The body of a push of `diff`, joined once for every stream of a class that holds
        the same set within the same subscription (a gateway's route configuration can be
        megabytes)."""
        parts = (watch.sent, current, watch.subscription)
        body: bytes | None = self._memo.get("sotw-diff", *parts)
        if body is None:
            body = self._body(current, diff.changed)
            self._memo.put(body, len(body), "sotw-diff", *parts)
        return body

    def _changes(self, watch: _Watch, current: ResourceSet) -> Diff:
        return memoized_diff(self._memo, watch.sent, current, watch.subscription)

    def _mark_warming(self, snapshot: Snapshot, cluster_diff: Diff) -> None:
        watch = self._watches.get(types.ENDPOINT)
        if watch is None or not cluster_diff.changed:
            return
        eds = snapshot.eds_names_by_cluster
        warming = frozenset(eds[r.name] for r in cluster_diff.changed if r.name in eds)
        watch.force = watch.force | warming

    # -- events ----------------------------------------------------------------------------

    def on_request(self, request: discovery_pb2.DiscoveryRequest, snapshot: Snapshot
                   ) -> list[bytes]:
        type_url = request.type_url
        self._snapshot = snapshot.version
        watch = self._watches.get(type_url)
        if request.HasField("error_detail"):
            record_nack(self.status, self._stats, request)
            return []
        if watch is not None and request.response_nonce and request.response_nonce != (
                watch.nonce):
            self._stats.expired_nonces[types.counted(type_url)] += 1
            return []
        requested = list(request.resource_names)
        wildcard_type = type_url in types.WILDCARD_TYPES
        if not wildcard_type and not requested:
            self._watches.pop(type_url, None)  # unsubscribed from every name
            return []
        named = bool(requested) or (watch is not None and watch.named)
        wanted = (_wildcard_subscription(requested, watch) if wildcard_type
                  else names(requested))
        current = snapshot.get(type_url)
        if watch is None or not request.response_nonce:
            watch = self._watches[type_url] = _Watch(wanted, named=named)
            out = [self._full(watch, current)]
            if type_url == types.CLUSTER:
                self._mark_warming(snapshot, compute_diff(None, current, wanted))
            return out
        self.status.acked(type_url, request.response_nonce,
                          clip(request.version_info, NONCE_CHARS))
        watch.named = named
        old = watch.subscription
        if wanted is old and not watch.force:
            return []
        watch.subscription = wanted
        if wildcard_type:
            # Everything the subscription covers, or the client drops what is left out.
            return [self._full(watch, current)] if gains(old, wanted) else []
        assert old is not None and wanted is not None
        added = wanted.names - old.names
        force = watch.force & wanted.names
        watch.force = frozenset()
        if not added and not force:
            return []
        if watch.sent is current:
            # The client holds `current` within its old names: only the new and the forced
            # ones are owed, at a cost that grows with them, not with the subscription.
            changed = tuple(r for n in sorted(added | force) if (r := current.get(n)) is not None)
            return [self._respond(watch, current, changed)]
        parts = (watch.sent, current, old, wanted, force)
        diff: Diff | None = self._memo.get("sub-diff", *parts)
        if diff is None:
            diff = _subscription_diff(watch.sent, current, old, wanted, force)
            self._memo.put(diff, diff_cost(diff, current), "sub-diff", *parts)
        return [self._respond(watch, current, diff.changed)]

    def on_push(self, snapshot: Snapshot) -> list[bytes]:
        out = []
        self._snapshot = snapshot.version
        for type_url in types.PUSH_ORDER:
            watch = self._watches.get(type_url)
            if watch is None or watch.sent is None:
                continue
            current = snapshot.get(type_url)
            if current is watch.sent:
                self.status.unchanged(type_url, snapshot.version)
                continue
            diff = self._changes(watch, current)
            if not diff:
                watch.sent = current  # same content, new set object
                self.status.unchanged(type_url, snapshot.version)
                continue
            if watch.subscription is None or type_url in types.WILDCARD_TYPES:
                out.append(self._full(watch, current))
            else:
                out.append(self._respond(watch, current, (),
                                         self._diff_body(watch, current, diff)))
            if type_url == types.CLUSTER:
                self._mark_warming(snapshot, diff)
        return out
