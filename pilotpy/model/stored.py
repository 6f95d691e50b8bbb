"""Kinds pilotpy reads but does not enforce yet (WorkloadEntry, EnvoyFilter, the Gateway API,
...), kept in the store so that each one is reported (an unenforced policy is an open door),
and gateway credentials (Secrets, served over SDS: pilotpy/translate/credentials.py).

Stored objects are compared by value, so an unchanged object is a no-op in the store like any
other; their specs are kept as the API server returned them (JSON-compatible values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
# group -> kinds kept as StoredObject: read, reported, not enforced.
STORED_KINDS: Mapping[str, frozenset[str]] = {
    "networking.istio.io": frozenset({"WorkloadEntry", "WorkloadGroup", "EnvoyFilter",
                                      "ProxyConfig"}),
    "telemetry.istio.io": frozenset({"Telemetry"}),
    "extensions.istio.io": frozenset({"WasmPlugin", "TrafficExtension"}),
    GATEWAY_API_GROUP: frozenset({"Gateway", "GatewayClass", "HTTPRoute", "GRPCRoute",
                                  "TCPRoute", "TLSRoute", "UDPRoute", "ReferenceGrant"}),
}
STORED_VERSIONS: Mapping[str, tuple[str, ...]] = {
    "networking.istio.io": ("v1", "v1beta1", "v1alpha3"),
    "telemetry.istio.io": ("v1", "v1alpha1"),
    "extensions.istio.io": ("v1alpha1",),
    GATEWAY_API_GROUP: ("v1", "v1beta1", "v1alpha2", "v1alpha3"),
}
CLUSTER_SCOPED_STORED = frozenset({f"GatewayClass.{GATEWAY_API_GROUP}"})


def stored_kind(group: str, kind: str) -> str:
    """The store's kind name: Gateway API kinds are qualified by their group, since a
    `Gateway` of the Gateway API is not Istio's Gateway."""
    return f"{kind}.{group}" if group == GATEWAY_API_GROUP else kind


UNENFORCED_KINDS = frozenset(stored_kind(group, kind) for group, kinds in STORED_KINDS.items()
                             for kind in kinds)

# The Secret keys istiod reads for gateway credentials (pilot/pkg/credentials/kube).
CREDENTIAL_KEYS = frozenset({
    "tls.crt", "tls.key", "ca.crt", "cert", "key", "cacert", "tls.ocsp-staple", "ca.crl", "crl",
})


@dataclass(frozen=True, slots=True)
class StoredObject:
    meta: Meta
    api_version: str
    spec: Any


@dataclass(frozen=True, slots=True)
class Secret:
    """Only the credential keys of a Secret, base64 as the API server returns them."""

    meta: Meta
    type: str
    data: Mapping[str, str]


# A spec kept as given is compared, hashed and shown as JSON by code that recurses once per
# level; the file source's YAML reader holds documents to the same depth.
MAX_SPEC_DEPTH = 100


def too_deep(value: Any, limit: int) -> str | None:
    """The path (`.a.b[3]`) of a value nested more than `limit` levels deep, else None.
    Walked with an explicit stack: the value may be deeper than Python may recurse."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, Mapping):
            children = [(f"{path}.{key}", child) for key, child in node.items()]
        elif isinstance(node, list):
            children = [(f"{path}[{index}]", child) for index, child in enumerate(node)]
        else:
            continue
        if depth > limit:
            return path
        stack.extend((child, depth + 1, child_path) for child_path, child in children)
    return None


def parse_stored(meta: Meta, api_version: str, root: Fields) -> StoredObject:
    spec = root.raw("spec")
    root.done(ignore=("status",))
    deep = too_deep(spec, MAX_SPEC_DEPTH)
    if deep is not None:
        shown = deep if len(deep) <= 120 else f"{deep[:60]}...{deep[-40:]}"
        root.error(f"nested more than {MAX_SPEC_DEPTH} levels deep (at spec{shown})", "spec")
    return StoredObject(meta, api_version, spec)


def parse_secret(meta: Meta, root: Fields) -> Secret:
    data = root.string_map("data")
    kept = {k: v for k, v in data.items() if k in CREDENTIAL_KEYS}
    secret_type = root.string("type") or "Opaque"
    root.done(ignore=("stringData", "immutable"))
    return Secret(meta, secret_type, kept)
