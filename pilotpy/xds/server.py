"""The ADS gRPC server (grpc.aio): SotW and Delta streams, node validation, push fan-out.

The server knows protocol, versions and bytes; what to send comes from a ConfigProvider
(the discovery layer), which hands out per-proxy-class snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from pilotpy.xds import debug, types
from pilotpy.xds.delta import DeltaStream
from pilotpy.xds.resources import Memo, Snapshot
from pilotpy.xds.sotw import SotwStream
from pilotpy.xds.status import NodeInfo, StreamStatus, XdsStats

log = logging.getLogger("pilotpy.xds")

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
READY_WAIT_SECONDS = 30.0

# C-core's defaults answer a client pinging every 30 s (pilot-agent does) with GOAWAY
# too_many_pings. Accept pings every 10 s without data, never count strikes
# (docs/architecture.md#grpc-server-settings).
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


class StreamRefused(Exception):
    """A stream the guard turns away: ends with `code` and the message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class StreamGuard(Protocol):
    """Authentication of streams on the secure server (:15012). xds knows only that a stream
    is admitted (with some principal) and then authorized for the node it declares."""

    async def admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> object:
        """The stream's principal; raises StreamRefused (Unauthenticated)."""

    def authorize(self, principal: object, node: base_pb2.Node) -> str:
        """The identity (a SPIFFE URI) of the principal that `node` is; raises StreamRefused
        (PermissionDenied) when the principal may not be `node`."""


class ConfigUnavailable(Exception):
    """The provider has no config for the proxy (its generation failed and it never had one);
    the stream fails Unavailable, and the proxy retries."""


class ConfigProvider(Protocol):
    def connect(self, node: base_pb2.Node, identity: str = "") -> object:
        """A handle for the proxy; `identity` is what the stream proved (the guard's
        answer on the secure port, "" otherwise); raises NodeRejected."""

    def snapshot(self, handle: object) -> Snapshot:
        """The current snapshot of the proxy's class (generated on first use); raises
        ConfigUnavailable."""

    def disconnect(self, handle: object) -> None: ...


@dataclass(eq=False)
class Connection:
    status: StreamStatus
    handle: object  # None for a debug client whose node the provider cannot serve
    wake: asyncio.Event
    debug: bool = False  # a debug client (istioctl), not a proxy
    debug_nonce: str = ""  # of the last answer to a debug type
    push_pending: bool = False
    # When the change behind the pending push arrived (for pilot_proxy_convergence_time).
    push_started: float | None = None


def node_info(node: base_pb2.Node) -> NodeInfo:
    """The proxy type from the Istio node id, and what debug status shows from metadata."""
    fields = node.metadata.fields if node.HasField("metadata") else {}

    def text(key: str) -> str:
        value = fields.get(key)
        return value.string_value if value is not None else ""

    return NodeInfo(type=node.id.split("~", 1)[0], cluster_id=text("CLUSTER_ID"),
                    namespace=text("NAMESPACE"), istio_version=text("ISTIO_VERSION"))


_CLOSED = object()


def _identity(data: bytes) -> bytes:
    return data


class XdsServer:
    def __init__(self, provider: ConfigProvider, *, max_connection_age_ms: int | None = None,
                 instance_id: str = "pilotpy", version: str = "",
                 guard: StreamGuard | None = None) -> None:
        self._provider = provider
        self.guard = guard
        self._secure_handlers: list[grpc.GenericRpcHandler] = []
        self.stats = XdsStats()
        self._memo = Memo()
        self.connections: dict[int, Connection] = {}
        self.ready = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self._secure_server: grpc.aio.Server | None = None
        self._max_connection_age_ms = max_connection_age_ms
        self.control_plane_identifier = debug.control_plane_identifier(instance_id, version)
        self.secure_port = 0
        self.draining = False
        self._pushing = 0  # streams between taking a snapshot and writing its responses
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle -------------------------------------------------------------------------

    def _handler(self, secure: bool) -> grpc.GenericRpcHandler:
        async def sotw(requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
                       context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await self._serve(requests, context, "sotw", secure)

        async def delta(requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
                        context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await self._serve(requests, context, "delta", secure)

        return grpc.method_handlers_generic_handler(SERVICE, {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                sotw, request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=_identity),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                delta, request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=_identity),
        })

    def add_secure_handler(self, handler: grpc.GenericRpcHandler) -> None:
        """Another service of the secure server (the CA), added before `start`."""
        self._secure_handlers.append(handler)

    def _new_server(self) -> grpc.aio.Server:
        options = list(SERVER_OPTIONS)
        if self._max_connection_age_ms:
            # C-core spreads each connection's age by +-10%, so reconnects do not come in a
            # wave; the grace lets an in-flight push finish.
            options += [("grpc.max_connection_age_ms", self._max_connection_age_ms),
                        ("grpc.max_connection_age_grace_ms", 10_000)]
        return grpc.aio.server(options=options)

    async def start(self, address: str, *, secure_address: str | None = None) -> int:
        """Listen on `address` (`host:port`, `:port`), istiod's plaintext 15010, and when
        given on `secure_address`, the plaintext side of the TLS port (15012, TLS ends in
        front of it) where streams pass the guard and the secure handlers are served.
        Returns the plaintext port (`secure_port` is set)."""
        server = self._new_server()
        server.add_generic_rpc_handlers((self._handler(secure=False),))
        port = server.add_insecure_port(_listen_address(address))
        if port == 0:
            raise OSError(f"cannot listen for xDS on {address}")
        if secure_address:
            secure = self._new_server()
            secure.add_generic_rpc_handlers((self._handler(secure=True),
                                             *self._secure_handlers))
            self.secure_port = secure.add_insecure_port(_listen_address(secure_address))
            if self.secure_port == 0:
                raise OSError(f"cannot listen for secure xDS on {secure_address}")
            await secure.start()
            self._secure_server = secure
        await server.start()
        self._server = server
        return port

    async def drain(self, timeout: float = 10.0) -> None:
        """Graceful shutdown, first half: refuse new streams, let pushes being written
        finish, then end every stream (status OK) so proxies reconnect to another instance."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        for connection in list(self.connections.values()):
            connection.wake.set()
        log.info("draining: closing %d streams", len(self.connections))

    async def stop(self, grace: float = 1.0) -> None:
        for server in (self._server, self._secure_server):
            if server is not None:
                await server.stop(grace)
        self._server = self._secure_server = None

    # -- pushes ----------------------------------------------------------------------------

    def push(self, selected: Callable[[object], bool] | None = None,
             started: float | None = None) -> int:
        """Wake streams so they compare their snapshot with what they sent. `started` is
        when the change arrived (time.monotonic()). Returns the number woken."""
        woken = 0
        started = time.monotonic() if started is None else started
        for connection in self.connections.values():
            if connection.handle is None or connection.debug:
                continue
            if selected is not None and not selected(connection.handle):
                continue
            connection.push_pending = True
            if connection.push_started is None:
                connection.push_started = started
            connection.wake.set()
            woken += 1
        return woken

    def proxies(self) -> list[StreamStatus]:
        """Status of every connected proxy (debug clients excluded)."""
        return [c.status for c in self.connections.values() if not c.debug]

    async def _push(self, context: grpc.aio.ServicerContext[Any, Any], connection: Connection,
                    stream: SotwStream | DeltaStream) -> None:
        self._pushing += 1
        self._idle.clear()
        try:
            status = connection.status
            before = {t: s.sent_nonce for t, s in status.types.items()}
            began = time.monotonic()
            await self._write(context, stream.on_push(self._provider.snapshot(connection.handle)))
            now = time.monotonic()
            pushed = [t for t, s in status.types.items() if s.sent_nonce != before.get(t)]
            for type_url in pushed:
                self.stats.push_time.observe(now - began, type=types.short_name(type_url))
            if pushed and log.isEnabledFor(logging.INFO):
                log.info("push %s: %s", status.node_id,
                         ",".join(types.short_name(t) for t in pushed),
                         extra=status.log_fields(types=[types.short_name(t) for t in pushed]))
            if connection.push_started is not None:
                self.stats.convergence.observe(now - connection.push_started)
                connection.push_started = None
        finally:
            self._pushing -= 1
            if not self._pushing:
                self._idle.set()

    # -- streams ---------------------------------------------------------------------------

    async def _serve(self, requests: AsyncIterator[Any],
                     context: grpc.aio.ServicerContext[Any, Any], protocol: str,
                     secure: bool) -> None:
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "pilotpy is shutting down")
        principal: object = None
        if secure and self.guard is not None:
            try:
                principal = await self.guard.admit(context)
            except StreamRefused as refused:
                await context.abort(refused.code, str(refused))
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
            while not self.draining:
                if connection is not None and connection.push_pending and inbox.empty():
                    connection.push_pending = False
                    connection.wake.clear()
                    assert stream is not None
                    await self._push(context, connection, stream)
                    continue
                item = await self._next(inbox, connection)
                if item is _CLOSED or self.draining:
                    return
                if item is None:
                    continue  # woken for a push
                if connection is None:
                    identity = ""
                    if secure and self.guard is not None:
                        try:
                            identity = self.guard.authorize(principal, item.node)
                        except StreamRefused as refused:
                            await context.abort(refused.code, str(refused))
                    connection = await self._connect(item, context, protocol, identity)
                    stream = (SotwStream if protocol == "sotw" else DeltaStream)(
                        connection.status, self.stats, self._memo)
                assert stream is not None
                if debug.is_debug_type(item.type_url):
                    await self._write(context, self._debug_response(connection, item))
                    continue
                if connection.handle is None:
                    continue  # a debug client asking for config: nothing to give it
                snapshot = self._provider.snapshot(connection.handle)
                await self._write(context, stream.on_request(item, snapshot))
        except ConfigUnavailable as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if connection is not None:
                self.connections.pop(connection.status.stream_id, None)
                if connection.handle is not None:
                    self._provider.disconnect(connection.handle)
                log.info("disconnected %s (%s stream %d)", connection.status.node_id, protocol,
                         connection.status.stream_id, extra=connection.status.log_fields())

    def find_proxy(self, proxy_id: str) -> Connection | None:
        """The connection of a proxy by node id or `<pod>.<namespace>`."""
        for connection in self.connections.values():
            if (not connection.debug and connection.handle is not None
                    and debug.matches_proxy(connection.status.node_id, proxy_id)):
                return connection
        return None

    def _debug_response(self, connection: Connection, request: Any) -> list[bytes]:
        """istio.io/debug/syncz and config_dump on a SotW stream; other debug types get no
        answer."""
        known = request.type_url in (debug.SYNCZ, debug.CONFIG_DUMP)
        if not known or connection.status.protocol != "sotw":
            log.info("%s asked for unsupported debug type %s", connection.status.node_id,
                     request.type_url, extra=connection.status.log_fields())
            return []
        if request.response_nonce and request.response_nonce == connection.debug_nonce:
            return []  # the ACK of our answer (istioctl's first request carries a made-up nonce)
        connection.debug_nonce = nonce = connection.status.next_nonce()
        if request.type_url == debug.CONFIG_DUMP:
            names = list(request.resource_names)
            found = self.find_proxy(names[0]) if len(names) == 1 else None
            if found is None:
                log.info("config_dump: proxy %s is not connected", names,
                         extra=connection.status.log_fields())
                return [debug.empty_response(debug.CONFIG_DUMP, nonce)]
            return [debug.config_dump_response(self._provider.snapshot(found.handle), nonce)]
        return [debug.syncz_response(self.proxies(), self.control_plane_identifier,
                                     version=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     nonce=nonce)]

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
                       protocol: str, identity: str) -> Connection:
        node = request.node
        if not node.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "missing node information: the first request must carry node.id")
        info = node_info(node)
        # Debug clients (istioctl) connect as `debug~...`, or as a sidecar whose first
        # request is a debug type. They are served what they ask for but are not proxies:
        # sync status does not list them.
        is_debug = info.type == debug.DEBUG_NODE_TYPE or debug.is_debug_type(request.type_url)
        handle: object = None
        try:
            handle = self._provider.connect(node, identity)
        except NodeRejected as err:
            if not is_debug:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        status = StreamStatus(node.id, protocol, node=info)
        connection = Connection(status, handle, asyncio.Event(), debug=is_debug)
        self.connections[status.stream_id] = connection
        log.info("connected %s (%s stream %d%s)", node.id, protocol, status.stream_id,
                 ", debug" if is_debug else "", extra=status.log_fields())
        return connection

    @staticmethod
    async def _write(context: grpc.aio.ServicerContext[Any, Any], responses: list[bytes]
                     ) -> None:
        for response in responses:
            await context.write(response)


def _listen_address(address: str) -> str:
    return "[::]" + address if address.startswith(":") else address
