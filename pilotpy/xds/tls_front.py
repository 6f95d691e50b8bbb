"""TLS termination for :15012 in front of the internal gRPC server.

grpcio's server credentials either never ask for a client certificate or insist on one, and
istiod's :15012 does neither: it verifies a client certificate *when one is given*
(VerifyClientCertIfGiven), so pilot-agent can connect with a JWT and nothing else while
istioctl connects with a mesh certificate and no JWT. So TLS ends here (Python's ssl with
CERT_OPTIONAL, TLS >= 1.2, ALPN h2) and the plaintext HTTP/2 bytes go to a gRPC server on a
loopback port. The gRPC handlers find who is behind a connection with `peer()`, by the port
the forwarded connection comes from.

The serving certificate can be replaced while running (`load_certificate`): new handshakes
get the new one, established connections and their streams are untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from dataclasses import dataclass

log = logging.getLogger("pilotpy.xds.tls")
HANDSHAKE_TIMEOUT = 10.0
# Stop reading one side while the other side's unsent bytes exceed this.
HIGH_WATER = 4 * 1024 * 1024


@dataclass(frozen=True)
class PeerTls:
    address: str  # the client's "ip:port"
    certificate: bytes | None  # the client's leaf certificate (DER), verified against the roots


def server_context(key_pem: bytes, chain_pem: bytes, client_roots_pem: bytes
                   ) -> ssl.SSLContext:
    """A TLS server context: TLS >= 1.2, ALPN h2, client certificates verified if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=client_roots_pem.decode())
    load_certificate(context, key_pem, chain_pem)
    return context


def load_certificate(context: ssl.SSLContext, key_pem: bytes, chain_pem: bytes) -> None:
    """Install a serving key and chain in `context`. ssl reads them only from a file: an
    anonymous in-memory one, so the key never touches a disk (and a read-only root file
    system is fine)."""
    fd = os.memfd_create("pilotpy-serving-cert", os.MFD_CLOEXEC)
    try:
        os.write(fd, chain_pem + b"\n" + key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


class _Pipe(asyncio.Protocol):
    """One side of a forwarded connection; `other` is the opposite side."""

    def __init__(self, front: TlsFront) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.other: _Pipe | None = None
        self.pending = bytearray()  # downstream bytes that arrived before the upstream exists

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.write(data)
        else:
            self.pending += data

    def eof_received(self) -> bool | None:
        if self.other is not None and self.other.transport is not None \
                and self.other.transport.can_write_eof():
            self.other.transport.write_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()


class _Downstream(_Pipe):
    def eof_received(self) -> bool | None:
        super().eof_received()
        return None  # a TLS transport cannot stay half-open: it closes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.front.connect_upstream(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.front.connections.discard(self)


class _Upstream(_Pipe):
    port = 0  # its local port: the key of the peer table

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.front.forget(self.port)


class TlsFront:
    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self._server: asyncio.Server | None = None
        self._backend: tuple[str, int] = ("127.0.0.1", 0)
        self._peers: dict[int, PeerTls] = {}  # local port of a forwarded connection -> peer
        self.connections: set[_Downstream] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int, backend: tuple[str, int]) -> int:
        """Listen on host:port; returns the port."""
        self._backend = backend
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Downstream(self), host, port,
                                                ssl=self.context, reuse_address=True,
                                                ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        return int(self._server.sockets[0].getsockname()[1])

    def connect_upstream(self, downstream: _Downstream) -> None:
        self.connections.add(downstream)
        assert downstream.transport is not None
        downstream.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._connect(downstream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, downstream: _Downstream) -> None:
        transport = downstream.transport
        if transport is None:
            return
        ssl_object = transport.get_extra_info("ssl_object")
        peername = transport.get_extra_info("peername") or ("?", 0)
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        upstream = _Upstream(self)
        try:
            up_transport, _ = await asyncio.get_running_loop().create_connection(
                lambda: upstream, *self._backend)
        except OSError as err:
            log.warning("TLS front: cannot reach the gRPC server: %s", err)
            transport.close()
            return
        upstream.port = int(up_transport.get_extra_info("sockname")[1])
        self._peers[upstream.port] = PeerTls(f"{peername[0]}:{peername[1]}", certificate)
        upstream.other, downstream.other = downstream, upstream
        if downstream.transport is None:  # the client left meanwhile
            up_transport.close()
            return
        if downstream.pending:
            up_transport.write(bytes(downstream.pending))
            downstream.pending.clear()
        downstream.transport.resume_reading()

    def forget(self, port: int) -> None:
        self._peers.pop(port, None)

    def peer(self, grpc_peer: str) -> PeerTls | None:
        """Who is behind a forwarded connection, from the gRPC server's `context.peer()`
        (`ipv4:127.0.0.1:<port>`); None for a connection that did not come through here."""
        _, _, port = grpc_peer.rpartition(":")
        return self._peers.get(int(port)) if port.isdigit() else None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
