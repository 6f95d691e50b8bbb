"""A small HTTP server in a thread of the test process, on loopback, answering each GET (or
POST) with what a function of the test returns, and keeping the requests it got: the JWKS
server Envoy fetches keys from, the ext_authz service Envoy asks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: Mapping[str, str]


# (path, lower-cased headers) -> (status, content type, body)
Responder = Callable[[str, Mapping[str, str]], tuple[int, str, bytes]]


class LoopbackHttpServer:
    def __init__(self, respond: Responder, host: str = "127.0.0.1") -> None:
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.received.append(Received(self.path, headers))
                status, content_type, body = respond(self.path, headers)
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def log_message(self, *_: Any) -> None:
                return None

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    @contextmanager
    def running(self) -> Iterator[LoopbackHttpServer]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
