"""The mesh root in every namespace: ConfigMap `istio-ca-root-cert` (key `root-cert.pem`,
label `istio.io/config: "true"`), created when missing, recreated when deleted and corrected
when edited, as istiod's namespace controller
(pilot/pkg/serviceregistry/kube/controller/namespacecontroller.go). Only the leader runs it.

Namespaces istiod skips are skipped (kube-public, kube-node-lease, local-path-storage;
kube-system is served), and so are terminating ones. A namespace whose write fails is retried
with backoff; one that was deleted meanwhile is dropped quietly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from pilotpy.sources.kube.api import KubeApi
from pilotpy.sources.kube.backoff import Backoff
from pilotpy.sources.kube.informer import Informer
from pilotpy.sources.kube.kinds import WatchedKind

log = logging.getLogger("pilotpy.rootcert")
CONFIG_MAP = "istio-ca-root-cert"
DATA_KEY = "root-cert.pem"
LABELS = {"istio.io/config": "true"}
IGNORED_NAMESPACES = frozenset({"kube-public", "kube-node-lease", "local-path-storage"})
MAX_ATTEMPTS = 8

NAMESPACES = WatchedKind("Namespace", "", ("v1",), "namespaces", namespaced=False)
ROOT_CONFIG_MAPS = WatchedKind("ConfigMap", "", ("v1",), "configmaps",
                               field_selector=f"metadata.name={CONFIG_MAP}")


class WriteApi(Protocol):
    async def post(self, path: str, body: Any, timeout: float = ...) -> Any: ...
    async def send(self, method: str, path: str, body: Any, content_type: str = ...,
                   timeout: float = ...) -> Any: ...


def _code(err: Exception) -> int:
    code = getattr(err, "code", 0)
    return code if isinstance(code, int) else 0


class _Cache:
    """An informer sink keeping objects by name; tells the publisher what changed."""

    def __init__(self, key: Callable[[dict[str, Any]], str],
                 changed: Callable[[str], None]) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self._key = key
        self._changed = changed

    def replace(self, items: list[dict[str, Any]]) -> None:
        before = set(self.items)
        self.items = {self._key(i): i for i in items}
        for name in before | set(self.items):
            self._changed(name)

    def upsert(self, item: dict[str, Any]) -> None:
        self.items[self._key(item)] = item
        self._changed(self._key(item))

    def delete(self, item: dict[str, Any]) -> None:
        self.items.pop(self._key(item), None)
        self._changed(self._key(item))


def _name(item: dict[str, Any]) -> str:
    return str((item.get("metadata") or {}).get("name", ""))


def _namespace(item: dict[str, Any]) -> str:
    return str((item.get("metadata") or {}).get("namespace", ""))


class RootCertPublisher:
    def __init__(self, api: KubeApi, root_pem: Callable[[], bytes]) -> None:
        self._api = api
        self._root_pem = root_pem
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self.namespaces = _Cache(_name, self._enqueue)
        self.config_maps = _Cache(_namespace, self._enqueue)
        self.writes = 0  # creates and updates made (for tests)

    def _enqueue(self, namespace: str) -> None:
        if namespace and namespace not in self._queued:
            self._queued.add(namespace)
            self._queue.put_nowait(namespace)

    async def run(self) -> None:
        informers = [Informer(self._api, NAMESPACES, self.namespaces),
                     Informer(self._api, ROOT_CONFIG_MAPS, self.config_maps)]
        tasks = [asyncio.create_task(i.run(), name=f"rootcert {i.kind.kind}")
                 for i in informers]
        try:
            await asyncio.gather(*(i.synced.wait() for i in informers))
            log.info("publishing the mesh root to %d namespaces", len(self.namespaces.items))
            while True:
                namespace = await self._queue.get()
                self._queued.discard(namespace)
                await self._reconcile_with_retries(namespace)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _reconcile_with_retries(self, namespace: str) -> None:
        backoff = Backoff(initial=0.05, maximum=5.0)
        for attempt in range(MAX_ATTEMPTS):
            try:
                await self.reconcile(namespace)
                return
            except Exception as err:
                if attempt == MAX_ATTEMPTS - 1:
                    log.error("cannot publish %s in %s after %d attempts: %s", CONFIG_MAP,
                              namespace, MAX_ATTEMPTS, err)
                    return
                await asyncio.sleep(backoff.delay())

    async def reconcile(self, namespace: str) -> None:
        if namespace in IGNORED_NAMESPACES:
            return
        ns = self.namespaces.items.get(namespace)
        if ns is None or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        root = self._root_pem().decode()
        path = f"/api/v1/namespaces/{namespace}/configmaps"
        current = self.config_maps.items.get(namespace)
        try:
            if current is None:
                await self._api.post(path, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": CONFIG_MAP, "namespace": namespace, "labels": LABELS},
                    "data": {DATA_KEY: root}})
            elif (current.get("data") or {}).get(DATA_KEY) != root:
                updated = {**current, "data": {**(current.get("data") or {}), DATA_KEY: root}}
                await self._api.send("PUT", f"{path}/{CONFIG_MAP}", updated)
            else:
                return
        except Exception as err:
            code = _code(err)
            if code in (404, 409):  # the namespace went away, or our view is stale: the
                return              # watch brings the next state and requeues
            if code == 403:
                log.warning("not allowed to write %s in %s: %s", CONFIG_MAP, namespace, err)
                return
            raise
        self.writes += 1
        log.info("%s %s/%s", "created" if current is None else "corrected", namespace,
                 CONFIG_MAP)
