"""Settings of a running pilotpy: flags, with istiod's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_GRPC_ADDR = ":15010"
DEFAULT_HTTP_ADDR = ":8080"


@dataclass(frozen=True)
class Settings:
    config_paths: list[Path] = field(default_factory=list)
    grpc_addr: str = DEFAULT_GRPC_ADDR
    http_addr: str = DEFAULT_HTTP_ADDR
    mesh_config: Path | None = None
    default_namespace: str = "default"
    debounce_quiet: float = 0.1  # istiod's PILOT_DEBOUNCE_AFTER
    debounce_max: float = 10.0  # istiod's PILOT_DEBOUNCE_MAX
    poll_interval: float = 0.5
    max_connection_age_seconds: float = 30 * 60
    # The Kubernetes source: on when `kube` is set (a kubeconfig, or in-cluster credentials).
    kube: bool = False
    kubeconfig: Path | None = None
    kube_context: str | None = None
    # Where the mesh ConfigMap `istio` lives (istiod's POD_NAMESPACE).
    control_plane_namespace: str = "istio-system"


def split_address(address: str, *, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """`host:port`, `:port` or `[v6]:port` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port or :port")
    host = host.strip("[]") or default_host
    return host, int(port)
