"""The resources pilotpy watches, and how each one is found on the API server."""

from __future__ import annotations

from dataclasses import dataclass

ISTIO_NETWORKING_VERSIONS = ("v1", "v1beta1", "v1alpha3")
ISTIO_SECURITY_VERSIONS = ("v1", "v1beta1")
# istiod skips these Secret types: Helm release state and legacy service-account tokens carry
# no gateway credentials (pilot/pkg/credentials/kube/secrets.go).
SECRET_FIELD_SELECTOR = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token"
MESH_CONFIG_MAP = "istio"


@dataclass(frozen=True)
class WatchedKind:
    kind: str
    group: str  # "" for the core group
    versions: tuple[str, ...]  # served versions to try, newest first
    plural: str
    namespaced: bool = True
    namespace: str = ""  # watch only this namespace
    field_selector: str = ""
    # A CRD kind: when no candidate version is served, the kind is empty (and synced), and
    # the informer looks again later, so installing the CRDs afterwards works.
    optional: bool = False

    def group_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def collection_path(self, version: str) -> str:
        base = f"/apis/{self.group}/{version}" if self.group else f"/api/{version}"
        if self.namespace:
            return f"{base}/namespaces/{self.namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def discovery_path(self, version: str) -> str:
        return f"/apis/{self.group}/{version}" if self.group else f"/api/{version}"


def watched_kinds(control_plane_namespace: str) -> tuple[WatchedKind, ...]:
    networking = [
        WatchedKind(kind, "networking.istio.io", ISTIO_NETWORKING_VERSIONS, plural, optional=True)
        for kind, plural in (("Gateway", "gateways"), ("VirtualService", "virtualservices"),
                             ("DestinationRule", "destinationrules"),
                             ("ServiceEntry", "serviceentries"), ("Sidecar", "sidecars"),
                             ("WorkloadEntry", "workloadentries"))
    ]
    security = [
        WatchedKind(kind, "security.istio.io", ISTIO_SECURITY_VERSIONS, plural, optional=True)
        for kind, plural in (("PeerAuthentication", "peerauthentications"),
                             ("AuthorizationPolicy", "authorizationpolicies"))
    ]
    return (
        *networking,
        *security,
        WatchedKind("Ingress", "networking.k8s.io", ("v1",), "ingresses"),
        WatchedKind("IngressClass", "networking.k8s.io", ("v1",), "ingressclasses",
                    namespaced=False),
        WatchedKind("Service", "", ("v1",), "services"),
        WatchedKind("EndpointSlice", "discovery.k8s.io", ("v1",), "endpointslices"),
        WatchedKind("Pod", "", ("v1",), "pods"),
        WatchedKind("Namespace", "", ("v1",), "namespaces", namespaced=False),
        WatchedKind("Secret", "", ("v1",), "secrets", field_selector=SECRET_FIELD_SELECTOR),
        WatchedKind("ConfigMap", "", ("v1",), "configmaps", namespace=control_plane_namespace,
                    field_selector=f"metadata.name={MESH_CONFIG_MAP}"),
    )
