"""The few API calls an informer makes, on the asyncio loop: a paged list and a streaming
watch. Errors keep the API server's status code, so the informer can tell 410 Gone (re-list)
from everything else (back off)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from pilotpy.sources.kube.connection import Connection


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}" if message else f"{code} {reason}")
        self.code = code
        self.reason = reason

    @property
    def gone(self) -> bool:
        """The requested resourceVersion (or continue token) is too old: re-list."""
        return self.code == 410

    @classmethod
    def from_status(cls, status: Mapping[str, Any], default_code: int = 0) -> ApiError:
        code = status.get("code")
        return cls(code if isinstance(code, int) else default_code,
                   str(status.get("reason") or ""), str(status.get("message") or ""))


class KubeApi:
    """One aiohttp session against one API server."""

    def __init__(self, connection: Connection, *, user_agent: str = "pilotpy") -> None:
        self._connection = connection
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    @property
    def server(self) -> str:
        return self._connection.server

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._connection.ssl_context, limit=0),
                # Only the watch sets a total timeout; connecting must never hang.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        token = self._connection.authorization()
        if token:
            headers["Authorization"] = token
        return headers

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @staticmethod
    async def _raise_for(response: aiohttp.ClientResponse) -> None:
        if response.status < 300:
            return
        text = await response.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("kind") == "Status":
            raise ApiError.from_status(body, response.status)
        raise ApiError(response.status, response.reason or "", text[:200])

    async def get(self, path: str, params: Mapping[str, str] | None = None,
                  timeout: float = 60.0) -> Any:
        async with self._client().get(self.server + path, params=params or {},
                                      headers=self._headers(),
                                      timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await self._raise_for(response)
            return await response.json(content_type=None)

    async def send(self, method: str, path: str, body: Any,
                   content_type: str = "application/json", timeout: float = 30.0) -> Any:
        """A write (POST, PUT, PATCH, DELETE); ApiError carries the status code (409 for a
        conflict, 404, 403...)."""
        headers = {**self._headers(), "Content-Type": content_type}
        data = json.dumps(body).encode() if body is not None else None
        async with self._client().request(method, self.server + path, data=data,
                                          headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=timeout)
                                          ) as response:
            await self._raise_for(response)
            return await response.json(content_type=None)

    async def post(self, path: str, body: Any, timeout: float = 30.0) -> Any:
        return await self.send("POST", path, body, timeout=timeout)

    async def watch(self, path: str, params: Mapping[str, str],
                    timeout: float) -> AsyncIterator[dict[str, Any]]:
        """Watch events until the server closes the stream. `timeout` bounds the whole request
        on the client side (set it a little above the server's timeoutSeconds), so a connection
        that silently died cannot hang the informer."""
        async with self._client().get(self.server + path, params={**params, "watch": "true"},
                                      headers=self._headers(),
                                      timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await self._raise_for(response)
            # One JSON object per line; lines can exceed aiohttp's default readline limit.
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while True:
                    line, sep, rest = buffer.partition(b"\n")
                    if not sep:
                        break
                    buffer = rest
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(buffer)
