"""A running pilotpy: sources -> store -> discovery -> ADS server, plus /ready.

With the Kubernetes source, nothing is served before every informer has finished its first
list: /ready says false and ADS streams wait (at most 30 s, then Unavailable), so a proxy never
receives the partial config of a half-synced registry.

Used by `pilotpy serve`, by `pilotpy local` and by the tests, so all three run the same code.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import yaml
from aiohttp import web

from pilotpy import http
from pilotpy.diagnostics import Diagnostics
from pilotpy.discovery import Discovery
from pilotpy.lifecycle import cancel_and_wait
from pilotpy.mesh import MeshConfig, MeshConfigError, parse_mesh_config
from pilotpy.settings import Settings, split_address
from pilotpy.sources.files import FileSource
from pilotpy.sources.kube import KubeApi, KubeSource, load_connection
from pilotpy.store import Store
from pilotpy.xds.server import XdsServer

log = logging.getLogger("pilotpy")


def load_mesh_config(settings: Settings) -> MeshConfig:
    if settings.mesh_config is None:
        return MeshConfig()
    path = settings.mesh_config
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise MeshConfigError(f"{path}: {err}") from err
    config, warnings = parse_mesh_config(data, origin=str(path))
    for warning in warnings:
        log.warning("%s: %s", path, warning)
    return config


class ControlPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.diagnostics = Diagnostics()
        self.store = Store(quiet=settings.debounce_quiet, max_wait=settings.debounce_max)
        self.discovery = Discovery(load_mesh_config(settings), self.diagnostics)
        self.files = FileSource(settings.config_paths, self.store, self.diagnostics,
                                default_namespace=settings.default_namespace,
                                poll_interval=settings.poll_interval)
        self.kube: KubeSource | None = None
        if settings.kube:
            connection = load_connection(settings.kubeconfig, settings.kube_context)
            self.kube = KubeSource(KubeApi(connection, user_agent="pilotpy"), self.store,
                                   self.diagnostics,
                                   control_plane_namespace=settings.control_plane_namespace)
        self.xds = XdsServer(self.discovery, max_connection_age_ms=int(
            settings.max_connection_age_seconds * 1000) or None)
        self.grpc_port = 0
        self.http_port = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._http: web.AppRunner | None = None

    @property
    def ready(self) -> bool:
        return self.xds.ready.is_set()

    async def start(self) -> None:
        self.files.load()
        grpc_host, grpc_port = split_address(self.settings.grpc_addr)
        self.grpc_port = await self.xds.start(f"{grpc_host}:{grpc_port}")
        http_host, http_port = split_address(self.settings.http_addr)
        self._http, self.http_port = await http.serve(http.build_app(lambda: self.ready),
                                                      http_host, http_port)
        self._tasks = [asyncio.create_task(self.files.watch(), name="files")]
        log.info("xDS on :%d, readiness on :%d", self.grpc_port, self.http_port)
        if self.kube is None:
            self._become_ready()
            self._tasks.append(asyncio.create_task(self._apply_changes(), name="changes"))
        else:
            self.kube.start()
            self._tasks.append(asyncio.create_task(self._sync_then_serve(), name="changes"))

    def _become_ready(self) -> None:
        self.discovery.update(self.store.snapshot())
        self.xds.ready.set()
        log.info("ready: serving xDS")

    async def _sync_then_serve(self) -> None:
        assert self.kube is not None
        log.info("waiting for the Kubernetes informers' initial sync")
        await self.kube.wait_synced()
        self._become_ready()
        await self._apply_changes()

    async def _apply_changes(self) -> None:
        async for change in self.store.changes():
            try:
                self.discovery.update(change)
            except Exception:  # never stop serving the last good config
                log.exception("building push context %d failed; keeping the previous one",
                              change.version)
                continue
            self.xds.push()

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        if self.kube is not None:
            await self.kube.stop()
        await self.xds.stop()
        if self._http is not None:
            await self._http.cleanup()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
