"""MeshConfig: the mesh-wide defaults istiod reads from the `istio` ConfigMap (key `mesh`).

Only the fields pilotpy translates are modelled; defaults follow `DefaultMeshConfig`
(pkg/config/mesh/mesh.go).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilotpy.model.errors import Issue
from pilotpy.model.fields import Fields
from pilotpy.model.virtualservice import HTTPRetry, parse_retry

SECOND = 1_000_000_000
# The store kind under which a source publishes the mesh config it watches (the kube source's
# `istio` ConfigMap); it replaces the config pilotpy started with.
MESH_CONFIG_KIND = "MeshConfig"


@dataclass(frozen=True, slots=True)
class MeshConfig:
    connect_timeout_ns: int = 10 * SECOND
    outbound_traffic_policy: str = "ALLOW_ANY"
    root_namespace: str = "istio-system"
    trust_domain: str = "cluster.local"
    domain_suffix: str = "cluster.local"
    dns_refresh_rate_ns: int = 60 * SECOND
    h2_upgrade_policy: str = "DO_NOT_UPGRADE"
    default_http_retry_policy: HTTPRetry | None = None
    path_normalization: str = "BASE"
    # Where a sidecar's intercepted traffic arrives (istio-init redirects there).
    proxy_listen_port: int = 15001
    proxy_inbound_listen_port: int = 15006


class MeshConfigError(ValueError):
    pass


def parse_mesh_config(data: Any, *, origin: str = "mesh config") -> tuple[MeshConfig, list[Issue]]:
    """Parse meshConfig (the decoded YAML). Raises MeshConfigError naming the bad fields;
    returns warnings (unknown or unsupported fields) alongside the config."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise MeshConfigError(f"{origin}: expected a mapping")
    issues: list[Issue] = []
    f = Fields(data, "", issues)
    outbound = f.child("outboundTrafficPolicy")
    mode = "ALLOW_ANY"
    if outbound is not None:
        mode = outbound.enum("mode", ("ALLOW_ANY", "REGISTRY_ONLY"), default="ALLOW_ANY")
        outbound.done()
    normalization = f.child("pathNormalization")
    path_normalization = "BASE"
    if normalization is not None:
        path_normalization = normalization.enum(
            "normalization",
            ("DEFAULT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"),
            default="BASE") or "BASE"
        normalization.done()
    config = MeshConfig(
        connect_timeout_ns=f.duration_ns("connectTimeout", minimum_ns=1_000_000) or 10 * SECOND,
        outbound_traffic_policy=mode or "ALLOW_ANY",
        root_namespace=f.str("rootNamespace") or "istio-system",
        trust_domain=f.str("trustDomain") or "cluster.local",
        dns_refresh_rate_ns=f.duration_ns("dnsRefreshRate", minimum_ns=1_000_000) or 60 * SECOND,
        h2_upgrade_policy=f.enum("h2UpgradePolicy", ("DO_NOT_UPGRADE", "UPGRADE"),
                                 default="DO_NOT_UPGRADE") or "DO_NOT_UPGRADE",
        default_http_retry_policy=parse_retry(f.child("defaultHttpRetryPolicy")),
        path_normalization=path_normalization,
        proxy_listen_port=f.int("proxyListenPort", minimum=1, maximum=65535) or 15001,
        proxy_inbound_listen_port=f.int("proxyInboundListenPort", minimum=1,
                                        maximum=65535) or 15006,
    )
    # Operational settings later issues translate (access logs, tracing); accepted silently so
    # an istiod mesh config loads unchanged.
    f.done(ignore=("defaultConfig", "accessLogFile", "accessLogEncoding", "accessLogFormat",
                   "enableTracing", "enableAutoMtls", "extensionProviders",
                   "defaultProviders", "localityLbSetting", "enablePrometheusMerge",
                   "ingressClass", "ingressService", "ingressControllerMode",
                   "ingressSelector", "defaultServiceExportTo",
                   "defaultVirtualServiceExportTo", "defaultDestinationRuleExportTo",
                   "discoverySelectors", "protocolDetectionTimeout", "inboundTrafficPolicy",
                   "tcpKeepalive", "proxyHttpPort", "tlsDefaults", "meshMTLS", "serviceSettings"))
    errors = [i for i in issues if not i.warning]
    if errors:
        raise MeshConfigError(f"{origin}: " + "; ".join(str(i) for i in errors))
    return config, [i for i in issues if i.warning]
