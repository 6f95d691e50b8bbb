"""Object identity and metadata shared by every kind."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from pilotpy.model.errors import ObjectRef
from pilotpy.model.fields import Fields

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


_EMPTY: Mapping[str, str] = MappingProxyType({})


# The store's key: an object reference.
Key = ObjectRef


@dataclass(frozen=True, slots=True)
class Meta:
    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    # RFC 3339 as written by the API server; empty for file objects. Istio orders configs
    # by it (oldest wins), then by name and namespace.
    creation_timestamp: str = ""

    @property
    def key(self) -> ObjectRef:
        return ObjectRef(self.kind, self.namespace, self.name)

    @property
    def ref(self) -> ObjectRef:
        return self.key

    @property
    def age_order(self) -> tuple[str, str, str]:
        """istiod's config order: creation time, then name, then namespace."""
        return (self.creation_timestamp, self.name, self.namespace)


def parse_meta(doc: Mapping[str, object], kind: str, default_namespace: str, namespaced: bool,
               fields: Fields) -> Meta:
    metadata = fields.child("metadata")
    if metadata is None:
        fields.error("required", "metadata")
        return Meta(kind, default_namespace if namespaced else "", "")
    name = metadata.string("name", required=True)
    if name and not is_dns1123_subdomain(name):
        metadata.error(f"{name!r} is not a valid DNS-1123 subdomain name", "name")
    namespace = metadata.string("namespace") if namespaced else ""
    if namespaced and not namespace:
        namespace = default_namespace
    if namespace and not is_dns1123_label(namespace):
        metadata.error(f"{namespace!r} is not a valid namespace name", "namespace")
    # Most objects have no labels or annotations: share one empty mapping.
    labels = metadata.string_map("labels") or _EMPTY
    annotations = metadata.string_map("annotations") or _EMPTY
    raw_created = metadata.raw("creationTimestamp")
    if isinstance(raw_created, datetime):
        # YAML reads an unquoted RFC 3339 timestamp as a datetime; keep the API server's form
        # so creation-time ordering compares like with like.
        stamp = raw_created if raw_created.tzinfo else raw_created.replace(tzinfo=UTC)
        created = stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        created = metadata.string("creationTimestamp")
    # Server-populated fields carry no meaning for translation.
    metadata.done(ignore=("uid", "resourceVersion", "generation", "managedFields",
                          "selfLink", "ownerReferences", "finalizers", "generateName",
                          "deletionTimestamp", "deletionGracePeriodSeconds"))
    return Meta(kind, namespace, name, labels, annotations, created)
