"""Istio's Helm values as the injection templates read them (the `values` key of istiod's
`istio-sidecar-injector` ConfigMap): images, the proxy's log levels, capture ranges, probes,
resources, the CA address. Defaults are the istio-discovery chart's, except the image: a
released proxyv2 (`DEFAULT_HUB`/`DEFAULT_TAG`) where the chart's development defaults name a
testing registry.

Only the values the `sidecar` and `gateway` templates read are modelled; the rest of a real
chart's values is ignored, so istiod's own ConfigMap can be read unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_HUB = "docker.io/istio"
DEFAULT_TAG = "1.28.0"
DEFAULT_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "2000m", "memory": "1024Mi"},
}


class ValuesError(ValueError):
    pass


@dataclass(frozen=True)
class ProxyValues:
    """values.global.proxy"""

    image: str = "proxyv2"
    cluster_domain: str = "cluster.local"
    component_log_level: str = "misc:error"
    log_level: str = "warning"
    exclude_inbound_ports: str = ""
    include_inbound_ports: str = "*"
    include_ip_ranges: str = "*"
    exclude_ip_ranges: str = ""
    include_outbound_ports: str = ""
    exclude_outbound_ports: str = ""
    outlier_log_path: str = ""
    privileged: bool = False
    seccomp_profile: Mapping[str, Any] = field(default_factory=dict)
    readiness_failure_threshold: int = 4
    readiness_initial_delay_seconds: int = 0
    readiness_period_seconds: int = 15
    startup_probe_enabled: bool = True
    startup_probe_failure_threshold: int = 600
    resources: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    status_port: int = 15020
    tracer: str = "none"
    lifecycle: Mapping[str, Any] = field(default_factory=dict)
    hold_application_until_proxy_starts: bool = False
    cap_net_bind_service: bool = False


@dataclass(frozen=True)
class InjectionValues:
    hub: str = DEFAULT_HUB
    tag: str = DEFAULT_TAG
    variant: str = ""
    image_pull_policy: str = ""
    image_pull_secrets: tuple[str, ...] = ()
    istio_namespace: str = "istio-system"
    logging_level: str = "default:info"
    log_as_json: bool = False
    native_nftables: bool = False
    ca_address: str = ""
    ca_name: str = ""
    pilot_cert_provider: str = "istiod"
    network: str = ""
    mesh_id: str = ""
    trust_domain: str = ""
    cluster_name: str = ""
    token_audience: str = "istio-ca"
    sts_port: int = 0
    mount_mtls_certs: bool = False
    trust_bundle_name: str = ""
    proxy: ProxyValues = field(default_factory=ProxyValues)
    proxy_init_image: str = "proxyv2"
    force_apply_iptables: bool = False
    revision: str = ""
    rewrite_app_http_probe: bool = True
    gateway_security_context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def effective_revision(self) -> str:
        return self.revision or "default"

    @property
    def ca_addr(self) -> str:
        """CA_ADDR: values.global.caAddress, else istiod's TLS port in its namespace."""
        if self.ca_address:
            return self.ca_address
        suffix = f"-{self.revision}" if self.revision else ""
        return f"istiod{suffix}.{self.istio_namespace}.svc:15012"


class _Reader:
    """Typed reads of a values document, each problem naming its path."""

    def __init__(self, data: Any, path: str = "") -> None:
        self.data = data if isinstance(data, Mapping) else {}
        self.path = path
        if data is not None and not isinstance(data, Mapping):
            raise ValuesError(f"{path or 'values'}: expected a mapping, got {data!r}")

    def child(self, key: str) -> _Reader:
        return _Reader(self.data.get(key), f"{self.path}.{key}" if self.path else key)

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def string(self, key: str, default: str) -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValuesError(f"{self._where(key)}: expected a string, got {value!r}")
        return go_string(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, Mapping) and isinstance(value.get("value"), bool):
            return bool(value["value"])  # a protobuf BoolValue written out
        if not isinstance(value, bool):
            raise ValuesError(f"{self._where(key)}: expected true or false, got {value!r}")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or int(value) != value:
            raise ValuesError(f"{self._where(key)}: expected an integer, got {value!r}")
        return int(value)

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValuesError(f"{self._where(key)}: expected a mapping, got {value!r}")
        return value


def go_string(value: Any) -> str:
    """How Go's fmt prints a JSON value the templates interpolate: 15020 (a float64 once
    decoded) as "15020", true as "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_values(data: Any) -> InjectionValues:
    """InjectionValues from a values document (decoded JSON or YAML); raises ValuesError
    naming the first bad value."""
    root = _Reader(data)
    g = root.child("global")
    p = g.child("proxy")
    startup = p.child("startupProbe")
    proxy = ProxyValues(
        image=p.string("image", "proxyv2"),
        cluster_domain=p.string("clusterDomain", "cluster.local"),
        component_log_level=p.string("componentLogLevel", "misc:error"),
        log_level=p.string("logLevel", "warning"),
        exclude_inbound_ports=p.string("excludeInboundPorts", ""),
        include_inbound_ports=p.string("includeInboundPorts", "*"),
        include_ip_ranges=p.string("includeIPRanges", "*"),
        exclude_ip_ranges=p.string("excludeIPRanges", ""),
        include_outbound_ports=p.string("includeOutboundPorts", ""),
        exclude_outbound_ports=p.string("excludeOutboundPorts", ""),
        outlier_log_path=p.string("outlierLogPath", ""),
        privileged=p.boolean("privileged", False),
        seccomp_profile=p.mapping("seccompProfile"),
        readiness_failure_threshold=p.integer("readinessFailureThreshold", 4),
        readiness_initial_delay_seconds=p.integer("readinessInitialDelaySeconds", 0),
        readiness_period_seconds=p.integer("readinessPeriodSeconds", 15),
        startup_probe_enabled=startup.boolean("enabled", True),
        startup_probe_failure_threshold=startup.integer("failureThreshold", 600),
        resources=(p.mapping("resources") if "resources" in p.data
                   else dict(DEFAULT_RESOURCES)),
        status_port=p.integer("statusPort", 15020),
        tracer=p.string("tracer", "none"),
        lifecycle=p.mapping("lifecycle"),
        hold_application_until_proxy_starts=p.boolean("holdApplicationUntilProxyStarts",
                                                      False),
        cap_net_bind_service=p.boolean("capNetBindService", False),
    )
    secrets = g.data.get("imagePullSecrets") or []
    if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
        raise ValuesError(f"global.imagePullSecrets: expected a list of names, got {secrets!r}")
    if root.child("pilot").child("cni").boolean("enabled", False):
        raise ValuesError("pilot.cni.enabled: Istio's CNI plugin is not supported (pilotpy "
                          "injects istio-init, which needs NET_ADMIN)")
    return InjectionValues(
        hub=g.string("hub", DEFAULT_HUB),
        tag=g.string("tag", DEFAULT_TAG),
        variant=g.string("variant", ""),
        image_pull_policy=g.string("imagePullPolicy", ""),
        image_pull_secrets=tuple(secrets),
        istio_namespace=g.string("istioNamespace", "istio-system"),
        logging_level=g.child("logging").string("level", "default:info"),
        log_as_json=g.boolean("logAsJson", False),
        native_nftables=g.boolean("nativeNftables", False),
        ca_address=g.string("caAddress", ""),
        ca_name=g.string("caName", ""),
        pilot_cert_provider=g.string("pilotCertProvider", "istiod"),
        network=g.string("network", ""),
        mesh_id=g.string("meshID", ""),
        trust_domain=g.string("trustDomain", ""),
        cluster_name=g.child("multiCluster").string("clusterName", ""),
        token_audience=g.child("sds").child("token").string("aud", "istio-ca"),
        sts_port=g.child("sts").integer("servicePort", 0),
        mount_mtls_certs=g.boolean("mountMtlsCerts", False),
        trust_bundle_name=g.string("trustBundleName", ""),
        proxy=proxy,
        proxy_init_image=g.child("proxy_init").string("image", "proxyv2"),
        force_apply_iptables=g.child("proxy_init").boolean("forceApplyIptables", False),
        revision=root.string("revision", ""),
        rewrite_app_http_probe=root.child("sidecarInjectorWebhook").boolean(
            "rewriteAppHTTPProbe", True),
        gateway_security_context=root.child("gateways").mapping("securityContext"),
    )
