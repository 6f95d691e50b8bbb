"""CustomResourceDefinitions for the Istio kinds pilotpy reads (`pilotpy crds`, written to
manifests/crds.yaml by `make manifests`).

Names, short names, categories, scope and storage versions match Istio's own CRDs
(manifests/charts/base/files/crd-all.gen.yaml), so a cluster can switch between these and
Istio's without migrating stored objects. Spec schemas come from pilotpy's parsers
(pilotpy.model.schema); kinds pilotpy stores but does not translate yet keep any spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from pilotpy.model.fields import Fields
from pilotpy.model.parse import NETWORKING_VERSIONS, istio_parsers
from pilotpy.model.schema import ANY, Schema, spec_schema

SECURITY_VERSIONS = ("v1", "v1beta1")
AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
       "description": "When the object was created"}


@dataclass(frozen=True)
class CrdSpec:
    kind: str
    group: str
    plural: str
    versions: tuple[str, ...]
    storage: str
    short_names: tuple[str, ...] = ()
    columns: tuple[dict[str, str], ...] = ()


def _column(name: str, path: str, description: str) -> dict[str, str]:
    return {"name": name, "type": "string", "jsonPath": path, "description": description}


CRDS = (
    CrdSpec("DestinationRule", "networking.istio.io", "destinationrules", NETWORKING_VERSIONS,
            "v1", ("dr",), (_column("Host", ".spec.host",
                                    "The name of a service from the service registry"),)),
    CrdSpec("Gateway", "networking.istio.io", "gateways", NETWORKING_VERSIONS, "v1",
            ("gw",)),
    CrdSpec("ServiceEntry", "networking.istio.io", "serviceentries", NETWORKING_VERSIONS, "v1",
            ("se",), (_column("Hosts", ".spec.hosts", "The hosts associated with the entry"),
                      _column("Location", ".spec.location",
                              "Whether the service is external to the mesh or part of it"),
                      _column("Resolution", ".spec.resolution",
                              "How the service's addresses are resolved"))),
    CrdSpec("Sidecar", "networking.istio.io", "sidecars", NETWORKING_VERSIONS, "v1"),
    CrdSpec("VirtualService", "networking.istio.io", "virtualservices", NETWORKING_VERSIONS,
            "v1", ("vs",), (_column("Gateways", ".spec.gateways",
                                    "The gateways and sidecars these routes apply to"),
                            _column("Hosts", ".spec.hosts",
                                    "The destination hosts traffic is sent to"))),
    CrdSpec("WorkloadEntry", "networking.istio.io", "workloadentries", NETWORKING_VERSIONS,
            "v1", ("we",), (_column("Address", ".spec.address",
                                    "Address of the workload"),)),
    CrdSpec("AuthorizationPolicy", "security.istio.io", "authorizationpolicies",
            SECURITY_VERSIONS, "v1", ("ap",), (_column("Action", ".spec.action",
                                                       "The operation to take"),)),
    CrdSpec("PeerAuthentication", "security.istio.io", "peerauthentications",
            SECURITY_VERSIONS, "v1", ("pa",), (_column("Mode", ".spec.mtls.mode",
                                                       "Defines the mTLS mode"),)),
    # Read and reported as not enforced yet (any spec is stored).
    CrdSpec("WorkloadGroup", "networking.istio.io", "workloadgroups", NETWORKING_VERSIONS,
            "v1", ("wg",)),
    CrdSpec("EnvoyFilter", "networking.istio.io", "envoyfilters", ("v1alpha3",), "v1alpha3"),
    CrdSpec("ProxyConfig", "networking.istio.io", "proxyconfigs", ("v1beta1",), "v1beta1"),
    CrdSpec("RequestAuthentication", "security.istio.io", "requestauthentications",
            SECURITY_VERSIONS, "v1", ("ra",)),
    CrdSpec("Telemetry", "telemetry.istio.io", "telemetries", ("v1", "v1alpha1"), "v1alpha1",
            ("telemetry",)),
    CrdSpec("WasmPlugin", "extensions.istio.io", "wasmplugins", ("v1alpha1",), "v1alpha1"),
    CrdSpec("TrafficExtension", "extensions.istio.io", "trafficextensions", ("v1alpha1",),
            "v1alpha1"),
)


def _spec_schema(kind: str, parsers: dict[str, Callable[[Any, Fields], Any]]) -> Schema:
    parser = parsers.get(kind)
    if parser is None:  # stored, not translated yet: any spec
        return {"type": "object", **ANY}
    return spec_schema(kind, parser)


def crd(spec: CrdSpec) -> dict[str, Any]:
    schema = {"type": "object", "properties": {
        "spec": _spec_schema(spec.kind, istio_parsers()),
        "status": {"type": "object", **ANY},
    }}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{spec.plural}.{spec.group}",
                     "labels": {"app.kubernetes.io/part-of": "pilotpy"}},
        "spec": {
            "group": spec.group,
            "names": {
                "categories": ["istio-io", spec.group.replace(".io", "-io").replace(".", "-")],
                "kind": spec.kind,
                "listKind": f"{spec.kind}List",
                "plural": spec.plural,
                "singular": spec.kind.lower(),
                **({"shortNames": list(spec.short_names)} if spec.short_names else {}),
            },
            "scope": "Namespaced",
            "versions": [
                {"name": version, "served": True, "storage": version == spec.storage,
                 "schema": {"openAPIV3Schema": schema},
                 "subresources": {"status": {}},
                 "additionalPrinterColumns": [*spec.columns, AGE]}
                for version in spec.versions
            ],
        },
    }


def crds() -> list[dict[str, Any]]:
    return [crd(spec) for spec in CRDS]


class _NoAliases(yaml.SafeDumper):
    """Schemas share sub-dicts (every untyped field, every served version); written out as
    YAML anchors and aliases they would be unreadable in a manifest."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crds_yaml() -> str:
    header = "# Generated by `pilotpy crds` (make manifests) from pilotpy's model; do not edit.\n"
    return header + yaml.dump_all(crds(), Dumper=_NoAliases, sort_keys=True,
                                  explicit_start=True)
