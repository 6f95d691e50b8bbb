"""Settings of a running pilotpy: flags, with istiod's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pilotpy.sources.file_limits import FileLimits
from pilotpy.xds.limits import StreamLimits

DEFAULT_GRPC_ADDR = ":15010"
DEFAULT_GRPC_TLS_ADDR = ":15012"
DEFAULT_HTTP_ADDR = ":8080"
DEFAULT_MONITORING_ADDR = ":15014"
DEFAULT_MAX_CONNECTION_AGE = 30 * 60.0
HOUR = 3600.0
# Each proxy class holds its own generated config: a safety valve against proxies that differ
# in what selectors read (a label value per pod, say). Sidecars next to headless services are
# a class each.
DEFAULT_MAX_PROXY_CLASSES = 10_000


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Connections to each HTTP port (pilotpy/server/http_limits.py)."""

    max_connections: int = 256
    header_timeout: float = 10.0  # seconds for a request's headers to arrive


@dataclass(frozen=True)
class Settings:
    config_paths: list[Path] = field(default_factory=list)
    grpc_addr: str = DEFAULT_GRPC_ADDR  # ADS, plaintext
    grpc_tls_addr: str = DEFAULT_GRPC_TLS_ADDR  # ADS over TLS; "" turns it off
    http_addr: str = DEFAULT_HTTP_ADDR  # /ready and /debug/*
    monitoring_addr: str = DEFAULT_MONITORING_ADDR  # /metrics and /debug/*; "" turns it off
    tls_cert_file: Path | None = None  # serving certificate of the TLS port; else the CA's
    tls_key_file: Path | None = None
    # The mesh CA: key material from this directory off the cluster (else memory).
    ca_dir: Path | None = None
    jwt_rule: str = ""  # istiod's JWT_RULE: how tokens are checked off the cluster
    workload_cert_ttl_seconds: float = 24 * HOUR  # istiod's DEFAULT_WORKLOAD_CERT_TTL
    max_workload_cert_ttl_seconds: float = 90 * 24 * HOUR  # MAX_WORKLOAD_CERT_TTL
    serving_cert_ttl_seconds: float = 7 * 24 * HOUR  # of :15012's certificate; renewed at half
    # Leader election for what pilotpy writes to the API (istio-ca-root-cert ConfigMaps).
    lease_duration_seconds: float = 30.0
    instance_id: str = ""  # control_plane.identifier ID; default $POD_NAME, else the hostname
    mesh_config: Path | None = None
    default_namespace: str = "default"
    debounce_quiet: float = 0.1  # istiod's PILOT_DEBOUNCE_AFTER
    debounce_max: float = 10.0  # istiod's PILOT_DEBOUNCE_MAX
    poll_interval: float = 0.5
    max_connection_age_seconds: float = DEFAULT_MAX_CONNECTION_AGE  # gRPC adds +-10% jitter
    drain_seconds: float = 10.0  # on SIGTERM: how long in-flight pushes may take to finish
    # The Kubernetes source: on when `kube` is set (a kubeconfig, or in-cluster credentials).
    kube: bool = False
    kubeconfig: Path | None = None
    kube_context: str | None = None
    # Where the mesh ConfigMap `istio` lives (istiod's POD_NAMESPACE).
    control_plane_namespace: str = "istio-system"
    # What one ADS client may ask (docs/operations.md#limits).
    stream_limits: StreamLimits = field(default_factory=StreamLimits)
    # Diffs and response bodies shared by streams; 0: 4x the served config, >= 16 MiB.
    response_cache_bytes: int = 0
    # What one config file may hold (size, objects).
    file_limits: FileLimits = field(default_factory=FileLimits)
    # Distinct configs generated at once; proxies of a new class past it are refused.
    max_proxy_classes: int = DEFAULT_MAX_PROXY_CLASSES
    # Connections per HTTP port and how soon a request's headers must arrive.
    http_limits: HttpLimits = field(default_factory=HttpLimits)


def split_address(address: str, *, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """`host:port`, `:port` or `[v6]:port` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port or :port")
    host = host.strip("[]") or default_host
    return host, int(port)
