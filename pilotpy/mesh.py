"""MeshConfig: the mesh-wide defaults istiod reads from the `istio` ConfigMap (key `mesh`).

Only the fields pilotpy translates are modelled; defaults follow `DefaultMeshConfig`
(pkg/config/mesh/mesh.go).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilotpy.model.errors import Issue
from pilotpy.model.extension_providers import ExtAuthzProvider, read_extension_providers
from pilotpy.model.fields import Fields
from pilotpy.model.kinds import Kind
from pilotpy.model.virtualservice import HTTPRetry, parse_retry

SECOND = 1_000_000_000
# The store kind under which a source publishes the mesh config it watches (the kube source's
# `istio` ConfigMap); it replaces the config pilotpy started with.
MESH_CONFIG_KIND = Kind.MESH_CONFIG
# PILOT_TRACE_SAMPLING's default: percent of requests traced when nothing else says.
DEFAULT_TRACE_SAMPLING = 1.0


@dataclass(frozen=True, slots=True)
class MeshConfig:
    connect_timeout_ns: int = 10 * SECOND
    outbound_traffic_policy: str = "ALLOW_ANY"
    root_namespace: str = "istio-system"
    trust_domain: str = "cluster.local"
    # Other trust domains that mean this mesh in AuthorizationPolicy principals.
    trust_domain_aliases: tuple[str, ...] = ()
    domain_suffix: str = "cluster.local"
    dns_refresh_rate_ns: int = 60 * SECOND
    h2_upgrade_policy: str = "DO_NOT_UPGRADE"
    default_http_retry_policy: HTTPRetry | None = None
    path_normalization: str = "BASE"
    # Where a sidecar's intercepted traffic arrives (istio-init redirects there).
    proxy_listen_port: int = 15001
    proxy_inbound_listen_port: int = 15006
    # Access logs (meshConfig accessLogFile, accessLogEncoding, accessLogFormat): off when
    # the file is empty, like istiod.
    access_log_file: str = ""
    access_log_encoding: str = "TEXT"
    access_log_format: str = ""
    # Tracing: enableTracing (default on) adds sampling to every HTTP connection manager;
    # defaultConfig.tracing.zipkin.address names a Zipkin-compatible collector (host:port).
    enable_tracing: bool = True
    trace_sampling: float = DEFAULT_TRACE_SAMPLING
    zipkin_address: str = ""
    # Kubernetes Ingress (istiod's defaults): which Ingresses the gateway serves, and which
    # gateway proxies serve them (ingressSelector, else ingressService, else
    # istio=ingressgateway).
    ingress_controller_mode: str = "STRICT"
    ingress_class: str = "istio"
    ingress_service: str = "istio-ingressgateway"
    ingress_selector: str = ""
    # tlsDefaults: ECDH curves and cipher suites of the TLS sidecars originate (DestinationRule
    # SIMPLE/MUTUAL); empty leaves Envoy's defaults.
    tls_ecdh_curves: tuple[str, ...] = ()
    tls_cipher_suites: tuple[str, ...] = ()
    # What sidecar injection reads (pilotpy/inject): defaultConfig, the proxies' ProxyConfig,
    # as canonical JSON (hashable; the agent reads it, pilotpy translates only its tracing);
    # metrics merging; the inbound policy's mode (PASSTHROUGH or LOCALHOST).
    default_proxy_config: str = "{}"
    enable_prometheus_merge: bool = True
    inbound_traffic_policy: str = "PASSTHROUGH"
    # extensionProviders of the external authorization kinds (AuthorizationPolicy CUSTOM).
    ext_authz_providers: tuple[ExtAuthzProvider, ...] = ()
    # Mesh mTLS (agent proxies only, docs/architecture.md#proxies-with-and-without-pilot-agent):
    # enableAutoMtls (istiod's default: on), meshMTLS minProtocolVersion and cipherSuites.
    # trustDomainAliases (above) are also client identities inbound mTLS accepts.
    enable_auto_mtls: bool = True
    mesh_mtls_min_version: str = ""
    mesh_mtls_cipher_suites: tuple[str, ...] = ()

    def ext_authz_provider(self, name: str) -> ExtAuthzProvider | None:
        return next((p for p in self.ext_authz_providers if p.name == name), None)


_OTHER_TRACING_FIELDS = ("lightstep", "datadog", "stackdriver", "openCensusAgent", "tlsSettings",
                         "customTags", "maxPathTagLength")


def _parse_tracing(f: Fields) -> tuple[float, str]:
    """(sampling percent, zipkin address) from defaultConfig (ProxyConfig); the other
    ProxyConfig fields are pilot-agent's and accepted unchanged."""
    default_config = f.child("defaultConfig")
    if default_config is None:
        return DEFAULT_TRACE_SAMPLING, ""
    tracing = default_config.child("tracing")  # the rest of ProxyConfig is pilot-agent's
    if tracing is None:
        return DEFAULT_TRACE_SAMPLING, ""
    sampling = tracing.number("sampling", default=0.0)
    if sampling < 0 or sampling > 100:
        tracing.error(f"{sampling} is not a percentage between 0 and 100", "sampling")
    zipkin = tracing.child("zipkin")
    address = ""
    if zipkin is not None:
        address = zipkin.string("address")
        if address and not _is_host_port(address):
            zipkin.error(f"{address!r} is not host:port", "address")
        zipkin.done()
    tracing.unsupported(*_OTHER_TRACING_FIELDS, reason="only the zipkin tracer is supported")
    tracing.done(ignore=_OTHER_TRACING_FIELDS)
    return (sampling or DEFAULT_TRACE_SAMPLING), address


def _is_host_port(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _ingress_controller_mode(f: Fields) -> str:
    """UNSPECIFIED is valid in the proto (istiod then serves no Ingress). YAML 1.1 reads an
    unquoted `OFF` as false; take it for the mode meant."""
    if f.raw("ingressControllerMode") is False:
        return "OFF"
    return f.enum("ingressControllerMode", ("UNSPECIFIED", "OFF", "DEFAULT", "STRICT"),
                  default="STRICT") or "STRICT"


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
    config = read_mesh_config(Fields(data, "", issues))
    errors = [i for i in issues if not i.warning]
    if errors:
        raise MeshConfigError(f"{origin}: " + "; ".join(str(i) for i in errors))
    return config, [i for i in issues if i.warning]


def read_mesh_config(f: Fields) -> MeshConfig:
    """Read meshConfig through `f`, which collects the issues."""
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
    sampling, zipkin_address = _parse_tracing(f)
    encoding = f.enum("accessLogEncoding", ("TEXT", "JSON"), default="TEXT") or "TEXT"
    log_format = f.string("accessLogFormat")
    if log_format and encoding == "JSON":
        try:
            parsed = json.loads(log_format)
        except ValueError as err:
            f.error(f"accessLogFormat is not JSON: {err}", "accessLogFormat")
        else:
            if not isinstance(parsed, dict):
                f.error("accessLogFormat must be a JSON object for JSON encoding",
                        "accessLogFormat")
    curves: tuple[str, ...] = ()
    ciphers: tuple[str, ...] = ()
    tls_defaults = f.child("tlsDefaults")
    if tls_defaults is not None:
        curves = tls_defaults.string_list("ecdhCurves")
        ciphers = tls_defaults.string_list("cipherSuites")
        tls_defaults.done(ignore=("minProtocolVersion",))  # mesh mTLS only: not translated
    default_config = f.raw("defaultConfig")
    if default_config is not None and not isinstance(default_config, Mapping):
        f.error("defaultConfig must be a ProxyConfig mapping", "defaultConfig")
        default_config = None
    inbound = f.child("inboundTrafficPolicy")
    inbound_mode = "PASSTHROUGH"
    if inbound is not None:
        inbound_mode = inbound.enum("mode", ("PASSTHROUGH", "LOCALHOST"),
                                    default="PASSTHROUGH") or "PASSTHROUGH"
        inbound.done()
    mesh_mtls = f.child("meshMTLS")
    mtls_min = ""
    mtls_ciphers: tuple[str, ...] = ()
    if mesh_mtls is not None:
        mtls_min = mesh_mtls.enum("minProtocolVersion", ("TLS_AUTO", "TLSV1_2", "TLSV1_3"),
                                  default="TLS_AUTO")
        mtls_ciphers = mesh_mtls.string_list("cipherSuites")
        mesh_mtls.done(ignore=("ecdhCurves",))
    config = MeshConfig(
        connect_timeout_ns=f.duration_ns("connectTimeout", minimum_ns=1_000_000) or 10 * SECOND,
        outbound_traffic_policy=mode or "ALLOW_ANY",
        root_namespace=f.string("rootNamespace") or "istio-system",
        trust_domain=f.string("trustDomain") or "cluster.local",
        trust_domain_aliases=f.string_list("trustDomainAliases"),
        dns_refresh_rate_ns=f.duration_ns("dnsRefreshRate", minimum_ns=1_000_000) or 60 * SECOND,
        h2_upgrade_policy=f.enum("h2UpgradePolicy", ("DO_NOT_UPGRADE", "UPGRADE"),
                                 default="DO_NOT_UPGRADE") or "DO_NOT_UPGRADE",
        default_http_retry_policy=parse_retry(f.child("defaultHttpRetryPolicy")),
        path_normalization=path_normalization,
        proxy_listen_port=f.integer("proxyListenPort", minimum=1, maximum=65535) or 15001,
        proxy_inbound_listen_port=f.integer("proxyInboundListenPort", minimum=1,
                                        maximum=65535) or 15006,
        access_log_file=f.string("accessLogFile"),
        access_log_encoding=encoding,
        access_log_format=log_format,
        enable_tracing=f.boolean("enableTracing", default=True),
        trace_sampling=sampling,
        zipkin_address=zipkin_address,
        ingress_controller_mode=_ingress_controller_mode(f),
        ingress_class=f.string("ingressClass", default="istio"),
        ingress_service=f.string("ingressService", default="istio-ingressgateway"),
        ingress_selector=f.string("ingressSelector"),
        tls_ecdh_curves=curves,
        tls_cipher_suites=ciphers,
        default_proxy_config=json.dumps(default_config or {}, sort_keys=True),
        enable_prometheus_merge=f.boolean("enablePrometheusMerge", default=True),
        inbound_traffic_policy=inbound_mode,
        ext_authz_providers=read_extension_providers(f),
        enable_auto_mtls=f.boolean("enableAutoMtls", default=True),
        mesh_mtls_min_version=mtls_min,
        mesh_mtls_cipher_suites=mtls_ciphers,
    )
    # Settings pilotpy does not translate (yet); accepted silently so an istiod mesh config
    # loads unchanged.
    f.done(ignore=("defaultProviders", "localityLbSetting",
                   "defaultServiceExportTo",
                   "defaultVirtualServiceExportTo", "defaultDestinationRuleExportTo",
                   "discoverySelectors", "protocolDetectionTimeout",
                   "tcpKeepalive", "proxyHttpPort", "serviceSettings"))
    return config
