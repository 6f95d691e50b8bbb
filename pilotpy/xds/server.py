"""The ADS gRPC server (grpc.aio): SotW and Delta streams, node validation, push fan-out.

The server knows protocol, versions and bytes; what to send comes from a ConfigProvider
(the discovery layer), which hands out per-proxy-class snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from pilotpy.xds.delta import DeltaStream
from pilotpy.xds.resources import Memo, Snapshot
from pilotpy.xds.sotw import SotwStream
from pilotpy.xds.status import StreamStatus, XdsStats

log = logging.getLogger("pilotpy.xds")

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
READY_WAIT_SECONDS = 30.0

# DESIGN.md §2: C-core's defaults answer a client pinging every 30 s (pilot-agent does) with
# GOAWAY too_many_pings. Accept pings every 10 s without data, never count strikes.
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
]


class NodeRejected(Exception):
    """The first request's node cannot be served (bad id); the stream fails InvalidArgument."""


class ConfigProvider(Protocol):
    def connect(self, node: base_pb2.Node) -> object:
        """A handle for the proxy; raises NodeRejected."""

    def snapshot(self, handle: object) -> Snapshot:
        """The current snapshot of the proxy's class (generated on first use)."""

    def disconnect(self, handle: object) -> None: ...


@dataclass(eq=False)
class Connection:
    status: StreamStatus
    handle: object
    wake: asyncio.Event
    push_pending: bool = False


_CLOSED = object()


def _identity(data: bytes) -> bytes:
    return data


class XdsServer:
    def __init__(self, provider: ConfigProvider, *, max_connection_age_ms: int | None = None
                 ) -> None:
        self._provider = provider
        self.stats = XdsStats()
        self._memo = Memo()
        self.connections: dict[int, Connection] = {}
        self.ready = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self._max_connection_age_ms = max_connection_age_ms

    # -- lifecycle -------------------------------------------------------------------------

    def _handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._sotw, request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=_identity),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._delta, request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=_identity),
        })

    async def start(self, address: str) -> int:
        """Listen on `address` (`host:port`, `:port`); returns the bound port."""
        options = list(SERVER_OPTIONS)
        if self._max_connection_age_ms:
            options += [("grpc.max_connection_age_ms", self._max_connection_age_ms),
                        ("grpc.max_connection_age_grace_ms", 10_000)]
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers((self._handler(),))
        if address.startswith(":"):
            address = "[::]" + address
        port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot listen for xDS on {address}")
        await server.start()
        self._server = server
        return port

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    # -- pushes ----------------------------------------------------------------------------

    def push(self, selected: Callable[[object], bool] | None = None) -> int:
        """Wake streams so they compare their snapshot with what they sent. Returns the
        number woken."""
        woken = 0
        for connection in self.connections.values():
            if selected is not None and not selected(connection.handle):
                continue
            connection.push_pending = True
            connection.wake.set()
            woken += 1
        return woken

    # -- streams ---------------------------------------------------------------------------

    async def _sotw(self, requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
                    context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await self._serve(requests, context, "sotw")

    async def _delta(self, requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
                     context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await self._serve(requests, context, "delta")

    async def _serve(self, requests: AsyncIterator[Any],
                     context: grpc.aio.ServicerContext[Any, Any], protocol: str) -> None:
        if not self.ready.is_set():
            try:
                await asyncio.wait_for(self.ready.wait(), READY_WAIT_SECONDS)
            except TimeoutError:
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    "pilotpy is not ready: config sources have not synced")
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.create_task(self._read(requests, inbox))
        connection: Connection | None = None
        stream: SotwStream | DeltaStream | None = None
        try:
            while True:
                if connection is not None and connection.push_pending and inbox.empty():
                    connection.push_pending = False
                    connection.wake.clear()
                    assert stream is not None
                    await self._write(context, stream.on_push(
                        self._provider.snapshot(connection.handle)))
                    continue
                item = await self._next(inbox, connection)
                if item is _CLOSED:
                    return
                if item is None:
                    continue  # woken for a push
                if connection is None:
                    connection = await self._connect(item, context, protocol)
                    stream = (SotwStream if protocol == "sotw" else DeltaStream)(
                        connection.status, self.stats, self._memo)
                assert stream is not None
                snapshot = self._provider.snapshot(connection.handle)
                await self._write(context, stream.on_request(item, snapshot))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if connection is not None:
                self.connections.pop(connection.status.stream_id, None)
                self._provider.disconnect(connection.handle)
                log.info("disconnected %s (%s stream %d)", connection.status.node_id, protocol,
                         connection.status.stream_id)

    @staticmethod
    async def _next(inbox: asyncio.Queue[Any], connection: Connection | None) -> Any:
        """The next request, or None when a push woke the stream first."""
        if connection is None or not inbox.empty():
            return await inbox.get()
        get = asyncio.ensure_future(inbox.get())
        wake = asyncio.ensure_future(connection.wake.wait())
        try:
            done, _ = await asyncio.wait((get, wake), return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
        if get in done:
            return get.result()
        get.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await get
        return None

    @staticmethod
    async def _read(requests: AsyncIterator[Any], inbox: asyncio.Queue[Any]) -> None:
        try:
            async for request in requests:
                inbox.put_nowait(request)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            inbox.put_nowait(_CLOSED)

    async def _connect(self, request: Any, context: grpc.aio.ServicerContext[Any, Any],
                       protocol: str) -> Connection:
        node = request.node
        if not node.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "missing node information: the first request must carry node.id")
        try:
            handle = self._provider.connect(node)
        except NodeRejected as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        status = StreamStatus(node.id, protocol)
        connection = Connection(status, handle, asyncio.Event())
        self.connections[status.stream_id] = connection
        log.info("connected %s (%s stream %d)", node.id, protocol, status.stream_id)
        return connection

    async def _write(self, context: grpc.aio.ServicerContext[Any, Any],
                     responses: list[bytes]) -> None:
        for response in responses:
            await context.write(response)
