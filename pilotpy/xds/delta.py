"""Incremental ADS (DeltaAggregatedResources), one instance per stream.

Rules (xDS spec; istiod's pilot/pkg/xds/delta.go; docs/architecture.md#xds-protocol-rules):
- the first request for a type subscribes and is always answered, against the
  `initial_resource_versions` a reconnecting Envoy holds. LDS and CDS subscribe to
  everything with `*`, or with no names until names are first given (the legacy wildcard,
  which naming resources without `*` ends); to exactly the names given otherwise;
- a NACK is recorded and not answered; a stale nonce acknowledges nothing, but the
  subscription changes it carries are applied;
- newly subscribed names are answered (unknown RDS/EDS names with empty resources);
- versions are hashes of the resource bytes; `removed_resources` lists what a client holds
  under its subscription that no longer exists;
- Envoy asks nothing after a Delta CDS update, yet a modified EDS cluster warms until it gets
  an assignment: every added or modified cluster's assignment follows the CDS response.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.service.discovery.v3 import discovery_pb2

from pilotpy.xds import types, wire
from pilotpy.xds.limits import StreamLimits, too_many_names
from pilotpy.xds.memo import Memo
from pilotpy.xds.resources import (
    Diff,
    NameSet,
    Resource,
    ResourceSet,
    Snapshot,
    diff_cost,
    diff_from_versions,
    gains,
    memoized_diff,
    names,
    subscription,
    transition_diff,
)
from pilotpy.xds.status import StreamStatus, XdsStats, record_nack

log = logging.getLogger("pilotpy.xds")


@dataclass(slots=True)
class _Watch:
    wildcard: bool
    subscription: NameSet  # explicit names
    sent: ResourceSet | None = None
    nonce: str = ""
    # A wildcard only because no names were ever given: naming resources ends it.
    legacy: bool = False

    @property
    def scope(self) -> NameSet | None:
        return subscription(self.wildcard, self.subscription.names)


class DeltaStream:
    def __init__(self, status: StreamStatus, stats: XdsStats, memo: Memo,
                 limits: StreamLimits | None = None) -> None:
        self._limits = limits or StreamLimits()
        self.status = status
        self._stats = stats
        self._memo = memo
        self._watches: dict[str, _Watch] = {}
        # EDS names of clusters sent before any EDS watch existed (a reconnecting Envoy sends
        # CDS first): their assignments are owed to the first EDS request, whatever versions
        # it says it holds, since those clusters warm until they get one.
        self._owed: frozenset[str] = frozenset()

    def _respond(self, watch: _Watch, current: ResourceSet, snapshot: Snapshot,
                 resources: tuple[Resource, ...], removed: tuple[str, ...]) -> bytes:
        nonce = self.status.next_nonce()
        watch.nonce = nonce
        watch.sent = current
        type_url = current.type_url
        self.status.sent(type_url, nonce, snapshot.version)
        out = (wire.field_str(wire.DELTA_SYSTEM_VERSION_INFO, snapshot.version)
               + b"".join(r.delta_entry for r in resources)
               + wire.field_str(wire.DELTA_TYPE_URL, type_url)
               + b"".join(wire.field_str(wire.DELTA_REMOVED_RESOURCES, n) for n in removed)
               + wire.field_str(wire.DELTA_NONCE, nonce))
        self._stats.sent(type_url, len(out))
        return out

    def _diff(self, watch: _Watch, current: ResourceSet) -> Diff:
        return memoized_diff(self._memo, watch.sent, current, watch.scope)

    @staticmethod
    def _with_warming(diff: Diff, watch: _Watch, current: ResourceSet,
                      warming: Iterable[str]) -> Diff:
        """`diff` plus the assignments of warming clusters within the subscription."""
        send = {r.name: r for r in diff.changed}
        for name in sorted(set(warming) - send.keys()):
            if not watch.wildcard and name not in watch.subscription.names:
                continue
            resource = current.get(name)
            if resource is not None:
                send[name] = resource
        return Diff(tuple(send[n] for n in sorted(send)), diff.removed)

    def _assignments_after_clusters(self, snapshot: Snapshot, cluster_diff: Diff) -> list[bytes]:
        if not cluster_diff.changed:
            return []
        eds = snapshot.eds_names_by_cluster
        warming = {eds[r.name] for r in cluster_diff.changed if r.name in eds}
        watch = self._watches.get(types.ENDPOINT)
        if watch is None or watch.sent is None:
            self._owed |= warming
            return []
        current = snapshot.get(types.ENDPOINT)
        diff = self._with_warming(self._diff(watch, current), watch, current, warming)
        if not diff:
            return []
        return [self._respond(watch, current, snapshot, diff.changed, diff.removed)]

    def on_request(self, request: discovery_pb2.DeltaDiscoveryRequest, snapshot: Snapshot
                   ) -> list[bytes]:
        type_url = request.type_url
        if request.HasField("error_detail"):
            record_nack(self.status, self._stats, request)
            return []
        current = snapshot.get(type_url)
        subscribe = set(request.resource_names_subscribe)
        watch = self._watches.get(type_url)
        if watch is None:
            wildcard_type = type_url in types.WILDCARD_TYPES
            legacy = wildcard_type and not subscribe
            watch = self._watches[type_url] = _Watch(
                legacy or (wildcard_type and types.WILDCARD_NAME in subscribe),
                names(subscribe - {types.WILDCARD_NAME}), legacy=legacy)
            known: Mapping[str, str] = request.initial_resource_versions
            diff = diff_from_versions(known, current, watch.scope)
            if type_url == types.ENDPOINT and self._owed:
                diff = self._with_warming(diff, watch, current, self._owed)
                self._owed = frozenset()
            out = [self._respond(watch, current, snapshot, diff.changed, diff.removed)]
            if type_url == types.CLUSTER:
                out += self._assignments_after_clusters(snapshot, diff)
            return out
        if request.response_nonce:
            if request.response_nonce == watch.nonce:
                self.status.acked(type_url, request.response_nonce,
                                  self.status.of(type_url).sent_version)
            else:
                self._stats.expired_nonces[types.counted(type_url)] += 1
        unsubscribe = set(request.resource_names_unsubscribe)
        before = watch.scope
        if watch.legacy and subscribe:
            watch.legacy = watch.wildcard = False
        if types.WILDCARD_NAME in subscribe:
            watch.wildcard = True
        if types.WILDCARD_NAME in unsubscribe:
            watch.wildcard = False
        explicit = watch.subscription.names
        after = (explicit | (subscribe - {types.WILDCARD_NAME})) - unsubscribe
        if len(after) > self._limits.max_resource_names:
            raise too_many_names(len(after), self._limits,
                                 f"subscription to {types.short_name(type_url)}")
        if after != explicit:
            watch.subscription = names(after)
        scope = watch.scope
        if not gains(before, scope):
            return []
        if (watch.sent is current and before is not None and scope is not None
                and not before.wildcard and not scope.wildcard):
            # Nothing changed for the names held: the new ones alone are owed, at a cost
            # that grows with them, not with the subscription.
            fresh = tuple(r for n in sorted(scope.names - before.names)
                          if (r := current.get(n)) is not None)
            return [self._respond(watch, current, snapshot, fresh, ())] if fresh else []
        # Bring the whole subscription up to date, newly covered names included.
        parts = (watch.sent, before, current, scope)
        found: Diff | None = self._memo.get("transition", *parts)
        if found is None:
            found = transition_diff(watch.sent, before, current, scope)
            self._memo.put(found, diff_cost(found, current), "transition", *parts)
        if not found:
            return []
        return [self._respond(watch, current, snapshot, found.changed, found.removed)]

    def on_push(self, snapshot: Snapshot) -> list[bytes]:
        out: list[bytes] = []
        assignments_sent = False
        for type_url in types.PUSH_ORDER:
            watch = self._watches.get(type_url)
            if watch is None or watch.sent is None:
                continue
            if type_url == types.ENDPOINT and assignments_sent:
                continue
            current = snapshot.get(type_url)
            if current is watch.sent:
                continue
            diff = self._diff(watch, current)
            if not diff:
                watch.sent = current
                continue
            out.append(self._respond(watch, current, snapshot, diff.changed, diff.removed))
            if type_url == types.CLUSTER:
                extra = self._assignments_after_clusters(snapshot, diff)
                assignments_sent = bool(extra)
                out += extra
        return out
