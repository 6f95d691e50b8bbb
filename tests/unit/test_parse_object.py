"""`parse_object`: which documents are read, API versions, object identity, and how problems are
reported (errors name kind, namespace/name and field; unknown fields are warnings)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotpy.model import KINDS, InvalidObject, UnknownKind, parse_object
from pilotpy.model.destinationrule import DestinationRule
from pilotpy.model.gateway import Gateway
from pilotpy.model.serviceentry import ServiceEntry
from pilotpy.model.stored import Secret, StoredObject
from pilotpy.model.virtualservice import VirtualService

MINIMAL_SPECS: dict[str, dict[str, Any]] = {
    "Gateway": {"servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                             "hosts": ["*"]}]},
    "VirtualService": {"hosts": ["reviews"],
                       "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
    "DestinationRule": {"host": "reviews"},
    "ServiceEntry": {"hosts": ["api.example.com"],
                     "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]},
}
TYPES = {"Gateway": Gateway, "VirtualService": VirtualService,
         "DestinationRule": DestinationRule, "ServiceEntry": ServiceEntry}


def istio(kind: str, version: str = "v1", **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": f"networking.istio.io/{version}", "kind": kind,
            "metadata": {"name": "example", **metadata}, "spec": MINIMAL_SPECS[kind]}


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
@pytest.mark.parametrize("kind", sorted(MINIMAL_SPECS))
def test_networking_versions_istio_serves_are_accepted(kind: str, version: str) -> None:
    parsed = parse_object(istio(kind, version))
    assert isinstance(parsed.obj, TYPES[kind])
    assert parsed.obj.meta.key == (kind, "default", "example")


@pytest.mark.parametrize("version", ["v1alpha2", "v2", "v1beta2"])
def test_other_networking_versions_are_rejected_naming_api_version(version: str) -> None:
    with pytest.raises(InvalidObject) as info:
        parse_object(istio("VirtualService", version))
    (issue,) = info.value.issues
    assert issue.path == "apiVersion"
    assert f"networking.istio.io/{version}" in issue.message
    assert "VirtualService default/example" in str(info.value)


@pytest.mark.parametrize(("api_version", "kind"), [
    ("apps/v1", "Deployment"),
    ("v1", "ConfigMap"),
    ("networking.istio.io/v1alpha1", "EnvoyFilter"),
    ("gateway.networking.k8s.io/v9", "HTTPRoute"),
    ("v2", "Service"),
])
def test_kinds_pilotpy_does_not_read_are_unknown(api_version: str, kind: str) -> None:
    with pytest.raises(UnknownKind) as info:
        parse_object({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}})
    assert kind in str(info.value)


def test_kinds_lists_every_kind_read() -> None:
    gateway_api = {f"{k}.gateway.networking.k8s.io" for k in (
        "Gateway", "GatewayClass", "HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute", "UDPRoute",
        "ReferenceGrant")}
    assert set(KINDS) == {"Gateway", "VirtualService", "DestinationRule", "ServiceEntry",
                          "Service", "EndpointSlice", "Pod", "Namespace", "Secret",
                          "Sidecar", "WorkloadEntry", "WorkloadGroup", "EnvoyFilter",
                          "ProxyConfig", "PeerAuthentication", "AuthorizationPolicy",
                          "RequestAuthentication", "Telemetry", "WasmPlugin",
                          "TrafficExtension", "Ingress",
                          "IngressClass", *gateway_api}


def test_a_gateway_api_gateway_is_not_istios_gateway() -> None:
    parsed = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                           "metadata": {"name": "gw", "namespace": "ns"}, "spec": {}})
    assert parsed.obj.meta.key == ("Gateway.gateway.networking.k8s.io", "ns", "gw")
    cluster_scoped = parse_object({"apiVersion": "gateway.networking.k8s.io/v1",
                                   "kind": "GatewayClass", "metadata": {"name": "istio"}})
    assert cluster_scoped.obj.meta.key == ("GatewayClass.gateway.networking.k8s.io", "", "istio")


@pytest.mark.parametrize(("api_version", "kind"), [
    ("networking.istio.io/v1", "WorkloadEntry"),
    ("networking.istio.io/v1alpha3", "EnvoyFilter"),
    ("telemetry.istio.io/v1", "Telemetry"),
    ("extensions.istio.io/v1alpha1", "WasmPlugin"),
])
def test_kinds_stored_for_later_keep_their_spec(api_version: str, kind: str) -> None:
    spec = {"anything": [1, {"nested": True}]}
    parsed = parse_object({"apiVersion": api_version, "kind": kind,
                           "metadata": {"name": "x", "namespace": "ns"}, "spec": spec})
    assert isinstance(parsed.obj, StoredObject)
    assert parsed.obj.spec == spec and parsed.obj.meta.key == (kind, "ns", "x")
    assert parsed.warnings == ()


def test_a_stored_spec_nested_too_deep_is_invalid_naming_the_path() -> None:
    """From the Kubernetes API as from files: the spec is kept as it is, compared and shown
    by code that recurses per level. 2000 levels is past Python's recursion limit."""
    spec: dict[str, Any] = {}
    inner = spec
    for _ in range(2000):
        inner["rules"] = {}
        inner = inner["rules"]
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
           "metadata": {"name": "deep", "namespace": "ns"}, "spec": spec}
    with pytest.raises(InvalidObject) as caught:
        parse_object(doc)
    (issue,) = caught.value.issues
    assert issue.path == "spec"
    assert issue.message.startswith("nested more than 100 levels deep (at spec.rules.rules")


def test_secret_keeps_only_credential_keys() -> None:
    parsed = parse_object({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                           "metadata": {"name": "cert", "namespace": "istio-system"},
                           "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5", "other": "eA=="}})
    assert isinstance(parsed.obj, Secret)
    assert parsed.obj.type == "kubernetes.io/tls"
    assert dict(parsed.obj.data) == {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}


def test_default_namespace_applies_when_metadata_has_none() -> None:
    parsed = parse_object(istio("DestinationRule"), default_namespace="bookinfo")
    assert parsed.obj.meta.namespace == "bookinfo"
    explicit = parse_object(istio("DestinationRule", namespace="prod"),
                            default_namespace="bookinfo")
    assert explicit.obj.meta.namespace == "prod"


def test_labels_and_annotations_are_kept() -> None:
    parsed = parse_object(istio("Gateway", labels={"app": "gw"},
                                annotations={"note": "x"}))
    assert parsed.obj.meta.labels == {"app": "gw"}
    assert parsed.obj.meta.annotations == {"note": "x"}


def test_creation_timestamp_orders_objects() -> None:
    older = parse_object(istio("Gateway", creationTimestamp="2024-01-01T00:00:00Z")).obj
    newer = parse_object(istio("Gateway", creationTimestamp="2024-06-01T00:00:00Z")).obj
    assert older.meta.age_order < newer.meta.age_order


def test_unquoted_creation_timestamp_in_yaml_is_accepted() -> None:
    # YAML turns an unquoted timestamp into a datetime; it is the same instant.
    doc = yaml.safe_load("""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  creationTimestamp: 2024-05-10T12:30:00Z
spec: {host: reviews}
""")
    parsed = parse_object(doc)
    assert parsed.obj.meta.creation_timestamp == "2024-05-10T12:30:00Z"


def test_missing_name_is_an_error() -> None:
    doc = istio("Gateway")
    del doc["metadata"]["name"]
    with pytest.raises(InvalidObject) as info:
        parse_object(doc)
    assert [i.path for i in info.value.issues] == ["metadata.name"]


def test_name_must_be_a_dns_subdomain() -> None:
    with pytest.raises(InvalidObject) as info:
        parse_object({**istio("DestinationRule"), "metadata": {"name": "Reviews_V1"}})
    assert [i.path for i in info.value.issues] == ["metadata.name"]


def test_namespace_must_be_a_dns_label() -> None:
    with pytest.raises(InvalidObject) as info:
        parse_object(istio("DestinationRule", namespace="a.b"))
    assert [i.path for i in info.value.issues] == ["metadata.namespace"]


def test_missing_metadata_is_an_error() -> None:
    doc = istio("Gateway")
    del doc["metadata"]
    with pytest.raises(InvalidObject) as info:
        parse_object(doc)
    assert [i.path for i in info.value.issues] == ["metadata"]


def test_missing_spec_is_an_error() -> None:
    doc = istio("DestinationRule")
    del doc["spec"]
    with pytest.raises(InvalidObject) as info:
        parse_object(doc)
    assert "spec" in [i.path for i in info.value.issues]


def test_document_without_kind_is_invalid() -> None:
    with pytest.raises(InvalidObject):
        parse_object({"apiVersion": "v1", "metadata": {"name": "x"}})


def test_document_that_is_not_a_mapping_is_invalid() -> None:
    with pytest.raises(InvalidObject):
        parse_object(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_unknown_top_level_and_metadata_fields_are_warnings() -> None:
    doc = {**istio("DestinationRule"), "extra": 1}
    doc["metadata"]["lables"] = {"a": "b"}
    parsed = parse_object(doc)
    assert {(w.path, w.warning) for w in parsed.warnings} == {
        ("extra", True), ("metadata.lables", True)}


def test_status_is_ignored_on_istio_kinds() -> None:
    parsed = parse_object({**istio("DestinationRule"), "status": {"conditions": []}})
    assert parsed.warnings == ()


def test_errors_keep_the_warnings_found_alongside() -> None:
    doc = istio("DestinationRule")
    doc["spec"] = {"host": "", "typo": True}
    with pytest.raises(InvalidObject) as info:
        parse_object(doc)
    assert [i.path for i in info.value.issues] == ["spec.host"]
    assert [w.path for w in info.value.warnings] == ["spec.typo"]
    assert "spec.typo" not in str(info.value)  # the message lists errors only


def test_origin_is_named_in_the_message() -> None:
    doc = istio("DestinationRule")
    doc["spec"] = {"host": ""}
    with pytest.raises(InvalidObject) as info:
        parse_object(doc, origin="config/reviews.yaml")
    assert str(info.value).startswith(
        "invalid DestinationRule default/example (config/reviews.yaml): spec.host")
