"""The requests of one ADS stream between the socket and the stream's state machine.

A reader task decodes requests as they arrive and queues them for the stream, which may be
busy writing a push. The queue is bounded in requests and bytes: a client that keeps sending
while the server is still answering (or while it does not read the answers) is not waiting
for anything, it is flooding, and it is cut off with RESOURCE_EXHAUSTED rather than
growing the server. A request that does not decode ends the stream with INVALID_ARGUMENT.

Ending a call that way cannot wait for the client: the status goes out behind the responses
already written, which a client that does not read never takes. So a refused stream's task
is cancelled at once (its disconnect path runs) while the status waits for the client in a
task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from pilotpy.runtime.logtext import clip
from pilotpy.xds.limits import StreamLimits

CLOSED = object()
# Statuses on their way to clients that have not read everything sent before them.
_aborting: set[asyncio.Task[None]] = set()


class Inbox:
    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self._queue: asyncio.Queue[tuple[Any, int]] = asyncio.Queue()
        self._bytes = 0
        self.refused = ""  # why the client was cut off, for the disconnect log

    def put(self, request: Any, size: int) -> bool:
        """False when the request does not fit: the client is flooding."""
        if (self._queue.qsize() >= self.limits.max_queued_requests
                or self._bytes + size > self.limits.max_queued_bytes):
            return False
        self._bytes += size
        self._queue.put_nowait((request, size))
        return True

    def refuse(self, context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode,
               message: str) -> None:
        """End the call with `code` and `message`; the caller's task must end too (with
        CancelledError: grpc must neither send a status of its own nor see the abort as
        suppressed)."""
        if self.refused:
            return
        self.refused = f"{code.name}: {message}"
        abort = asyncio.ensure_future(_abort(context, code, message))
        _aborting.add(abort)
        abort.add_done_callback(_aborting.discard)

    def close(self) -> None:
        self._queue.put_nowait((CLOSED, 0))

    def empty(self) -> bool:
        return self._queue.empty()

    async def get(self) -> Any:
        """The next request, or CLOSED once the client has stopped sending."""
        request, size = await self._queue.get()
        self._bytes -= size
        if request is CLOSED:
            self._queue.put_nowait((CLOSED, 0))  # a closed inbox stays closed
        return request


async def read(requests: AsyncIterator[bytes], decode: Callable[[bytes], Any], inbox: Inbox,
               context: grpc.aio.ServicerContext[Any, Any], stream: asyncio.Task[Any]
               ) -> None:
    """Fill `inbox` until the client stops; refuse the call, and cancel the `stream`'s
    task, when it misbehaves."""
    try:
        async for raw in requests:
            try:
                request = decode(raw)
            except DecodeError as err:
                inbox.refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                             f"malformed request ({len(raw)} bytes): {clip(str(err), 200)}")
                stream.cancel()
                return
            if not inbox.put(request, len(raw)):
                inbox.refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"more than {inbox.limits.max_queued_requests} requests or "
                             f"{inbox.limits.max_queued_bytes} bytes sent ahead of the "
                             "answers; a client must read its responses")
                stream.cancel()
                return
    except (asyncio.CancelledError, Exception):
        pass  # the client went away or the stream ended first: whatever grpc raised, alike
    finally:
        inbox.close()


async def _abort(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode,
                 message: str) -> None:
    # abort() returns once the client has taken the status, by raising AbortError.
    with contextlib.suppress(Exception):
        await context.abort(code, message)
