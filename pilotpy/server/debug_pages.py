"""Debug responses bounded in size, time and number at once.

A debug list (every object, every proxy) grows with the mesh, and encoding it is CPU work on
the loop that serves proxies. Each response holds at most `max_bytes` of JSON (at least one
item) and `?limit=` items from `?start=`; a `Link: <...?start=N>; rel="next"` header says
where the rest is. Items are converted and encoded in a worker thread, at most `concurrency`
responses at a time; the list itself is taken on the loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Page:
    start: int = 0
    limit: int | None = None


def _count(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    if not text.isdigit():
        raise web.HTTPBadRequest(text=f"{name}: {text[:40]!r} is not a count\n")
    return int(text)


def page_of(request: web.Request) -> Page:
    return Page(_count(request, "start") or 0, _count(request, "limit"))


def encode(items: Sequence[Any], convert: Callable[[Any], Any], page: Page,
           max_bytes: int) -> tuple[bytes, int | None]:
    """A JSON array of the converted items of `page`, cut at `max_bytes` (but never empty
    while items remain); and where the next page starts (None: no more)."""
    end = len(items) if page.limit is None else min(len(items), page.start + page.limit)
    parts: list[bytes] = []
    size = 2
    index = page.start
    while index < end:
        part = json.dumps(convert(items[index])).encode()
        if parts and size + len(part) + 1 > max_bytes:
            break
        parts.append(part)
        size += len(part) + 1
        index += 1
    return b"[" + b",".join(parts) + b"]", index if index < len(items) else None


class DebugPages:
    # One at a time: every worker thread takes turns with the loop for the GIL, so each more
    # would slow the loop that serves proxies, while debug readers can wait.
    def __init__(self, max_bytes: int = 8 * MiB, concurrency: int = 1) -> None:
        self.max_bytes = max_bytes
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self, work: Callable[[], bytes]) -> bytes:
        """`work` in a worker thread, once a slot is free."""
        async with self._slots:
            return await asyncio.to_thread(work)

    async def respond(self, request: web.Request, items: Sequence[Any],
                      convert: Callable[[Any], Any] = lambda item: item,
                      wrap: Callable[[bytes], bytes] = lambda body: body) -> web.Response:
        """One page of `items` (each made JSON by `convert` in the worker), `wrap`ped."""
        page = page_of(request)
        async with self._slots:
            body, following = await asyncio.to_thread(encode, items, convert, page,
                                                       self.max_bytes)
        response = web.Response(body=wrap(body), content_type="application/json")
        if following is not None:
            query = urlencode({**request.query, "start": str(following)})
            response.headers["Link"] = f'<{request.path}?{query}>; rel="next"'
        return response
