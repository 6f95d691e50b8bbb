"""The Envoy v3 bootstrap pilot-agent would render, reduced to what a local gateway needs.

The result is a plain dict in proto3-JSON form (snake_case field names, `@type` on every
`typed_config`), so it can be dumped with `json.dumps` and handed to `envoy -c`.

Readiness: the status listener answers `GET /healthz/ready` from the upstream
`envoy.filters.http.health_check` filter instead of pilot-agent's proxy to Envoy's `/ready`.
It is still a faithful readiness signal because Envoy only starts its worker threads once
server initialization completes, and initialization waits for the first CDS response (and the
EDS it triggers) followed by the first LDS response. `initial_fetch_timeout: 0s` makes that
wait unbounded, as in Istio. Until then no worker serves the static listeners (Envoy 1.40
does not even listen on their ports: connections are refused), so nothing answers. Once the
workers run, the filter answers 200 (and 503 while Envoy is draining or failing health checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotpy.model.hosts import is_ip
from pilotpy.proxy import node_id_namespace

XDS_CLUSTER = "xds-grpc"
# pilot-agent's SDS cluster (the workload certificate `default`, the mesh root `ROOTCA`).
SDS_CLUSTER = "sds-grpc"
PROMETHEUS_CLUSTER = "prometheus_stats"
READY_PATH = "/healthz/ready"
PROMETHEUS_PATH = "/stats/prometheus"

_TYPE = "type.googleapis.com/"
_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "envoy.extensions.filters.http.router.v3.Router"
_HEALTH_CHECK = "envoy.extensions.filters.http.health_check.v3.HealthCheck"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def envoy_bootstrap(
    *,
    node_id: str,
    xds_address: tuple[str, int],
    delta: bool = False,
    labels: Mapping[str, str] | None = None,
    namespace: str = "",
    admin_port: int = 0,
    status_port: int | None = 15021,
    stats_port: int | None = 15090,
    cluster: str = "",
    istio_version: str = "1.28.0",
    xds_tls: XdsTls | None = None,
    sds_address: tuple[str, int] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Bootstrap for a proxy named `node_id` (`type~ip~pod.namespace~namespace.svc.cluster.local`)
    that gets everything but its status/stats plumbing over ADS from `xds_address`.

    `namespace` (metadata NAMESPACE) defaults to the one the node id names; a different one
    is refused, as pilotpy would refuse the proxy. `cluster` defaults to pilot-agent's
    service cluster: `<app label>.<namespace>`, else `istio-proxy.<namespace>`.
    `admin_port=0` lets Envoy pick; the Prometheus listener proxies to the admin port, so it
    needs a fixed one and a ValueError is raised otherwise.

    `xds_tls`: reach the control plane's TLS port with a mesh client certificate (a verified
    identity, as pilot-agent's stream has); `sds_address`: an SDS server standing in for
    pilot-agent's (cluster `sds-grpc`); `metadata`: more node metadata (PROXY_CONFIG makes
    pilotpy treat the proxy as pilot-agent's)."""
    if stats_port is not None and admin_port == 0:
        raise ValueError("stats_port needs a fixed admin_port: prometheus_stats proxies to it")
    labels = labels or {}
    named = node_id_namespace(node_id)
    if namespace and named and namespace != named:
        raise ValueError(f"node id {node_id!r} names namespace {named!r}, not {namespace!r}")
    namespace = namespace or named
    if not namespace:
        raise ValueError(f"node id {node_id!r} names no namespace: give one")
    cluster = cluster or service_cluster(labels, namespace)
    clusters = [_xds_cluster(xds_address, xds_tls)]
    if sds_address is not None:
        clusters.append(_grpc_cluster(SDS_CLUSTER, sds_address))
    listeners = []
    if status_port is not None:
        listeners.append(_status_listener(status_port))
    if stats_port is not None:
        clusters.append(_static_cluster(PROMETHEUS_CLUSTER, ("127.0.0.1", admin_port), "0.250s"))
        listeners.append(_stats_listener(stats_port))
    return {
        "node": {
            "id": node_id,
            "cluster": cluster,
            "metadata": {**agent_node_metadata(
                node_id,
                labels=labels,
                namespace=namespace,
                istio_version=istio_version,
                status_port=status_port,
                stats_port=stats_port,
            ), **(metadata or {})},
        },
        "dynamic_resources": _dynamic_resources(delta),
        "static_resources": {"clusters": clusters, "listeners": listeners},
        "admin": {"address": _socket_address("127.0.0.1", admin_port)},
    }


def service_cluster(labels: Mapping[str, str], namespace: str) -> str:
    """pilot-agent's `node.cluster` when ProxyConfig names none (serviceClusterOrDefault)."""
    for key in ("app", "app.kubernetes.io/name", "service.istio.io/canonical-name"):
        if labels.get(key):
            return f"{labels[key]}.{namespace}"
    return f"istio-proxy.{namespace}"


def agent_node_metadata(
    node_id: str,
    *,
    labels: Mapping[str, str],
    namespace: str | None = None,
    istio_version: str = "1.28.0",
    status_port: int | None = 15021,
    stats_port: int | None = 15090,
    service_account: str = "default",
) -> dict[str, Any]:
    """The node metadata pilot-agent sends for a pod with this node id and labels (istio's
    pkg/bootstrap GetNodeMetaData with the injector's ISTIO_META_* environment): istiod reads
    more of it than pilotpy does (the workload name and owner for its telemetry, the
    interception mode, the static listener ports that no outbound listener may take), so
    clients compared against istiod must send all of it."""
    parts = node_id.split("~")
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"node id {node_id!r} is not Istio's type~ip~pod.namespace~domain form")
    proxy_type, ip, pod_id, _ = parts
    pod_name, _, pod_namespace = pod_id.partition(".")
    namespace = namespace or pod_namespace
    workload = labels.get("app") or labels.get("istio") or pod_name
    metadata: dict[str, Any] = {
        "NAMESPACE": namespace,
        "LABELS": dict(labels),
        "ISTIO_VERSION": istio_version,
        "CLUSTER_ID": "Kubernetes",
        "MESH_ID": "cluster.local",
        "INSTANCE_IPS": ip,
        "NAME": pod_name,
        "SERVICE_ACCOUNT": service_account,
        "WORKLOAD_NAME": workload,
        "OWNER": f"kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{workload}",
        "PILOT_SAN": ["istiod.istio-system.svc"],
    }
    if proxy_type == "sidecar":
        metadata["INTERCEPTION_MODE"] = "REDIRECT"
        metadata["APP_CONTAINERS"] = workload
    # Istio's NodeMetadata declares both ports as ints, so they travel as JSON numbers.
    if status_port is not None:
        metadata["ENVOY_STATUS_PORT"] = status_port
    if stats_port is not None:
        metadata["ENVOY_PROMETHEUS_PORT"] = stats_port
    return metadata


def _dynamic_resources(delta: bool) -> dict[str, Any]:
    # Istio never lets a fetch time out: a proxy that has not heard from the control plane
    # stays un-ready rather than going live with half a configuration.
    ads_source = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    return {
        "ads_config": {
            "api_type": "DELTA_GRPC" if delta else "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            "set_node_on_first_message_only": True,
        },
        "cds_config": dict(ads_source),
        "lds_config": dict(ads_source),
    }


@dataclass(frozen=True)
class XdsTls:
    """A client certificate (PEM files) and the root to verify the control plane with, and
    the name its serving certificate carries (pilot-agent's ISTIOD_SAN)."""

    cert_chain: Path
    key: Path
    root: Path
    server_name: str = "istiod.istio-system.svc"


def _grpc_cluster(name: str, address: tuple[str, int]) -> dict[str, Any]:
    out = _static_cluster(name, address, "1s")
    out["typed_extension_protocol_options"] = {
        _HTTP_OPTIONS: {"@type": _TYPE + _HTTP_OPTIONS,
                        "explicit_http_config": {"http2_protocol_options": {}}},
    }
    return out


def _tls_socket(tls: XdsTls) -> dict[str, Any]:
    context = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": _TYPE + context, "sni": tls.server_name,
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_certificates": [{"certificate_chain": {"filename": str(tls.cert_chain)},
                                  "private_key": {"filename": str(tls.key)}}],
            "validation_context": {
                "trusted_ca": {"filename": str(tls.root)},
                "match_typed_subject_alt_names": [
                    {"san_type": "DNS", "matcher": {"exact": tls.server_name}}]},
        }}}


def _xds_cluster(address: tuple[str, int], tls: XdsTls | None = None) -> dict[str, Any]:
    xds = _static_cluster(XDS_CLUSTER, address, "1s")
    if tls is not None:
        xds["transport_socket"] = _tls_socket(tls)
    xds["typed_extension_protocol_options"] = {
        _HTTP_OPTIONS: {
            "@type": _TYPE + _HTTP_OPTIONS,
            "explicit_http_config": {
                "http2_protocol_options": {
                    # Detects a control plane that vanished without closing the stream, so
                    # Envoy reconnects instead of waiting on a dead connection forever.
                    "connection_keepalive": {"interval": "30s", "timeout": "10s"},
                },
            },
        },
    }
    # Same as Istio's bootstrap: keeps long-lived ADS streams alive through NAT/conntrack.
    xds["upstream_connection_options"] = {"tcp_keepalive": {"keepalive_time": 300}}
    # One ADS stream carries every resource; the default limit of 1024 could throttle it.
    xds["circuit_breakers"] = {
        "thresholds": [
            {
                "priority": priority,
                "max_connections": 100000,
                "max_pending_requests": 100000,
                "max_requests": 100000,
            }
            for priority in ("DEFAULT", "HIGH")
        ],
    }
    return xds


def _static_cluster(name: str, address: tuple[str, int], connect_timeout: str) -> dict[str, Any]:
    host, port = address
    # An IP is used as is; a name (istiod.istio-system.svc in a cluster) is resolved by Envoy.
    resolved = is_ip(host)
    return {
        "name": name,
        "type": "STATIC" if resolved else "STRICT_DNS",
        **({} if resolved else {"dns_lookup_family": "V4_PREFERRED"}),
        "connect_timeout": connect_timeout,
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _socket_address(host, port)}}]},
            ],
        },
    }


def _status_listener(port: int) -> dict[str, Any]:
    health_check = {
        "name": "envoy.filters.http.health_check",
        "typed_config": {
            "@type": _TYPE + _HEALTH_CHECK,
            "pass_through_mode": False,
            "headers": [{"name": ":path", "string_match": {"exact": READY_PATH}}],
        },
    }
    # The health check filter answers READY_PATH itself; anything it lets through is unknown.
    not_found = {"match": {"prefix": "/"}, "direct_response": {"status": 404}}
    return _http_listener(port, "agent", [not_found], [health_check])


def _stats_listener(port: int) -> dict[str, Any]:
    to_admin = {"match": {"prefix": PROMETHEUS_PATH}, "route": {"cluster": PROMETHEUS_CLUSTER}}
    return _http_listener(port, "stats", [to_admin], [])


def _http_listener(
    port: int,
    stat_prefix: str,
    routes: list[dict[str, Any]],
    http_filters: list[dict[str, Any]],
) -> dict[str, Any]:
    router = {"name": "envoy.filters.http.router", "typed_config": {"@type": _TYPE + _ROUTER}}
    hcm = {
        "@type": _TYPE + _HCM,
        "codec_type": "AUTO",
        "stat_prefix": stat_prefix,
        "route_config": {
            "name": stat_prefix,
            "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [*http_filters, router],
    }
    return {
        "name": f"0.0.0.0_{port}",
        "address": _socket_address("0.0.0.0", port),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            },
        ],
    }


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"protocol": "TCP", "address": host, "port_value": port}}
