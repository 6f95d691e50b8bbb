"""The push context's indexes: services by host (istiod's model.Service for Kubernetes Services
and ServiceEntry hosts), VirtualServices by gateway with short names resolved, DestinationRules
by istiod's lookup order, and sharing of untouched indexes between versions."""

from __future__ import annotations

from typing import Any

from pilotpy.mesh import MeshConfig
from pilotpy.model import Key
from pilotpy.push import PushContext, Resolution, Service, build_push_context
from tests.unit.support import objects_of

MESH = MeshConfig()


def context(*docs: dict[str, Any]) -> PushContext:
    push, _ = build_push_context(objects_of(docs), MESH, 1)
    return push


def kube_service(name: str, namespace: str = "default", *, annotations: dict[str, str] | None
                 = None, created: str = "", **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    if created:
        metadata["creationTimestamp"] = created
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}], **spec}}


def service_entry(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def destination_rule(name: str, namespace: str, host: str, *, created: str = "",
                     **spec: Any) -> dict[str, Any]:
    metadata = {"name": name, "namespace": namespace}
    if created:
        metadata["creationTimestamp"] = created
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": metadata, "spec": {"host": host, **spec}}


def virtual_service(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def only(services: list[Service]) -> Service:
    (svc,) = services
    return svc


# -- services ----------------------------------------------------------------------------------


def test_kubernetes_service_hostname_is_its_fqdn() -> None:
    push = context(kube_service("httpbin-service", clusterIP="10.96.0.10"))
    svc = push.service("httpbin-service.default.svc.cluster.local", "default")
    assert svc is not None
    assert (svc.namespace, svc.name) == ("default", "httpbin-service")
    assert svc.resolution is Resolution.CLIENT_SIDE_LB
    assert svc.addresses == ("10.96.0.10",)
    assert not svc.mesh_external


def test_headless_and_external_name_services_resolve_differently() -> None:
    push = context(kube_service("db", clusterIP="None"),
                   kube_service("api", type="ExternalName", externalName="api.example.com"))
    db = push.service("db.default.svc.cluster.local", "default")
    api = push.service("api.default.svc.cluster.local", "default")
    assert db is not None and api is not None
    assert db.resolution is Resolution.PASSTHROUGH and db.addresses == ()
    assert api.resolution is Resolution.ALIAS and api.mesh_external
    assert api.external_name == "api.example.com"


def test_service_entry_makes_one_service_per_host() -> None:
    push = context(service_entry("ext", hosts=["a.example.com", "b.example.com"],
                                 ports=[{"number": 443, "name": "tls", "protocol": "TLS"}],
                                 resolution="DNS", addresses=["240.0.0.1/32"]))
    a = push.service("a.example.com", "default")
    b = push.service("b.example.com", "default")
    assert a is not None and b is not None
    for svc in (a, b):
        assert svc.resolution is Resolution.DNS
        assert svc.mesh_external
        assert svc.addresses == ("240.0.0.1",)  # a /32 is a plain IP
        assert [(p.name, p.number, p.target_port) for p in svc.ports] == [("tls", 443, 443)]
    assert push.service_endpoints(a) == {}


def test_service_entry_resolutions_map_to_istio_resolutions() -> None:
    push = context(
        service_entry("none", hosts=["none.example.com"], resolution="NONE"),
        service_entry("static", hosts=["static.example.com"], resolution="STATIC",
                      ports=[{"number": 80, "name": "http"}],
                      endpoints=[{"address": "10.0.0.1"}]),
        service_entry("rr", hosts=["rr.example.com"], resolution="DNS_ROUND_ROBIN",
                      location="MESH_INTERNAL"),
    )
    found = {h: push.service(h, "default") for h in
             ("none.example.com", "static.example.com", "rr.example.com")}
    assert {h: s.resolution for h, s in found.items() if s is not None} == {
        "none.example.com": Resolution.PASSTHROUGH,
        "static.example.com": Resolution.CLIENT_SIDE_LB,
        "rr.example.com": Resolution.DNS_ROUND_ROBIN,
    }
    rr = found["rr.example.com"]
    assert rr is not None and not rr.mesh_external
    static = found["static.example.com"]
    assert static is not None and [e.address for e in static.static_endpoints] == ["10.0.0.1"]


def test_export_to_dot_hides_a_service_from_other_namespaces() -> None:
    push = context(kube_service("private", annotations={"networking.istio.io/exportTo": "."}),
                   service_entry("se", hosts=["se.example.com"], exportTo=["."]))
    assert push.service("private.default.svc.cluster.local", "default") is not None
    assert push.service("private.default.svc.cluster.local", "other") is None
    assert push.service("se.example.com", "default") is not None
    assert push.service("se.example.com", "other") is None
    assert [s.name for s in push.visible_services("other")] == []


def test_export_to_named_namespaces() -> None:
    push = context(service_entry("se", hosts=["se.example.com"], exportTo=[".", "team-a"]))
    assert push.service("se.example.com", "team-a") is not None
    assert push.service("se.example.com", "default") is not None
    assert push.service("se.example.com", "team-b") is None


def test_same_host_in_two_namespaces_prefers_the_proxy_namespace_then_the_oldest() -> None:
    def entry(name: str, namespace: str, created: str) -> dict[str, Any]:
        doc = service_entry(name, namespace, hosts=["shared.example.com"])
        doc["metadata"]["creationTimestamp"] = created
        return doc

    push = context(entry("new", "ns-b", "2024-01-01T00:00:00Z"),
                   entry("old", "ns-a", "2020-01-01T00:00:00Z"))
    in_b = push.service("shared.example.com", "ns-b")
    elsewhere = push.service("shared.example.com", "ns-c")
    preferred = push.service("shared.example.com", "ns-c", prefer_namespace="ns-b")
    assert in_b is not None and in_b.namespace == "ns-b"
    assert elsewhere is not None and elsewhere.namespace == "ns-a"
    assert preferred is not None and preferred.namespace == "ns-b"


def test_kubernetes_services_in_a_namespace_oldest_first() -> None:
    push = context(kube_service("b", created="2024-02-01T00:00:00Z"),
                   kube_service("a", created="2024-03-01T00:00:00Z"),
                   kube_service("c", "other"))
    assert [s.name for s in push.services.kube_services_in("default")] == ["b", "a"]


def test_wildcard_pattern_matches_service_hosts() -> None:
    push = context(kube_service("a"), service_entry("ext", hosts=["api.example.com"]))
    assert [s.hostname for s in push.services.matching("*.example.com")] == ["api.example.com"]
    assert {s.hostname for s in push.services.matching("*")} == {
        "a.default.svc.cluster.local", "api.example.com"}


# -- VirtualServices ---------------------------------------------------------------------------


def test_virtual_service_short_names_are_resolved_in_its_namespace() -> None:
    push = context(virtual_service(
        "reviews", "bookinfo", hosts=["reviews", "reviews.example.com"],
        http=[{"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                         {"destination": {"host": "ratings.other.svc.cluster.local"},
                          "weight": 10}],
               "mirror": {"host": "shadow"}}]))
    (vs,) = push.virtual_services.for_gateway("bookinfo", "mesh")
    assert vs.hosts == ("reviews.bookinfo.svc.cluster.local", "reviews.example.com")
    assert vs.gateways == ("mesh",)  # no gateways means the mesh
    assert [d.destination.host for d in vs.http[0].route] == [
        "reviews.bookinfo.svc.cluster.local", "ratings.other.svc.cluster.local"]
    assert vs.http[0].mirror is not None
    assert vs.http[0].mirror.host == "shadow.bookinfo.svc.cluster.local"


def test_virtual_service_gateway_names_are_qualified() -> None:
    push = context(virtual_service(
        "httpbin", "test-ns", hosts=["httpbin.local"],
        gateways=["httpbin-gateway", "istio-system/shared", "mesh"],
        http=[{"route": [{"destination": {"host": "httpbin"}}]}]))
    for gateway in ("test-ns/httpbin-gateway", "istio-system/shared", "mesh"):
        assert [v.meta.name for v in push.virtual_services.for_gateway("x", gateway)] == [
            "httpbin"]
    assert push.virtual_services.for_gateway("x", "default/httpbin-gateway") == []


def test_gateways_named_only_in_matches_also_index_the_virtual_service() -> None:
    push = context(virtual_service(
        "vs", hosts=["a.example.com"], gateways=["gw-a"],
        http=[{"match": [{"gateways": ["gw-b"]}],
               "route": [{"destination": {"host": "a"}}]}]))
    assert [v.meta.name for v in push.virtual_services.for_gateway("x", "default/gw-b")] == [
        "vs"]


def test_virtual_service_export_to_dot_is_private() -> None:
    push = context(virtual_service("vs", "team-a", hosts=["a.example.com"], exportTo=["."],
                                   gateways=["istio-system/gw"],
                                   http=[{"route": [{"destination": {"host": "a"}}]}]))
    assert push.virtual_services.for_gateway("istio-system", "istio-system/gw") == []
    assert len(push.virtual_services.for_gateway("team-a", "istio-system/gw")) == 1


def test_virtual_services_oldest_first_merge_the_export_buckets_by_age() -> None:
    # Private, exported and public VirtualServices bound to `mesh`, created out of bucket
    # order: a scope lists them oldest first whatever bucket holds them.
    def vs(name: str, namespace: str, created: str, export_to: list[str]) -> dict[str, Any]:
        doc = virtual_service(name, namespace, hosts=[f"{name}.example.com"],
                              exportTo=export_to,
                              http=[{"route": [{"destination": {"host": name}}]}])
        doc["metadata"]["creationTimestamp"] = created
        return doc

    push = context(vs("public-new", "b", "2024-01-04T00:00:00Z", ["*"]),
                   vs("private", "a", "2024-01-03T00:00:00Z", ["."]),
                   vs("exported", "b", "2024-01-02T00:00:00Z", ["a"]),
                   vs("public-old", "c", "2024-01-01T00:00:00Z", []))
    index = push.virtual_services
    for namespace in ("a", "b", "z"):
        merged = index.for_gateway_oldest_first(namespace, "mesh")
        assert merged == sorted(index.for_gateway(namespace, "mesh"),
                                key=lambda v: v.meta.age_order)
    assert [v.meta.name for v in index.for_gateway_oldest_first("a", "mesh")] == [
        "public-old", "exported", "private", "public-new"]
    assert [v.meta.name for v in index.for_gateway_oldest_first("z", "mesh")] == [
        "public-old", "public-new"]


# -- DestinationRules --------------------------------------------------------------------------

SUBSETS = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]
MESH_WIDE = destination_rule("default", "istio-system", "*.local",
                             trafficPolicy={"loadBalancer": {"simple": "RANDOM"}})


def rule_for(push: PushContext, proxy_namespace: str, host: str) -> str | None:
    svc = push.service(host, proxy_namespace)
    assert svc is not None
    found = push.destination_rule(proxy_namespace, svc)
    return f"{found.meta.namespace}/{found.meta.name}" if found is not None else None


def test_short_destination_rule_host_applies_to_the_service_fqdn() -> None:
    push = context(kube_service("httpbin-service"),
                   destination_rule("httpbin", "default", "httpbin-service", subsets=SUBSETS))
    svc = push.service("httpbin-service.default.svc.cluster.local", "default")
    assert svc is not None
    dr = push.destination_rule("istio-system", svc)
    assert dr is not None
    assert dr.host == "httpbin-service.default.svc.cluster.local"
    assert [s.name for s in dr.subsets] == ["v1", "v2"]


def test_a_rule_in_the_proxy_namespace_wins() -> None:
    push = context(kube_service("reviews", "bookinfo"),
                   destination_rule("mine", "client", "reviews.bookinfo.svc.cluster.local"),
                   destination_rule("theirs", "bookinfo", "reviews"))
    assert rule_for(push, "client", "reviews.bookinfo.svc.cluster.local") == "client/mine"
    assert rule_for(push, "other", "reviews.bookinfo.svc.cluster.local") == "bookinfo/theirs"


def test_the_service_namespace_rule_wins_over_the_root_namespace_rule() -> None:
    push = context(kube_service("reviews", "bookinfo"), MESH_WIDE,
                   destination_rule("reviews", "bookinfo", "reviews", subsets=SUBSETS))
    assert rule_for(push, "other", "reviews.bookinfo.svc.cluster.local") == "bookinfo/reviews"


def test_the_root_namespace_rule_applies_when_nothing_closer_does() -> None:
    push = context(kube_service("reviews", "bookinfo"), MESH_WIDE)
    assert rule_for(push, "other", "reviews.bookinfo.svc.cluster.local") == (
        "istio-system/default")


def test_a_gateway_in_the_root_namespace_gets_the_service_rule_not_the_mesh_wide_one() -> None:
    # istiod (PushContext.destinationRule): a proxy in the root namespace first looks only at
    # the root namespace's *private* rules, so a mesh-wide `*.local` rule there does not hide
    # the service's own rule (and its subsets) from the ingress gateway.
    push = context(kube_service("httpbin-service"), MESH_WIDE,
                   destination_rule("httpbin", "default", "httpbin-service", subsets=SUBSETS))
    assert rule_for(push, "istio-system", "httpbin-service.default.svc.cluster.local") == (
        "default/httpbin")


def test_a_private_root_namespace_rule_applies_to_root_namespace_proxies_first() -> None:
    push = context(kube_service("httpbin-service"),
                   destination_rule("gw-only", "istio-system", "*.local", exportTo=["."],
                                    trafficPolicy={"loadBalancer": {"simple": "RANDOM"}}),
                   destination_rule("httpbin", "default", "httpbin-service", subsets=SUBSETS))
    host = "httpbin-service.default.svc.cluster.local"
    assert rule_for(push, "istio-system", host) == "istio-system/gw-only"
    assert rule_for(push, "other", host) == "default/httpbin"


def test_a_rule_exported_only_elsewhere_does_not_apply_in_its_own_namespace() -> None:
    push = context(kube_service("reviews", "bookinfo"),
                   destination_rule("for-a", "bookinfo", "reviews", exportTo=["team-a"]))
    host = "reviews.bookinfo.svc.cluster.local"
    assert rule_for(push, "team-a", host) == "bookinfo/for-a"
    assert rule_for(push, "bookinfo", host) is None


def test_the_most_specific_wildcard_rule_wins() -> None:
    push = context(service_entry("ext", hosts=["api.example.com"]),
                   destination_rule("broad", "default", "*.com"),
                   destination_rule("narrow", "default", "*.example.com"))
    assert rule_for(push, "default", "api.example.com") == "default/narrow"


def test_exact_host_beats_wildcards() -> None:
    push = context(service_entry("ext", hosts=["api.example.com"]),
                   destination_rule("wild", "default", "*.example.com"),
                   destination_rule("exact", "default", "api.example.com"))
    assert rule_for(push, "default", "api.example.com") == "default/exact"


def test_rules_for_one_host_merge_oldest_policy_first_and_all_subsets() -> None:
    push = context(
        kube_service("reviews"),
        destination_rule("newer", "default", "reviews", created="2024-02-01T00:00:00Z",
                         trafficPolicy={"loadBalancer": {"simple": "RANDOM"}},
                         subsets=[{"name": "v1", "labels": {"version": "new"}},
                                  {"name": "v3", "labels": {"version": "v3"}}]),
        destination_rule("older", "default", "reviews", created="2024-01-01T00:00:00Z",
                         trafficPolicy={"loadBalancer": {"simple": "LEAST_REQUEST"}},
                         subsets=[{"name": "v1", "labels": {"version": "v1"}}]),
    )
    svc = push.service("reviews.default.svc.cluster.local", "default")
    assert svc is not None
    dr = push.destination_rule("default", svc)
    assert dr is not None and dr.traffic_policy is not None
    assert dr.traffic_policy.load_balancer is not None
    assert dr.traffic_policy.load_balancer.simple == "LEAST_REQUEST"
    assert [(s.name, s.labels["version"]) for s in dr.subsets] == [("v1", "v1"), ("v3", "v3")]


def test_workload_selector_rules_are_not_used_for_outbound_traffic() -> None:
    push = context(kube_service("reviews"),
                   destination_rule("selected", "default", "reviews",
                                    workloadSelector={"matchLabels": {"app": "x"}}))
    assert rule_for(push, "default", "reviews.default.svc.cluster.local") is None


# -- gateways and versions ---------------------------------------------------------------------


def test_gateways_are_ordered_by_creation_time() -> None:
    def gateway(name: str, created: str) -> dict[str, Any]:
        return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                "metadata": {"name": name, "namespace": "default",
                             "creationTimestamp": created},
                "spec": {"servers": [{"port": {"number": 80, "name": "http",
                                               "protocol": "HTTP"}, "hosts": ["*"]}]}}
    push = context(gateway("b", "2024-01-01T00:00:00Z"), gateway("a", "2024-02-01T00:00:00Z"))
    assert [g.meta.name for g in push.gateways] == ["b", "a"]


def test_untouched_indexes_are_shared_with_the_previous_context() -> None:
    docs = [kube_service("reviews"), destination_rule("r", "default", "reviews"),
            virtual_service("vs", hosts=["reviews"],
                            http=[{"route": [{"destination": {"host": "reviews"}}]}])]
    objects = objects_of(docs)
    first, _ = build_push_context(objects, MESH, 1)
    changed = objects_of([destination_rule("r", "default", "reviews",
                                           trafficPolicy={"loadBalancer": {"simple": "RANDOM"}})])
    second_objects = {**objects, **changed}
    second, scope = build_push_context(second_objects, MESH, 2, first,
                                       {Key("DestinationRule", "default", "r")})
    assert scope.full
    assert second.version == 2
    assert second.services is first.services
    assert second.virtual_services is first.virtual_services
    assert second.destination_rules is not first.destination_rules
    svc = second.service("reviews.default.svc.cluster.local", "default")
    assert svc is not None
    dr = second.destination_rule("default", svc)
    assert dr is not None and dr.traffic_policy is not None


def test_a_mesh_config_change_rebuilds_everything() -> None:
    objects = objects_of([kube_service("reviews")])
    first, _ = build_push_context(objects, MESH, 1)
    other_mesh = MeshConfig(root_namespace="mesh-root")
    second, scope = build_push_context(objects, other_mesh, 2, first, set())
    assert scope.full
    assert second.services is not first.services
    assert second.mesh == other_mesh
