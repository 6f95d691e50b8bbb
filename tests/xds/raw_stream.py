"""An ADS stream that sends bytes exactly as given and may never read its responses: what a
broken or hostile client does and a real one never would (tests/xds/test_hostile_clients.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from tests.xds_client import DELTA_METHOD, SOTW_METHOD, channel_options


def _identity(data: bytes) -> bytes:
    return data


class RawStream:
    def __init__(self, target: str, *, delta: bool = False) -> None:
        self._target = target
        self._method = DELTA_METHOD if delta else SOTW_METHOD
        self._outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self.sent = 0  # requests the transport has taken

    async def __aenter__(self) -> RawStream:
        self._channel = grpc.aio.insecure_channel(self._target, options=channel_options())
        method = self._channel.stream_stream(self._method, request_serializer=_identity,
                                             response_deserializer=_identity)
        self._call = method(self._requests())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """End the stream (safe to call twice)."""
        self._outgoing.put_nowait(None)
        if self._call is not None and not self._call.done():
            self._call.cancel()
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None

    async def _requests(self) -> AsyncIterator[bytes]:
        while (data := await self._outgoing.get()) is not None:
            yield data
            self.sent += 1

    def send(self, data: bytes) -> None:
        self._outgoing.put_nowait(data)

    async def recv(self, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            data: bytes = await self._call.read()
        return data

    async def wait_closed(self, timeout: float = 5.0) -> tuple[grpc.StatusCode, str]:
        """The status the stream ended with; TimeoutError if it is still open."""
        async with asyncio.timeout(timeout):
            code = await self._call.code()
            details = await self._call.details()
        return code, details

    async def drain(self, timeout: float = 30.0) -> tuple[grpc.StatusCode, str]:
        """Read every response still on its way, then the status the stream ended with."""
        async with asyncio.timeout(timeout):
            try:
                while await self._call.read() is not grpc.aio.EOF:
                    pass
            except grpc.aio.AioRpcError as err:
                return err.code(), err.details() or ""
        return await self.wait_closed(timeout)
