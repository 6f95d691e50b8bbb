"""The resources pilotpy watches, and how each one is found on the API server."""

from __future__ import annotations

from dataclasses import dataclass

from pilotpy.model.kinds import Kind
from pilotpy.model.stored import (
    CLUSTER_SCOPED_STORED,
    STORED_KINDS,
    STORED_VERSIONS,
    stored_kind,
)

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

    @property
    def api_kind(self) -> str:
        """The kind as the API server names it (`kind` may be qualified by its group)."""
        return self.kind.partition(".")[0]

    def group_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def collection_path(self, version: str) -> str:
        base = f"/apis/{self.group}/{version}" if self.group else f"/api/{version}"
        if self.namespace:
            return f"{base}/namespaces/{self.namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def discovery_path(self, version: str) -> str:
        return f"/apis/{self.group}/{version}" if self.group else f"/api/{version}"


def _plural(kind: str) -> str:
    """The resource name of a kind: lower case, `-y` after a consonant becomes `-ies`
    (authorizationpolicies, telemetries), `-s` takes `-es` (gatewayclasses), else an `s`."""
    lower = kind.lower()
    if lower.endswith("y") and lower[-2] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


def watched_kinds(control_plane_namespace: str) -> tuple[WatchedKind, ...]:
    networking = [
        WatchedKind(kind, "networking.istio.io", ISTIO_NETWORKING_VERSIONS, plural, optional=True)
        for kind, plural in ((Kind.GATEWAY, "gateways"), (Kind.VIRTUAL_SERVICE, "virtualservices"),
                             (Kind.DESTINATION_RULE, "destinationrules"),
                             (Kind.SERVICE_ENTRY, "serviceentries"), (Kind.SIDECAR, "sidecars"))
    ]
    security = [
        WatchedKind(kind, "security.istio.io", ISTIO_SECURITY_VERSIONS, plural, optional=True)
        for kind, plural in ((Kind.AUTHORIZATION_POLICY, "authorizationpolicies"),
                             (Kind.PEER_AUTHENTICATION, "peerauthentications"),
                             (Kind.REQUEST_AUTHENTICATION, "requestauthentications"))
    ]
    # Read to be reported, not enforced (model.stored); any served version will do.
    unenforced = [
        WatchedKind(stored_kind(group, kind), group, STORED_VERSIONS[group], _plural(kind),
                    namespaced=stored_kind(group, kind) not in CLUSTER_SCOPED_STORED,
                    optional=True)
        for group, kinds in sorted(STORED_KINDS.items()) for kind in sorted(kinds)
    ]
    return (
        *networking,
        *security,
        *unenforced,
        WatchedKind(Kind.INGRESS, "networking.k8s.io", ("v1",), "ingresses"),
        WatchedKind(Kind.INGRESS_CLASS, "networking.k8s.io", ("v1",), "ingressclasses",
                    namespaced=False),
        WatchedKind(Kind.SERVICE, "", ("v1",), "services"),
        WatchedKind(Kind.ENDPOINT_SLICE, "discovery.k8s.io", ("v1",), "endpointslices"),
        WatchedKind(Kind.POD, "", ("v1",), "pods"),
        WatchedKind(Kind.NAMESPACE, "", ("v1",), "namespaces", namespaced=False),
        WatchedKind(Kind.SECRET, "", ("v1",), "secrets", field_selector=SECRET_FIELD_SELECTOR),
        WatchedKind(Kind.CONFIG_MAP, "", ("v1",), "configmaps", namespace=control_plane_namespace,
                    field_selector=f"metadata.name={MESH_CONFIG_MAP}"),
    )
