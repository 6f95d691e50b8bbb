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
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from pilotpy.runtime.logtext import clip
from pilotpy.xds import debug, types
from pilotpy.xds.delta import DeltaStream
from pilotpy.xds.inbox import CLOSED, Inbox, read
from pilotpy.xds.limits import StreamError, StreamLimits, too_many_names
from pilotpy.xds.memo import Memo
from pilotpy.xds.resources import Snapshot
from pilotpy.xds.sotw import SotwStream
from pilotpy.xds.status import NodeInfo, StreamStatus, XdsStats

log = logging.getLogger("pilotpy.xds")

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
READY_WAIT_SECONDS = 30.0
# The response memo's budget when none is set: a few times the config served (each class's
# bodies for its current version, and diffs from the previous one), never below the floor.
MEMO_CONFIG_MULTIPLE = 4
MEMO_FLOOR_BYTES = 16 * 1024 * 1024

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
    ("grpc.so_reuseport", 0),
]


class NodeRejected(Exception):
    """The first request's node cannot be served: a bad id (the stream fails InvalidArgument),
    or more than the server takes (`code` ResourceExhausted)."""

    def __init__(self, message: str,
                 code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.code = code


class StreamRefused(StreamError):
    """A stream the guard turns away: ends with `code` and the message."""


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
    type_urls: set[str] = field(default_factory=set)  # every type URL the client asked for
    # Subscribed names that match no resource, by type (see StreamLimits.max_unknown_names).
    unknown: dict[str, int] = field(default_factory=dict)


def node_info(node: base_pb2.Node) -> NodeInfo:
    """The proxy type from the Istio node id, and what debug status shows from metadata."""
    fields = node.metadata.fields if node.HasField("metadata") else {}

    def text(key: str) -> str:
        value = fields.get(key)
        return value.string_value if value is not None else ""

    return NodeInfo(type=node.id.split("~", 1)[0], cluster_id=text("CLUSTER_ID"),
                    namespace=text("NAMESPACE"), istio_version=text("ISTIO_VERSION"))


class _ClientGone(Exception):
    """A write found the call over: the client left (or was cut off) mid-push."""


def _identity(data: bytes) -> bytes:
    return data


class XdsServer:
    def __init__(self, provider: ConfigProvider, *, max_connection_age_ms: int | None = None,
                 instance_id: str = "pilotpy", version: str = "",
                 limits: StreamLimits | None = None, memo_bytes: int = 0,
                 guard: StreamGuard | None = None) -> None:
        """`memo_bytes`: the budget of the diffs and bodies shared by streams; 0 for a
        multiple of the served config's size (set_config_bytes)."""
        self._provider = provider
        self.limits = limits or StreamLimits()
        self.guard = guard
        self._secure_handlers: list[grpc.GenericRpcHandler] = []
        self.stats = XdsStats()
        self._memo_bytes = memo_bytes
        self.memo = Memo(memo_bytes or MEMO_FLOOR_BYTES)
        self.unknown_names = 0  # held by every stream together
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
        async def sotw(requests: AsyncIterator[bytes],
                       context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await self._serve(requests, context, "sotw", secure)

        async def delta(requests: AsyncIterator[bytes],
                        context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await self._serve(requests, context, "delta", secure)

        # Requests are decoded by the stream's reader, which answers a malformed one with
        # INVALID_ARGUMENT; grpc would fail the call with UNKNOWN and skip the stream's
        # disconnect path.
        return grpc.method_handlers_generic_handler(SERVICE, {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                sotw, request_deserializer=_identity, response_serializer=_identity),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                delta, request_deserializer=_identity, response_serializer=_identity),
        })

    def add_secure_handler(self, handler: grpc.GenericRpcHandler) -> None:
        """Another service of the secure server (the CA), added before `start`."""
        self._secure_handlers.append(handler)

    def _new_server(self) -> grpc.aio.Server:
        options = [*SERVER_OPTIONS,
                   ("grpc.max_receive_message_length", self.limits.max_request_bytes)]
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

    def set_config_bytes(self, size: int) -> None:
        """The served config's size (every class's snapshot), which the memo's budget
        follows unless it was set."""
        if not self._memo_bytes:
            self.memo.set_budget(max(MEMO_FLOOR_BYTES, MEMO_CONFIG_MULTIPLE * size))

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

    async def _serve(self, requests: AsyncIterator[bytes],
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
        inbox = Inbox(self.limits)
        decode = (discovery_pb2.DiscoveryRequest if protocol == "sotw"
                  else discovery_pb2.DeltaDiscoveryRequest).FromString
        task = asyncio.current_task()
        assert task is not None
        reader = asyncio.create_task(read(requests, decode, inbox, context, task))
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
                if item is CLOSED or self.draining:
                    return
                if item is None:
                    continue  # woken for a push
                self._check(item, protocol)
                if connection is None:
                    identity = ""
                    if secure and self.guard is not None:
                        # Raises StreamRefused, a StreamError: the stream is refused below.
                        identity = self.guard.authorize(principal, item.node)
                    connection = self._connect(item, protocol, identity)
                    stream = (SotwStream if protocol == "sotw" else DeltaStream)(
                        connection.status, self.stats, self.memo, self.limits)
                assert stream is not None
                self._check_type_url(connection, item.type_url)
                if debug.is_debug_type(item.type_url):
                    await self._write(context, self._debug_response(connection, item))
                    continue
                if connection.handle is None:
                    continue  # a debug client asking for config: nothing to give it
                snapshot = self._provider.snapshot(connection.handle)
                self._charge_unknown(connection, item, snapshot.get(item.type_url).known)
                prepared = None
                if isinstance(stream, SotwStream):
                    prepared = stream.prepare(item, snapshot)
                    if prepared is not None:
                        current, scope, build = prepared
                        stream.memoize(current, scope, await asyncio.to_thread(build))
                # `prepared` holds the subscription until the stream takes it up.
                await self._write(context, stream.on_request(item, snapshot))
                del prepared
        except ConfigUnavailable as err:
            inbox.refuse(context, grpc.StatusCode.UNAVAILABLE, str(err))
            raise asyncio.CancelledError from err
        except StreamError as err:
            inbox.refuse(context, err.code, str(err))
            raise asyncio.CancelledError from err
        except _ClientGone as err:
            # Ended as a cancelled call: grpc must not try to send a status of its own.
            raise asyncio.CancelledError from err
        finally:
            # Runs however the stream ends (the client leaving, a refused request, a cancelled
            # call, a bug): a stream that is gone must not stay a connected proxy.
            if connection is not None:
                self._disconnected(connection, inbox.refused)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    def _disconnected(self, connection: Connection, reason: str) -> None:
        status = connection.status
        self.unknown_names -= sum(connection.unknown.values())
        connection.unknown.clear()
        self.connections.pop(status.stream_id, None)
        if connection.handle is not None:
            self._provider.disconnect(connection.handle)
        log.info("disconnected %s (%s stream %d)%s", status.node_id, status.protocol,
                 status.stream_id, f": {reason}" if reason else "", extra=status.log_fields())

    def _check(self, request: Any, protocol: str) -> None:
        """Refuse what no stream may ask, before it costs anything: raises StreamError."""
        limits = self.limits
        type_url = request.type_url
        if len(type_url) > limits.max_type_url_bytes:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"type_url is {len(type_url)} characters long, at most "
                              f"{limits.max_type_url_bytes} are accepted")
        if protocol == "sotw":
            count = len(request.resource_names)
        else:
            count = (len(request.resource_names_subscribe)
                     + len(request.resource_names_unsubscribe)
                     + len(request.initial_resource_versions))
        if count > limits.max_resource_names:
            raise too_many_names(count, limits, f"request for {types.short_name(type_url)}")

    def _charge_unknown(self, connection: Connection, request: Any,
                        known: frozenset[str]) -> None:
        """Count the names the request leaves its stream subscribed to that match no
        resource; refuse it (StreamError) when every stream together would hold more than
        the limit. Delta subscriptions are counted as they grow and shrink."""
        if request.HasField("error_detail"):
            return
        type_url = request.type_url
        before = connection.unknown.get(type_url, 0)
        if isinstance(request, discovery_pb2.DiscoveryRequest):
            held = sum(1 for n in request.resource_names
                       if n not in known and n != types.WILDCARD_NAME)
        else:
            added = sum(1 for n in request.resource_names_subscribe
                        if n not in known and n != types.WILDCARD_NAME)
            held = max(0, before + added - len(request.resource_names_unsubscribe))
        limit = self.limits.max_unknown_names
        if held > before and self.unknown_names - before + held > limit:
            raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{held} {types.short_name(type_url)} names match no resource; "
                              f"pilotpy holds at most {limit} such names across its streams")
        connection.unknown[type_url] = held
        self.unknown_names += held - before

    def _check_type_url(self, connection: Connection, type_url: str) -> None:
        if type_url in connection.type_urls:
            return
        if len(connection.type_urls) >= self.limits.max_type_urls:
            raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"more than {self.limits.max_type_urls} type URLs on one stream")
        connection.type_urls.add(type_url)

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
                log.info("config_dump: proxy %s is not connected",
                         clip(", ".join(names), 200), extra=connection.status.log_fields())
                return [debug.empty_response(debug.CONFIG_DUMP, nonce)]
            return [debug.config_dump_response(self._provider.snapshot(found.handle), nonce)]
        return [debug.syncz_response(self.proxies(), self.control_plane_identifier,
                                     version=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     nonce=nonce)]

    @staticmethod
    async def _next(inbox: Inbox, connection: Connection | None) -> Any:
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

    def _connect(self, request: Any, protocol: str, identity: str = "") -> Connection:
        """`identity`: what the stream proved (the guard's answer on the secure port)."""
        node = request.node
        if not node.id:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                              "missing node information: the first request must carry node.id")
        if len(node.id) > self.limits.max_node_id_bytes:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"node.id is {len(node.id)} characters long, at most "
                              f"{self.limits.max_node_id_bytes} are accepted")
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
                raise StreamError(err.code, clip(str(err))) from err
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
            try:
                await context.write(response)
            except Exception as err:
                # The call ended under the write (the client left mid-push, or was refused):
                # not an error of the server's.
                raise _ClientGone() from err


def _listen_address(address: str) -> str:
    return "[::]" + address if address.startswith(":") else address
