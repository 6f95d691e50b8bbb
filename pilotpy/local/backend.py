"""An httpbin-like backend standing in for the v1/v2 pods behind the gateway.

Every response says which backend produced it (`x-backend-version`, `x-backend-name`) and
echoes the request as JSON, so a test can check where Envoy routed it and what Envoy changed
on the way (path, host, headers). Paths:

- `/status/<code>` answers with that code (200-599);
- `/delay/<seconds>` sleeps first, at most 10 seconds;
- `/headers`, `/get`, `/anything...` and every other path answer 200 with the echo.

Run in-process with `Backend`, or as `python -m pilotpy.local.backend --listen 127.0.0.11:8000
--version v1 --name httpbin`. With a certificate and key (`tls=`, `--tls-cert/--tls-key`) it
serves HTTPS instead, for TLS passthrough: what answers proves which backend ended the TLS.
Only loopback addresses are accepted, and the wildcard address
with `--pod` (an application inside a pod's network namespace, as tests/mesh runs it).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

MAX_DELAY = 10.0
MAX_BODY = 16 * 1024 * 1024
# Idle keep-alive connections from Envoy are dropped after this, so handler threads end.
IDLE_TIMEOUT = 60.0
_MAX_CHUNKS = 100_000
_NO_BODY_STATUSES = frozenset({204, 304})


class _BadRequestError(Exception):
    pass


class Backend:
    """A threaded HTTP/1.1 server on `host:port` (`port=0` picks a free one; read `port`).
    Entering the context manager starts it if needed; leaving it stops it."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, version: str = "v1", name: str = "httpbin",
        *, pod: bool = False, tls: tuple[Path, Path] | None = None,
    ) -> None:
        """`tls`: (certificate chain, private key) files to serve HTTPS with."""
        _require_allowed(host, pod=pod)
        self.tls = tls
        self.host = host
        self.version = version
        self.name = name
        self._requested_port = port
        self._lock = threading.Lock()
        self._requests = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"backend {self.name}/{self.version} was already started")
        server = _Server((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"backend-{self.name}-{self.version}",
            daemon=True,
        )
        self._server = server
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, cut open keep-alive connections and release the port. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"backend {self.name}/{self.version} is not running")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        with self._lock:
            return self._requests

    def _count_request(self) -> None:
        with self._lock:
            self._requests += 1

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.backend = backend
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        if backend.tls is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(*backend.tls)
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        if self._tls is not None:
            # The handshake runs on the handler's thread (first read), not on the accept loop.
            connection = self._tls.wrap_socket(connection, server_side=True,
                                               do_handshake_on_connect=False)
        return connection, address

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A proxy that gave up on a slow answer (a route timeout) closed the connection before
        # the handler wrote: expected, not worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        # Without this, Envoy would keep pooled connections to a "stopped" backend open.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so Envoy can reuse upstream connections; every response has Content-Length.
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines on stderr would drown test and demo output; the echo carries the detail.
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BadRequestError as error:
            self.close_connection = True
            self._respond(400, {**self._echo(b""), "error": str(error)})
            return
        self.server.backend._count_request()
        path = urlsplit(self.path).path
        try:
            status = _route(path)
        except _BadRequestError as error:
            self._respond(400, {**self._echo(body), "error": str(error)})
            return
        self._respond(status, self._echo(body))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as error:
            raise _BadRequestError("invalid Content-Length") from error
        if not 0 <= length <= MAX_BODY:
            raise _BadRequestError(f"body length {length} outside 0..{MAX_BODY}")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        for _ in range(_MAX_CHUNKS):
            try:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            except ValueError as error:
                raise _BadRequestError("invalid chunk size") from error
            if size == 0:
                self._skip_trailers()
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise _BadRequestError(f"chunked body larger than {MAX_BODY}")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)
        raise _BadRequestError(f"more than {_MAX_CHUNKS} chunks")

    def _skip_trailers(self) -> None:
        for _ in range(100):
            if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                return
        raise _BadRequestError("too many trailers")

    def _echo(self, body: bytes) -> dict[str, Any]:
        url = urlsplit(self.path)
        return {
            "version": self.server.backend.version,
            "name": self.server.backend.name,
            "method": self.command,
            "path": url.path,
            "args": _args(url.query),
            "host": self.headers.get("Host", ""),
            "headers": _headers(self.headers.items()),
            "data": body.decode("utf-8", errors="replace"),
        }

    def _respond(self, status: int, payload: dict[str, Any]) -> None:
        body = b"" if status in _NO_BODY_STATUSES else json.dumps(payload, indent=2).encode()
        self.send_response(status)
        self.send_header("x-backend-version", self.server.backend.version)
        self.send_header("x-backend-name", self.server.backend.name)
        if body:
            self.send_header("Content-Type", "application/json")
        if status != 204:
            # RFC 9110 forbids Content-Length on 204; any other response must carry it so
            # the keep-alive connection stays usable.
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _route(path: str) -> int:
    """The status to answer with, after any requested delay."""
    if path.startswith("/status/"):
        return _status_code(path.removeprefix("/status/"))
    if path.startswith("/delay/"):
        time.sleep(_delay_seconds(path.removeprefix("/delay/")))
    return 200


def _status_code(text: str) -> int:
    try:
        code = int(text.strip("/"))
    except ValueError as error:
        raise _BadRequestError(f"invalid status code {text!r}") from error
    if not 200 <= code <= 599:
        raise _BadRequestError(f"status code {code} outside 200..599")
    return code


def _delay_seconds(text: str) -> float:
    try:
        seconds = float(text.strip("/"))
    except ValueError as error:
        raise _BadRequestError(f"invalid delay {text!r}") from error
    if not 0 <= seconds < float("inf"):
        raise _BadRequestError(f"invalid delay {text!r}")
    return min(seconds, MAX_DELAY)


def _args(query: str) -> dict[str, str | list[str]]:
    args: dict[str, str | list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        previous = args.get(key)
        if previous is None:
            args[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            args[key] = [previous, value]
    return args


def _headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    # Lower-case names (as HTTP/2 and Envoy's codecs use) make lookups in tests predictable;
    # repeated headers are joined as RFC 9110 allows.
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return headers


def _require_allowed(host: str, *, pod: bool = False) -> None:
    """Loopback only; with `pod`, any address of the process's own network namespace, which
    must then be a named one (`ip netns add`, as the mesh and kube tests create), never the
    host's."""
    if pod:
        own = os.stat("/proc/self/ns/net").st_ino
        named = Path("/run/netns")
        if named.is_dir() and any(n.stat().st_ino == own for n in named.iterdir()):
            return
        raise ValueError("a pod backend must run inside a named network namespace, not the "
                         "host's; outside one it may bind loopback only")
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError as error:
        raise ValueError(f"backend host must be a loopback IP, got {host!r}") from error
    if not loopback:
        raise ValueError(f"backend host must be a loopback IP, got {host!r}")


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pilotpy.local.backend", description="httpbin-like loopback backend"
    )
    parser.add_argument(
        "--listen",
        type=_parse_listen,
        default=("127.0.0.1", 8000),
        metavar="HOST:PORT",
        help="loopback address (port 0 picks a free one)",
    )
    parser.add_argument("--pod", action="store_true",
                        help="running in a pod's (named) network namespace: any address is allowed")
    parser.add_argument("--version", default="v1", help="reported in x-backend-version")
    parser.add_argument("--name", default="httpbin", help="reported in x-backend-name")
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate chain")
    parser.add_argument("--tls-key", type=Path, help="... and this private key")
    parser.add_argument(
        "--exit-after",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="exit by itself after this long (0: run until SIGTERM/SIGINT)",
    )
    args = parser.parse_args(argv)
    host, port = args.listen
    try:
        _require_allowed(host, pod=args.pod)
    except ValueError as error:
        parser.error(str(error))

    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with Backend(host, port, args.version, args.name, pod=args.pod, tls=tls) as backend:
        # Parents wait for this line to know the port (useful with port 0).
        print(
            f"listening on {backend.url} name={backend.name} version={backend.version}", flush=True
        )
        stopping.wait(args.exit_after if args.exit_after > 0 else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
