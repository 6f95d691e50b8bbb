"""Kinds pilotpy keeps in the store before it translates them (PeerAuthentication,
AuthorizationPolicy, WorkloadEntry) and gateway credentials (Secrets).

Stored objects are compared by value, so an unchanged object is a no-op in the store like any
other; their specs are kept as the API server returned them (JSON-compatible values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta

# group -> kinds kept as StoredObject
STORED_KINDS: Mapping[str, frozenset[str]] = {
    "networking.istio.io": frozenset({"WorkloadEntry"}),
    "security.istio.io": frozenset({"PeerAuthentication", "AuthorizationPolicy"}),
}
STORED_VERSIONS: Mapping[str, tuple[str, ...]] = {
    "networking.istio.io": ("v1", "v1beta1", "v1alpha3"),
    "security.istio.io": ("v1", "v1beta1"),
}
STORED_ONLY_KINDS = frozenset().union(*STORED_KINDS.values()) | {"Secret"}

# The Secret keys istiod reads for gateway credentials (pilot/pkg/credentials/kube).
CREDENTIAL_KEYS = frozenset({
    "tls.crt", "tls.key", "ca.crt", "cert", "key", "cacert", "tls.ocsp-staple", "ca.crl",
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


def parse_stored(meta: Meta, api_version: str, root: Fields) -> StoredObject:
    spec = root.raw("spec")
    root.done(ignore=("status",))
    return StoredObject(meta, api_version, spec)


def parse_secret(meta: Meta, root: Fields) -> Secret:
    data = root.str_map("data")
    kept = {k: v for k, v in data.items() if k in CREDENTIAL_KEYS}
    secret_type = root.str("type") or "Opaque"
    root.done(ignore=("stringData", "immutable"))
    return Secret(meta, secret_type, kept)
