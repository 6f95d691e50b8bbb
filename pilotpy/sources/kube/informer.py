"""One resource's informer: paged list -> watch from the list's resourceVersion (with
bookmarks) -> reconnect from the last resourceVersion on a clean close -> re-list on 410 Gone
-> jittered exponential backoff on errors.

A re-list *replaces* what the sink holds for the resource, so objects deleted while the watch
was away disappear. Nothing is cleared when the API server is unreachable: the sink keeps the
last state until a list or watch succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from pilotpy.runtime.backoff import Backoff
from pilotpy.sources.kube.api import ApiError, KubeApi
from pilotpy.sources.kube.kinds import WatchedKind

log = logging.getLogger("pilotpy.sources.kube")

PAGE_SIZE = 500
# client-go's reflector picks a server-side watch timeout in [5, 10) minutes, so watches of
# many informers do not all expire together.
WATCH_TIMEOUT_RANGE = (300.0, 600.0)
# The client gives up a little after the server should have closed the watch: a connection
# that died without a FIN must not stall the informer forever.
CLIENT_TIMEOUT_MARGIN = 15.0
REDISCOVER_INTERVAL = 30.0

Sleep = Callable[[float], Awaitable[None]]
# ValueError: a truncated or malformed JSON line.
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, asyncio.IncompleteReadError,
                    ValueError)


class Sink(Protocol):
    def replace(self, items: list[dict[str, Any]]) -> None: ...
    def upsert(self, item: dict[str, Any]) -> None: ...
    def delete(self, item: dict[str, Any]) -> None: ...


@dataclass
class InformerStatus:
    kind: str
    version: str = ""  # the served version being watched; "" until discovered
    installed: bool = True
    synced: bool = False
    connected: bool = False
    resource_version: str = ""
    lists: int = 0
    relists_after_gone: int = 0
    watch_restarts: int = 0
    errors: int = 0
    last_error: str = ""


class Informer:
    def __init__(self, api: KubeApi, kind: WatchedKind, sink: Sink, *,
                 backoff: Backoff | None = None, sleep: Sleep = asyncio.sleep,
                 watch_timeout_range: tuple[float, float] = WATCH_TIMEOUT_RANGE,
                 rediscover_interval: float = REDISCOVER_INTERVAL,
                 page_size: int = PAGE_SIZE, rng: random.Random | None = None,
                 on_connected: Callable[[bool], None] | None = None) -> None:
        """`on_connected` hears every change of reachability (for the source metrics)."""
        self._api = api
        self.kind = kind
        self._sink = sink
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._watch_timeout_range = watch_timeout_range
        self._rediscover_interval = rediscover_interval
        self._page_size = page_size
        self._rng = rng or random.Random()
        self.status = InformerStatus(kind.kind)
        self.synced = asyncio.Event()
        self._on_connected = on_connected

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        must_list = True
        while True:
            try:
                if not self.status.version:
                    if not await self._discover():
                        await self._sleep(self._rediscover_interval)
                        continue
                    must_list = True
                if must_list:
                    await self._list()
                    must_list = False
                await self._watch()
                self._backoff.reset()
            except ApiError as err:
                if err.gone:
                    # Our resourceVersion (or continue token) was compacted away: only a
                    # fresh list can tell what was deleted meanwhile. The API answered, so
                    # this is no outage: no backoff, no "disconnected".
                    self.status.relists_after_gone += 1
                    self.status.last_error = str(err)
                    log.info("%s: %s; re-listing", self.kind.kind, err)
                    must_list = True
                    continue
                self._failed(err)
                if err.code == 404 and self.kind.optional:
                    self.status.version = ""  # the CRD went away; discover again
                must_list = True  # as client-go's reflector does after any API error
                await self._sleep(self._backoff.delay())
            except TRANSPORT_ERRORS as err:
                self._failed(err)
                # The watch resumes from the last resourceVersion once the API is back;
                # a list that never finished is simply retried.
                await self._sleep(self._backoff.delay())
            except Exception as err:  # a bug must not end the watch for good
                log.exception("%s: informer failed; re-listing", self.kind.kind)
                self._failed(err)
                must_list = True
                await self._sleep(self._backoff.delay())

    def _failed(self, err: BaseException) -> None:
        was_connected = self.status.connected
        self.status.connected = False
        if self._on_connected is not None and (was_connected or self.status.errors == 0):
            self._on_connected(False)
        self.status.errors += 1
        self.status.last_error = f"{type(err).__name__}: {err}" if not isinstance(
            err, ApiError) else str(err)
        if was_connected or self.status.errors == 1:
            log.warning("%s: cannot list or watch (%s); serving the last state received",
                        self.kind.kind, self.status.last_error)
        else:
            log.debug("%s: still failing: %s", self.kind.kind, self.status.last_error)

    def _connected(self) -> None:
        if not self.status.connected:
            if self.status.errors:
                log.info("%s: listing and watching again", self.kind.kind)
            self.status.connected = True
            if self._on_connected is not None:
                self._on_connected(True)

    # -- discovery -------------------------------------------------------------------------

    async def _discover(self) -> bool:
        """Pick the newest served version. A CRD kind that is not installed is empty."""
        for version in self.kind.versions:
            try:
                found = await self._api.get(self.kind.discovery_path(version))
            except ApiError as err:
                if err.code == 404:
                    continue
                raise
            plurals = {r.get("name") for r in found.get("resources", ()) if isinstance(r, dict)}
            if self.kind.plural in plurals:
                self.status.version = version
                self.status.installed = True
                log.info("%s: watching %s", self.kind.kind, self.kind.group_version(version))
                return True
        if not self.kind.optional:
            raise ApiError(404, "NotFound", f"{self.kind.plural} is not served by the API server")
        if self.synced.is_set() and self.status.installed:
            # It was served a moment ago. An API server that is starting serves CRDs a little
            # after everything else; a CRD really deleted has had its objects deleted (and
            # watched) first. Either way, emptying the kind here could push an empty config.
            raise ApiError(404, "NotFound",
                           f"{self.kind.group}/{self.kind.plural} is not served right now")
        if self.status.installed:
            log.warning("%s: no %s/%s served (CRD not installed?); treated as empty, checking "
                        "again every %.0f s", self.kind.kind, self.kind.group,
                        self.kind.plural, self._rediscover_interval)
        self.status.installed = False
        self._sink.replace([])
        self._mark_synced()
        return False

    # -- list ------------------------------------------------------------------------------

    def _params(self) -> dict[str, str]:
        return {"fieldSelector": self.kind.field_selector} if self.kind.field_selector else {}

    def _complete(self, item: dict[str, Any]) -> dict[str, Any]:
        """List items carry no apiVersion/kind; managedFields is bulk nobody reads."""
        item["apiVersion"] = self.kind.group_version(self.status.version)
        item["kind"] = self.kind.api_kind
        metadata = item.get("metadata")
        if isinstance(metadata, dict):
            metadata.pop("managedFields", None)
        return item

    async def _list(self) -> None:
        path = self.kind.collection_path(self.status.version)
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            params = {**self._params(), "limit": str(self._page_size)}
            if token:
                params["continue"] = token
            page = await self._api.get(path, params)
            self._connected()
            for item in page.get("items") or ():
                if isinstance(item, dict):
                    items.append(self._complete(item))
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or ""
            if not token:
                self.status.resource_version = str(metadata.get("resourceVersion", ""))
                break
        self.status.lists += 1
        self._sink.replace(items)
        self._mark_synced()
        log.debug("%s: listed %d at resourceVersion %s", self.kind.kind, len(items),
                  self.status.resource_version)

    def _mark_synced(self) -> None:
        if not self.synced.is_set():
            self.status.synced = True
            self.synced.set()

    # -- watch -----------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Until the server closes the watch cleanly; raises on errors."""
        server_timeout = int(self._rng.uniform(*self._watch_timeout_range))
        params = {**self._params(), "resourceVersion": self.status.resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(server_timeout)}
        path = self.kind.collection_path(self.status.version)
        self.status.watch_restarts += 1
        async for event in self._api.watch(path, params,
                                           timeout=server_timeout + CLIENT_TIMEOUT_MARGIN):
            self._connected()
            self._backoff.reset()
            self._handle(event)

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if kind == "ERROR":
            raise ApiError.from_status(obj)
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if kind in ("ADDED", "MODIFIED"):
            self._sink.upsert(self._complete(obj))
        elif kind == "DELETED":
            self._sink.delete(self._complete(obj))
        elif kind != "BOOKMARK":
            log.debug("%s: ignoring watch event %r", self.kind.kind, kind)
            return
        if version:
            self.status.resource_version = version
