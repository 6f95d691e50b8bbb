"""The pod annotations and labels the injector reads, and istiod's validation of their values
(pkg/kube/inject/validate.go): a pod with an invalid one is refused, with the annotation named,
rather than injected with a value the agent or istio-init would choke on."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping

import yaml

from pilotpy.inject import quantity
from pilotpy.inject.proxyconfig import validate_proxy_config

INJECT = "sidecar.istio.io/inject"  # a label (preferred) or an annotation
STATUS = "sidecar.istio.io/status"
TEMPLATES = "inject.istio.io/templates"
OVERRIDES = "proxy.istio.io/overrides"
PROXY_CONFIG = "proxy.istio.io/config"
PROXY_IMAGE = "sidecar.istio.io/proxyImage"
PROXY_IMAGE_TYPE = "sidecar.istio.io/proxyImageType"
INTERCEPTION_MODE = "sidecar.istio.io/interceptionMode"
STATUS_PORT = "status.sidecar.istio.io/port"
READINESS_INITIAL_DELAY = "readiness.status.sidecar.istio.io/initialDelaySeconds"
READINESS_PERIOD = "readiness.status.sidecar.istio.io/periodSeconds"
READINESS_FAILURE_THRESHOLD = "readiness.status.sidecar.istio.io/failureThreshold"
INCLUDE_OUTBOUND_IP_RANGES = "traffic.sidecar.istio.io/includeOutboundIPRanges"
EXCLUDE_OUTBOUND_IP_RANGES = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
INCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/includeInboundPorts"
EXCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/excludeInboundPorts"
INCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/includeOutboundPorts"
EXCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/excludeOutboundPorts"
EXCLUDE_INTERFACES = "traffic.sidecar.istio.io/excludeInterfaces"
KUBEVIRT_INTERFACES = "traffic.sidecar.istio.io/kubevirtInterfaces"
REROUTE_VIRTUAL_INTERFACES = "istio.io/reroute-virtual-interfaces"
PROMETHEUS_MERGE = "prometheus.istio.io/merge-metrics"
PROXY_CPU = "sidecar.istio.io/proxyCPU"
PROXY_MEMORY = "sidecar.istio.io/proxyMemory"
PROXY_CPU_LIMIT = "sidecar.istio.io/proxyCPULimit"
PROXY_MEMORY_LIMIT = "sidecar.istio.io/proxyMemoryLimit"
LOG_LEVEL = "sidecar.istio.io/logLevel"
COMPONENT_LOG_LEVEL = "sidecar.istio.io/componentLogLevel"
AGENT_LOG_LEVEL = "sidecar.istio.io/agentLogLevel"
REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"
NATIVE_SIDECAR = "sidecar.istio.io/nativeSidecar"
BOOTSTRAP_OVERRIDE = "sidecar.istio.io/bootstrapOverride"
USER_VOLUME = "sidecar.istio.io/userVolume"
USER_VOLUME_MOUNT = "sidecar.istio.io/userVolumeMount"
CAP_NET_BIND_SERVICE = "sidecar.istio.io/capNetBindService"
REVISION = "istio.io/rev"

_INTERFACE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.\-]*$")


def _ports(name: str, value: str) -> None:
    for port in (p for p in value.strip().split(",") if value.strip()):
        _port(port, what=f"{name} invalid: failed parsing port '{port}'")


def _port(value: str, what: str) -> None:
    text = value.strip()
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"{what}: not a port number")


def _cidrs(name: str, value: str, *, wildcard: bool) -> None:
    if wildcard and value == "*":
        return
    for cidr in (c for c in value.split(",") if value):
        try:
            ipaddress.ip_network(cidr, strict=False)
            if "/" not in cidr:
                raise ValueError("no prefix length")
        except ValueError as err:
            raise ValueError(f"{name} invalid: failed parsing cidr '{cidr}': {err}") from None


def _interfaces(value: str) -> None:
    if not value:
        return
    for name in (n.strip() for n in value.split(",")):
        if not name:
            raise ValueError("empty interface name")
        if len(name) > 15:
            raise ValueError(f"interface name '{name}' too long (max 15 chars)")
        if not _INTERFACE.match(name):
            raise ValueError(f"interface name '{name}' contains invalid characters")


def _uint32(value: str) -> None:
    if not value.isdigit() or int(value) >= 2 ** 32:
        raise ValueError(f"'{value}' is not a non-negative 32-bit integer")


# What Go's strconv.ParseBool takes, as istiod reads boolean annotations.
TRUE = ("1", "t", "T", "TRUE", "true", "True")
FALSE = ("0", "f", "F", "FALSE", "false", "False")


def flag(annotations: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean annotation; `default` when it is absent or not a boolean."""
    value = annotations.get(name)
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    return default


def _bool(value: str) -> None:
    if value not in TRUE + FALSE:
        raise ValueError(f"'{value}' is not a boolean")


def _interception_mode(value: str) -> None:
    if value not in ("REDIRECT", "TPROXY", "NONE"):
        raise ValueError(f"interceptionMode invalid, use REDIRECT,TPROXY,NONE: {value}")


def _quantity(value: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("value contains control characters")
    quantity.validate(value)


def _proxy_config(value: str) -> None:
    try:
        data = yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ValueError(f"not YAML: {err}") from None
    validate_proxy_config(data)


VALIDATION: Mapping[str, Callable[[str], None]] = {
    INTERCEPTION_MODE: _interception_mode,
    STATUS_PORT: lambda v: _port(v, what=f"excludeInboundPorts invalid: failed parsing port "
                                         f"'{v}'"),
    READINESS_INITIAL_DELAY: _uint32,
    READINESS_PERIOD: _uint32,
    READINESS_FAILURE_THRESHOLD: _uint32,
    INCLUDE_OUTBOUND_IP_RANGES: lambda v: _cidrs("includeIPRanges", v, wildcard=True),
    EXCLUDE_OUTBOUND_IP_RANGES: lambda v: _cidrs("excludeIPRanges", v, wildcard=False),
    INCLUDE_INBOUND_PORTS: lambda v: None if v == "*" else _ports("includeInboundPorts", v),
    EXCLUDE_INBOUND_PORTS: lambda v: _ports("excludeInboundPorts", v),
    EXCLUDE_OUTBOUND_PORTS: lambda v: _ports("excludeOutboundPorts", v),
    EXCLUDE_INTERFACES: _interfaces,
    KUBEVIRT_INTERFACES: _interfaces,
    REROUTE_VIRTUAL_INTERFACES: _interfaces,
    PROMETHEUS_MERGE: _bool,
    PROXY_CONFIG: _proxy_config,
    PROXY_CPU: _quantity,
    PROXY_MEMORY: _quantity,
    PROXY_CPU_LIMIT: _quantity,
    PROXY_MEMORY_LIMIT: _quantity,
}


def invalid_annotations(annotations: Mapping[str, str]) -> list[str]:
    """One message per annotation whose value istiod refuses, in name order."""
    errors = []
    for name in sorted(annotations):
        check = VALIDATION.get(name)
        if check is None:
            continue
        value = annotations[name]
        try:
            check(value)
        except ValueError as err:
            errors.append(f"invalid value '{value}' for annotation '{name}': {err}")
    return errors
