"""Discovery: store change sets -> push contexts -> per-proxy-class snapshots -> ADS pushes.

Proxies whose translation inputs are equal form a class (ProxyView.class_key). A class's
snapshot is generated once per push context, on first use, serialized once, and shared by
every stream of the class. An endpoint-only change set rebuilds only the affected
ClusterLoadAssignments and reuses every other resource set, so streams push EDS alone. A
change set of routing kinds only (VirtualService, Gateway, Ingress) cannot change clusters
or endpoints: classes regenerate listeners and routes and keep their CDS and EDS sets, and a
sidecar class whose scope shows none of the changed VirtualServices keeps everything.
ClusterLoadAssignments depend on the cluster and the proxy's namespace alone, so within one
push context each is built once and shared by every class that asks for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from pilotpy.mesh import MESH_CONFIG_KIND, MeshConfig
from pilotpy.model import Key
from pilotpy.model.kinds import Kind
from pilotpy.problems import ProblemLog
from pilotpy.proxy import NodeIdError, Proxy, ProxyView, parse_proxy, view_proxy
from pilotpy.push import PushContext, PushScope, build_push_context
from pilotpy.runtime.memory import release_free_memory
from pilotpy.store import ChangeSet
from pilotpy.translate.clusters import AnyCluster, SharedCluster
from pilotpy.translate.endpoints import eds_cluster_names
from pilotpy.translate.generate import endpoints_for, generate
from pilotpy.translate.names import parse_outbound_cluster_name
from pilotpy.translate.provenance import config_dependencies
from pilotpy.translate.sidecar_scope import sidecar_scope
from pilotpy.xds import types
from pilotpy.xds.resources import Resource, ResourceSet, Snapshot, make_resource
from pilotpy.xds.server import ConfigUnavailable, NodeRejected

log = logging.getLogger("pilotpy.discovery")
# The kinds a ProxyView is computed from (workload labels, the Services selecting it).
VIEW_INPUT_KINDS = frozenset({Kind.POD, Kind.SERVICE, Kind.SERVICE_ENTRY})
# Kinds that shape listeners and routes only: clusters come from services, DestinationRules,
# Sidecars and the mesh config; endpoints from those and EndpointSlices.
ROUTING_KINDS = frozenset({Kind.VIRTUAL_SERVICE, Kind.GATEWAY, Kind.INGRESS,
                           Kind.INGRESS_CLASS})
# Above this many resources a generation's temporary messages are worth returning to the OS.
LARGE_SNAPSHOT_RESOURCES = 2000
CLASS_LIMIT_WARNING_SECONDS = 60.0


def _host_of(cluster_name: str) -> str | None:
    parsed = parse_outbound_cluster_name(cluster_name)
    return parsed[2] if parsed is not None else None


def _routing_reaches(view: ProxyView, before: PushContext, push: PushContext,
                     changed: Iterable[Key]) -> bool:
    """Whether a change of routing kinds only can change what `view`'s class is sent
    (istiod's sidecar scope DependsOnConfig). An Envoy sidecar reads no Gateway or Ingress
    objects, only the `mesh` VirtualServices its scope lets through: one that neither
    context's scope shows it cannot move its listeners or routes. Gateways and proxyless
    gRPC clients are always reached."""
    if not view.proxy.is_sidecar or view.proxy.is_grpc:
        return True
    scopes = [sidecar_scope(before, view), sidecar_scope(push, view)]
    for key in changed:
        if key.kind == Kind.GATEWAY:
            continue
        if key.kind != Kind.VIRTUAL_SERVICE:
            return True
        if any(scope.may_see(key) for scope in scopes):
            return True
    return False


def _eds_names(clusters: Iterable[AnyCluster]) -> Iterable[tuple[str, str]]:
    """(cluster name, eds_cluster_config.service_name) of the clusters setting the latter."""
    for cluster in clusters:
        if isinstance(cluster, SharedCluster):
            if cluster.eds_service_name is not None:
                yield cluster.name, cluster.eds_service_name
        elif cluster.HasField("eds_cluster_config"):
            yield cluster.name, cluster.eds_cluster_config.service_name


def _eds_cluster_names(clusters: Iterable[AnyCluster]) -> list[str]:
    """The EDS names of the clusters of type EDS (translate.endpoints.eds_cluster_names)."""
    messages = [c for c in clusters if not isinstance(c, SharedCluster)]
    return [*(c.eds_service_name or "" for c in clusters
              if isinstance(c, SharedCluster) and c.eds),
            *eds_cluster_names(messages)]


def _serialized(type_url: str, messages: Iterable[tuple[str, Message]]) -> list[Resource]:
    return [make_resource(type_url, name, m.SerializeToString(deterministic=True))
            for name, m in messages]


def _resources(type_url: str, messages: Iterable[tuple[str, Message]],
               named_only: Iterable[tuple[str, Message]] = ()) -> ResourceSet:
    return ResourceSet(type_url, _serialized(type_url, messages),
                       _serialized(type_url, named_only))


@dataclass(eq=False)
class ProxyHandle:
    """One connected proxy (one stream)."""

    proxy: Proxy
    view: ProxyView
    key: tuple[Any, ...]


NO_CLASSES: frozenset[tuple[Any, ...]] = frozenset()


@dataclass(frozen=True, slots=True)
class ObjectChange:
    """The latest change to one object, for propagation status: the push context version
    that first carried it, the object's generation, when discovery took it, and the proxy
    classes whose config depended on the object before (they must drop what it gave)."""

    key: Key
    version: int
    generation: int
    at: float  # time.time()
    deleted: bool = False
    before: frozenset[tuple[Any, ...]] = NO_CLASSES


@dataclass(eq=False)
class _Class:
    view: ProxyView
    snapshot: Snapshot | None = None
    # The objects its config depends on under the current push context (None: not known yet).
    dependencies: frozenset[Key] | None = None
    # The last snapshot generated for this class under any push context: served when
    # generating the current one fails.
    last_good: Snapshot | None = None
    # The previous context's snapshot, when only routing kinds changed since: its CDS and
    # EDS sets hold for this context too.
    clusters_from: Snapshot | None = None
    failed_version: int | None = None  # the push context whose generation failed
    proxies: int = 0

    @property
    def origin(self) -> str:
        """The class's name in the problem log: its problems are replaced together."""
        view = self.view
        return f"translate {view.type} {view.namespace} {hash(view.class_key) & 0xFFFFFFFF:08x}"

    @property
    def description(self) -> str:
        view = self.view
        return f"{view.type} class of {view.proxy.id} ({len(view.labels)} labels)"


@dataclass
class PushTimings:
    """Recent figures for metrics: how long building and generating took."""

    push_context_seconds: float = 0.0
    generate_seconds: list[float] = field(default_factory=list)


INGRESS_ORIGIN = "ingress"
# Kinds whose changes propagation status follows: Istio's config and the Services behind it
# (endpoint churn is not followed; pilot_proxy_convergence_time covers it).
STATUS_KINDS = frozenset({Kind.GATEWAY, Kind.VIRTUAL_SERVICE, Kind.DESTINATION_RULE,
                          Kind.SERVICE_ENTRY, Kind.SIDECAR, Kind.SERVICE})
# Deleted objects' changes are kept this long (seconds) for status, at most this many.
DELETED_CHANGE_TTL = 3600.0
MAX_DELETED_CHANGES = 10_000
PEER_AUTHN_ORIGIN = "peer-authentication"


class Discovery:
    def __init__(self, mesh: MeshConfig, problems: ProblemLog | None = None, *,
                 max_classes: int | None = None) -> None:
        """`max_classes`: past it, a proxy of a new class is refused (None: no limit)."""
        self.mesh = mesh
        self.max_classes = max_classes
        self.refused_for_class_limit = 0
        self._class_limit_warned: float | None = None
        self.problems = problems or ProblemLog()
        # Generations that raised, by proxy type (pilotpy_generation_failures_total).
        self.generation_failures: dict[str, int] = {}
        self.push: PushContext | None = None
        self._classes: dict[tuple[Any, ...], _Class] = {}
        self._handles: set[ProxyHandle] = set()
        self.timings = PushTimings()
        self._rebuild_next = False
        # The latest change of each object of STATUS_KINDS (deleted ones for a while).
        self.object_changes: dict[Key, ObjectChange] = {}
        # (EDS cluster name, proxy namespace) -> assignment, for the current push context.
        self._assignments: dict[tuple[str, str, str], Resource] = {}
        # Clusters translation shared between classes (one object, see outbound_clusters),
        # made resources once: id -> (the cluster, kept alive, its resource).
        self._cluster_resources: dict[int, tuple[AnyCluster, Resource]] = {}
        # Classes whose snapshot the last update carried over with the very same resources.
        self._unchanged: set[tuple[Any, ...]] = set()

    # -- config updates --------------------------------------------------------------------

    def update(self, change: ChangeSet) -> PushScope:
        """A new push context from a change set; class snapshots regenerate lazily."""
        started = time.perf_counter()
        version = change.version
        incremental = self.push is not None and not self._rebuild_next
        previous_keys = self.push.selector_label_keys() if self.push is not None else None
        try:
            push, scope = build_push_context(change.objects, self._mesh(change), version, self.push,
                                             change.changed if incremental else None)
        except Exception:
            # Incremental indexes hand their bookkeeping to the context they build, so a
            # failed build leaves the previous context unable to seed the next one. The last
            # good config keeps being served; the next change set is built from scratch.
            self._rebuild_next = True
            raise
        self._rebuild_next = False
        if self.push is None or push.ingress is not self.push.ingress:
            self.problems.set(INGRESS_ORIGIN, push.ingress.problems)
        if self.push is None or push.peer_authn is not self.push.peer_authn:
            self.problems.set(PEER_AUTHN_ORIGIN, push.peer_authn.problems)
        before, self.push = self.push, push
        self.timings.push_context_seconds = time.perf_counter() - started
        self._cluster_resources = {}
        if scope.full:
            self._assignments = {}
        else:
            self._assignments = {key: found for key, found in self._assignments.items()
                                 if _host_of(key[0]) not in scope.endpoint_hosts}
        routing_only = incremental and scope.full and bool(change.changed) and all(
            k.kind in ROUTING_KINDS for k in change.changed)
        previous = self._classes
        self._classes = {}
        self._unchanged = set()
        # A view depends only on Pods, the service registry and which labels selectors read;
        # after any other change every proxy's view, and so its class, is what it was.
        refresh_views = (not incremental or bool({k.kind for k in change.changed}
                                                 & VIEW_INPUT_KINDS)
                         or previous_keys != push.selector_label_keys())
        for handle in self._handles:
            if refresh_views:
                handle.view = view_proxy(handle.proxy, push)
                handle.key = handle.view.class_key
            entry = self._classes.get(handle.key)
            if entry is None:
                old = previous.get(handle.key)
                entry = self._classes[handle.key] = _Class(handle.view)
                if old is not None:
                    entry.last_good = old.snapshot or old.last_good
                    unchanged = not scope.full or (scope.gateways_only
                                                   and not entry.view.proxy.is_router)
                    if unchanged and old.snapshot is not None:
                        entry.snapshot = self._with_new_endpoints(old.snapshot, entry.view,
                                                                  scope)
                        if entry.snapshot.resources is old.snapshot.resources:
                            self._unchanged.add(handle.key)
                    elif routing_only:
                        assert before is not None
                        if old.snapshot is not None and not _routing_reaches(
                                entry.view, before, push, change.changed):
                            # Nothing it reads changed: the same resources, a new version.
                            entry.snapshot = Snapshot(str(version), old.snapshot.resources,
                                                      old.snapshot.eds_names_by_cluster)
                            self._unchanged.add(handle.key)
                        else:
                            entry.clusters_from = old.snapshot or old.clusters_from
                    if not scope.full:  # endpoints change no dependency
                        entry.dependencies = old.dependencies
            entry.proxies += 1
        for key, old in previous.items():
            if key not in self._classes:
                self.problems.clear(old.origin)
        push.keep_classes(self._classes)
        self._record_changes(change, previous)
        log.info("push context %d: %d changed, %s, %d proxies in %d classes (%.1f ms)",
                 version, len(change.changed), "full" if scope.full else "endpoints only",
                 len(self._handles), len(self._classes),
                 self.timings.push_context_seconds * 1000)
        return scope

    def _record_changes(self, change: ChangeSet, previous: dict[tuple[Any, ...], _Class]
                        ) -> None:
        now = time.time()
        for key in change.changed:
            if key.kind not in STATUS_KINDS:
                continue
            obj = change.objects.get(key.kind, {}).get(key)
            # Mostly empty: the shared empty set, not a new one per object (216 bytes each,
            # 4 MB for S1's 20k Services and VirtualServices).
            before = frozenset(k for k, entry in previous.items()
                               if entry.dependencies is not None
                               and key in entry.dependencies) or NO_CLASSES
            generation = obj.meta.generation if obj is not None else (
                old.generation if (old := self.object_changes.get(key)) is not None else 0)
            self.object_changes[key] = ObjectChange(key, change.version, generation, now,
                                                    deleted=obj is None, before=before)
        deleted = [c for c in self.object_changes.values() if c.deleted]
        if deleted:
            deleted.sort(key=lambda c: c.at)
            expired = len(deleted) - MAX_DELETED_CHANGES
            for index, gone in enumerate(deleted):
                if index < expired or now - gone.at > DELETED_CHANGE_TTL:
                    del self.object_changes[gone.key]

    def dependencies(self, handle: object) -> frozenset[Key]:
        """The objects the config of `handle`'s proxy class depends on (provenance)."""
        assert isinstance(handle, ProxyHandle) and self.push is not None
        entry = self._classes.get(handle.key)
        if entry is None:
            return config_dependencies(self.push, handle.view)
        if entry.dependencies is None:
            entry.dependencies = config_dependencies(self.push, entry.view)
        return entry.dependencies

    def needs_push(self, handle: object) -> bool:
        """Whether the last update may have changed what `handle`'s stream was sent: false
        for a class that kept the very same resources (its streams need not wake up)."""
        assert isinstance(handle, ProxyHandle)
        return handle.key not in self._unchanged

    def _mesh(self, change: ChangeSet) -> MeshConfig:
        """The mesh config a source published (the `istio` ConfigMap), else the one pilotpy
        started with."""
        published = change.objects.get(MESH_CONFIG_KIND)
        if published:
            return next(iter(published.values()))  # type: ignore[no-any-return]
        return self.mesh

    # -- snapshots -------------------------------------------------------------------------

    def _generate(self, entry: _Class) -> Snapshot:
        assert self.push is not None
        started = time.perf_counter()
        push, view = self.push, entry.view
        kept = entry.clusters_from
        generated = generate(push, view, clusters=kept is None)
        if kept is not None:
            clusters, endpoints = kept.get(types.CLUSTER), kept.get(types.ENDPOINT)
            eds_names_by_cluster = kept.eds_names_by_cluster
        else:
            every_cluster = [*generated.cluster_entries, *generated.named_only_clusters]
            clusters = ResourceSet(types.CLUSTER, self._clusters(generated.cluster_entries),
                                   self._clusters(generated.named_only_clusters))
            eds_names_by_cluster = dict(_eds_names(every_cluster))
            endpoints = ResourceSet(types.ENDPOINT, self._endpoints(
                view, sorted(set(_eds_cluster_names(every_cluster)))))
        snapshot = Snapshot(
            version=str(push.version),
            resources={
                types.CLUSTER: clusters,
                types.ENDPOINT: endpoints,
                types.LISTENER: _resources(
                    types.LISTENER, ((li.name, li) for li in generated.listeners),
                    ((li.name, li) for li in generated.named_only_listeners)),
                types.ROUTE: ResourceSet(types.ROUTE, (
                    Resource.of_parts(types.ROUTE, r.name, r.parts)
                    for r in generated.serialized_routes)),
                types.SECRET: _resources(types.SECRET, ((s.name, s) for s in generated.secrets)),
            },
            eds_names_by_cluster=eds_names_by_cluster,
        )
        entry.clusters_from = None
        self.problems.set(entry.origin, generated.problems)
        # Now, so a later change knows this class held what it changes or removes.
        entry.dependencies = config_dependencies(push, view)
        self.timings.generate_seconds = [time.perf_counter() - started,
                                         *self.timings.generate_seconds[:9]]
        return snapshot

    def _clusters(self, clusters: Sequence[AnyCluster]) -> list[Resource]:
        """Each cluster serialized once per push context, however many classes hold it."""
        memo = self._cluster_resources
        out = []
        for cluster in clusters:
            found = memo.get(id(cluster))
            if found is None:
                # A shared cluster's bytes are held by the push context: not copied.
                resource = (Resource.of_parts(types.CLUSTER, cluster.name, (cluster.data,))
                            if isinstance(cluster, SharedCluster) else make_resource(
                                types.CLUSTER, cluster.name,
                                cluster.SerializeToString(deterministic=True)))
                found = memo[id(cluster)] = (cluster, resource)
            out.append(found[1])
        return out

    def _endpoints(self, view: ProxyView, names: list[str]) -> list[Resource]:
        """The assignments of `names` for `view`, each built once per push context, proxy
        namespace and generator (all a ClusterLoadAssignment depends on: a proxyless gRPC
        client gets its own form)."""
        assert self.push is not None
        memo = self._assignments
        space, generator = view.namespace, view.proxy.generator
        missing = [name for name in names if (name, space, generator) not in memo]
        for assignment in endpoints_for(self.push, view, missing):
            memo[(assignment.cluster_name, space, generator)] = make_resource(
                types.ENDPOINT, assignment.cluster_name,
                assignment.SerializeToString(deterministic=True))
        return [memo[(name, space, generator)] for name in names]

    def _with_new_endpoints(self, old: Snapshot, view: ProxyView, scope: PushScope) -> Snapshot:
        assert self.push is not None
        endpoints = old.get(types.ENDPOINT)
        stale = [name for name in endpoints.by_name if _host_of(name) in scope.endpoint_hosts]
        if not stale:
            return Snapshot(str(self.push.version), old.resources, old.eds_names_by_cluster)
        fresh = self._endpoints(view, sorted(stale))
        resources = dict(old.resources)
        resources[types.ENDPOINT] = endpoints.replacing(fresh)
        return Snapshot(str(self.push.version), resources, old.eds_names_by_cluster)

    # -- xDS ConfigProvider ----------------------------------------------------------------

    def connect(self, node: base_pb2.Node, identity: str = "") -> ProxyHandle:
        if self.push is None:
            raise NodeRejected("no configuration loaded yet")
        metadata = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
        try:
            proxy = parse_proxy(node.id, metadata, verified_identity=identity)
        except NodeIdError as err:
            raise NodeRejected(str(err)) from err
        view = view_proxy(proxy, self.push)
        handle = ProxyHandle(proxy, view, view.class_key)
        entry = self._classes.get(handle.key)
        if entry is None:
            if self.max_classes is not None and len(self._classes) >= self.max_classes:
                self._refuse_for_class_limit(view)
            entry = self._classes[handle.key] = _Class(view)
        self._handles.add(handle)
        entry.proxies += 1
        return handle

    def _refuse_for_class_limit(self, view: ProxyView) -> NoReturn:
        self.refused_for_class_limit += 1
        now = time.monotonic()
        last = self._class_limit_warned
        if last is None or now - last >= CLASS_LIMIT_WARNING_SECONDS:
            log.warning("%d proxy classes, the limit (--max-proxy-classes): refusing %s, whose "
                        "config would be a class of its own; %d proxies refused so far. Labels "
                        "read by selectors: %s", len(self._classes), view.proxy.id,
                        self.refused_for_class_limit,
                        ", ".join(k for k, _ in view.selected_labels) or "none")
            self._class_limit_warned = now
        raise NodeRejected(f"pilotpy serves at most {self.max_classes} proxy classes (distinct "
                           "configs) and has that many; retry later",
                           code=grpc.StatusCode.RESOURCE_EXHAUSTED)

    def snapshot(self, handle: object) -> Snapshot:
        assert isinstance(handle, ProxyHandle)
        entry = self._classes.get(handle.key)
        if entry is None:
            entry = self._classes[handle.key] = _Class(handle.view, proxies=1)
        if entry.snapshot is None:
            try:
                entry.snapshot = self._generate(entry)
            except Exception as err:
                entry.snapshot = self._failed(entry, err)
            # Only now are the generation's temporary messages unreferenced.
            if sum(len(s) for s in entry.snapshot.resources.values()) > LARGE_SNAPSHOT_RESOURCES:
                release_free_memory()
        return entry.snapshot

    def _failed(self, entry: _Class, err: Exception) -> Snapshot:
        """A generation that raised (a translation bug): the class keeps its last good
        snapshot, the other classes are untouched. Logged once per class and push context,
        counted; a class that never had config gets none (its streams are refused with
        Unavailable and retry)."""
        assert self.push is not None
        version = self.push.version
        proxy_type = entry.view.type
        self.generation_failures[proxy_type] = self.generation_failures.get(proxy_type, 0) + 1
        if entry.failed_version != version:
            entry.failed_version = version
            log.error("generating config for the %s under push context %d failed (%s: %s); "
                      "%s", entry.description, version, type(err).__name__, err,
                      "serving its last good config" if entry.last_good else "no config to serve",
                      exc_info=err)
        if entry.last_good is None:
            raise ConfigUnavailable(f"pilotpy could not generate config for this proxy "
                                    f"(push context {version}); see pilotpy's log")
        return entry.last_good

    def disconnect(self, handle: object) -> None:
        assert isinstance(handle, ProxyHandle)
        self._handles.discard(handle)
        entry = self._classes.get(handle.key)
        if entry is not None:
            entry.proxies -= 1
            if entry.proxies <= 0:
                del self._classes[handle.key]

    @property
    def proxy_count(self) -> int:
        return len(self._handles)

    @property
    def class_count(self) -> int:
        return len(self._classes)

    def config_bytes(self) -> int:
        """Bytes of every class's config, as last generated."""
        return sum(s.size for entry in self._classes.values()
                   if (s := entry.snapshot or entry.last_good) is not None)
