"""Gateway (networking.istio.io), validated like istiod's ValidateGateway."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from pilotpy.model import hosts
from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta, is_dns1123_label
from pilotpy.model.protocol import Protocol, parse_protocol
from pilotpy.problems import Reason

# Modes where the gateway terminates TLS with its own certificate.
TERMINATING_MODES = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"})
SERVER_TLS_MODES = ("PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL",
                    "OPTIONAL_MUTUAL")
TLS_VERSIONS = ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")


@dataclass(frozen=True, slots=True)
class ServerPort:
    number: int
    protocol: Protocol
    name: str


@dataclass(frozen=True, slots=True)
class ServerTLS:
    https_redirect: bool = False
    mode: str = ""
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    credential_name: str = ""
    credential_names: tuple[str, ...] = ()
    # The Secret holding the CA clients are validated against (default `<credential>-cacert`).
    ca_cert_credential_name: str = ""
    subject_alt_names: tuple[str, ...] = ()
    min_protocol_version: str = ""
    max_protocol_version: str = ""
    cipher_suites: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Server:
    port: ServerPort
    hosts: tuple[str, ...]
    bind: str = ""
    tls: ServerTLS | None = None
    name: str = ""

    @property
    def is_plain_http(self) -> bool:
        """An HTTP-family server without TLS termination (httpsRedirect is allowed)."""
        return self.port.protocol.is_http and (self.tls is None or not self.tls.mode or
                                               self.tls.mode == "PASSTHROUGH")


@dataclass(frozen=True, slots=True)
class Gateway:
    meta: Meta
    servers: tuple[Server, ...]
    selector: Mapping[str, str] = field(default_factory=dict)


def _validate_server_host(f: Fields, host: str) -> None:
    ns, slash, name = host.partition("/")
    if slash:
        if not ns or not name:
            f.error(f"host {host!r}: namespace and dnsName cannot be empty", "hosts")
            return
        if ns not in ("*", ".") and not is_dns1123_label(ns):
            f.error(f"host {host!r}: invalid namespace {ns!r}", "hosts")
    else:
        name = host
    if name != "*" and "." not in name and not hosts.is_ip(name):
        f.error(f"host {host!r}: short names are not allowed, use a FQDN or '*'", "hosts")
        return
    if "*" in name and name != "*" and not name.startswith("*."):
        f.error(f"host {host!r}: partial wildcards are not allowed", "hosts")
        return
    problem = hosts.validate_hostname(name, allow_wildcard=True)
    if problem:
        f.error(problem, "hosts")


def _parse_tls(f: Fields | None) -> ServerTLS | None:
    if f is None:
        return None
    tls = ServerTLS(
        https_redirect=f.boolean("httpsRedirect"),
        mode=f.enum("mode", SERVER_TLS_MODES),
        server_certificate=f.string("serverCertificate"),
        private_key=f.string("privateKey"),
        ca_certificates=f.string("caCertificates"),
        credential_name=f.string("credentialName"),
        credential_names=f.string_list("credentialNames"),
        ca_cert_credential_name=f.string("caCertCredentialName"),
        subject_alt_names=f.string_list("subjectAltNames"),
        min_protocol_version=f.enum("minProtocolVersion", TLS_VERSIONS),
        max_protocol_version=f.enum("maxProtocolVersion", TLS_VERSIONS),
        cipher_suites=f.string_list("cipherSuites"),
    )
    f.unsupported("caCrl", "tlsCertificates", "verifyCertificateSpki",
                  "verifyCertificateHash", "insecureSkipVerify")
    _validate_tls_sources(f, tls)
    f.done()
    return tls


def _validate_tls_sources(f: Fields, tls: ServerTLS) -> None:
    """istiod's validateTLSOptions: where the certificates come from, per mode."""
    files = bool(tls.server_certificate or tls.private_key or tls.ca_certificates)
    if tls.mode == "ISTIO_MUTUAL":
        if files or tls.credential_name or tls.credential_names:
            f.error("ISTIO_MUTUAL uses the mesh certificates: no serverCertificate, "
                    "privateKey, caCertificates or credentialName", "mode")
        return
    sources = sum(bool(x) for x in (tls.server_certificate and tls.private_key,
                                    tls.credential_name, tls.credential_names))
    if sources > 1:
        f.error("only one of credentialName, credentialNames, serverCertificate/privateKey "
                "may be set")
    if tls.mode not in TERMINATING_MODES:
        if tls.mode and files:
            f.warn(f"{tls.mode} does not use certificates; they are ignored",
                   reason=Reason.IGNORED)
        return
    if tls.credential_name or tls.credential_names:
        return
    label = "SIMPLE TLS" if tls.mode == "SIMPLE" else "MUTUAL TLS"
    if not tls.server_certificate:
        f.error(f"{label} requires a server certificate", "serverCertificate")
    if not tls.private_key:
        f.error(f"{label} requires a private key", "privateKey")
    if tls.mode != "SIMPLE" and not tls.ca_certificates:
        f.error(f"{label} requires a client CA bundle", "caCertificates")


def _parse_server(f: Fields) -> Server | None:
    p = f.child("port")
    if p is None:
        f.error("required", "port")
        return None
    number = p.integer("number", minimum=1, maximum=65535, required=True)
    protocol_name = p.string("protocol", required=True)
    protocol = parse_protocol(protocol_name)
    if protocol_name and protocol is Protocol.UNSUPPORTED:
        p.error(f"invalid protocol {protocol_name!r}; supported: HTTP, HTTPS, HTTP2, GRPC, "
                "GRPC-WEB, TCP, TLS, MONGO, REDIS, MYSQL", "protocol")
    name = p.string("name", required=True)
    p.reject("targetPort", "targetPort has no effect on Gateways")
    p.done()
    server_hosts = f.string_list("hosts", required=True)
    for host in server_hosts:
        _validate_server_host(f, host)
    bind = f.string("bind")
    if bind:
        if bind.startswith("unix://"):
            f.error("unix domain socket binds are not supported by pilotpy", "bind")
        else:
            try:
                ipaddress.ip_address(bind)
            except ValueError:
                f.error(f"{bind!r} is not an IP address", "bind")
    tls = _parse_tls(f.child("tls"))
    if protocol.is_tls and tls is None:
        f.error("HTTPS and TLS servers need tls settings", "tls")
    elif tls is not None and not protocol.is_tls:
        only_redirect = tls.https_redirect and not (tls.mode or tls.server_certificate or
                                                    tls.private_key or tls.ca_certificates or
                                                    tls.credential_name)
        if not (protocol.is_http and only_redirect):
            f.error("tls settings are only allowed on HTTPS and TLS servers (plain HTTP "
                    "servers may set httpsRedirect)", "tls")
    server = Server(ServerPort(number, protocol, name), server_hosts, bind, tls, f.string("name"))
    f.unsupported("defaultEndpoint")
    f.done()
    return server


def parse_gateway(meta: Meta, spec: Fields) -> Gateway:
    if meta.name and not is_dns1123_label(meta.name):
        spec.error(f"gateway name {meta.name!r} must be a DNS-1123 label (no dots)")
    servers = []
    port_names: set[str] = set()
    items = spec.children("servers")
    if not items:
        spec.error("a gateway needs at least one server", "servers")
    for item in items:
        server = _parse_server(item)
        if server is None:
            continue
        if server.port.name in port_names:
            item.error(f"port names must be unique: duplicate {server.port.name!r}",
                       "port.name")
        port_names.add(server.port.name)
        if server.tls and server.tls.https_redirect and not server.port.protocol.is_http:
            item.warn("httpsRedirect should only be used with HTTP servers", "tls",
                      Reason.IGNORED)
        servers.append(server)
    selector = spec.string_map("selector")
    spec.done()
    return Gateway(meta, tuple(servers), selector)
