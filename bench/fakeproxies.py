"""Fake-proxy load generator: many Envoy-like ADS streams against one control plane.

    python bench/fakeproxies.py --target 127.0.0.1:15010 --count 1000 \\
        --node-template 'router~127.0.0.{i}~gw-{i}.istio-system~istio-system.svc.cluster.local' \\
        --labels istio=ingressgateway --mode sotw --duration 30 --report out.json

Each stream asks for CDS and LDS (wildcard), ACKs every response, and follows them the way
Envoy does: EDS for the EDS clusters, RDS for the route names in HTTP connection managers.
It records time to first convergence, responses and bytes per type, and when each stream
ACKed each version, so a benchmark can measure "config change -> last ACK".

The report (JSON) is written on exit (after --duration, SIGTERM or SIGINT), on SIGUSR1, every
--report-interval seconds, and when --control names a file that appears containing ``dump
[PATH]`` (``stop`` ends the run). The control file is deleted once read. Timestamps in the
report are Unix epoch seconds; durations are seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

if __package__ in (None, ""):
    # Run as a script: make the repository's pilotpy importable without installing it.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import grpc.aio
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2

from pilotpy.local.bootstrap import agent_node_metadata, service_cluster
from pilotpy.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, WILDCARD_TYPES, short_name
from tests.xds_client import (
    DELTA_METHOD,
    SOTW_METHOD,
    build_node,
    channel_options,
    unpack_any,
)

Mode = Literal["sotw", "delta"]

TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
# The type whose names each wildcard type's resources ask for.
_FOLLOWS = {CLUSTER: ENDPOINT, LISTENER: ROUTE}
_HCM_NAME = "envoy.filters.network.http_connection_manager"
_HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_MAX_ERRORS = 200
_CACHE_LIMIT = 200_000


@dataclass
class Config:
    target: str
    count: int = 1
    node_template: str = "sidecar~{ip}~proxy-{i}.default~default.svc.cluster.local"
    labels: dict[str, str] = field(default_factory=dict)
    namespace: str = "default"
    meta: dict[str, Any] = field(default_factory=dict)
    mode: Mode = "sotw"
    duration: float = 30.0
    report: Path | None = None
    connect_rate: float = 0.0
    streams_per_channel: int = 100
    control: Path | None = None
    report_interval: float = 0.0
    per_stream: bool = False
    user_agent_version: str = "1.40.0"
    keepalive_ms: int | None = None
    reconnect: bool = True
    backoff_base: float = 0.5
    backoff_max: float = 5.0
    install_signals: bool = True
    # (node id, labels) per proxy, instead of --node-template/--labels: a fleet of many
    # workloads (proxy classes).
    identities: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    istio_version: str = "1.28.0"


def parse_args(argv: Sequence[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", required=True, help="host:port of the ADS server (loopback)")
    p.add_argument("--count", type=int, default=1, help="number of ADS streams (fake proxies)")
    p.add_argument(
        "--node-template",
        default=Config.node_template,
        help="node id; {i} is the proxy index, {ip} a unique 127.x.y.z",
    )
    p.add_argument(
        "--labels",
        action="append",
        default=[],
        help="k=v[,k=v...] pod labels sent as metadata LABELS; values may use {i}",
    )
    p.add_argument(
        "--namespace",
        default="default",
        help="NAMESPACE when the node id's third field has no '.namespace'",
    )
    p.add_argument(
        "--meta",
        action="append",
        default=[],
        help="KEY=VALUE extra node metadata; VALUE is JSON if it parses, else a string",
    )
    p.add_argument("--mode", choices=("sotw", "delta"), default="sotw")
    p.add_argument("--duration", type=float, default=30.0, help="hard stop after this many s")
    p.add_argument("--report", type=Path, help="where the JSON report is written")
    p.add_argument(
        "--connect-rate",
        type=float,
        default=0.0,
        help="stream (re)connects per second; 0 = unlimited",
    )
    p.add_argument("--streams-per-channel", type=int, default=100)
    p.add_argument("--control", type=Path, help="control file: 'dump [PATH]' or 'stop'")
    p.add_argument("--report-interval", type=float, default=0.0, help="also dump every N s")
    p.add_argument("--per-stream", action="store_true", help="include every stream's state")
    p.add_argument("--user-agent-version", default="1.40.0")
    p.add_argument("--istio-version", default=Config.istio_version,
                   help="ISTIO_VERSION the proxies report, as pilot-agent does")
    p.add_argument("--identities", type=Path,
                   help="JSON list of [node id, {labels}], one per proxy (overrides --count, "
                        "--node-template and --labels)")
    p.add_argument("--keepalive-ms", type=int)
    p.add_argument("--no-reconnect", dest="reconnect", action="store_false")
    ns = p.parse_args(argv)
    identities: list[tuple[str, dict[str, str]]] = []
    if ns.identities is not None:
        identities = [(str(n), {str(k): str(v) for k, v in labels.items()})
                      for n, labels in json.loads(ns.identities.read_text(encoding="utf-8"))]
        ns.count = len(identities)
    if ns.count < 1 or ns.streams_per_channel < 1 or ns.duration <= 0:
        p.error("--count, --streams-per-channel and --duration must be positive")
    try:
        labels, meta = parse_labels(ns.labels), parse_meta(ns.meta)
    except ValueError as err:
        p.error(str(err))
    return Config(
        identities=identities,
        istio_version=ns.istio_version,
        target=ns.target,
        count=ns.count,
        node_template=ns.node_template,
        labels=labels,
        namespace=ns.namespace,
        meta=meta,
        mode=ns.mode,
        duration=ns.duration,
        report=ns.report,
        connect_rate=ns.connect_rate,
        streams_per_channel=ns.streams_per_channel,
        control=ns.control,
        report_interval=ns.report_interval,
        per_stream=ns.per_stream,
        user_agent_version=ns.user_agent_version,
        keepalive_ms=ns.keepalive_ms,
        reconnect=ns.reconnect,
    )


def parse_labels(values: Iterable[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            if item.strip():
                key, sep, val = item.partition("=")
                if not sep:
                    raise ValueError(f"label {item!r} is not k=v")
                labels[key.strip()] = val.strip()
    return labels


def parse_meta(values: Iterable[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"metadata {item!r} is not KEY=VALUE")
        try:
            meta[key] = json.loads(raw)
        except ValueError:
            meta[key] = raw
    return meta


def node_identity(config: Config, i: int) -> tuple[str, dict[str, Any]]:
    """The node id and metadata of proxy ``i``: what pilot-agent sends for such a pod
    (agent_node_metadata), plus --meta. Control planes read more than LABELS and NAMESPACE
    (istiod: the workload name, the static listener ports, the Istio version)."""
    if config.identities:
        node_id, labels = config.identities[i]
    else:
        ip = f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        node_id = config.node_template.format(i=i, ip=ip)
        labels = {k: v.format(i=i, ip=ip) for k, v in config.labels.items()}
    parts = node_id.split("~")
    namespace = config.namespace
    # Istio's node id is type~ip~pod.namespace~domain.
    if len(parts) == 4 and "." in parts[2]:
        namespace = parts[2].split(".", 1)[1]
    try:
        metadata = agent_node_metadata(node_id, labels=labels, namespace=namespace,
                                       istio_version=config.istio_version)
    except ValueError:  # not Istio's 4-part form: a test of the server's refusal
        metadata = {"LABELS": labels, "NAMESPACE": namespace}
    return node_id, {**metadata, **config.meta}


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 6)

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": round(ordered[-1], 6)}


def _sized(cls: Any) -> Callable[[bytes], tuple[int, Any]]:
    # Keep the wire size next to the message: the report counts bytes received.
    def decode(data: bytes) -> tuple[int, Any]:
        return len(data), cls.FromString(data)

    return decode


def _leading_name(value: bytes) -> str | None:
    """Field 1 (the name) of a serialized Cluster/Listener/ClusterLoadAssignment/
    RouteConfiguration, read straight off the wire when it is encoded first, as every
    protobuf runtime does; None otherwise."""
    if not value or value[0] != 0x0A:
        return None
    length, shift, pos = 0, 0, 1
    while pos < len(value):
        byte = value[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return sys.intern(value[pos : pos + length].decode("utf-8", "replace"))
        shift += 7
    return None


class _Decoder:
    """What a proxy needs from CDS/LDS resources, memoized by their bytes: every fake proxy
    receives the same resources, and decoding them once per stream would make this process,
    not the server, the bottleneck."""

    def __init__(self) -> None:
        self._clusters: dict[bytes, tuple[str, str | None]] = {}
        self._listeners: dict[bytes, tuple[str, tuple[str, ...]]] = {}

    def cluster(self, value: bytes) -> tuple[str, str | None]:
        """(cluster name, EDS service name or None when the cluster is not EDS)."""
        hit = self._clusters.get(value)
        if hit is None:
            c = cluster_pb2.Cluster.FromString(value)
            eds = None
            if c.WhichOneof("cluster_discovery_type") == "type" and c.type == c.EDS:
                eds = sys.intern(c.eds_cluster_config.service_name or c.name)
            hit = (sys.intern(c.name), eds)
            if len(self._clusters) > _CACHE_LIMIT:
                self._clusters.clear()
            self._clusters[value] = hit
        return hit

    def listener(self, value: bytes) -> tuple[str, tuple[str, ...]]:
        """(listener name, RDS route config names of its HTTP connection managers)."""
        hit = self._listeners.get(value)
        if hit is None:
            listener = listener_pb2.Listener.FromString(value)
            chains = list(listener.filter_chains)
            if listener.HasField("default_filter_chain"):
                chains.append(listener.default_filter_chain)
            routes: list[str] = []
            for chain in chains:
                for f in chain.filters:
                    typed = f.typed_config
                    if f.name != _HCM_NAME and not typed.type_url.endswith(_HCM_TYPE):
                        continue
                    hcm = http_connection_manager_pb2.HttpConnectionManager.FromString(typed.value)
                    if hcm.HasField("rds") and hcm.rds.route_config_name:
                        routes.append(sys.intern(hcm.rds.route_config_name))
            hit = (sys.intern(listener.name), tuple(dict.fromkeys(routes)))
            if len(self._listeners) > _CACHE_LIMIT:
                self._listeners.clear()
            self._listeners[value] = hit
        return hit

    def follow(self, type_url: str, value: bytes) -> tuple[str, tuple[str, ...]]:
        """(resource name, names of the resources it makes the proxy request)."""
        if type_url == CLUSTER:
            name, eds = self.cluster(value)
            return name, (eds,) if eds else ()
        return self.listener(value)


@dataclass
class TypeState:
    """One stream's view of one type: the timeline point a benchmark reads."""

    version: str = ""
    received_at: float = 0.0
    acked_at: float = 0.0
    acked_version: str = ""
    responses: int = 0


@dataclass
class StreamState:
    index: int
    node_id: str
    sessions: int = 0
    connected: bool = False
    ever_connected: bool = False
    session_started: float = 0.0  # monotonic
    converged_after: float | None = None
    first_converged_after: float | None = None
    last_error: str | None = None
    types: dict[str, TypeState] = field(default_factory=lambda: {t: TypeState() for t in TYPES})

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "node": self.node_id,
            "sessions": self.sessions,
            "connected": self.connected,
            "ever_connected": self.ever_connected,
            "converged_after": self.converged_after,
            "first_converged_after": self.first_converged_after,
            "last_error": self.last_error,
            "types": {short_name(t): vars(s).copy() for t, s in self.types.items()},
        }


class Recorder:
    """Counters shared by all streams; the report is built from it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.streams: list[StreamState] = []
        self.responses: Counter[str] = Counter()
        self.bytes = 0
        self.errors: list[str] = []
        self.error_count = 0
        self.disconnects = 0
        self.last_ack: dict[str, float] = {}
        self.last_converged: float | None = None
        # type -> version -> streams that moved to it, and when the first and last did.
        self.versions: dict[str, dict[str, dict[str, Any]]] = {}

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(f"{time.time() - self.started_wall:.3f}s {message}")

    def received(self, st: StreamState, type_url: str, version: str, size: int) -> TypeState:
        self.responses[type_url] += 1
        self.bytes += size
        ts = st.types.get(type_url)
        if ts is None:
            ts = st.types[type_url] = TypeState()
        ts.responses += 1
        ts.version = version
        ts.received_at = time.time()
        return ts

    def acked(self, ts: TypeState, type_url: str, version: str) -> None:
        now = time.time()
        ts.acked_at = now
        self.last_ack[type_url] = now
        if version == ts.acked_version:
            return
        ts.acked_version = version
        entry = self.versions.setdefault(type_url, {}).get(version)
        if entry is None:
            entry = {"streams": 0, "first_ack": now, "last_ack": now}
            self.versions[type_url][version] = entry
        entry["streams"] += 1
        entry["last_ack"] = now

    def converged(self, st: StreamState) -> None:
        after = time.monotonic() - st.session_started
        st.converged_after = after
        if st.first_converged_after is None:
            st.first_converged_after = after
        self.last_converged = time.time()

    def report(self) -> dict[str, Any]:
        streams = self.streams
        convergence = [s.converged_after for s in streams if s.converged_after is not None]
        first = [s.first_converged_after for s in streams if s.first_converged_after is not None]
        out: dict[str, Any] = {
            "count": self.config.count,
            "mode": self.config.mode,
            "target": self.config.target,
            "started_at": self.started_wall,
            "generated_at": time.time(),
            "elapsed": round(time.monotonic() - self.started, 3),
            "connected": sum(s.connected for s in streams),
            "ever_connected": sum(s.ever_connected for s in streams),
            "converged": len(convergence),
            "convergence_seconds": percentiles(convergence),
            "first_convergence_seconds": percentiles(first),
            "last_converged_at": self.last_converged,
            "responses": {short_name(t): self.responses.get(t, 0) for t in TYPES},
            "bytes": self.bytes,
            "sessions": sum(s.sessions for s in streams),
            "disconnects": self.disconnects,
            "errors": list(self.errors),
            "error_count": self.error_count,
            "last_ack": {short_name(t): self.last_ack.get(t) for t in TYPES},
            "versions": {
                short_name(t): {v: dict(e) for v, e in self.versions.get(t, {}).items()}
                for t in TYPES
            },
        }
        if self.config.per_stream:
            out["streams"] = [s.as_json() for s in streams]
        return out

    def write(self, path: Path | None = None) -> Path | None:
        target = path or self.config.report
        if target is None:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        # Write-then-rename so a benchmark polling the file never reads half a report.
        tmp.write_text(json.dumps(self.report(), indent=2, sort_keys=True))
        tmp.replace(target)
        return target


class _RateLimiter:
    """Spaces stream (re)connects evenly at ``rate`` per second; 0 means no limit."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


class _Session:
    """One ADS stream of one fake proxy, from open to close. Subclasses speak SotW or delta."""

    method: ClassVar[str]
    request_type: ClassVar[Any]
    response_type: ClassVar[Any]

    def __init__(self, proxy: FakeProxy, call: Any, decoder: _Decoder, recorder: Recorder) -> None:
        self.proxy = proxy
        self.st = proxy.state
        self.call = call
        self.decoder = decoder
        self.recorder = recorder
        self.node_sent = False
        # Names this session asked for and has received, per followed type (EDS, RDS).
        self.received: dict[str, set[str]] = {ENDPOINT: set(), ROUTE: set()}
        self.acked_types: set[str] = set()

    def _maybe_converged(self) -> None:
        if self.st.converged_after is not None:
            return
        if not self.acked_types >= WILDCARD_TYPES:
            return
        for followed in (ENDPOINT, ROUTE):
            if not self.proxy.wanted[followed] <= self.received[followed]:
                return
        self.recorder.converged(self.st)

    async def _write(self, request: Any) -> None:
        if not self.node_sent:
            request.node.CopyFrom(self.proxy.node)
            self.node_sent = True
        await self.call.write(request)

    async def run(self) -> None:
        await self.start()
        while True:
            item = await self.call.read()
            if item is grpc.aio.EOF:
                return
            size, response = item
            # A stream counts as connected once the server has answered on it.
            self.st.connected = self.st.ever_connected = True
            await self.on_response(size, response)

    async def start(self) -> None:
        raise NotImplementedError

    async def on_response(self, size: int, response: Any) -> None:
        raise NotImplementedError


class _SotwSession(_Session):
    method = SOTW_METHOD
    request_type = discovery_pb2.DiscoveryRequest
    response_type = discovery_pb2.DiscoveryResponse

    def __init__(self, proxy: FakeProxy, call: Any, decoder: _Decoder, recorder: Recorder) -> None:
        super().__init__(proxy, call, decoder, recorder)
        self.nonces: dict[str, str] = {}
        self.requested: dict[str, tuple[str, ...]] = {}

    async def _request(self, type_url: str, names: tuple[str, ...], nonce: str = "") -> None:
        self.requested[type_url] = names
        await self._write(
            discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                resource_names=names,
                version_info=self.proxy.sotw_versions.get(type_url, ""),
                response_nonce=nonce,
            )
        )

    async def start(self) -> None:
        # Like a reconnecting Envoy: wildcards first, then every watch it already had, each
        # with the version it last accepted.
        await self._request(CLUSTER, ())
        await self._request(LISTENER, ())
        for followed in (ENDPOINT, ROUTE):
            names = tuple(sorted(self.proxy.wanted[followed]))
            if names:
                await self._request(followed, names)

    async def on_response(self, size: int, response: Any) -> None:
        type_url = response.type_url
        version = response.version_info
        ts = self.recorder.received(self.st, type_url, version, size)
        self.nonces[type_url] = response.nonce
        follows = _FOLLOWS.get(type_url)
        if follows is not None:
            wanted: set[str] = set()
            for r in response.resources:
                wanted.update(self.decoder.follow(type_url, r.value)[1])
        elif type_url in self.received:
            got = self.received[type_url]
            for r in response.resources:
                got.add(_leading_name(r.value) or _resource_name(r))
        # ACK: same names as the last request of this type, the response's version and nonce.
        self.proxy.sotw_versions[type_url] = version
        await self._request(type_url, self.requested.get(type_url, ()), response.nonce)
        self.recorder.acked(ts, type_url, version)
        self.acked_types.add(type_url)
        if follows is not None and wanted != self.proxy.wanted[follows]:
            self.proxy.wanted[follows] = wanted
            await self._request(follows, tuple(sorted(wanted)), self.nonces.get(follows, ""))
        self._maybe_converged()


def _resource_name(packed: Any) -> str:
    msg: Any = unpack_any(packed)
    return str(getattr(msg, "cluster_name", "") or getattr(msg, "name", ""))


class _DeltaSession(_Session):
    method = DELTA_METHOD
    request_type = discovery_pb2.DeltaDiscoveryRequest
    response_type = discovery_pb2.DeltaDiscoveryResponse

    def __init__(self, proxy: FakeProxy, call: Any, decoder: _Decoder, recorder: Recorder) -> None:
        super().__init__(proxy, call, decoder, recorder)
        self.subscribed: dict[str, set[str]] = {ENDPOINT: set(), ROUTE: set()}

    async def start(self) -> None:
        # A reconnecting Envoy tells the server what it already has, per resource. The server
        # need not resend those, so for convergence they count as received already.
        for followed in (ENDPOINT, ROUTE):
            self.received[followed].update(self.proxy.delta_versions[followed])
        for type_url in (CLUSTER, LISTENER):
            await self._write(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url,
                    initial_resource_versions=self.proxy.delta_versions[type_url],
                )
            )
        for followed in (ENDPOINT, ROUTE):
            await self._subscribe(followed, self.proxy.wanted[followed])

    async def _subscribe(self, type_url: str, wanted: set[str]) -> None:
        current = self.subscribed[type_url]
        add, drop = wanted - current, current - wanted
        if not add and not drop:
            return
        current.clear()
        current.update(wanted)
        versions = self.proxy.delta_versions[type_url]
        for name in drop:
            versions.pop(name, None)
        await self._write(
            discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url,
                resource_names_subscribe=sorted(add),
                resource_names_unsubscribe=sorted(drop),
                initial_resource_versions={n: versions[n] for n in add if n in versions},
            )
        )

    async def on_response(self, size: int, response: Any) -> None:
        type_url = response.type_url
        version = response.system_version_info
        ts = self.recorder.received(self.st, type_url, version, size)
        versions = self.proxy.delta_versions.setdefault(type_url, {})
        follows = _FOLLOWS.get(type_url)
        followed_by = self.proxy.followed_by.setdefault(type_url, {})
        for r in response.resources:
            versions[r.name] = r.version
            if follows is not None and r.HasField("resource"):
                followed_by[r.name] = self.decoder.follow(type_url, r.resource.value)[1]
        for name in response.removed_resources:
            versions.pop(name, None)
            followed_by.pop(name, None)
        if type_url in self.received:
            got = self.received[type_url]
            got.update(r.name for r in response.resources)
            got.difference_update(response.removed_resources)
        await self._write(
            discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=response.nonce)
        )
        self.recorder.acked(ts, type_url, version)
        self.acked_types.add(type_url)
        if follows is not None:
            wanted = {n for names in followed_by.values() for n in names}
            self.proxy.wanted[follows] = wanted
            await self._subscribe(follows, wanted)
        self._maybe_converged()


class FakeProxy:
    """One fake Envoy: a stream that reconnects with backoff until the run stops."""

    def __init__(
        self,
        config: Config,
        index: int,
        *,
        channel: grpc.aio.Channel,
        decoder: _Decoder,
        recorder: Recorder,
        limiter: _RateLimiter,
    ) -> None:
        node_id, metadata = node_identity(config, index)
        self.config = config
        self.node = build_node(node_id, metadata, config.user_agent_version,
                               service_cluster(metadata["LABELS"], metadata["NAMESPACE"]))
        self.state = StreamState(index=index, node_id=node_id)
        self.channel = channel
        self.decoder = decoder
        self.recorder = recorder
        self.limiter = limiter
        # Survives reconnects, like Envoy's own config does.
        self.wanted: dict[str, set[str]] = {ENDPOINT: set(), ROUTE: set()}
        self.sotw_versions: dict[str, str] = {}
        self.delta_versions: dict[str, dict[str, str]] = {t: {} for t in TYPES}
        self.followed_by: dict[str, dict[str, tuple[str, ...]]] = {}

    async def run(self) -> None:
        session_type: type[_SotwSession | _DeltaSession] = (
            _SotwSession if self.config.mode == "sotw" else _DeltaSession
        )
        failures = 0
        while True:
            await self.limiter.wait()
            st = self.state
            st.sessions += 1
            st.session_started = time.monotonic()
            st.converged_after = None
            call = self.channel.stream_stream(
                session_type.method,
                request_serializer=session_type.request_type.SerializeToString,
                response_deserializer=_sized(session_type.response_type),
            )(wait_for_ready=True)
            session = session_type(self, call, self.decoder, self.recorder)
            code: Any
            details: str | None
            try:
                await session.run()
                code, details = await call.code(), await call.details()
            except asyncio.CancelledError:
                call.cancel()
                raise
            except grpc.aio.AioRpcError as err:
                code, details = err.code(), err.details()
            except asyncio.InvalidStateError:
                # A write raced the server closing the stream; the status says why.
                code, details = await call.code(), await call.details()
            except Exception as err:
                # A response this proxy could not digest: drop the stream and start over, as
                # a restarted Envoy would, rather than lose the proxy for the rest of the run.
                call.cancel()
                code, details = "CLIENT_ERROR", details_of(err)
            # Not reset on cancellation: the final report shows who was connected at the stop.
            st.connected = False
            if session.acked_types:
                failures = 0
            failures += 1
            self.recorder.disconnects += 1
            st.last_error = f"{code} {details}"
            self.recorder.error(f"stream {st.index} closed: {code} {details}")
            if not self.config.reconnect:
                return
            delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (failures - 1))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))


def details_of(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _watch_control(path: Path, recorder: Recorder, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.2)
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except OSError as err:
            recorder.error(f"control file: {err}")
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        words = text.split()
        if not words:
            continue
        if words[0] == "dump":
            recorder.write(Path(words[1]) if len(words) > 1 else None)
        elif words[0] == "stop":
            stop.set()
        else:
            recorder.error(f"control file: unknown command {text.strip()!r}")


async def _dump_periodically(interval: float, recorder: Recorder, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        recorder.write()


async def run(config: Config) -> dict[str, Any]:
    """Run the fake proxies until --duration, a signal or a 'stop' command; returns the final
    report (also written to config.report)."""
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    recorder = Recorder(config)
    stop = asyncio.Event()
    signals: list[signal.Signals] = []
    if config.install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            signals.append(sig)
        loop.add_signal_handler(signal.SIGUSR1, recorder.write)
        signals.append(signal.SIGUSR1)

    options = [
        *channel_options(config.keepalive_ms),
        # gRPC shares one connection between channels with equal arguments; a local pool
        # gives each channel its own, which is the point of spreading streams over them.
        ("grpc.use_local_subchannel_pool", 1),
    ]
    n_channels = math.ceil(config.count / config.streams_per_channel)
    channels = [
        grpc.aio.insecure_channel(config.target, options=options) for _ in range(n_channels)
    ]
    decoder = _Decoder()
    limiter = _RateLimiter(config.connect_rate)
    proxies = [
        FakeProxy(
            config,
            i,
            channel=channels[i % n_channels],
            decoder=decoder,
            recorder=recorder,
            limiter=limiter,
        )
        for i in range(config.count)
    ]
    recorder.streams = [p.state for p in proxies]
    tasks = [asyncio.create_task(p.run(), name=f"fakeproxy-{p.state.index}") for p in proxies]
    helpers: list[asyncio.Task[None]] = []
    if config.control is not None:
        helpers.append(asyncio.create_task(_watch_control(config.control, recorder, stop)))
    if config.report_interval > 0:
        helpers.append(
            asyncio.create_task(_dump_periodically(config.report_interval, recorder, stop))
        )
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), config.duration)
    finally:
        stop.set()
        for task in (*tasks, *helpers):
            task.cancel()
        await asyncio.wait([*tasks, *helpers], timeout=5.0)
        for task in tasks:
            if task.done() and not task.cancelled():
                crash = task.exception()
                if crash is not None:
                    recorder.error(f"{task.get_name()} crashed: {details_of(crash)}")
        # Grace None cancels whatever is still in flight; the bound guards a wedged transport.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.close(grace=None) for c in channels)), 5.0)
        for sig in signals:
            loop.remove_signal_handler(sig)
    recorder.write()
    return recorder.report()


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    report = asyncio.run(run(config))
    summary = {k: report[k] for k in ("count", "connected", "converged", "error_count")}
    print(json.dumps({**summary, "convergence_seconds": report["convergence_seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
