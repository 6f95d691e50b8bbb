"""The kinds pilotpy reads, by name. Kubernetes kind names are the store's kind keys; a
`Kind` is a `str`, so `Kind.SERVICE == "Service"` and either indexes the store."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    GATEWAY = "Gateway"
    VIRTUAL_SERVICE = "VirtualService"
    DESTINATION_RULE = "DestinationRule"
    SERVICE_ENTRY = "ServiceEntry"
    SIDECAR = "Sidecar"
    WORKLOAD_ENTRY = "WorkloadEntry"
    PEER_AUTHENTICATION = "PeerAuthentication"
    AUTHORIZATION_POLICY = "AuthorizationPolicy"
    REQUEST_AUTHENTICATION = "RequestAuthentication"
    SERVICE = "Service"
    ENDPOINT_SLICE = "EndpointSlice"
    POD = "Pod"
    NAMESPACE = "Namespace"
    SECRET = "Secret"
    CONFIG_MAP = "ConfigMap"
    INGRESS = "Ingress"
    INGRESS_CLASS = "IngressClass"
    # The mesh config a source published (the `istio` ConfigMap's `mesh` key).
    MESH_CONFIG = "MeshConfig"


# kubectl's short names (Istio's CRDs and Kubernetes' own).
_SHORT_NAMES = {"gw": Kind.GATEWAY, "vs": Kind.VIRTUAL_SERVICE, "dr": Kind.DESTINATION_RULE,
                "se": Kind.SERVICE_ENTRY, "svc": Kind.SERVICE, "ing": Kind.INGRESS}


def kind_named(text: str) -> Kind | None:
    """The kind a user names as kubectl accepts it: `VirtualService`, `virtualservice`,
    `virtualservices`, `vs`; None for no kind pilotpy reads."""
    lowered = text.strip().lower()
    found = _SHORT_NAMES.get(lowered)
    if found is not None:
        return found
    for kind in Kind:
        singular = kind.value.lower()
        consonant_y = singular.endswith("y") and singular[-2:-1] not in "aeiou"
        plural = (singular[:-1] + "ies" if consonant_y
                  else singular + "es" if singular.endswith("s") else singular + "s")
        if lowered in (singular, plural):
            return kind
    return None
