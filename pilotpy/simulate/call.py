"""What goes into a simulation: one connection, and for HTTP one request on it."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

# RFC 5737's TEST-NET-1: an address no configuration names, for calls whose address does not
# matter (a gateway's listeners bind the wildcard).
UNNAMED_ADDRESS = "192.0.2.1"
# RFC 5737's TEST-NET-2: where a call comes from when the caller does not say.
UNNAMED_SOURCE = "198.51.100.1"


class Protocol(StrEnum):
    """What the client speaks, inside TLS when `Call.tls` is set."""

    HTTP = "http"  # HTTP/1.1
    HTTP2 = "http2"  # HTTP/2: prior knowledge (h2c) in plaintext, ALPN h2 in TLS
    TCP = "tcp"  # opaque bytes, nothing any inspector recognises


class Mode(StrEnum):
    """How the connection reaches Envoy."""

    # Straight to a listener bound on the port (gateways: no capture).
    GATEWAY = "gateway"
    # A sidecar's application dialled the address; istio-init redirected it to the
    # `use_original_dst` listener (virtualOutbound), which hands it over.
    OUTBOUND = "outbound"
    # Someone dialled the pod; istio-init redirected it to the inbound capture listener
    # (virtualInbound), whose `original_dst` filter restores the address it was sent to.
    INBOUND = "inbound"


@dataclass(frozen=True, slots=True)
class Call:
    """One call, as the client makes it.

    `address` and `port` are the destination the client dialled: a Service VIP or a pod
    address for sidecars, and for gateways the port their Envoy listens on (the Service's
    target port, e.g. 8080 for a Gateway server on 80). `host`, `path`, `method` and
    `headers` make the HTTP request (ignored for TCP); `sni` and `alpn` the TLS ClientHello
    (ignored without `tls`). `mode` None means: OUTBOUND for a sidecar's config (it has a
    `use_original_dst` listener), GATEWAY otherwise. What RBAC filters match on besides the
    request: `source` (the client's address), `peer_principal` (the URI SAN of the client
    certificate, when TLS ends at the chosen chain), `jwt_payload` (the claims of a token the
    jwt_authn filter verified; None: no token).
    """

    port: int
    address: str = UNNAMED_ADDRESS
    protocol: Protocol = Protocol.HTTP
    tls: bool = False
    host: str = ""
    path: str = "/"
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    sni: str = ""
    alpn: tuple[str, ...] = ()
    mode: Mode | None = None
    source: str = UNNAMED_SOURCE
    peer_principal: str = ""
    jwt_payload: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is not a TCP port")
        for address in (self.address, self.source):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                # Listeners, chains and RBAC match addresses: resolve a name first.
                raise ValueError(f"address {address!r} is not an IP address") from None
        # Header names are case-insensitive: keep them lower-case, as Envoy's header map does.
        lowered = {k.lower(): v for k, v in self.headers.items()}
        object.__setattr__(self, "headers", MappingProxyType(lowered))

    @property
    def is_http(self) -> bool:
        return self.protocol is not Protocol.TCP

    @property
    def server_name(self) -> str:
        """The SNI the ClientHello carries: as given, else the Host without its port (what
        HTTP clients send), lower-cased as Envoy compares it; empty without TLS."""
        if not self.tls:
            return ""
        return (self.sni or strip_port(self.host)).lower()

    @property
    def client_alpn(self) -> tuple[str, ...]:
        """The ALPN list of the ClientHello: as given, else what an HTTP client offers."""
        if not self.tls:
            return ()
        if self.alpn:
            return self.alpn
        return {Protocol.HTTP: ("http/1.1",), Protocol.HTTP2: ("h2",)}.get(self.protocol, ())


def port_start(host: str) -> int:
    """Where the `:port` of a Host value starts, -1 without one (Envoy's getPortStart: an
    IPv6 literal is bracketed, a port is digits)."""
    colon = host.rfind(":")
    if colon < 0:
        return -1
    bracket = host.rfind("]")
    if bracket >= 0 and bracket > colon:
        return -1
    digits = host[colon + 1:]
    if not digits.isdigit():
        return -1
    return colon


def strip_port(host: str) -> str:
    start = port_start(host)
    return host if start < 0 else host[:start]
