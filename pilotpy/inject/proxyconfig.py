"""The proxy's ProxyConfig as the injector computes it: istiod's defaults, then the mesh
config's `defaultConfig`, then the pod's `proxy.istio.io/config` annotation, merged as
protobuf JSON merges (fields replace, messages and maps merge, lists append). The pod gets it
in `PROXY_CONFIG` without the fields equal to the defaults (istiod's cleanProxyConfig), as
protobuf JSON prints it: declaration order, no zero values.

ProxyConfig is kept as its JSON mapping: the agent reads it, pilotpy only needs a few fields.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

# istiod's DefaultProxyConfig (pkg/config/mesh/mesh.go).
DEFAULTS: Mapping[str, Any] = {
    "configPath": "./etc/istio/proxy",
    "binaryPath": "/usr/local/bin/envoy",
    "serviceCluster": "istio-proxy",
    "drainDuration": "45s",
    "discoveryAddress": "istiod.istio-system.svc:15012",
    "proxyAdminPort": 15000,
    "controlPlaneAuthPolicy": "MUTUAL_TLS",
    "statNameLength": 189,
    "statusPort": 15020,
    "terminationDrainDuration": "5s",
}
_DURATIONS = ("drainDuration", "terminationDrainDuration", "discoveryRefreshDelay",
              "fileFlushInterval")
# Field declaration order of istio.mesh.v1alpha1.ProxyConfig: protobuf JSON's output order.
FIELD_ORDER = (
    "configPath", "binaryPath", "serviceCluster", "tracingServiceName", "drainDuration",
    "discoveryAddress", "discoveryRefreshDelay", "zipkinAddress", "statsdUdpAddress",
    "envoyMetricsServiceAddress", "proxyAdminPort", "availabilityZone",
    "controlPlaneAuthPolicy", "customConfigFile", "statNameLength", "concurrency",
    "proxyBootstrapTemplatePath", "interceptionMode", "tracing", "sds",
    "envoyAccessLogService", "envoyMetricsService", "proxyMetadata", "runtimeValues",
    "statusPort", "extraStatTags", "gatewayTopology", "terminationDrainDuration", "meshId",
    "readinessProbe", "proxyStatsMatcher", "holdApplicationUntilProxyStarts",
    "caCertificatesPem", "image", "privateKeyProvider", "proxyHeaders", "fileFlushInterval",
    "fileFlushMinSizeKb",
)
# Enum fields whose first value (printed as nothing) is this name.
_ENUM_ZEROS = {"interceptionMode": "REDIRECT", "controlPlaneAuthPolicy": "NONE",
               "tracingServiceName": "APP_LABEL_AND_NAMESPACE"}
INTERCEPTION_MODES = ("REDIRECT", "TPROXY", "NONE")
_DURATION = re.compile(r"^(-?\d+(?:\.\d+)?)s$")
_HOST_PORT = re.compile(r"^[^:\s]+:(\d+)$")


class ProxyConfigError(ValueError):
    pass


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """`overlay` applied onto `base` as protobuf JSON unmarshalling into an existing message:
    scalars replace, messages and maps merge, repeated fields append."""
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = merge(current, value)
        elif isinstance(value, list) and isinstance(current, list):
            out[key] = current + copy.deepcopy(value)
        elif value is not None:
            out[key] = copy.deepcopy(value)
    return out


def effective(mesh_default: Mapping[str, Any], annotation: str | None) -> dict[str, Any]:
    """The pod's ProxyConfig; `annotation` is proxy.istio.io/config (validated before)."""
    config = merge(DEFAULTS, mesh_default)
    if annotation is not None:
        data = yaml.safe_load(annotation)
        if isinstance(data, Mapping):
            config = merge(config, data)
    return config


def _seconds(value: Any) -> float | None:
    match = _DURATION.match(value) if isinstance(value, str) else None
    return float(match.group(1)) if match else None


def _is_zero(key: str, value: Any) -> bool:
    """What protobuf JSON leaves out: zero scalars, the first enum value, empty maps and
    lists (an empty message is printed, as `{}`)."""
    if value is None or value is False or value in ("", []):
        return True
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return True
    if value == {} and key in ("proxyMetadata", "runtimeValues"):
        return True
    return bool(_ENUM_ZEROS.get(key) == value)


def cleaned(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` without what equals istiod's defaults, in protobuf JSON's field order."""
    out: dict[str, Any] = {}
    order = {name: i for i, name in enumerate(FIELD_ORDER)}
    for key in sorted(config, key=lambda k: (order.get(k, len(order)), k)):
        value = config[key]
        default = DEFAULTS.get(key)
        if key in _DURATIONS and default is not None and _seconds(value) == _seconds(default):
            continue
        if default is not None and value == default:
            continue
        if _is_zero(key, value):
            continue
        if key in ("proxyMetadata", "runtimeValues") and isinstance(value, Mapping):
            value = {k: value[k] for k in sorted(value)}
        out[key] = value
    return out


def proxy_config_json(config: Mapping[str, Any]) -> str:
    """PROXY_CONFIG's value (compact JSON, as protobuf JSON prints it)."""
    return json.dumps(cleaned(config), separators=(",", ":"))


def interception_mode(config: Mapping[str, Any]) -> str:
    mode = config.get("interceptionMode") or "REDIRECT"
    return str(mode)


def proxy_metadata(config: Mapping[str, Any]) -> dict[str, str]:
    metadata = config.get("proxyMetadata") or {}
    return {str(k): str(metadata[k]) for k in sorted(metadata)}


def status_port(config: Mapping[str, Any]) -> int:
    port = config.get("statusPort")
    return int(port) if isinstance(port, int) and not isinstance(port, bool) else 15020


def hold_application(config: Mapping[str, Any]) -> bool:
    hold = config.get("holdApplicationUntilProxyStarts")
    if isinstance(hold, Mapping):
        hold = hold.get("value")
    return hold is True


def image_type(config: Mapping[str, Any]) -> str:
    image = config.get("image")
    return str(image.get("imageType") or "") if isinstance(image, Mapping) else ""


def validate_proxy_config(data: Any) -> None:
    """The checks istiod's ValidateMeshConfigProxyConfig makes on the fields the agent and
    the templates read; raises ProxyConfigError (a ValueError) saying which."""
    if data is None:
        return
    if not isinstance(data, Mapping):
        raise ProxyConfigError(f"expected a ProxyConfig mapping, got {data!r}")
    for key in _DURATIONS:
        if key in data and (_seconds(data[key]) is None or (_seconds(data[key]) or 0) < 0):
            raise ProxyConfigError(f"{key}: {data[key]!r} is not a duration like 5s")
    for key in ("proxyAdminPort", "statusPort"):
        if key in data:
            port = data[key]
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ProxyConfigError(f"{key}: {port!r} is not a port number")
    if "discoveryAddress" in data:
        address = data["discoveryAddress"]
        match = _HOST_PORT.match(address) if isinstance(address, str) else None
        if match is None or not 0 < int(match.group(1)) < 65536:
            raise ProxyConfigError(f"discoveryAddress: {address!r} is not host:port")
    if "concurrency" in data:
        concurrency = data["concurrency"]
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) \
                or concurrency < 0:
            raise ProxyConfigError(f"concurrency: {concurrency!r} is not a number >= 0")
    if "interceptionMode" in data and data["interceptionMode"] not in INTERCEPTION_MODES:
        raise ProxyConfigError(f"interceptionMode: {data['interceptionMode']!r} is not one of "
                               + ", ".join(INTERCEPTION_MODES))
    metadata = data.get("proxyMetadata")
    if metadata is not None and (not isinstance(metadata, Mapping) or not all(
            isinstance(v, str) for v in metadata.values())):
        raise ProxyConfigError("proxyMetadata: expected a mapping of names to strings")
    hold = data.get("holdApplicationUntilProxyStarts")
    if hold is not None and not isinstance(hold, bool | Mapping):
        raise ProxyConfigError(f"holdApplicationUntilProxyStarts: {hold!r} is not a boolean")
