"""The Kubernetes registry kinds: Service, EndpointSlice, Pod, Namespace. Port protocols follow
istio's ConvertProtocol (pkg/config/kube/conversion.go)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotpy.model import parse_object
from pilotpy.model.kube import EndpointRef, EndpointSlice, Namespace, Pod, Service
from pilotpy.model.protocol import Protocol
from tests.unit.support import errors_of, parse_as


def service(ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reviews", "namespace": "bookinfo"},
            "spec": {"ports": ports, "selector": {"app": "reviews"}, **spec}}


def parse_service(doc: dict[str, Any]) -> Service:
    return parse_as(doc, Service)


# -- Service -----------------------------------------------------------------------------------


def test_w1_httpbin_service_parses() -> None:
    svc = parse_service(yaml.safe_load("""
apiVersion: v1
kind: Service
metadata:
  name: httpbin-service
  namespace: default
spec:
  selector:
    app: httpbin
  ports:
  - name: http
    port: 80
    targetPort: 8000
"""))
    assert svc.meta.key == ("Service", "default", "httpbin-service")
    assert svc.selector == {"app": "httpbin"}
    (port,) = svc.ports
    assert (port.name, port.port, port.target_port, port.protocol) == (
        "http", 80, 8000, Protocol.HTTP)
    assert svc.type == "ClusterIP" and not svc.headless


@pytest.mark.parametrize(("name", "number", "app_protocol", "expected"), [
    ("http", 80, None, Protocol.HTTP),
    ("http-web", 80, None, Protocol.HTTP),
    ("http2", 80, None, Protocol.HTTP2),
    ("grpc", 9000, None, Protocol.GRPC),
    ("grpc-web", 9000, None, Protocol.GRPC_WEB),
    ("grpc-web-ui", 9000, None, Protocol.GRPC_WEB),
    ("GRPC-Web", 9000, None, Protocol.GRPC_WEB),
    ("https-admin", 443, None, Protocol.HTTPS),
    ("tcp-db", 5432, None, Protocol.TCP),
    ("tls", 443, None, Protocol.TLS),
    ("redis", 6379, None, Protocol.REDIS),
    ("mongo", 27017, None, Protocol.MONGO),
    ("web", 8080, None, Protocol.UNSUPPORTED),  # sniffed
    ("db", 3306, None, Protocol.TCP),  # well-known port
    ("smtp", 25, None, Protocol.TCP),
    ("dns", 53, None, Protocol.TCP),
    ("web", 8080, "http", Protocol.HTTP),  # appProtocol wins over the name
    ("http", 8080, "tcp", Protocol.TCP),
    ("web", 8080, "kubernetes.io/h2c", Protocol.HTTP2),
    ("web", 8080, "kubernetes.io/ws", Protocol.HTTP),
    ("web", 8443, "kubernetes.io/wss", Protocol.HTTPS),
])
def test_service_port_protocol(name: str, number: int, app_protocol: str | None,
                               expected: Protocol) -> None:
    port: dict[str, Any] = {"name": name, "port": number}
    if app_protocol is not None:
        port["appProtocol"] = app_protocol
    svc = parse_service(service([port]))
    assert svc.ports[0].protocol is expected


def test_udp_ports_are_udp_whatever_their_name() -> None:
    svc = parse_service(service([{"name": "http", "port": 53, "protocol": "UDP"}]))
    assert svc.ports[0].protocol is Protocol.UDP


@pytest.mark.parametrize(("target", "expected"), [
    (None, 9080), (8080, 8080), ("8080", 8080), ("http-alt", "http-alt")])
def test_target_port_is_a_number_or_a_container_port_name(
        target: int | str | None, expected: int | str) -> None:
    port: dict[str, Any] = {"name": "http", "port": 9080}
    if target is not None:
        port["targetPort"] = target
    svc = parse_service(service([port]))
    assert svc.ports[0].target_port == expected


def test_selector_absent_differs_from_empty() -> None:
    without = parse_service(service([{"port": 80}], selector=None))
    assert without.selector is None
    empty = parse_service(service([{"port": 80}], selector={}))
    assert empty.selector == {}


def test_headless_and_external_name_services() -> None:
    headless = parse_service(service([{"port": 80}], clusterIP="None"))
    assert headless.headless
    external = parse_service(service([{"port": 80}], type="ExternalName",
                                     externalName="api.example.com"))
    assert (external.type, external.external_name) == ("ExternalName", "api.example.com")


def test_publish_not_ready_addresses_is_no_warning() -> None:
    # The EndpointSlice controller applies it; the endpoints already say ready.
    assert parse_object(service([{"port": 80}], publishNotReadyAddresses=True)).warnings == ()


def test_external_name_service_needs_external_name() -> None:
    assert list(errors_of(service([{"port": 80}], type="ExternalName"))) == [
        "spec.externalName"]


def test_several_ports_need_names() -> None:
    errors = errors_of(service([{"name": "http", "port": 80}, {"port": 81}]))
    assert list(errors) == ["spec.ports[1].name"]


def test_duplicate_port_names_are_invalid() -> None:
    errors = errors_of(service([{"name": "http", "port": 80}, {"name": "http", "port": 81}]))
    assert list(errors) == ["spec.ports[1].name"]


def test_service_port_out_of_range_is_invalid() -> None:
    assert list(errors_of(service([{"port": 0}]))) == ["spec.ports[0].port"]


def test_cluster_ip_must_be_an_ip_or_none() -> None:
    assert list(errors_of(service([{"port": 80}], clusterIP="x"))) == ["spec.clusterIP"]


def test_server_populated_fields_are_not_warned_about() -> None:
    doc = service([{"name": "http", "port": 80, "nodePort": 30080}],
                  clusterIPs=["10.96.0.10"], sessionAffinity="None", type="NodePort")
    doc["metadata"].update(uid="1234", resourceVersion="99", managedFields=[])
    doc["status"] = {"loadBalancer": {}}
    assert parse_object(doc).warnings == ()


# -- EndpointSlice -----------------------------------------------------------------------------

SLICE = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-abc12
  namespace: bookinfo
  labels:
    kubernetes.io/service-name: reviews
addressType: IPv4
ports:
- name: http
  port: 9080
  protocol: TCP
endpoints:
- addresses: [10.244.0.11]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: kind-worker
  targetRef: {kind: Pod, name: reviews-v1-abc, namespace: bookinfo, uid: x}
- addresses: [10.244.0.12]
  targetRef: {kind: Pod, name: reviews-v2-def}
"""


def test_endpoint_slice_parses() -> None:
    parsed = parse_object(yaml.safe_load(SLICE))
    eps = parsed.obj
    assert isinstance(eps, EndpointSlice)
    assert parsed.warnings == ()
    assert (eps.service_name, eps.address_type) == ("reviews", "IPv4")
    assert [(p.name, p.port) for p in eps.ports] == [("http", 9080)]
    first, second = eps.endpoints
    assert first.addresses == ("10.244.0.11",)
    assert (first.ready, first.serving, first.terminating) == (True, True, False)
    assert first.node_name == "kind-worker"
    assert first.target_ref == EndpointRef("Pod", "bookinfo", "reviews-v1-abc")
    # unset conditions stay unset (None), and the targetRef namespace defaults to the slice's
    assert (second.ready, second.terminating) == (None, None)
    assert second.target_ref == EndpointRef("Pod", "bookinfo", "reviews-v2-def")


def test_slice_without_service_label_is_a_warning() -> None:
    doc = yaml.safe_load(SLICE)
    del doc["metadata"]["labels"]
    parsed = parse_object(doc)
    assert isinstance(parsed.obj, EndpointSlice) and parsed.obj.service_name == ""
    assert [w.path for w in parsed.warnings] == ["metadata.labels"]


def test_slice_addresses_must_be_ips() -> None:
    doc = yaml.safe_load(SLICE)
    doc["endpoints"][1]["addresses"] = ["reviews.local"]
    assert list(errors_of(doc)) == ["endpoints[1].addresses"]


def test_fqdn_slices_accept_names() -> None:
    doc = yaml.safe_load(SLICE)
    doc["addressType"] = "FQDN"
    doc["endpoints"] = [{"addresses": ["reviews.local"]}]
    eps = parse_object(doc).obj
    assert isinstance(eps, EndpointSlice) and eps.endpoints[0].addresses == ("reviews.local",)


def test_v1beta1_endpoint_slices_are_read() -> None:
    doc = yaml.safe_load(SLICE)
    doc["apiVersion"] = "discovery.k8s.io/v1beta1"
    assert isinstance(parse_object(doc).obj, EndpointSlice)


# -- Pod ---------------------------------------------------------------------------------------

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1-7f9c-x2k4p
  namespace: bookinfo
  labels: {app: reviews, version: v1, pod-template-hash: 7f9c}
spec:
  serviceAccountName: bookinfo-reviews
  nodeName: kind-worker
  containers:
  - name: reviews
    image: docker.io/istio/examples-bookinfo-reviews-v1
    ports:
    - {name: http, containerPort: 9080}
    - {containerPort: 9090}
status:
  phase: Running
  podIP: 10.244.0.11
  podIPs:
  - ip: 10.244.0.11
  - ip: fd00::11
"""


def test_pod_parses_ips_ports_and_service_account() -> None:
    parsed = parse_object(yaml.safe_load(POD))
    pod = parsed.obj
    assert isinstance(pod, Pod)
    assert parsed.warnings == ()  # the rest of a Pod is Kubernetes' business
    assert pod.meta.labels == {"app": "reviews", "version": "v1", "pod-template-hash": "7f9c"}
    assert (pod.ip, pod.ips) == ("10.244.0.11", ("10.244.0.11", "fd00::11"))
    assert pod.container_ports == {"http": 9080}
    assert (pod.service_account, pod.node_name, pod.phase) == (
        "bookinfo-reviews", "kind-worker", "Running")


def test_pod_ip_only_fills_ips() -> None:
    doc = yaml.safe_load(POD)
    del doc["status"]["podIPs"]
    pod = parse_object(doc).obj
    assert isinstance(pod, Pod) and pod.ips == ("10.244.0.11",)


def test_pod_without_status_has_no_ip() -> None:
    doc = yaml.safe_load(POD)
    del doc["status"]
    pod = parse_object(doc).obj
    assert isinstance(pod, Pod) and (pod.ip, pod.ips) == ("", ())


def test_pod_ip_must_be_an_ip() -> None:
    doc = yaml.safe_load(POD)
    doc["status"]["podIPs"] = [{"ip": "nope"}]
    assert list(errors_of(doc)) == ["status.podIPs"]


# -- Namespace ---------------------------------------------------------------------------------


def test_namespace_is_cluster_scoped() -> None:
    ns = parse_object({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": "bookinfo",
                                    "labels": {"istio-injection": "enabled"}}},
                      default_namespace="default").obj
    assert isinstance(ns, Namespace)
    assert ns.meta.key == ("Namespace", "", "bookinfo")
    assert ns.meta.labels == {"istio-injection": "enabled"}
