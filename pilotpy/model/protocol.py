"""Istio port protocols (pkg/config/protocol) and the Kubernetes port-name convention
(pkg/config/kube/conversion.go)."""

from __future__ import annotations

from enum import StrEnum


class Protocol(StrEnum):
    HTTP = "HTTP"
    HTTP_PROXY = "HTTP_PROXY"
    HTTP2 = "HTTP2"
    HTTPS = "HTTPS"
    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    TCP = "TCP"
    TLS = "TLS"
    UDP = "UDP"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"
    UNSUPPORTED = "UnsupportedProtocol"

    @property
    def is_http(self) -> bool:
        return self in _HTTP

    @property
    def is_http2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_tls(self) -> bool:
        return self in (Protocol.HTTPS, Protocol.TLS)

    @property
    def is_tcp(self) -> bool:
        return self in _TCP

    @property
    def is_grpc(self) -> bool:
        return self in (Protocol.GRPC, Protocol.GRPC_WEB)


_HTTP = frozenset({Protocol.HTTP, Protocol.HTTP2, Protocol.HTTP_PROXY, Protocol.GRPC,
                   Protocol.GRPC_WEB})
_TCP = frozenset({Protocol.TCP, Protocol.HTTPS, Protocol.TLS, Protocol.MONGO, Protocol.REDIS,
                  Protocol.MYSQL})
_BY_NAME = {
    "tcp": Protocol.TCP, "udp": Protocol.UDP, "grpc": Protocol.GRPC,
    "grpc-web": Protocol.GRPC_WEB, "http": Protocol.HTTP, "http_proxy": Protocol.HTTP_PROXY,
    "http2": Protocol.HTTP2, "https": Protocol.HTTPS, "tls": Protocol.TLS,
    "mongo": Protocol.MONGO, "redis": Protocol.REDIS, "mysql": Protocol.MYSQL,
}
_WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})


def parse_protocol(name: str) -> Protocol:
    """Istio's `protocol.Parse`: case-insensitive, unknown names are UNSUPPORTED (sniffed)."""
    return _BY_NAME.get(name.lower(), Protocol.UNSUPPORTED)


def kube_port_protocol(port: int, port_name: str, l4: str, app_protocol: str | None) -> Protocol:
    """The protocol of a Kubernetes Service port: `appProtocol`, else the port-name prefix."""
    if l4.upper() == "UDP":
        return Protocol.UDP
    name = port_name
    if app_protocol:
        name = app_protocol
        special = {"kubernetes.io/h2c": Protocol.HTTP2, "kubernetes.io/ws": Protocol.HTTP,
                   "kubernetes.io/wss": Protocol.HTTPS}
        if name in special:
            return special[name]
    if name[:8].lower() == "grpc-web":
        return Protocol.GRPC_WEB
    parsed = parse_protocol(name.split("-", 1)[0])
    if parsed is Protocol.UNSUPPORTED and port in _WELL_KNOWN_TCP_PORTS:
        return Protocol.TCP
    return parsed
