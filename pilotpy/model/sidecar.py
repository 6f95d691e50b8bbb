"""Sidecar (networking.istio.io), validated like istiod's ValidateSidecar.

pilotpy translates the egress host scoping (`egress[].hosts`, optionally per `egress[].port`)
and `outboundTrafficPolicy.mode`; the other fields are accepted with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilotpy.model import hosts
from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta, is_dns1123_label
from pilotpy.model.protocol import Protocol, parse_protocol

OUTBOUND_MODES = ("ALLOW_ANY", "REGISTRY_ONLY")


@dataclass(frozen=True, slots=True)
class EgressHost:
    """One `namespace/dnsName` entry: namespace `*` (any) or a name (`.` is stored as the
    Sidecar's own). A `~` prefix (Istio 1.31: `~ns/host`, `~/host` for every namespace)
    makes it an exclusion: matching hosts are left out even where another entry imports
    them."""

    namespace: str
    host: str
    excluded: bool = False


@dataclass(frozen=True, slots=True)
class EgressListener:
    hosts: tuple[EgressHost, ...]
    # The port this listener is scoped to; None is the catch-all listener.
    port: int | None = None
    protocol: Protocol = Protocol.UNSUPPORTED


@dataclass(frozen=True, slots=True)
class Sidecar:
    meta: Meta
    egress: tuple[EgressListener, ...] = ()
    # None: not set, the workload selector applies to every workload of the namespace.
    workload_selector: Mapping[str, str] | None = None
    outbound_traffic_policy: str = ""  # "" = the mesh default


def _parse_egress_host(f: Fields, value: str, own_namespace: str) -> EgressHost | None:
    namespace, slash, name = value.partition("/")
    if not slash:
        f.error(f"host {value!r} must be of the form namespace/dnsName", "hosts")
        return None
    if not namespace or not name:
        f.error(f"host {value!r}: the namespace and the dnsName cannot be empty", "hosts")
        return None
    excluded = namespace.startswith("~")
    if excluded:
        namespace = namespace[1:] or "*"
    if namespace not in ("*", ".") and not is_dns1123_label(namespace):
        f.error(f"host {value!r}: invalid namespace {namespace!r}", "hosts")
        return None
    if name != "*":
        problem = hosts.validate_hostname(name, allow_wildcard=True)
        if problem:
            f.error(problem, "hosts")
            return None
    return EgressHost(own_namespace if namespace == "." else namespace, name.lower(), excluded)


def _parse_egress(f: Fields, own_namespace: str) -> EgressListener:
    port: int | None = None
    protocol = Protocol.UNSUPPORTED
    p = f.child("port")
    if p is not None:
        port = p.integer("number", minimum=1, maximum=65535, required=True) or None
        protocol = parse_protocol(p.string("protocol"))
        p.string("name")
        p.unsupported("targetPort")
        p.done()
    values = f.string_list("hosts", required=True)
    parsed = [_parse_egress_host(f, v, own_namespace) for v in values]
    f.unsupported("bind", "captureMode")
    f.done()
    return EgressListener(tuple(h for h in parsed if h is not None), port, protocol)


def parse_sidecar(meta: Meta, spec: Fields) -> Sidecar:
    selector: dict[str, str] | None = None
    ws = spec.child("workloadSelector")
    if ws is not None:
        selector = ws.string_map("labels")
        if not selector:
            ws.error("a workloadSelector needs at least one label", "labels")
        ws.done()
    egress = [_parse_egress(item, meta.namespace) for item in spec.children("egress")]
    catch_alls = [e for e in egress if e.port is None]
    if len(catch_alls) > 1:
        spec.error("only one egress listener may omit the port (the catch-all)", "egress")
    ports = [e.port for e in egress if e.port is not None]
    if len(ports) != len(set(ports)):
        spec.error("egress listeners must have distinct ports", "egress")
    mode = ""
    policy = spec.child("outboundTrafficPolicy")
    if policy is not None:
        mode = policy.enum("mode", OUTBOUND_MODES, default="ALLOW_ANY") or "ALLOW_ANY"
        policy.unsupported("egressProxy")
        policy.done()
    spec.unsupported("ingress", "inboundConnectionPool")
    spec.done()
    return Sidecar(meta, tuple(egress), selector, mode)
