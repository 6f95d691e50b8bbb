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
