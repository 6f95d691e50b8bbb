"""Shared pieces of the xDS protocol tier: a running pilotpy over a temp dir of YAML, config
edits through the file source, and the handshakes Envoy performs.

Everything talks over a real loopback socket. Config changes go through files (the file
source polls every 50 ms) and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)

from pilotpy.server.controlplane import ControlPlane
from pilotpy.server.settings import Settings
from pilotpy.xds.status import StreamStatus
from pilotpy.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.xds_client import DeltaClient, SotwClient, unpack_any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GATEWAY_NODE = "router~127.0.0.1~gw-1.istio-system~istio-system.svc.cluster.local"
GATEWAY_META: Mapping[str, Any] = {
    "LABELS": {"istio": "ingressgateway"},
    "NAMESPACE": "istio-system",
}

HTTPBIN = "httpbin-service.default.svc.cluster.local"
HTTPBIN_DEFAULT = f"outbound|80||{HTTPBIN}"
HTTPBIN_V1 = f"outbound|80|v1|{HTTPBIN}"
HTTPBIN_V2 = f"outbound|80|v2|{HTTPBIN}"
HTTPBIN_CLUSTERS = frozenset({HTTPBIN_DEFAULT, HTTPBIN_V1, HTTPBIN_V2})
GATEWAY_LISTENER = "0.0.0.0_8080"
GATEWAY_ROUTE = "http.80"

# How long "nothing arrives" is asserted for: many poll and debounce periods.
SILENCE = 0.3
TIMEOUT = 5.0

Doc = dict[str, Any]


def settings_for(config_dir: Path, **overrides: Any) -> Settings:
    return Settings(**{"config_paths": [config_dir], "grpc_addr": "127.0.0.1:0",
                       "http_addr": "127.0.0.1:0", "grpc_tls_addr": "127.0.0.1:0",
                       "monitoring_addr": "127.0.0.1:0", "poll_interval": 0.05,
                       "debounce_quiet": 0.02, **overrides})


@contextlib.asynccontextmanager
async def running(config_dir: Path, **overrides: Any) -> AsyncIterator[ControlPlane]:
    """A started control plane over `config_dir` (Settings fields in `overrides`), stopped
    on exit."""
    plane = ControlPlane(settings_for(config_dir, **overrides))
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop()


class ConfigDir:
    """The YAML the file source watches. Edits are synchronous, so edits made without an
    `await` in between land in one scan, hence one change set and one push."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._seq = itertools.count()
        for source in sorted(EXAMPLES.glob("*.yaml")):
            shutil.copy(source, root / source.name)

    def files(self) -> list[Path]:
        return sorted(self.root.glob("*.yaml"))

    @staticmethod
    def read(path: Path) -> list[Doc]:
        return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]

    def write(self, name: str, docs: Iterable[Doc], *, comment: str = "") -> None:
        """Replace a file atomically (the poller never sees half a file)."""
        text = (f"# {comment}\n" if comment else "") + yaml.safe_dump_all(list(docs))
        self.write_text(name, text)

    def write_text(self, name: str, text: str) -> None:
        temp = self.root / f".tmp-{next(self._seq)}-{name}"
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, self.root / name)

    def _locate(self, kind: str, name: str) -> tuple[Path, list[Doc], int]:
        for path in self.files():
            docs = self.read(path)
            for index, doc in enumerate(docs):
                if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
                    return path, docs, index
        raise KeyError(f"{kind}/{name} is in no config file")

    def get(self, kind: str, name: str) -> Doc:
        _, docs, index = self._locate(kind, name)
        return docs[index]

    def edit(self, kind: str, name: str, change: Callable[[Doc], None]) -> None:
        """Apply `change` to the object in place and rewrite its file."""
        path, docs, index = self._locate(kind, name)
        change(docs[index])
        self.write(path.name, docs)

    def remove(self, kind: str, name: str) -> None:
        path, docs, index = self._locate(kind, name)
        del docs[index]
        self.write(path.name, docs)

    def add(self, file_name: str, doc: Doc) -> None:
        path = self.root / file_name
        docs = self.read(path) if path.exists() else []
        self.write(file_name, [*docs, doc])


async def eventually(check: Callable[[], bool], timeout: float = TIMEOUT,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.01)


@dataclass
class Harness:
    plane: ControlPlane
    config: ConfigDir
    clients: list[SotwClient | DeltaClient] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.plane.grpc_port}"

    @property
    def version(self) -> int:
        push = self.plane.discovery.push
        assert push is not None
        return push.version

    def sotw(self, node_id: str = GATEWAY_NODE, metadata: Mapping[str, Any] | None = None,
             **kwargs: Any) -> SotwClient:
        client = SotwClient(self.target, node_id,
                            metadata=GATEWAY_META if metadata is None else metadata, **kwargs)
        self.clients.append(client)
        return client

    def delta(self, node_id: str = GATEWAY_NODE, metadata: Mapping[str, Any] | None = None,
              **kwargs: Any) -> DeltaClient:
        client = DeltaClient(self.target, node_id,
                             metadata=GATEWAY_META if metadata is None else metadata, **kwargs)
        self.clients.append(client)
        return client

    def pushed(self) -> Callable[[], Awaitable[None]]:
        """Call before a config change; await the result to wait for its push context
        (and the push it triggers) to be processed:

            wait = h.pushed(); h.config.edit(...); await wait()
        """
        before = self.version

        async def wait() -> None:
            await eventually(lambda: self.version > before, what="a new push context")
            # push() ran right after update(); let the woken streams write.
            await asyncio.sleep(0.02)

        return wait

    def statuses(self, node_id: str = GATEWAY_NODE) -> list[StreamStatus]:
        return [c.status for c in self.plane.xds.connections.values()
                if c.status.node_id == node_id]

    def status(self, node_id: str = GATEWAY_NODE) -> StreamStatus:
        (found,) = self.statuses(node_id)
        return found


@contextlib.asynccontextmanager
async def harness(config: ConfigDir, **overrides: Any) -> AsyncIterator[Harness]:
    """A running control plane over `config` (Settings fields in `overrides`); clients made
    through it are closed before it stops."""
    async with running(config.root, **overrides) as plane:
        found = Harness(plane, config)
        try:
            yield found
        finally:
            for client in found.clients:
                await client.close()


# -- decoding -------------------------------------------------------------------------------

def decoded(response: Any) -> list[Any]:
    """The resources of a SotW response, unpacked, in response order."""
    return [unpack_any(r) for r in response.resources]


def decoded_delta(response: Any) -> dict[str, Any]:
    """name -> unpacked resource of a Delta response."""
    return {r.name: unpack_any(r.resource) for r in response.resources if r.HasField("resource")}


def sotw_names(response: Any) -> list[str]:
    """Resource names of a SotW response, in response order."""
    return [resource_name(m) for m in decoded(response)]


def resource_name(message: Any) -> str:
    return str(message.cluster_name if hasattr(message, "cluster_name") else message.name)


def eds_names(clusters: Iterable[Any]) -> list[str]:
    """EDS service names of the EDS clusters, as Envoy subscribes to them."""
    out = []
    for cluster in clusters:
        if cluster.HasField("eds_cluster_config"):
            out.append(cluster.eds_cluster_config.service_name or cluster.name)
    return sorted(out)


def route_names(listeners: Iterable[Any]) -> list[str]:
    """RDS names the listeners' HTTP connection managers refer to."""
    out = set()
    for listener in listeners:
        for chain in listener.filter_chains:
            for f in chain.filters:
                config = unpack_any(f.typed_config)
                if isinstance(config, http_connection_manager_pb2.HttpConnectionManager) and (
                        config.HasField("rds")):
                    out.add(config.rds.route_config_name)
    return sorted(out)


def endpoint_addresses(assignment: Any) -> set[str]:
    return {lb.endpoint.address.socket_address.address
            for group in assignment.endpoints for lb in group.lb_endpoints}


def raw_resources(response: Any) -> dict[str, bytes]:
    """name -> serialized resource of a SotW response (the Any's bytes)."""
    return {resource_name(unpack_any(r)): bytes(r.value) for r in response.resources}


# -- handshakes -----------------------------------------------------------------------------

async def sotw_converge(client: SotwClient) -> dict[str, Any]:
    """What Envoy does on a new stream: CDS, EDS for its clusters, LDS, RDS for its routes,
    ACKing each. Returns the last response of each type."""
    out: dict[str, Any] = {}
    await client.request(CLUSTER)
    out[CLUSTER] = cds = await client.recv()
    assert cds.type_url == CLUSTER
    await client.ack(cds)
    await client.request(ENDPOINT, eds_names(decoded(cds)))
    out[ENDPOINT] = eds = await client.recv()
    assert eds.type_url == ENDPOINT
    await client.ack(eds)
    await client.request(LISTENER)
    out[LISTENER] = lds = await client.recv()
    assert lds.type_url == LISTENER
    await client.ack(lds)
    await client.request(ROUTE, route_names(decoded(lds)))
    out[ROUTE] = rds = await client.recv()
    assert rds.type_url == ROUTE
    await client.ack(rds)
    await client.expect_silence(0.1)
    return out


async def delta_converge(client: DeltaClient) -> dict[str, Any]:
    """The Delta handshake: wildcard CDS, EDS for its clusters, wildcard LDS, RDS."""
    out: dict[str, Any] = {}
    await client.subscribe(CLUSTER)
    out[CLUSTER] = cds = await client.recv()
    assert cds.type_url == CLUSTER
    await client.ack(cds)
    await client.subscribe(ENDPOINT, eds_names(decoded_delta(cds).values()))
    out[ENDPOINT] = eds = await client.recv()
    assert eds.type_url == ENDPOINT
    await client.ack(eds)
    await client.subscribe(LISTENER)
    out[LISTENER] = lds = await client.recv()
    assert lds.type_url == LISTENER
    await client.ack(lds)
    await client.subscribe(ROUTE, route_names(decoded_delta(lds).values()))
    out[ROUTE] = rds = await client.recv()
    assert rds.type_url == ROUTE
    await client.ack(rds)
    await client.expect_silence(0.1)
    return out


# -- config edits used by several tests -------------------------------------------------------

def round_robin(doc: Doc) -> None:
    """A DestinationRule edit that changes every httpbin cluster and nothing else
    (LEAST_REQUEST is the default, so it has to be another policy)."""
    doc["spec"]["trafficPolicy"] = {"loadBalancer": {"simple": "ROUND_ROBIN"}}


def move_endpoint(config: ConfigDir, pod: str, new_ip: str) -> None:
    """Give a Pod a new IP, in the Pod and in the EndpointSlice (an endpoint-only change)."""
    old_ip = config.get("Pod", pod)["status"]["podIP"]

    def pod_change(doc: Doc) -> None:
        doc["status"]["podIP"] = new_ip

    def slice_change(doc: Doc) -> None:
        for endpoint in doc["endpoints"]:
            endpoint["addresses"] = [new_ip if a == old_ip else a for a in endpoint["addresses"]]

    config.edit("Pod", pod, pod_change)
    config.edit("EndpointSlice", "httpbin-service-local", slice_change)
