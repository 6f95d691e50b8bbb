"""A running pilotpy: sources -> store -> discovery -> ADS server, plus /ready, /metrics and
the debug endpoints.

With the Kubernetes source, nothing is served before every informer has finished its first
list: /ready says false and ADS streams wait (at most 30 s, then Unavailable), so a proxy never
receives the partial config of a half-synced registry.

Used by `pilotpy serve`, by `pilotpy local` and by the tests, so all three run the same code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import yaml
from aiohttp import web

from pilotpy import __version__
from pilotpy.analysis.checks import analyze, duplicate_hosts, schema_errors
from pilotpy.controllers.leader import LeaseElection
from pilotpy.controllers.rootcert import RootCertPublisher
from pilotpy.discovery import Discovery
from pilotpy.mesh import MeshConfig, MeshConfigError, parse_mesh_config
from pilotpy.model.kinds import Kind
from pilotpy.problems import Problem, ProblemLog
from pilotpy.runtime.lifecycle import cancel_and_wait
from pilotpy.runtime.supervisor import Supervisor
from pilotpy.server import http
from pilotpy.server.debug_routes import debug_routes
from pilotpy.server.monitoring import PilotMetrics
from pilotpy.server.secure_port import SecurePort
from pilotpy.server.settings import Settings, split_address
from pilotpy.sources.files import SOURCE as FILES_SOURCE
from pilotpy.sources.files import FileSource
from pilotpy.sources.kube import KubeApi, KubeSource, load_connection
from pilotpy.sources.yaml_documents import load_document
from pilotpy.store import Store
from pilotpy.xds.server import XdsServer

log = logging.getLogger("pilotpy")
KUBE_SOURCE = "kube"
# Analysis at ingest runs off the push path, at most this often.
ANALYSIS_INTERVAL = 1.0
ENDPOINT_KINDS = frozenset({Kind.ENDPOINT_SLICE, Kind.POD})
# The supervised task that turns change sets into pushes: while it waits to restart, nothing
# reaches the proxies, and /ready says so.
PUSH_TASK = "push"
NAMESPACE_CONTROLLER_ELECTION = "istio-namespace-controller-election"


ANALYSIS_ORIGIN = "analysis"
config_log = logging.getLogger("pilotpy.config")


def log_problem(problem: Problem) -> None:
    """Each problem once, when it appears: errors at ERROR, the rest at WARNING."""
    config_log.log(logging.ERROR if problem.is_error else logging.WARNING, "%s", problem)


def load_mesh_config(settings: Settings) -> MeshConfig:
    if settings.mesh_config is None:
        return MeshConfig()
    path = settings.mesh_config
    try:
        data: Any = load_document(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise MeshConfigError(f"{path}: {err}") from err
    config, warnings = parse_mesh_config(data, origin=str(path))
    for warning in warnings:
        log.warning("%s: %s", path, warning)
    return config


class ControlPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.problems = ProblemLog(report=log_problem)
        self.store = Store(quiet=settings.debounce_quiet, max_wait=settings.debounce_max)
        self.discovery = Discovery(load_mesh_config(settings), self.problems,
                                   max_classes=settings.max_proxy_classes)
        self.metrics = PilotMetrics()
        self.supervisor = Supervisor(self.metrics.registry)
        self.files = FileSource(settings.config_paths, self.store, self.problems,
                                default_namespace=settings.default_namespace,
                                poll_interval=settings.poll_interval,
                                limits=settings.file_limits, status=self.metrics.sources)
        instance_id = (settings.instance_id or os.environ.get("POD_NAME")
                       or socket.gethostname())
        self.xds = XdsServer(self.discovery, max_connection_age_ms=int(
            settings.max_connection_age_seconds * 1000) or None, instance_id=instance_id,
            version=__version__, limits=settings.stream_limits,
            memo_bytes=settings.response_cache_bytes)
        self.kube: KubeSource | None = None
        self.kube_api: KubeApi | None = None
        if settings.kube:
            connection = load_connection(settings.kubeconfig, settings.kube_context)
            self.metrics.sources.set_synced(KUBE_SOURCE, False)
            self.kube_api = KubeApi(connection, user_agent="pilotpy")
            self.kube = KubeSource(self.kube_api, self.store, self.problems,
                                   control_plane_namespace=settings.control_plane_namespace,
                                   status=self.metrics.sources)
        self.secure: SecurePort | None = None
        self.election: LeaseElection | None = None
        if settings.grpc_tls_addr:
            self.secure = SecurePort(settings, self.xds, self.metrics.registry,
                                     self.trust_domain, self.kube_api)
            if self.kube_api is not None:
                # Only the leader writes the mesh root into every namespace (istiod's
                # namespace controller and its election).
                secure = self.secure
                publisher = RootCertPublisher(self.kube_api, lambda: secure.root_pem)
                self.election = LeaseElection(
                    self.kube_api, settings.control_plane_namespace,
                    NAMESPACE_CONTROLLER_ELECTION, instance_id, publisher.run,
                    lease_duration=settings.lease_duration_seconds)
        self.metrics.watch_xds(self.xds.stats, self.xds.proxies)
        self.metrics.watch_config(
            services=lambda: len(self.discovery.push.services.all) if self.discovery.push else 0,
            virtual_services=lambda: len(self.store_objects().get(Kind.VIRTUAL_SERVICE, {})),
            rejected=lambda: self.problems.rejected_total, events=self.store.events,
            generation_failures=lambda: self.discovery.generation_failures)
        self.grpc_port = 0
        self.http_port = 0
        self.monitoring_port = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._http: list[web.AppRunner] = []
        self._analysis_due = asyncio.Event()

    @property
    def ready(self) -> bool:
        sources = self.metrics.sources
        return (self.xds.ready.is_set() and not sources.unsynced() and not sources.unhealthy()
                and PUSH_TASK not in self.supervisor.failing)

    def _not_ready_reason(self) -> str:
        failing = self.supervisor.failing
        broken = [f"{name} ({failing.get(name, 'restarting')})"
                  for name in self.metrics.sources.unhealthy()]
        if PUSH_TASK in failing:
            broken.append(f"{PUSH_TASK} ({failing[PUSH_TASK]})")
        if broken:
            return ("config changes are not delivered, serving the last good config: "
                    + ", ".join(broken))
        waiting = self.metrics.sources.unsynced()
        if waiting:
            return "waiting for config sources to sync: " + ", ".join(waiting)
        return "config sources have not synced"

    def trust_domain(self) -> str:
        push = self.discovery.push
        return push.mesh.trust_domain if push is not None else self.discovery.mesh.trust_domain

    @property
    def grpc_tls_port(self) -> int:
        """The TLS port, once open (0 before; in the cluster it opens when the CA's key
        material has been read: await `secure.ready`)."""
        return self.secure.port if self.secure is not None else 0

    def store_objects(self) -> Any:
        push = self.discovery.push
        return push.objects if push is not None else {}

    async def start(self) -> None:
        self.files.load()
        self.discovery.update(self.store.snapshot())
        grpc_host, grpc_port = split_address(self.settings.grpc_addr)
        # TLS ends in front of the secure server (pilotpy/xds/tls_front.py), on loopback.
        self.grpc_port = await self.xds.start(
            f"{grpc_host}:{grpc_port}",
            secure_address="127.0.0.1:0" if self.secure is not None else None)
        if self.secure is not None:
            await self.secure.start(self.xds.secure_port)
        routes = debug_routes(self.xds, self.discovery, self.store_objects)
        http_host, http_port = split_address(self.settings.http_addr)
        limits = self.settings.http_limits
        runner, self.http_port = await http.serve(
            http.build_app(lambda: self.ready, routes, self._not_ready_reason),
            http_host, http_port, limits)
        self._http.append(runner)
        if self.settings.monitoring_addr:
            host, port = split_address(self.settings.monitoring_addr)
            runner, self.monitoring_port = await http.serve(
                http.build_monitoring_app(self.metrics.render, routes), host, port, limits)
            self._http.append(runner)
        sources = self.metrics.sources
        supervise = self.supervisor.start
        self._tasks = [
            supervise(FILES_SOURCE, self.files.watch,
                      on_failure=lambda _: sources.set_healthy(FILES_SOURCE, False)),
            supervise(PUSH_TASK, self._apply_changes),
            supervise("analysis", self._analyze_changes)]
        self._analysis_due.set()
        if self.kube is not None:
            self.kube.start()
            self._tasks.append(self.supervisor.start("kube sync", self._kube_synced))
        if self.election is not None:
            self._tasks.append(self.supervisor.start("leader election", self._elect))
        if self.metrics.sources.all_synced.is_set():
            self.xds.ready.set()
        else:
            self._tasks.append(supervise("ready", self._ready_when_synced))
        log.info("serving xDS on :%d (TLS :%d), readiness and debug on :%d, metrics on :%d",
                 self.grpc_port, self.grpc_tls_port, self.http_port, self.monitoring_port)

    async def _elect(self) -> None:
        """Join the election once the CA has its root: only then is there something to
        publish."""
        assert self.secure is not None and self.election is not None
        await self.secure.ready.wait()
        await self.election.run()

    async def _ready_when_synced(self) -> None:
        """Streams wait until every source has synced; they then get a push context built
        from everything the sources listed, not one a debounce has not caught up with."""
        await self.metrics.sources.all_synced.wait()
        if self.store.pending:
            try:
                self.discovery.update(self.store.snapshot())
            except Exception:  # serve the last good config rather than nothing
                log.exception("building the push context after the initial sync failed")
        self.xds.ready.set()
        log.info("config sources synced: serving xDS")

    async def _kube_synced(self) -> None:
        assert self.kube is not None
        log.info("waiting for the Kubernetes informers' initial sync")
        await self.kube.wait_synced()
        log.info("Kubernetes informers synced")
        self.metrics.sources.set_synced(KUBE_SOURCE, True)

    async def _apply_changes(self) -> None:
        loop = asyncio.get_running_loop()
        # Started again after a failure, the change set it had taken may not have been pushed:
        # every stream compares what it sent with the current config (and sends nothing when
        # they agree).
        self.xds.push()
        async for change in self.store.changes():
            started = loop.time() - change.debounce_seconds
            try:
                self.discovery.update(change)
            except Exception:  # never stop serving the last good config
                log.exception("building push context %d failed; keeping the previous one",
                              change.version)
                continue
            kinds = {k.kind for k in change.changed}
            self.metrics.record_push(kinds, change.debounce_seconds)
            self.xds.set_config_bytes(self.discovery.config_bytes())
            # Streams of classes that kept the very same resources stay asleep.
            self.xds.push(self.discovery.needs_push, started=started)
            if not kinds <= ENDPOINT_KINDS:
                self._analysis_due.set()

    def analyze(self) -> None:
        """istioctl analyze's checks on the served config: new findings are logged once
        (warnings: the config is still served), all are counted in metrics."""
        push = self.discovery.push
        if push is None:
            return
        objects, mesh = push.objects, push.mesh
        found = analyze(objects, mesh, services=push.services.all)
        self.problems.set(ANALYSIS_ORIGIN, found)
        counts: dict[tuple[str, str], int] = {}
        for p in found + schema_errors(self.problems.problems()):
            key = (p.code or str(p.reason), str(p.severity))
            counts[key] = counts.get(key, 0) + 1
        self.metrics.record_analysis(counts, len(duplicate_hosts(objects, mesh)))

    async def _analyze_changes(self) -> None:
        while True:
            await self._analysis_due.wait()
            self._analysis_due.clear()
            try:
                self.analyze()
            except Exception:  # analysis must never disturb serving
                log.exception("config analysis failed")
            await asyncio.sleep(ANALYSIS_INTERVAL)

    async def drain(self) -> None:
        """SIGTERM: stop accepting streams, let in-flight pushes finish, close every stream
        so proxies reconnect to another instance (istiod's graceful shutdown)."""
        for task in self._tasks:
            task.cancel()
        await self.xds.drain(self.settings.drain_seconds)

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)  # a leader releases its Lease on the way out
        if self.secure is not None:  # before the kube source: its API checks tokens
            await self.secure.stop()
        if self.kube is not None:
            await self.kube.stop()
        await self.xds.stop()
        for runner in self._http:
            await runner.cleanup()
        self._http = []

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.drain()
            await self.stop()
