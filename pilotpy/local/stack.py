"""pilotpy, a real Envoy gateway and httpbin-like backends, on loopback, torn down together.

`make run`, `make demo` and the end-to-end tests all use this, so the walkthrough a user runs
is the one the tests check. The "pods" of a config are its EndpointSlice addresses in
127.0.0.0/8: a backend is started for each, reporting the Pod's `version` label.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pilotpy.local.backend import Backend
from pilotpy.local.bootstrap import XdsTls, envoy_bootstrap
from pilotpy.local.certs import CERT_CHAIN, KEY, ROOT_CERT, write_mesh_certificate
from pilotpy.local.envoy import EnvoyProcess, free_port
from pilotpy.model.kinds import Kind
from pilotpy.model.kube import EndpointSlice, Pod
from pilotpy.server.controlplane import ControlPlane
from pilotpy.server.settings import Settings

GATEWAY_NODE_ID = ("router~127.0.0.1~istio-ingressgateway-local.istio-system"
                   "~istio-system.svc.cluster.local")
GATEWAY_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}


def port_or_free(preferred: int) -> int:
    """`preferred` when nothing listens on it, else any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", preferred))
        except OSError:
            return free_port()
    return preferred


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def backends_for(objects: Mapping[str, Mapping[Any, Any]]) -> list[Backend]:
    """One backend per loopback endpoint address and port of the config's EndpointSlices."""
    pods: dict[tuple[str, str], Pod] = {(p.meta.namespace, p.meta.name): p
                                        for p in objects.get(Kind.POD, {}).values()}
    by_ip = {p.ip: p for p in pods.values() if p.ip}
    seen: dict[tuple[str, int], Backend] = {}
    for eps in objects.get(Kind.ENDPOINT_SLICE, {}).values():
        assert isinstance(eps, EndpointSlice)
        for endpoint in eps.endpoints:
            for address in endpoint.addresses:
                if not _is_loopback(address):
                    continue
                ref = endpoint.target_ref
                pod = (pods.get((ref.namespace, ref.name)) if ref is not None
                       else by_ip.get(address))
                labels = pod.meta.labels if pod is not None else {}
                for port in eps.ports:
                    if (address, port.port) not in seen:
                        seen[(address, port.port)] = Backend(
                            address, port.port, version=labels.get("version", "v1"),
                            name=labels.get("app", eps.service_name or "backend"))
    return [seen[k] for k in sorted(seen)]


class LocalStack:
    def __init__(self, config_paths: list[Path], workdir: Path, *, delta: bool = False,
                 status_port: int | None = None, stats_port: int | None = None,
                 node_id: str = GATEWAY_NODE_ID, labels: Mapping[str, str] | None = None,
                 poll_interval: float = 0.2, start_backends: bool = True,
                 log_level: str = "info", mesh_config: Path | None = None,
                 settings: Settings | None = None, metadata: Mapping[str, Any] | None = None,
                 sds_address: tuple[str, int] | None = None, xds_identity: str = "") -> None:
        """`settings` replaces the file-source settings built from `config_paths` (the kube
        tests point pilotpy at an API server this way). `metadata`: more node metadata;
        `sds_address`: an SDS server standing in for pilot-agent's (`sds-grpc`);
        `xds_identity`: connect over the TLS port with a mesh certificate for this SPIFFE id,
        as pilot-agent's stream proves its identity."""
        self.plane = ControlPlane(settings or Settings(
            config_paths=config_paths, grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
            grpc_tls_addr="127.0.0.1:0", monitoring_addr="127.0.0.1:0",
            mesh_config=mesh_config, poll_interval=poll_interval))
        self.workdir = workdir
        self.delta = delta
        self.status_port = status_port if status_port is not None else free_port()
        self.stats_port = stats_port if stats_port is not None else free_port()
        self.node_id = node_id
        self.labels = dict(labels if labels is not None else GATEWAY_LABELS)
        self.backends: list[Backend] = []
        self._start_backends = start_backends
        self._log_level = log_level
        self._metadata = dict(metadata or {})
        self._sds_address = sds_address
        self._xds_identity = xds_identity
        self.envoy: EnvoyProcess | None = None

    async def _xds(self) -> tuple[tuple[str, int], XdsTls | None]:
        """Where the Envoy gets its config: the plaintext port, or the TLS port with a mesh
        certificate for `xds_identity`."""
        if not self._xds_identity:
            return ("127.0.0.1", self.plane.grpc_port), None
        secure = self.plane.secure
        if secure is None:
            raise ValueError("xds_identity needs pilotpy's TLS port (grpc_tls_addr)")
        await secure.ready.wait()
        assert secure.authority is not None
        directory = await asyncio.to_thread(write_mesh_certificate, secure.authority,
                                            self.workdir / "xds-identity", self._xds_identity)
        return (("127.0.0.1", self.plane.grpc_tls_port),
                XdsTls(directory / CERT_CHAIN, directory / KEY, directory / ROOT_CERT))

    def _node_metadata(self) -> dict[str, Any]:
        """The extra node metadata; a proxy proving `xds_identity` declares its service
        account (the secure port checks that the two agree, as pilot-agent's node does)."""
        out = dict(self._metadata)
        if self._xds_identity:
            out.setdefault("SERVICE_ACCOUNT", self._xds_identity.rpartition("/sa/")[2])
        return out

    async def start(self) -> None:
        try:
            await self.plane.start()
            if self._start_backends:
                push = self.plane.discovery.push
                self.backends = backends_for(push.objects if push is not None else {})
                for backend in self.backends:
                    backend.start()
            xds_address, xds_tls = await self._xds()
            bootstrap = envoy_bootstrap(
                node_id=self.node_id, xds_address=xds_address,
                delta=self.delta, labels=self.labels, admin_port=free_port(),
                status_port=self.status_port, stats_port=self.stats_port, xds_tls=xds_tls,
                sds_address=self._sds_address, metadata=self._node_metadata())
            self.envoy = EnvoyProcess(bootstrap, self.workdir, name="gateway",
                                      log_level=self._log_level)
            await asyncio.to_thread(self.envoy.start)
        except BaseException:
            await self.stop()
            raise

    async def wait_live(self, timeout: float = 20.0) -> None:
        envoy = self.envoy
        assert envoy is not None
        await asyncio.to_thread(envoy.wait_for, lambda: envoy.server_state() == "LIVE",
                                timeout, "the gateway Envoy to be LIVE")

    async def stop(self) -> None:
        if self.envoy is not None:
            await asyncio.to_thread(self.envoy.stop)
        for backend in self.backends:
            with contextlib.suppress(Exception):
                backend.stop()
        await self.plane.stop()


def http_get(port: int, host: str, path: str = "/", timeout: float = 5.0
             ) -> tuple[int, dict[str, str], bytes]:
    """GET http://127.0.0.1:<port><path> with a Host header. Status 0 means no answer
    (connection refused or reset)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    except OSError:
        return 0, {}, b""
    finally:
        connection.close()


async def eventually(check: Callable[[], Any], what: str, timeout: float = 15.0,
                     interval: float = 0.1) -> Any:
    """Poll `check` (in a thread: it may block on HTTP) until it returns something truthy;
    TimeoutError naming `what` and the last answer otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
