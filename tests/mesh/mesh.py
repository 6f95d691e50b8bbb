"""A small mesh: pods on a bridge, pilotpy in the root namespace serving xDS on the bridge
address from a directory of YAML the harness writes (Services with VIPs, EndpointSlices and
Pods with the pod addresses), and a sidecar in each pod that has one.

pilotpy runs in a thread of the test process with its own event loop, so its NACK records
(`plane.xds.stats.rejects`) can be checked directly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilotpy.server.controlplane import ControlPlane
from pilotpy.server.settings import Settings
from tests.mesh import agent
from tests.mesh.netns import Network, group_alive, wait_until
from tests.mesh.pods import Pod, PodSpec
from tests.tokens import TokenIssuer

START_TIMEOUT = 30.0


class ControlPlaneThread:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.plane: ControlPlane | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pilotpy", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.plane = ControlPlane(self.settings)
            self.loop.run_until_complete(self.plane.start())
        except BaseException as error:
            self._error = error
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    def start(self) -> ControlPlane:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise TimeoutError("pilotpy did not start")
        if self._error is not None or self.plane is None:
            raise RuntimeError("pilotpy failed to start") from self._error
        return self.plane

    def stop(self) -> None:
        if self._thread.is_alive() and self.plane is not None:
            future = asyncio.run_coroutine_threadsafe(self.plane.stop(), self.loop)
            future.result(START_TIMEOUT)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(START_TIMEOUT)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    vip: str
    selector: Mapping[str, str]
    port: int = 80
    target_port: int = 8000
    port_name: str = "http"
    namespace: str = "default"

    @property
    def hostname(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"


class Mesh:
    """Build with `start()`, always `teardown()` (idempotent, also after a failed start)."""

    def __init__(self, pods: Iterable[PodSpec], services: Iterable[ServiceSpec],
                 mesh_config: Mapping[str, Any] | None = None,
                 external_names: Mapping[str, str] | None = None) -> None:
        """`external_names`: names outside the cluster (`httpbin.org`) that every pod's hosts
        file resolves, as public DNS would, to a pod's address (value: a pod name) or to a
        literal address: no DNS server, no traffic leaves the run's subnet."""
        self.workdir = Path(tempfile.mkdtemp(prefix="pilotpy-mesh-"))
        # Sidecars run as uid 1337: they must reach their bootstrap and log files.
        os.chmod(self.workdir, 0o755)
        self.config_dir = self.workdir / "config"
        self.config_dir.mkdir()
        self.network = Network()
        self.pod_specs = list(pods)
        self.services = list(services)
        self.pods: dict[str, Pod] = {}
        self.mesh_config = mesh_config
        self.external_names = dict(external_names or {})
        self.pilot: ControlPlaneThread | None = None
        # Pods with Istio's agent: tokens signed here, checked by pilotpy (--jwt-rule).
        self.agents = any(p.agent for p in self.pod_specs)
        self.tokens = TokenIssuer()

    @property
    def plane(self) -> ControlPlane:
        assert self.pilot is not None and self.pilot.plane is not None
        return self.pilot.plane

    def start(self) -> None:
        installed = agent.install_agent(self.workdir / "bin") if self.agents else None
        self.network.create()
        for spec in self.pod_specs:
            netns = self.network.add_namespace(spec.name)
            workdir = self.workdir / spec.name
            workdir.mkdir(mode=0o755)
            pod = Pod(spec, netns, workdir)
            pod.intercept(str(self.network.subnet))
            self.pods[spec.name] = pod
        for pod in self.pods.values():  # external names may point at any pod's address
            pod.netns.set_hosts(self.hosts_for(pod.spec.namespace))
        self.write("registry.yaml", self.registry())
        mesh_file = None
        if self.mesh_config is not None:
            mesh_file = self.workdir / "mesh.yaml"
            mesh_file.write_text(yaml.safe_dump(dict(self.mesh_config)))
        self.pilot = ControlPlaneThread(Settings(
            config_paths=[self.config_dir], grpc_addr=f"{self.network.gateway}:0",
            http_addr="127.0.0.1:0", grpc_tls_addr=f"{self.network.gateway}:0",
            monitoring_addr="127.0.0.1:0", mesh_config=mesh_file, poll_interval=0.1,
            jwt_rule=self.tokens.jwt_rule() if self.agents else ""))
        plane = self.pilot.start()
        for pod in self.pods.values():
            pod.start_apps()
            if pod.spec.agent:
                assert plane.secure is not None
                assert installed is not None
                pod.start_agent(f"{agent.ISTIOD_NAME}:{plane.grpc_tls_port}",
                                plane.secure.root_pem, self.token_for(pod.spec), installed)
            elif pod.spec.has_proxy:
                pod.start_proxy((self.network.gateway, plane.grpc_port))
        for pod in self.pods.values():
            if pod.spec.has_proxy and pod.spec.admitted:
                pod.wait_live()

    def token_for(self, spec: PodSpec) -> str | None:
        """The JWT a pod's agent is given (None: no token file)."""
        namespace, account = spec.namespace, spec.account
        match spec.token:
            case "valid":
                return self.tokens.token(namespace, account)
            case "expired":
                return self.tokens.token(namespace, account, lifetime=-120)
            case "forged":
                return self.tokens.forged(namespace, account)
            case "other-namespace":
                return self.tokens.token("elsewhere", account)
            case "none":
                return None
        raise ValueError(f"pod {spec.name}: unknown token kind {spec.token!r}")

    # -- configuration -------------------------------------------------------------------

    def hosts_for(self, namespace: str) -> list[str]:
        """What cluster DNS answers a pod in `namespace`: each Service's VIP by FQDN, by its
        namespace forms, and by its bare name in the same namespace."""
        lines = []
        for service in self.services:
            if service.vip == "None":
                continue  # headless: cluster DNS would answer pod addresses
            names = [service.hostname, f"{service.name}.{service.namespace}.svc",
                     f"{service.name}.{service.namespace}"]
            if service.namespace == namespace:
                names.append(service.name)
            lines.append(" ".join([service.vip, *names]))
        for name, target in sorted(self.external_names.items()):
            address = self.pods[target].ip if target in self.pods else target
            lines.append(f"{address} {name}")
        if self.agents:  # what cluster DNS answers for istiod's Service
            lines.append(f"{self.network.gateway} {agent.ISTIOD_NAME}")
        return lines

    def registry(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for spec in self.pod_specs:
            if not spec.has_proxy and spec.app_port is not None and not spec.labels:
                continue  # outside the mesh: not in the registry
            pod = self.pods[spec.name]
            docs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": spec.name, "namespace": spec.namespace,
                                      "labels": spec.pod_labels},
                         "spec": {"serviceAccountName": spec.account},
                         "status": {"podIP": pod.ip, "phase": "Running"}})
        for service in self.services:
            docs.append({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": service.name, "namespace": service.namespace},
                         "spec": {"clusterIP": service.vip, "selector": dict(service.selector),
                                  "ports": [{"name": service.port_name, "port": service.port,
                                             "targetPort": service.target_port}]}})
            # An unnamed port: Kubernetes leaves the slice port's name empty too.
            selected = [p for p in self.pods.values()
                        if p.spec.namespace == service.namespace and all(
                            p.spec.labels.get(k) == v for k, v in service.selector.items())]
            docs.append({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{service.name}-slice", "namespace": service.namespace,
                             "labels": {"kubernetes.io/service-name": service.name}},
                "addressType": "IPv4",
                "ports": [{"name": service.port_name, "port": service.target_port}],
                "endpoints": [{"addresses": [p.ip], "conditions": {"ready": True},
                               "targetRef": {"kind": "Pod", "name": p.spec.name,
                                             "namespace": p.spec.namespace}}
                              for p in selected],
            })
        return docs

    def write(self, name: str, docs: list[dict[str, Any]]) -> None:
        """Atomically (rename) so the file source never reads half a file."""
        staging = self.workdir / f".{name}"
        staging.write_text(yaml.safe_dump_all(docs))
        staging.replace(self.config_dir / name)

    def remove(self, name: str) -> None:
        (self.config_dir / name).unlink(missing_ok=True)

    def apply(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """`kubectl apply`: each object in a file of its own (named by kind, namespace and
        name), so applying an object replaces the previous one of that name; an unchanged
        object is not rewritten."""
        for doc in docs:
            target = self.config_dir / object_file(doc)
            text = yaml.safe_dump(dict(doc))
            if not target.exists() or target.read_text() != text:
                self.write(target.name, [dict(doc)])

    def delete(self, docs: Iterable[Mapping[str, Any]]) -> None:
        """`kubectl delete` of objects `apply` wrote (absent ones are fine)."""
        for doc in docs:
            self.remove(object_file(doc))

    # -- checks --------------------------------------------------------------------------

    def rejected(self) -> dict[str, Any]:
        """NACKs seen by pilotpy, and every sidecar's non-zero `update_rejected` counters."""
        out: dict[str, Any] = {}
        if self.pilot is not None and self.pilot.plane is not None:
            rejects = dict(self.plane.xds.stats.rejects)
            if rejects:
                out["pilotpy"] = rejects
        for pod in self.pods.values():
            if pod.spec.has_proxy and pod.sidecar is not None and pod.sidecar.alive:
                bad = {k: v for k, v in pod.stats("update_rejected").items() if v}
                if bad:
                    out[pod.spec.name] = bad
        return out

    def wait_for_route(self, pod: str, route: str, predicate: Any, what: str,
                       timeout: float = 30.0) -> None:
        target = self.pods[pod]
        wait_until(lambda: (config := target.route_config(route)) is not None
                   and predicate(config), what, timeout=timeout)

    def processes(self) -> list[int]:
        """The process groups of every pod process started so far."""
        return [p.popen.pid for ns in self.network.namespaces for p in ns.processes]

    def teardown(self) -> None:
        errors: list[str] = []
        try:
            self.network.teardown()  # stops sidecars and apps before their namespaces go
        except Exception as error:
            errors.append(str(error))
        if self.pilot is not None:
            try:
                self.pilot.stop()
            except Exception as error:
                errors.append(f"stopping pilotpy: {error!r}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise RuntimeError("; ".join(errors))


def object_file(doc: Mapping[str, Any]) -> str:
    metadata = doc.get("metadata", {})
    return (f"{doc['kind']}.{metadata.get('namespace', 'default')}.{metadata['name']}"
            ".yaml").lower()


def running(built: Mesh) -> Iterator[Mesh]:
    """A session fixture's body: start, hand out, tear down even on failure; then prove that
    no namespace, link or process group of the run is left."""
    groups: list[int] = []
    try:
        built.start()
        groups = built.processes()
        yield built
    finally:
        groups = groups or built.processes()
        built.teardown()
        leftovers = built.network.leftovers() + [
            f"process group {g}" for g in groups if group_alive(g)]
        assert not leftovers, f"the mesh left {leftovers}"
