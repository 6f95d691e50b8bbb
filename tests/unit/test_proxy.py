"""Proxy identity from the xDS node (istiod's ParseServiceNodeWithMetadata) and what a push
context says about it: workload labels, service targets, proxy class."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pilotpy.mesh import MeshConfig
from pilotpy.proxy import NodeIdError, ProxyView, parse_proxy, view_proxy
from pilotpy.push import PushContext, build_push_context
from tests.unit.support import objects_of

SIDECAR_ID = "sidecar~10.244.0.12~productpage-v1-6b746f74dc-x9z2k.default~default.svc.cluster.local"
ROUTER_ID = ("router~10.244.0.7~istio-ingressgateway-5c8d-abcde.istio-system"
             "~istio-system.svc.cluster.local")

# -- node ids ----------------------------------------------------------------------------------


def test_sidecar_node_id_is_parsed() -> None:
    proxy = parse_proxy(SIDECAR_ID, {"NAMESPACE": "default"})
    assert proxy.type == "sidecar" and proxy.is_sidecar and not proxy.is_router
    assert (proxy.ip, proxy.ips) == ("10.244.0.12", ("10.244.0.12",))
    assert proxy.id == "productpage-v1-6b746f74dc-x9z2k.default"
    assert proxy.pod_name == "productpage-v1-6b746f74dc-x9z2k"
    assert proxy.namespace == "default"
    assert proxy.dns_domain == "default.svc.cluster.local"


def test_router_node_id_is_parsed() -> None:
    proxy = parse_proxy(ROUTER_ID)
    assert proxy.is_router
    assert proxy.ip == "10.244.0.7"
    assert proxy.namespace == "istio-system"
    assert proxy.pod_name == "istio-ingressgateway-5c8d-abcde"


@pytest.mark.parametrize("node_id", [
    "sidecar~10.0.0.1~pod.default",  # 3 parts
    "sidecar~10.0.0.1~pod.default~default.svc.cluster.local~extra",  # 5 parts
    "sidecar",
    "",
    "~10.0.0.1~pod.default~default.svc.cluster.local",  # no type
])
def test_malformed_node_ids_are_rejected(node_id: str) -> None:
    with pytest.raises(NodeIdError):
        parse_proxy(node_id)


@pytest.mark.parametrize("node_type", ["sidecar", "router"])
def test_sidecars_and_routers_need_an_ip(node_type: str) -> None:
    with pytest.raises(NodeIdError) as info:
        parse_proxy(f"{node_type}~not-an-ip~pod.default~default.svc.cluster.local")
    assert "not-an-ip" in str(info.value)


def test_debug_node_ids_are_allowed() -> None:
    # istioctl connects this way for istio.io/debug/* types.
    proxy = parse_proxy("debug~0.0.0.0~istioctl~cluster.local")
    assert proxy.type == "debug"
    assert not proxy.is_sidecar and not proxy.is_router
    other = parse_proxy("istioctl~whatever~x~cluster.local")
    assert other.ip == "whatever"


def test_namespace_metadata_contradicting_the_node_id_is_refused() -> None:
    """Config is chosen by namespace: a proxy whose id says one and metadata another is
    refused rather than served either namespace's Sidecar and inbound config."""
    with pytest.raises(NodeIdError, match="names namespace 'b' but its metadata NAMESPACE"):
        parse_proxy("sidecar~10.0.0.1~pod.b~b.svc.cluster.local", {"NAMESPACE": "c"})
    agreeing = parse_proxy("sidecar~10.0.0.1~pod.b~b.svc.cluster.local", {"NAMESPACE": "b"})
    assert agreeing.namespace == "b"
    # An id naming no namespace (a debug client) takes the metadata's.
    assert parse_proxy("debug~0.0.0.0~istioctl~cluster.local", {"NAMESPACE": "c"}).namespace == "c"


def test_namespace_falls_back_to_the_first_dns_domain_label() -> None:
    proxy = parse_proxy("sidecar~10.0.0.1~pod.a~b.svc.cluster.local")
    assert proxy.namespace == "b"


def test_instance_ips_give_all_ips_first_one_is_the_pod_ip() -> None:
    proxy = parse_proxy(SIDECAR_ID, {"INSTANCE_IPS": "10.244.0.99,fd00::12"})
    assert proxy.ips == ("10.244.0.99", "fd00::12")
    assert proxy.ip == "10.244.0.99"


def test_instance_ips_with_an_invalid_entry_fall_back_to_the_node_id() -> None:
    proxy = parse_proxy(SIDECAR_ID, {"INSTANCE_IPS": "10.244.0.99,garbage"})
    assert proxy.ips == ("10.244.0.12",)


def test_valid_instance_ips_make_a_bad_node_id_ip_acceptable() -> None:
    proxy = parse_proxy("sidecar~bad~pod.default~default.svc.cluster.local",
                        {"INSTANCE_IPS": "10.0.0.5"})
    assert proxy.ip == "10.0.0.5"


def test_metadata_labels_version_and_pod_ports_are_read() -> None:
    proxy = parse_proxy(SIDECAR_ID, {
        "LABELS": {"app": "productpage", "version": "v1"},
        "ISTIO_VERSION": "1.24.0",
        "POD_PORTS": json.dumps([{"name": "http", "containerPort": 9080, "protocol": "TCP"},
                                 {"containerPort": 15090}]),
        "NAME": "productpage-v1-6b746f74dc-x9z2k",
    })
    assert proxy.metadata_labels == {"app": "productpage", "version": "v1"}
    assert proxy.istio_version == "1.24.0"
    assert proxy.pod_ports == {"http": 9080}
    assert proxy.pod_name == "productpage-v1-6b746f74dc-x9z2k"


def test_malformed_pod_ports_are_ignored() -> None:
    assert parse_proxy(SIDECAR_ID, {"POD_PORTS": "[not json"}).pod_ports == {}


# -- the proxy in a push context ---------------------------------------------------------------


def context(*docs: dict[str, Any]) -> PushContext:
    push, _ = build_push_context(objects_of(docs), MeshConfig(), 1)
    return push


def pod(name: str, namespace: str, ip: str, labels: dict[str, str],
        ports: dict[str, int] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "app", "ports": [
                {"name": n, "containerPort": p} for n, p in (ports or {}).items()]}]},
            "status": {"podIP": ip}}


def service(name: str, namespace: str, selector: dict[str, str] | None,
            ports: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": ports}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


GATEWAY_LABELS = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
GATEWAY_SERVICE = service("istio-ingressgateway", "istio-system", {"istio": "ingressgateway"}, [
    {"name": "status-port", "port": 15021, "targetPort": 15021},
    {"name": "http2", "port": 80, "targetPort": 8080},
    {"name": "https", "port": 443, "targetPort": 8443},
])


def gateway_pod(name: str, ip: str, template_hash: str) -> dict[str, Any]:
    return pod(name, "istio-system", ip, {**GATEWAY_LABELS, "pod-template-hash": template_hash})


def view(node_id: str, push: PushContext, **metadata: Any) -> ProxyView:
    return view_proxy(parse_proxy(node_id, metadata), push)


def router_id(ip: str, pod_name: str) -> str:
    return f"router~{ip}~{pod_name}.istio-system~istio-system.svc.cluster.local"


def test_labels_come_from_the_registry_pod_without_pod_template_hash() -> None:
    push = context(gateway_pod("gw-a", "10.0.0.7", "5c8d"))
    seen = view(router_id("10.0.0.7", "gw-a"), push, LABELS={"stale": "labels"})
    assert seen.labels == GATEWAY_LABELS


def test_labels_fall_back_to_metadata_when_the_pod_is_unknown() -> None:
    push = context()
    seen = view(router_id("10.0.0.7", "gw-a"), push,
                LABELS={**GATEWAY_LABELS, "pod-template-hash": "5c8d"})
    assert seen.labels == GATEWAY_LABELS


def test_a_pod_with_the_ip_in_another_namespace_is_not_the_proxy() -> None:
    push = context(pod("other", "default", "10.0.0.7", {"app": "other"}))
    seen = view(router_id("10.0.0.7", "gw-a"), push, LABELS=GATEWAY_LABELS)
    assert seen.labels == GATEWAY_LABELS


def test_service_targets_resolve_numeric_target_ports() -> None:
    push = context(GATEWAY_SERVICE, gateway_pod("gw-a", "10.0.0.7", "5c8d"))
    seen = view(router_id("10.0.0.7", "gw-a"), push)
    assert [(t.service.hostname, t.port.number, t.target_port) for t in seen.service_targets] == [
        ("istio-ingressgateway.istio-system.svc.cluster.local", 15021, 15021),
        ("istio-ingressgateway.istio-system.svc.cluster.local", 80, 8080),
        ("istio-ingressgateway.istio-system.svc.cluster.local", 443, 8443),
    ]


def test_only_services_in_the_proxy_namespace_selecting_it_are_targets() -> None:
    push = context(
        service("mine", "bookinfo", {"app": "reviews"}, [{"name": "http", "port": 9080}]),
        service("elsewhere", "other", {"app": "reviews"}, [{"name": "http", "port": 9080}]),
        service("not-me", "bookinfo", {"app": "ratings"}, [{"name": "http", "port": 9080}]),
        service("narrower", "bookinfo", {"app": "reviews", "version": "v2"},
                [{"name": "http", "port": 9080}]),
        service("no-selector", "bookinfo", None, [{"name": "http", "port": 9080}]),
        service("empty-selector", "bookinfo", {}, [{"name": "http", "port": 9080}]),
        pod("reviews-v1", "bookinfo", "10.0.0.1", {"app": "reviews", "version": "v1"}),
    )
    seen = view("sidecar~10.0.0.1~reviews-v1.bookinfo~bookinfo.svc.cluster.local", push)
    assert [t.service.name for t in seen.service_targets] == ["mine"]


def test_named_target_port_is_resolved_from_the_pod_container_ports() -> None:
    push = context(
        service("reviews", "bookinfo", {"app": "reviews"}, [
            {"name": "http", "port": 9080, "targetPort": "http-api"},
            {"name": "metrics", "port": 9090, "targetPort": "metrics"}]),
        pod("reviews-v1", "bookinfo", "10.0.0.1", {"app": "reviews"}, ports={"http-api": 8080}),
    )
    seen = view("sidecar~10.0.0.1~reviews-v1.bookinfo~bookinfo.svc.cluster.local", push)
    # The pod declares no `metrics` port: istiod's FindPort finds no target for it.
    assert [(t.port.number, t.target_port) for t in seen.service_targets] == [(9080, 8080)]


def test_named_target_port_uses_pod_ports_metadata_when_the_pod_is_unknown() -> None:
    push = context(service("reviews", "bookinfo", {"app": "reviews"}, [
        {"name": "http", "port": 9080, "targetPort": "http-api"}]))
    seen = view("sidecar~10.0.0.1~reviews-v1.bookinfo~bookinfo.svc.cluster.local", push,
                LABELS={"app": "reviews"},
                POD_PORTS=json.dumps([{"name": "http-api", "containerPort": 8081}]))
    assert [(t.port.number, t.target_port) for t in seen.service_targets] == [(9080, 8081)]


def test_two_gateway_pods_with_equal_labels_share_a_class() -> None:
    push = context(GATEWAY_SERVICE, gateway_pod("gw-a", "10.0.0.7", "5c8d"),
                   gateway_pod("gw-b", "10.0.0.8", "7f9e"))
    a = view(router_id("10.0.0.7", "gw-a"), push)
    b = view(router_id("10.0.0.8", "gw-b"), push)
    assert a.proxy != b.proxy
    assert a.class_key == b.class_key


def test_different_labels_make_different_classes() -> None:
    push = context(gateway_pod("gw-a", "10.0.0.7", "5c8d"),
                   pod("gw-c", "istio-system", "10.0.0.9", {"istio": "egressgateway"}))
    a = view(router_id("10.0.0.7", "gw-a"), push)
    c = view(router_id("10.0.0.9", "gw-c"), push)
    assert a.class_key != c.class_key


def test_namespace_and_type_are_part_of_the_class() -> None:
    push = context()
    labels = {"app": "x"}
    base = view("sidecar~10.0.0.1~x.a~a.svc.cluster.local", push, LABELS=labels)
    other_ns = view("sidecar~10.0.0.2~x.b~b.svc.cluster.local", push, LABELS=labels)
    router_type = view("router~10.0.0.3~x.a~a.svc.cluster.local", push, LABELS=labels)
    assert len({base.class_key, other_ns.class_key, router_type.class_key}) == 3


def test_service_targets_are_part_of_the_class() -> None:
    without = context(gateway_pod("gw-a", "10.0.0.7", "5c8d"))
    with_service = context(GATEWAY_SERVICE, gateway_pod("gw-a", "10.0.0.7", "5c8d"))
    node_id = router_id("10.0.0.7", "gw-a")
    assert view(node_id, without).class_key != view(node_id, with_service).class_key


def test_static_listener_ports_come_from_metadata_numbers_or_strings() -> None:
    proxy = parse_proxy(SIDECAR_ID, {"ENVOY_STATUS_PORT": 15021.0,
                                     "ENVOY_PROMETHEUS_PORT": "15090",
                                     "ENVOY_SECURE_METRICS_PORT": "nope"})
    assert proxy.static_ports == (15021, 15090)
