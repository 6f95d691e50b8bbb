"""Turn one Kubernetes-style document (a dict from YAML or the API server) into a typed,
validated object, or an InvalidObject naming the object and every bad field."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pilotpy.model.authorization import (
    AuthorizationPolicy,
    parse_authorization_policy,
)
from pilotpy.model.authorization import fail_closed as authorization_fail_closed
from pilotpy.model.destinationrule import DestinationRule, parse_destination_rule
from pilotpy.model.errors import InvalidObject, Issue, ObjectRef, UnknownKind
from pilotpy.model.fields import Fields
from pilotpy.model.gateway import Gateway, parse_gateway
from pilotpy.model.ingress import Ingress, IngressClass, parse_ingress, parse_ingress_class
from pilotpy.model.kube import (
    EndpointSlice,
    Namespace,
    Pod,
    Service,
    parse_endpoint_slice,
    parse_pod,
    parse_service,
)
from pilotpy.model.meta import Meta, parse_meta
from pilotpy.model.peerauthentication import PeerAuthentication, parse_peer_authentication
from pilotpy.model.request_authentication import (
    RequestAuthentication,
    parse_request_authentication,
)
from pilotpy.model.request_authentication import fail_closed as request_authentication_fail_closed
from pilotpy.model.serviceentry import ServiceEntry, parse_service_entry
from pilotpy.model.sidecar import Sidecar, parse_sidecar
from pilotpy.model.stored import (
    CLUSTER_SCOPED_STORED,
    STORED_KINDS,
    STORED_VERSIONS,
    UNENFORCED_KINDS,
    Secret,
    StoredObject,
    parse_secret,
    parse_stored,
    stored_kind,
)
from pilotpy.model.virtualservice import VirtualService, parse_virtual_service
from pilotpy.problems import Reason

ConfigObject = (
    Gateway | VirtualService | DestinationRule | ServiceEntry | Sidecar | Service | EndpointSlice
    | Pod | Namespace | Secret | StoredObject | Ingress | IngressClass | AuthorizationPolicy
    | RequestAuthentication | PeerAuthentication
)

NETWORKING_GROUP = "networking.istio.io"
NETWORKING_VERSIONS = ("v1", "v1beta1", "v1alpha3")
SECURITY_GROUP = "security.istio.io"
SECURITY_VERSIONS = ("v1", "v1beta1")

_NETWORKING: dict[str, Callable[[Meta, Fields], ConfigObject]] = {
    "Gateway": parse_gateway,
    "VirtualService": parse_virtual_service,
    "DestinationRule": parse_destination_rule,
    "ServiceEntry": parse_service_entry,
    "Sidecar": parse_sidecar,
}
_SECURITY: dict[str, Callable[[Meta, Fields], ConfigObject]] = {
    "AuthorizationPolicy": parse_authorization_policy,
    "RequestAuthentication": parse_request_authentication,
    "PeerAuthentication": parse_peer_authentication,
}
# Security policies whose unknown fields are errors and whose invalid objects stand in as
# policies that fail closed (InvalidObject.fallback).
_FAIL_CLOSED_KINDS = ("AuthorizationPolicy", "RequestAuthentication")
# group -> (served versions, kind -> spec parser)
_ISTIO_GROUPS = {NETWORKING_GROUP: (NETWORKING_VERSIONS, _NETWORKING),
                 SECURITY_GROUP: (SECURITY_VERSIONS, _SECURITY)}
_ISTIO = {**_NETWORKING, **_SECURITY}


def istio_parsers() -> dict[str, Callable[[Meta, Fields], ConfigObject]]:
    """The translated Istio kinds and their spec parsers (for the CRD schemas)."""
    return dict(_ISTIO)


# (apiVersion, kind) pairs of the Kubernetes registry.
_KUBE_KINDS = {
    ("v1", "Service"), ("v1", "Pod"), ("v1", "Namespace"), ("v1", "Secret"),
    ("discovery.k8s.io/v1", "EndpointSlice"), ("discovery.k8s.io/v1beta1", "EndpointSlice"),
    ("networking.k8s.io/v1", "Ingress"), ("networking.k8s.io/v1", "IngressClass"),
}
KINDS = (*_ISTIO, "Service", "EndpointSlice", "Pod", "Namespace", "Secret", "Ingress",
         "IngressClass", *sorted(UNENFORCED_KINDS))


@dataclass(frozen=True, slots=True)
class Parsed:
    obj: ConfigObject
    warnings: tuple[Issue, ...] = ()


def _ref_of(doc: Mapping[str, Any], default_namespace: str) -> ObjectRef:
    metadata = doc.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name = metadata.get("name")
    namespace = metadata.get("namespace") or default_namespace
    kind = doc.get("kind")
    return ObjectRef(str(kind or "<no kind>"), str(namespace),
                     str(name) if name else "<no name>")


def is_supported(doc: Mapping[str, Any]) -> bool:
    api_version = str(doc.get("apiVersion", ""))
    kind = str(doc.get("kind", ""))
    group, _, version = api_version.rpartition("/")
    if group in _ISTIO_GROUPS and kind in _ISTIO_GROUPS[group][1]:
        return version in _ISTIO_GROUPS[group][0]
    if kind in STORED_KINDS.get(group, ()):
        return version in STORED_VERSIONS[group]
    return (api_version, kind) in _KUBE_KINDS


def _strict(issue: Issue) -> Issue:
    """A security policy's unknown field is an error, not a warning: enforcing a policy
    without a field its author wrote (a typo of `notPrincipals`, a newer Istio's field) could
    let through what it was written to stop."""
    if issue.reason is Reason.UNKNOWN_FIELD and issue.path.startswith("spec."):
        return Issue(issue.path, "unknown field: a security policy is not enforced without "
                     "a field its author wrote")
    return issue


def parse_object(doc: Mapping[str, Any], *, default_namespace: str = "default",
                 origin: str = "") -> Parsed:
    """Raises UnknownKind for kinds pilotpy does not read, InvalidObject for invalid ones."""
    if not isinstance(doc, Mapping):
        raise InvalidObject(ObjectRef("<document>", "", "<unnamed>"),
                            [Issue("", "a document must be a mapping")], origin)
    api_version = doc.get("apiVersion")
    kind = doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise InvalidObject(_ref_of(doc, default_namespace),
                            [Issue("", "apiVersion and kind are required")], origin)
    if not is_supported(doc):
        group = api_version.rpartition("/")[0]
        if group in _ISTIO_GROUPS and kind in _ISTIO_GROUPS[group][1]:
            first, *others = _ISTIO_GROUPS[group][0]
            served = f"{group}/{first}" + "".join(
                (" or " if i == len(others) - 1 else ", ") + v for i, v in enumerate(others))
            raise InvalidObject(
                _ref_of(doc, default_namespace),
                [Issue("apiVersion", f"{api_version!r} is not served; use {served}")], origin)
        raise UnknownKind(f"{api_version} {kind}")

    issues: list[Issue] = []
    root = Fields(doc, "", issues)
    root.raw("apiVersion")
    root.raw("kind")
    group = api_version.rpartition("/")[0]
    stored = kind in STORED_KINDS.get(group, ())
    if stored:
        kind = stored_kind(group, kind)
    namespaced = kind not in ("Namespace", "IngressClass", *CLUSTER_SCOPED_STORED)
    meta = parse_meta(doc, kind, default_namespace, namespaced, root)
    obj: ConfigObject
    if kind in _ISTIO:
        spec = root.child("spec")
        if spec is None:
            root.error("required", "spec")
            spec = Fields({}, "spec", issues)
        obj = _ISTIO[kind](meta, spec)
        root.done(ignore=("status",))
    elif kind == "Service":
        spec = root.child("spec") or Fields({}, "spec", issues)
        obj = parse_service(meta, spec)
        root.done(ignore=("status",))
    elif kind == "EndpointSlice":
        obj = parse_endpoint_slice(meta, root)
        root.done()
    elif kind == "Ingress":
        obj = parse_ingress(meta, root)
    elif kind == "IngressClass":
        obj = parse_ingress_class(meta, root)
    elif stored:
        obj = parse_stored(meta, api_version, root)
    elif kind == "Secret":
        obj = parse_secret(meta, root)
    elif kind == "Pod":
        obj = parse_pod(meta, root.child("spec"), root.child("status"))
        # A Pod spec is large and owned by Kubernetes; only the fields above matter here.
    else:
        obj = Namespace(meta)
        root.raw("spec")
        root.raw("status")
        root.done()

    if kind in _FAIL_CLOSED_KINDS:
        issues = [_strict(i) for i in issues]
    errors = [i for i in issues if not i.warning]
    if errors:
        fallback = None
        if isinstance(obj, AuthorizationPolicy):
            fallback = authorization_fail_closed(obj, errors)
        elif isinstance(obj, RequestAuthentication):
            fallback = request_authentication_fail_closed(obj, errors)
        raise InvalidObject(meta.ref if meta.name else _ref_of(doc, default_namespace),
                            issues, origin, fallback)
    return Parsed(obj, tuple(i for i in issues if i.warning))
