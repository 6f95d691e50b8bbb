"""Proxy identity from the xDS node (istiod's ParseServiceNodeWithMetadata), and what a push
context says about it: workload labels, the Services that select it, and its proxy class."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pilotpy.model import hosts
from pilotpy.model.labels import Empty, selects
from pilotpy.push import Port, PushContext, Service

SIDECAR = "sidecar"
ROUTER = "router"
POD_TEMPLATE_HASH = "pod-template-hash"
# Node metadata GENERATOR: grpc selects the proxyless gRPC generator, as in istiod.
GRPC_GENERATOR = "grpc"
# pilot-agent writes the proxy's ProxyConfig into the node metadata of every bootstrap it
# renders, and that bootstrap always holds the `sds-grpc` cluster through which the agent
# serves the workload certificate (`default`) and the mesh root (`ROOTCA`). A stock Envoy's
# bootstrap has neither: config naming `sds-grpc` would leave it waiting forever
# (docs/architecture.md#proxies-with-and-without-pilot-agent).
AGENT_METADATA = "PROXY_CONFIG"


class NodeIdError(ValueError):
    """The node cannot be served; the stream fails with InvalidArgument."""


@dataclass(frozen=True, slots=True)
class Proxy:
    node_id: str
    type: str
    ip: str
    ips: tuple[str, ...]
    id: str  # <pod>.<namespace>
    pod_name: str
    namespace: str  # config namespace
    dns_domain: str
    metadata_labels: Mapping[str, str] = field(default_factory=dict)
    istio_version: str = ""
    # Named container ports from POD_PORTS, for named targetPorts when the Pod is unknown.
    pod_ports: Mapping[str, int] = field(default_factory=dict)
    # The ports of the bootstrap's own listeners (health, Prometheus), which no outbound
    # wildcard listener may take (istiod's conflictWithReservedListener).
    static_ports: tuple[int, ...] = ()
    # The GENERATOR metadata: `grpc` for a proxyless gRPC application, "" for Envoy.
    generator: str = ""
    # Whether the proxy runs under pilot-agent, whose SDS (`sds-grpc`) serves the workload
    # certificate: only then can it speak mutual TLS with the mesh's certificates.
    agent_sds: bool = False
    # The SPIFFE identity the ADS stream proved and that matches the node (the secure port's
    # authentication), "" for an unauthenticated stream (the plaintext port).
    verified_identity: str = ""

    @property
    def is_router(self) -> bool:
        return self.type == ROUTER

    @property
    def is_sidecar(self) -> bool:
        return self.type == SIDECAR

    @property
    def is_grpc(self) -> bool:
        """A gRPC library's own xDS client (istiod's IsProxylessGrpc), whatever its type."""
        return self.generator == GRPC_GENERATOR

    @property
    def verified_namespace(self) -> str:
        """The namespace of the verified identity (`spiffe://<td>/ns/<ns>/sa/<sa>`), "" when
        the stream is not authenticated (istiod's VerifiedIdentity.Namespace)."""
        parts = self.verified_identity.split("/")
        if len(parts) == 7 and parts[3] == "ns" and parts[5] == "sa":
            return parts[4]
        return ""


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _pod_ports(value: Any) -> dict[str, int]:
    """POD_PORTS is a JSON array encoded in a string: [{"name":"http","containerPort":8080}]."""
    try:
        ports = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return {}
    out = {}
    if isinstance(ports, list):
        for port in ports:
            if isinstance(port, dict) and port.get("name") and isinstance(
                    port.get("containerPort"), int | float):
                out[str(port["name"])] = int(port["containerPort"])
    return out


_STATIC_PORT_KEYS = ("ENVOY_STATUS_PORT", "ENVOY_PROMETHEUS_PORT", "ENVOY_SECURE_METRICS_PORT",
                     "ENVOY_SECURE_MERGED_METRICS_PORT")


def _static_ports(metadata: Mapping[str, Any]) -> tuple[int, ...]:
    """Ports arrive as JSON numbers (floats, through protobuf's Struct) or strings."""
    ports = set()
    for key in _STATIC_PORT_KEYS:
        try:
            port = int(float(metadata.get(key) or 0))
        except (TypeError, ValueError):
            continue
        if 0 < port < 65536:
            ports.add(port)
    return tuple(sorted(ports))


def node_id_namespace(node_id: str) -> str:
    """The namespace a 4-part node id names: `<ns>` of its DNS domain `<ns>.svc.<suffix>`,
    else of its `<pod>.<ns>` part; "" when it names none (a debug client's
    `debug~0.0.0.0~istioctl~cluster.local`)."""
    parts = node_id.split("~")
    if len(parts) != 4:
        return ""
    pod_id, dns_domain = parts[2], parts[3]
    if ".svc." in dns_domain:
        return dns_domain.split(".", 1)[0]
    return pod_id.rpartition(".")[2] if "." in pod_id else ""


def parse_proxy(node_id: str, metadata: Mapping[str, Any] | None = None, *,
                verified_identity: str = "") -> Proxy:
    """Parse `type~ip~pod.namespace~namespace.svc.cluster.local` plus node metadata;
    `verified_identity`: the SPIFFE id the stream proved (the secure port), if any."""
    metadata = metadata or {}
    if not node_id:
        raise NodeIdError("missing node information: node.id is empty")
    parts = node_id.split("~")
    if len(parts) != 4:
        raise NodeIdError(
            f"node id {node_id!r} must have 4 parts, "
            "type~ip~<pod>.<namespace>~<namespace>.svc.cluster.local")
    node_type, ip_part, pod_id, dns_domain = parts
    if not node_type:
        raise NodeIdError(f"node id {node_id!r} has an empty proxy type")
    ips = _string_list(metadata.get("INSTANCE_IPS"))
    if not ips or not all(hosts.is_ip(ip) for ip in ips):
        ips = [ip_part]
    if node_type in (SIDECAR, ROUTER) and not hosts.is_ip(ips[0]):
        raise NodeIdError(f"node id {node_id!r}: {ips[0]!r} is not an IP address")
    named = node_id_namespace(node_id)
    namespace = str(metadata.get("NAMESPACE") or "")
    if namespace and named and namespace != named:
        # Config is looked up by namespace: serving one the id contradicts would hand the
        # proxy another namespace's Sidecar, DestinationRules and inbound config.
        raise NodeIdError(f"node id {node_id!r} names namespace {named!r} but its metadata "
                          f"NAMESPACE is {namespace!r}")
    if not namespace:
        namespace = named or (dns_domain.split(".", 1)[0] if dns_domain else "")
    pod_name = str(metadata.get("NAME") or pod_id.split(".", 1)[0])
    raw_labels = metadata.get("LABELS")
    labels = ({str(k): str(v) for k, v in raw_labels.items()}
              if isinstance(raw_labels, Mapping) else {})
    return Proxy(
        node_id=node_id,
        type=node_type,
        ip=ips[0],
        ips=tuple(ips),
        id=pod_id,
        pod_name=pod_name,
        namespace=namespace,
        dns_domain=dns_domain,
        metadata_labels=labels,
        istio_version=str(metadata.get("ISTIO_VERSION") or ""),
        pod_ports=_pod_ports(metadata.get("POD_PORTS")),
        static_ports=_static_ports(metadata),
        generator=str(metadata.get("GENERATOR") or ""),
        agent_sds=metadata.get(AGENT_METADATA) is not None,
        verified_identity=verified_identity,
    )


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """A Service selecting the proxy's workload, one of its ports, and the resolved
    target port on the workload (istiod's ServiceTarget)."""

    service: Service
    port: Port
    target_port: int


@dataclass(frozen=True, slots=True)
class ProxyView:
    """A proxy as one push context sees it. Translation reads only this and the context."""

    proxy: Proxy
    labels: Mapping[str, str]
    service_targets: tuple[ServiceTarget, ...]
    # The proxy's addresses where its output depends on them (sidecars next to headless
    # services, gRPC servers whose inbound listeners are named after the address they
    # serve on), else "" so that the replicas of a workload share one class.
    address_key: str = ""

    @property
    def namespace(self) -> str:
        return self.proxy.namespace

    @property
    def type(self) -> str:
        return self.proxy.type

    @property
    def agent_sds(self) -> bool:
        """Whether config may name the agent's SDS (`sds-grpc`): mesh mTLS is possible."""
        return self.proxy.agent_sds

    @property
    def secrets_allowed(self) -> bool:
        """Whether Kubernetes Secrets of the proxy's namespace may be served to it: its stream
        proved an identity of that namespace (istiod's VerifiedIdentity rule)."""
        return bool(self.proxy.verified_namespace) and (
            self.proxy.verified_namespace == self.proxy.namespace)

    @property
    def class_key(self) -> tuple[Any, ...]:
        """Everything translation reads about this proxy. Proxies with equal keys get
        byte-identical config, generated once."""
        return (
            self.proxy.type,
            self.proxy.generator,
            self.proxy.namespace,
            self.proxy.dns_domain,
            self.proxy.static_ports,
            tuple(sorted(self.labels.items())),
            tuple((t.service.hostname, t.service.namespace, t.port.number, t.target_port)
                  for t in self.service_targets),
            self.address_key,
            self.agent_sds,
            self.secrets_allowed,
        )


def view_proxy(proxy: Proxy, push: PushContext) -> ProxyView:
    pod = push.pods.by_address(proxy.ip, proxy.namespace) if proxy.ip else None
    if pod is not None:
        labels = dict(pod.meta.labels)
        container_ports = pod.container_ports
    else:
        labels = dict(proxy.metadata_labels)
        container_ports = proxy.pod_ports
    labels.pop(POD_TEMPLATE_HASH, None)
    targets = []
    for service in push.services.kube_services_in(proxy.namespace):
        if not selects(service.selector, labels, empty=Empty.NONE):  # a Service's rule
            continue
        for port in service.ports:
            target = port.target_port
            if isinstance(target, str):
                if target not in container_ports:
                    continue  # istiod's FindPort: a named port the workload does not declare
                target = container_ports[target]
            targets.append(ServiceTarget(service, port, target))
    address_key = ""
    if proxy.is_grpc:
        address_key = ",".join(proxy.ips) if targets else ""
    elif proxy.is_sidecar and push.services.has_passthrough:
        address_key = proxy.ip
    return ProxyView(proxy, labels, tuple(targets), address_key)
