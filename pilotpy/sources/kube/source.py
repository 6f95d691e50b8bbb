"""The Kubernetes source: one informer per watched resource, each feeding one store partition.

Objects are parsed and validated like the file source's. An invalid object is reported
(problems, log) and skipped; if an earlier version of it was valid, that version keeps being
served, as if the API server had rejected the update. The mesh ConfigMap (`istio`, key `mesh`,
in the control-plane namespace) is published as the store's mesh config.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from pilotpy.mesh import MESH_CONFIG_KIND, MeshConfig, MeshConfigError, parse_mesh_config
from pilotpy.model import InvalidObject, Key, UnknownKind, parse_object
from pilotpy.model.kinds import Kind
from pilotpy.problems import ObjectRef, Problem, ProblemLog, Reason, Severity
from pilotpy.runtime.lifecycle import cancel_and_wait
from pilotpy.runtime.source_status import SourceStatus
from pilotpy.sources.kube.api import KubeApi
from pilotpy.sources.kube.informer import Informer
from pilotpy.sources.kube.kinds import MESH_CONFIG_MAP, WatchedKind, watched_kinds
from pilotpy.sources.yaml_documents import load_document
from pilotpy.store import Store

log = logging.getLogger("pilotpy.sources.kube")

ORIGIN = "kube"


def _ref(item: dict[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


class _ObjectSink:
    """Parsed objects of one kind -> the kind's store partition."""

    def __init__(self, kind: WatchedKind, store: Store, problems: ProblemLog) -> None:
        self._kind = kind.kind
        self._partition = f"{ORIGIN}:{kind.kind}"
        self._store = store
        self._problems = problems
        self._good: dict[Key, Any] = {}
        self._reported: set[Key] = set()

    def _key(self, item: dict[str, Any]) -> Key:
        namespace, name = _ref(item)
        return Key(self._kind, namespace, name)

    def _origin(self, key: Key) -> str:
        return f"{ORIGIN} {key}"

    def _parse(self, item: dict[str, Any]) -> tuple[Key, Any | None]:
        """The object, or None when it is invalid (reported here): its last valid version
        then stays; without one, a security policy's stand-in (fail closed) is returned."""
        key = self._key(item)
        try:
            parsed = parse_object(item, origin=ORIGIN)
        except UnknownKind as err:  # a version newer than the model knows
            self._report(key, [Problem(Reason.UNREADABLE, f"not readable: {err}", key,
                                       severity=Severity.ERROR, source=ORIGIN)])
            return key, None
        except InvalidObject as err:
            served, note = err.served(self._good.get(key))
            self._report(key, [i.problem(err.ref, ORIGIN, note) for i in err.issues])
            # The last valid version stays (upsert leaves it, replace keeps it); a stand-in
            # is served like an object until the policy is corrected or deleted.
            return key, None if served is self._good.get(key) else served
        self._report(key, [w.problem(key, ORIGIN) for w in parsed.warnings])
        return key, parsed.obj

    def _report(self, key: Key, problems: list[Problem]) -> None:
        if problems or key in self._reported:
            self._problems.set(self._origin(key), problems)
        if problems:
            self._reported.add(key)
        else:
            self._reported.discard(key)

    def replace(self, items: list[dict[str, Any]]) -> None:
        objects: dict[Key, Any] = {}
        for item in items:
            key, obj = self._parse(item)
            if obj is not None:
                objects[key] = obj
            elif key in self._good:
                objects[key] = self._good[key]
        for gone in self._reported - {self._key(i) for i in items}:
            self._report(gone, [])
        self._good = objects
        self._store.replace_partition(self._partition, objects)

    def upsert(self, item: dict[str, Any]) -> None:
        key, obj = self._parse(item)
        if obj is None:
            return
        self._good[key] = obj
        self._store.upsert(self._partition, key, obj)

    def delete(self, item: dict[str, Any]) -> None:
        key = self._key(item)
        self._report(key, [])
        if self._good.pop(key, None) is not None:
            self._store.delete(self._partition, key)


class _MeshConfigSink:
    """The `istio` ConfigMap's `mesh` key -> the store's mesh config. A ConfigMap that does not
    parse keeps the last good mesh config."""

    def __init__(self, store: Store, problems: ProblemLog) -> None:
        self._store = store
        self._problems = problems
        self._partition = f"{ORIGIN}:{MESH_CONFIG_KIND}"

    def _publish(self, item: dict[str, Any] | None) -> None:
        if item is None:
            self._problems.clear(self._partition)
            self._store.replace_partition(self._partition, {})
            return
        namespace, name = _ref(item)
        subject = f"ConfigMap {namespace}/{name}"
        data = item.get("data") or {}
        try:
            config = self._parse(data.get("mesh"), subject)
        except MeshConfigError as err:
            self._problems.set(self._partition, [Problem(
                Reason.INVALID, f"mesh: invalid, keeping the last valid mesh config: {err}",
                ObjectRef(Kind.CONFIG_MAP, namespace, name), "data.mesh", Severity.ERROR, ORIGIN)])
            return
        self._problems.set(self._partition, [])
        self._store.replace_partition(
            self._partition, {Key(MESH_CONFIG_KIND, namespace, name): config})

    def _parse(self, text: Any, subject: str) -> MeshConfig:
        if text is None:
            return MeshConfig()
        try:
            data = load_document(str(text))
        except yaml.YAMLError as err:
            raise MeshConfigError(f"data.mesh: invalid YAML: {err}") from err
        config, warnings = parse_mesh_config(data, origin="data.mesh")
        for warning in warnings:
            log.warning("%s: data.mesh: %s", subject, warning)
        return config

    def replace(self, items: list[dict[str, Any]]) -> None:
        self._publish(items[0] if items else None)

    def upsert(self, item: dict[str, Any]) -> None:
        self._publish(item)

    def delete(self, item: dict[str, Any]) -> None:
        self._publish(None)


def _reporter(status: SourceStatus | None, kind: str) -> Callable[[bool], None] | None:
    if status is None:
        return None
    name = f"{ORIGIN}/{kind}"

    def report(connected: bool) -> None:
        status.set_connected(name, connected)

    return report


class KubeSource:
    def __init__(self, api: KubeApi, store: Store, problems: ProblemLog, *,
                 control_plane_namespace: str = "istio-system",
                 kinds: Iterable[WatchedKind] | None = None,
                 status: SourceStatus | None = None,
                 **informer_options: Any) -> None:
        """`status` gets `pilotpy_source_connected{source="kube/<Kind>"}` per informer."""
        self.api = api
        self.informers: list[Informer] = []
        for kind in kinds if kinds is not None else watched_kinds(control_plane_namespace):
            sink: _ObjectSink | _MeshConfigSink
            if kind.kind == Kind.CONFIG_MAP:
                assert kind.field_selector == f"metadata.name={MESH_CONFIG_MAP}"
                sink = _MeshConfigSink(store, problems)
            else:
                sink = _ObjectSink(kind, store, problems)
            self.informers.append(Informer(
                api, kind, sink, on_connected=_reporter(status, kind.kind),
                **informer_options))
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(i.run(), name=f"informer {i.kind.kind}")
                       for i in self.informers]

    def object_path(self, key: Key) -> str | None:
        """The API path of an object of a watched kind, in the version being watched
        (None while the kind is not served)."""
        for informer in self.informers:
            kind = informer.kind
            if kind.kind != key.kind or not informer.status.version:
                continue
            base = kind.discovery_path(informer.status.version)
            where = f"/namespaces/{key.namespace}" if kind.namespaced else ""
            return f"{base}{where}/{kind.plural}/{key.name}"
        return None

    async def wait_synced(self) -> None:
        """Until every informer has completed its first list."""
        await asyncio.gather(*(i.synced.wait() for i in self.informers))

    @property
    def connected(self) -> bool:
        return all(i.status.connected or not i.status.installed for i in self.informers)

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        await self.api.close()
