"""Names a proxyless gRPC client asks for: listeners after the target it dials
(`xds:///echo:9080` asks for `echo:9080`), in any form istiod's grpcgen resolves
(tryFindFQDN), and the inbound listener an xDS server asks for (its bootstrap's
`server_listener_resource_name_template`)."""

from __future__ import annotations

# What istio-agent's gRPC bootstrap puts before the `<ip>:<port>` an xDS server listens on.
INBOUND_LISTENER_PREFIX = "xds.istio.io/grpc/lds/inbound/"


def join_host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets (Go's net.JoinHostPort)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def inbound_listener_name(address: str, port: int) -> str:
    return INBOUND_LISTENER_PREFIX + join_host_port(address, port)


def requested_hosts(hostname: str, namespace: str, dns_domain: str) -> list[str]:
    """Every host a client in `namespace` (DNS domain `dns_domain`) may name for
    `hostname`: the hostname itself, and the names istiod's tryFindFQDN expands to it. A
    name without a dot is completed with the DNS domain (`echo` -> `echo.<domain>`); a name
    ending in the namespace, or `<namespace>.svc`, has that suffix replaced by the DNS domain
    when the domain starts with it (`echo.default`, `echo.default.svc`)."""
    out = [hostname]
    suffix = "." + dns_domain
    if not dns_domain or not hostname.endswith(suffix):
        return out
    short = hostname[:-len(suffix)]
    if not short:
        return out
    if "." not in short:
        out.append(short)
    for namespace_suffix in (namespace, namespace + ".svc"):
        if namespace and dns_domain.startswith(namespace_suffix):
            out.append(f"{short}.{namespace_suffix}")
    return out
