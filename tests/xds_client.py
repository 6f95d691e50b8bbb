"""A scripted ADS client for protocol tests.

Each client owns one channel and one ``StreamAggregatedResources`` (or
``DeltaAggregatedResources``) stream, and a test drives it one message at a time: send a
request, wait for a response, ACK or NACK it, assert silence, or wait for the server to end
the stream. It knows the xDS protocol only; nothing here is specific to Istio.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import pkgutil
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Final

import grpc
import grpc.aio

# Importing these registers the xDS resource types in the default descriptor pool, so the
# common ``Any`` payloads unpack without a lookup; anything else is imported on demand.
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.route.v3 import route_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2  # noqa: F401
from envoy.service.discovery.v3 import discovery_pb2
from envoy.type.v3 import semantic_version_pb2
from google.protobuf import descriptor_pool, message_factory, struct_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

__all__ = [
    "DELTA_METHOD",
    "SOTW_METHOD",
    "DeltaClient",
    "SotwClient",
    "StreamClosedError",
    "build_node",
    "channel_options",
    "message_class",
    "unpack_any",
]

_SERVICE = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
SOTW_METHOD: Final = _SERVICE + "StreamAggregatedResources"
DELTA_METHOD: Final = _SERVICE + "DeltaAggregatedResources"

# Envoy reports a rejected config with gRPC INTERNAL in error_detail; mimic it so servers see
# what a real proxy sends.
_NACK_CODE: Final = grpc.StatusCode.INTERNAL.value[0]

# The gRPC default of 4 MiB is far below what a large mesh's CDS/EDS response can reach, and
# Envoy applies no such limit to ADS.
_UNLIMITED: Final = -1


class StreamClosedError(Exception):
    """The server ended the stream (or it failed) while a response was awaited."""

    def __init__(self, code: grpc.StatusCode | None, details: str | None) -> None:
        super().__init__(f"ADS stream closed: {code} {details or ''}".rstrip())
        self.code = code
        self.details = details


def channel_options(keepalive_ms: int | None = None) -> list[tuple[str, Any]]:
    """gRPC channel arguments for an Envoy-like ADS client."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", _UNLIMITED),
        ("grpc.max_send_message_length", _UNLIMITED),
    ]
    if keepalive_ms is not None:
        options += [
            ("grpc.keepalive_time_ms", keepalive_ms),
            ("grpc.keepalive_timeout_ms", max(keepalive_ms, 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            # Without this gRPC stops pinging after two pings with no data frames in between,
            # which an idle ADS stream would hit at once.
            ("grpc.http2.max_pings_without_data", 0),
        ]
    return options


def _semantic_version(version: str) -> Any:
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    parts += [0] * (3 - len(parts))
    return semantic_version_pb2.SemanticVersion(
        major_number=parts[0], minor_number=parts[1], patch=parts[2]
    )


def build_node(
    node_id: str,
    metadata: Mapping[str, Any] | None = None,
    user_agent_version: str = "1.40.0",
    cluster: str = "",
) -> Any:
    """An ``envoy.config.core.v3.Node`` as Envoy sends it (metadata must be JSON-like)."""
    node = base_pb2.Node(id=node_id, cluster=cluster, user_agent_name="envoy")
    node.user_agent_build_version.version.CopyFrom(_semantic_version(user_agent_version))
    if metadata:
        meta = struct_pb2.Struct()
        meta.update(dict(metadata))
        node.metadata.CopyFrom(meta)
    return node


def _import_proto_package(package: str) -> None:
    # xds-protos lays modules out by proto package, so importing every *_pb2 module of the
    # package registers whichever file declares the message.
    try:
        module = importlib.import_module(package)
    except ImportError:
        return
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            with contextlib.suppress(ImportError):
                importlib.import_module(f"{package}.{info.name}")


@functools.cache
def message_class(full_name: str) -> type[Message]:
    """The generated class for a fully qualified message name; raises KeyError if unknown."""
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName(full_name)
    except KeyError:
        _import_proto_package(full_name.rpartition(".")[0])
        descriptor = pool.FindMessageTypeByName(full_name)
    cls: type[Message] = message_factory.GetMessageClass(descriptor)
    return cls


def unpack_any(packed: Any) -> Message:
    """Decode a ``google.protobuf.Any`` into its concrete message."""
    msg = message_class(packed.type_url.rpartition("/")[2])()
    msg.ParseFromString(packed.value)
    return msg


class _Closed:
    """Queue sentinel: the response stream has ended."""


_CLOSED: Final = _Closed()


class _AdsStream:
    """One ADS stream: requests go out through a queue, responses come in through another."""

    _method: ClassVar[str]
    _request_type: ClassVar[Any]
    _response_type: ClassVar[Any]

    def __init__(
        self,
        target: str,
        node_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        user_agent_version: str = "1.40.0",
        cluster: str = "",
        keepalive_ms: int | None = None,
        wait_for_ready: bool = False,
        options: Sequence[tuple[str, Any]] = (),
        credentials: grpc.ChannelCredentials | None = None,
        call_metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        """`credentials`: TLS (the secure port) instead of plaintext; `call_metadata`: sent
        with the stream (`authorization: Bearer <JWT>`)."""
        self.target = target
        self._credentials = credentials
        self._call_metadata = tuple(call_metadata)
        self.node = build_node(node_id, metadata, user_agent_version, cluster)
        self._options = [*channel_options(keepalive_ms), *options]
        self._wait_for_ready = wait_for_ready
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._requests: asyncio.Queue[Any] = asyncio.Queue()
        self._responses: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = asyncio.Event()
        self._node_sent = False
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None
        self.sent: list[Any] = []
        """Every request handed to the stream, in order (for assertions and debugging)."""
        self.received: list[Any] = []
        """Every response read from the stream, in order, whether or not recv() took it."""
        self._init_protocol_state()

    def _init_protocol_state(self) -> None:
        """Per-protocol bookkeeping (names, versions), set up by the subclasses."""

    async def __aenter__(self) -> _AdsStream:
        if self._credentials is not None:
            self._channel = grpc.aio.secure_channel(self.target, self._credentials,
                                                    options=self._options)
        else:
            self._channel = grpc.aio.insecure_channel(self.target, options=self._options)
        method = self._channel.stream_stream(
            self._method,
            request_serializer=self._request_type.SerializeToString,
            response_deserializer=self._response_type.FromString,
        )
        self._call = method(self._request_iterator(), wait_for_ready=self._wait_for_ready,
                            metadata=self._call_metadata or None)
        self._reader = asyncio.create_task(self._read_loop(), name=f"ads-reader {self._method}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel the stream and close the channel; safe to call twice."""
        if self._call is not None and not self._call.done():
            self._call.cancel()
        self._requests.put_nowait(None)
        if self._reader is not None:
            # The reader ends as soon as the cancelled call does; the bound only guards a
            # misbehaving transport.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 5.0)
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None

    async def _request_iterator(self) -> AsyncIterator[Any]:
        while True:
            request = await self._requests.get()
            if request is None:
                return
            yield request

    async def _read_loop(self) -> None:
        code: grpc.StatusCode = grpc.StatusCode.CANCELLED
        details: str | None = "reader cancelled"
        try:
            async for response in self._call:
                self.received.append(response)
                self._responses.put_nowait(response)
            code = await self._call.code()
            details = await self._call.details()
        except grpc.aio.AioRpcError as err:
            code, details = err.code(), err.details()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # grpc.aio raises CancelledError when the call itself is cancelled by close().
            code, details = grpc.StatusCode.CANCELLED, "cancelled by client"
        finally:
            self.code, self.details = code, details
            self._closed.set()
            self._responses.put_nowait(_CLOSED)

    def _send(self, request: Any, send_node: bool | None) -> None:
        if self._call is None:
            raise RuntimeError("use the client as an async context manager before sending")
        if send_node or (send_node is None and not self._node_sent):
            request.node.CopyFrom(self.node)
            self._node_sent = True
        self.sent.append(request)
        self._requests.put_nowait(request)

    async def _next(self, timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            item = await self._responses.get()
        if isinstance(item, _Closed):
            # Leave the sentinel for later readers: a closed stream stays closed.
            self._responses.put_nowait(item)
            raise StreamClosedError(self.code, self.details)
        return item

    async def expect_silence(self, seconds: float) -> None:
        """Assert that no response (and no stream end) arrives within ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                item = await self._responses.get()
        except TimeoutError:
            return
        if isinstance(item, _Closed):
            self._responses.put_nowait(item)
            raise AssertionError(
                f"expected silence, but the stream closed: {self.code} {self.details or ''}"
            )
        raise AssertionError(f"expected silence, but received {_describe(item)}")

    async def wait_closed(self, timeout: float = 5.0) -> grpc.StatusCode | None:
        """Wait for the stream to end; its status code, or None if still open at ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self._closed.wait()
        except TimeoutError:
            return None
        return self.code

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


def _describe(response: Any) -> str:
    version = getattr(response, "version_info", "") or getattr(response, "system_version_info", "")
    return (
        f"{type(response).__name__}(type_url={response.type_url!r}, version={version!r}, "
        f"nonce={response.nonce!r}, resources={len(response.resources)})"
    )


class SotwClient(_AdsStream):
    """One StreamAggregatedResources stream, driven step by step by a test."""

    _method = SOTW_METHOD
    _request_type = discovery_pb2.DiscoveryRequest
    _response_type = discovery_pb2.DiscoveryResponse

    def _init_protocol_state(self) -> None:
        self._names: dict[str, tuple[str, ...]] = {}
        self._acked: dict[str, str] = {}

    async def __aenter__(self) -> SotwClient:
        await super().__aenter__()
        return self

    def names(self, type_url: str) -> tuple[str, ...]:
        """The resource names of the last request sent for ``type_url``."""
        return self._names.get(type_url, ())

    def acked_version(self, type_url: str) -> str:
        """The version last accepted for ``type_url`` ("" before any ACK)."""
        return self._acked.get(type_url, "")

    async def request(
        self,
        type_url: str,
        names: Sequence[str] = (),
        *,
        version: str = "",
        nonce: str = "",
        error: str | None = None,
        send_node: bool | None = None,
    ) -> None:
        """Send one DiscoveryRequest; the node goes on the stream's first request only
        unless ``send_node`` says otherwise."""
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            version_info=version,
            response_nonce=nonce,
        )
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=_NACK_CODE, message=error))
        elif version:
            # A request that names a version without error_detail claims it as accepted (a
            # reconnecting Envoy does this); NACKs fall back to it.
            self._acked[type_url] = version
        self._names[type_url] = tuple(names)
        self._send(request, send_node)

    async def recv(self, timeout: float = 5.0) -> Any:
        """The next DiscoveryResponse; TimeoutError if none arrives, StreamClosedError if the
        stream ended."""
        return await self._next(timeout)

    async def ack(self, response: Any, names: Sequence[str] | None = None) -> None:
        type_url = response.type_url
        self._acked[type_url] = response.version_info
        await self.request(
            type_url,
            self.names(type_url) if names is None else names,
            version=response.version_info,
            nonce=response.nonce,
        )

    async def nack(
        self, response: Any, message: str = "rejected", names: Sequence[str] | None = None
    ) -> None:
        type_url = response.type_url
        await self.request(
            type_url,
            self.names(type_url) if names is None else names,
            version=self.acked_version(type_url),
            nonce=response.nonce,
            error=message,
        )

    def resources(self, response: Any) -> list[Message]:
        return [unpack_any(r) for r in response.resources]


class DeltaClient(_AdsStream):
    """One DeltaAggregatedResources stream, driven step by step by a test."""

    _method = DELTA_METHOD
    _request_type = discovery_pb2.DeltaDiscoveryRequest
    _response_type = discovery_pb2.DeltaDiscoveryResponse

    def _init_protocol_state(self) -> None:
        self._subscribed: dict[str, set[str]] = {}
        self._versions: dict[str, dict[str, str]] = {}

    async def __aenter__(self) -> DeltaClient:
        await super().__aenter__()
        return self

    def subscriptions(self, type_url: str) -> frozenset[str]:
        """Names currently subscribed for ``type_url`` (empty for a legacy wildcard)."""
        return frozenset(self._subscribed.get(type_url, ()))

    def known_versions(self, type_url: str) -> dict[str, str]:
        """name -> version of every resource ACKed and not since removed; what Envoy would
        send as initial_resource_versions when it reconnects."""
        return dict(self._versions.get(type_url, {}))

    async def request(
        self,
        type_url: str,
        *,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
        initial_versions: Mapping[str, str] | None = None,
        nonce: str = "",
        error: str | None = None,
        send_node: bool | None = None,
    ) -> None:
        """Send one raw DeltaDiscoveryRequest."""
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=dict(initial_versions or {}),
            response_nonce=nonce,
        )
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=_NACK_CODE, message=error))
        subscribed = self._subscribed.setdefault(type_url, set())
        subscribed.update(subscribe)
        subscribed.difference_update(unsubscribe)
        self._send(request, send_node)

    async def subscribe(
        self,
        type_url: str,
        names: Sequence[str] = (),
        *,
        initial_versions: Mapping[str, str] | None = None,
    ) -> None:
        """Subscribe to ``names``; no names on a type's first request is a legacy wildcard."""
        await self.request(type_url, subscribe=names, initial_versions=initial_versions)

    async def unsubscribe(self, type_url: str, names: Sequence[str]) -> None:
        await self.request(type_url, unsubscribe=names)

    async def recv(self, timeout: float = 5.0) -> Any:
        """The next DeltaDiscoveryResponse; TimeoutError if none arrives, StreamClosedError
        if the stream ended."""
        return await self._next(timeout)

    async def ack(self, response: Any) -> None:
        versions = self._versions.setdefault(response.type_url, {})
        for resource in response.resources:
            versions[resource.name] = resource.version
        for name in response.removed_resources:
            versions.pop(name, None)
        await self.request(response.type_url, nonce=response.nonce)

    async def nack(self, response: Any, message: str = "rejected") -> None:
        await self.request(response.type_url, nonce=response.nonce, error=message)

    def resources(self, response: Any) -> dict[str, Message]:
        """name -> unpacked resource; entries without a body (name-only) are left out."""
        return {
            r.name: unpack_any(r.resource) for r in response.resources if r.HasField("resource")
        }
