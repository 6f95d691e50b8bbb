"""What a proxy class keeps across push contexts, and what classes share within one: after a
change of routing kinds only, the CDS and EDS sets are kept and equal a fresh generation;
ClusterLoadAssignments are built once per push context and proxy namespace."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from pilotpy.discovery import Discovery, ProxyHandle
from pilotpy.mesh import MeshConfig
from pilotpy.model import Key
from pilotpy.store import ChangeSet
from pilotpy.xds import types
from pilotpy.xds.resources import Snapshot
from tests.unit.support import objects_of

GATEWAY_NODE = "router~10.0.0.7~gw-1.istio-system~istio-system.svc.cluster.local"


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.9", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80}]}}


def endpoint_slice(name: str, address: str) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [address]}]}


def virtual_service(timeout: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"hosts": ["web.example.com"], "gateways": ["gw"],
                     "http": [{"timeout": timeout, "route": [{"destination": {"host": "web"}}]}]}}


GATEWAY = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
           "metadata": {"name": "gw", "namespace": "default"},
           "spec": {"selector": {"istio": "ingressgateway"},
                    "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                 "hosts": ["*.example.com"]}]}}


def node(node_id: str, labels: dict[str, str]) -> base_pb2.Node:
    out = base_pb2.Node(id=node_id)
    out.metadata.CopyFrom(struct_pb2.Struct())
    out.metadata.update({"LABELS": labels})
    return out


def update(plane: Discovery, version: int, docs: list[dict[str, Any]],
           changed: set[Key] | None = None) -> None:
    objects = objects_of(docs)
    keys = frozenset(changed if changed is not None else
                     {k for by_key in objects.values() for k in by_key})
    plane.update(ChangeSet(objects, keys, version))


def fresh(docs: list[dict[str, Any]], node_id: str, labels: dict[str, str]) -> Snapshot:
    plane = Discovery(MeshConfig())
    update(plane, 1, docs)
    return plane.snapshot(plane.connect(node(node_id, labels)))


def payloads(snapshot: Snapshot) -> dict[str, dict[str, bytes]]:
    return {type_url: {name: r.sotw_entry for name, r in snapshot.get(type_url).by_name.items()}
            for type_url in (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE)}


def _gateway_served(objects: list[dict[str, Any]]) -> tuple[Discovery, ProxyHandle, Snapshot]:
    """A plane at version 1 of `objects`, a gateway connected, and its first snapshot."""
    plane = Discovery(MeshConfig())
    update(plane, 1, objects)
    handle = plane.connect(node(GATEWAY_NODE, {"istio": "ingressgateway"}))
    return plane, handle, plane.snapshot(handle)


def test_a_routing_change_keeps_the_cluster_and_endpoint_sets_and_matches_a_fresh_build() -> None:
    before = [service("web"), endpoint_slice("web", "10.1.0.1"), GATEWAY,
              virtual_service("5s")]
    after = [*before[:3], virtual_service("7s")]
    plane, handle, first = _gateway_served(before)
    update(plane, 2, after, {Key("VirtualService", "default", "web")})
    second = plane.snapshot(handle)
    assert second.get(types.CLUSTER) is first.get(types.CLUSTER)
    assert second.get(types.ENDPOINT) is first.get(types.ENDPOINT)
    assert second.get(types.ROUTE) != first.get(types.ROUTE)
    assert payloads(second) == payloads(fresh(after, GATEWAY_NODE, {"istio": "ingressgateway"}))


def test_a_destination_rule_change_rebuilds_the_clusters() -> None:
    rule = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"host": "web", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}
    before = [service("web"), endpoint_slice("web", "10.1.0.1"), GATEWAY,
              virtual_service("5s")]
    plane, handle, first = _gateway_served(before)
    update(plane, 2, [*before, rule], {Key("DestinationRule", "default", "web")})
    second = plane.snapshot(handle)
    assert "outbound|80|v1|web.default.svc.cluster.local" in second.get(types.CLUSTER).by_name
    assert "outbound|80|v1|web.default.svc.cluster.local" not in first.get(
        types.CLUSTER).by_name


def test_classes_in_one_namespace_share_their_assignments() -> None:
    docs = [service("web"), endpoint_slice("web", "10.1.0.1")]
    plane = Discovery(MeshConfig())
    update(plane, 1, docs)
    sidecars = [plane.snapshot(plane.connect(node(
        f"sidecar~10.2.0.{i}~app-{i}.default~default.svc.cluster.local", {"app": f"app-{i}"})))
        for i in (1, 2)]
    name = "outbound|80||web.default.svc.cluster.local"
    one, two = (s.get(types.ENDPOINT).by_name[name] for s in sidecars)
    assert one is two


def test_classes_share_their_cluster_resources() -> None:
    docs = [service("web"), endpoint_slice("web", "10.1.0.1")]
    plane = Discovery(MeshConfig())
    update(plane, 1, docs)
    sidecars = [plane.snapshot(plane.connect(node(
        f"sidecar~10.2.0.{i}~app-{i}.default~default.svc.cluster.local", {"app": f"app-{i}"})))
        for i in (1, 2)]
    name = "outbound|80||web.default.svc.cluster.local"
    one, two = (s.get(types.CLUSTER).by_name[name] for s in sidecars)
    assert one is two
    update(plane, 2, [*docs, endpoint_slice("web", "10.1.0.2")],
           {Key("EndpointSlice", "default", "web")})
    update(plane, 3, [service("web"), endpoint_slice("web", "10.1.0.2"), virtual_service("5s")])
    third = plane.snapshot(plane.connect(node(
        "sidecar~10.2.0.3~app-3.default~default.svc.cluster.local", {"app": "app-3"})))
    assert third.get(types.CLUSTER).by_name[name] is not one  # a new context builds anew


def _service_in(name: str, namespace: str, vip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": vip, "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80}]}}


def _mesh_vs(namespace: str, timeout: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"hosts": ["web"], "http": [{"timeout": timeout,
                                                 "route": [{"destination": {"host": "web"}}]}]}}


def _namespace_only(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "default", "namespace": namespace},
            "spec": {"egress": [{"hosts": ["./*"]}]}}


def _sidecar_node(namespace: str) -> tuple[str, dict[str, str]]:
    return (f"sidecar~10.2.0.9~client-0.{namespace}~{namespace}.svc.cluster.local",
            {"app": "client"})


def _two_namespaces(scoped: bool, timeout: str) -> list[dict[str, Any]]:
    docs = [_service_in("web", "a", "10.96.1.1"), _service_in("web", "b", "10.96.2.1"),
            _mesh_vs("a", timeout), GATEWAY]
    return [*docs, _namespace_only("a"), _namespace_only("b")] if scoped else docs


def test_a_sidecar_class_whose_scope_hides_a_changed_virtual_service_keeps_its_snapshot() -> None:
    before, after = _two_namespaces(True, "5s"), _two_namespaces(True, "7s")
    plane = Discovery(MeshConfig())
    update(plane, 1, before)
    handles = {ns: plane.connect(node(*_sidecar_node(ns))) for ns in ("a", "b")}
    first = {ns: plane.snapshot(h) for ns, h in handles.items()}
    update(plane, 2, after, {Key("VirtualService", "a", "web")})
    second = {ns: plane.snapshot(h) for ns, h in handles.items()}
    # b's Sidecar imports only its own namespace: a's VirtualService never reaches it, and
    # its streams need not even wake up.
    assert second["b"].resources == first["b"].resources
    assert not plane.needs_push(handles["b"]) and plane.needs_push(handles["a"])
    assert second["b"].version == "2"
    assert second["a"].get(types.ROUTE) is not first["a"].get(types.ROUTE)
    for ns in ("a", "b"):
        assert payloads(second[ns]) == payloads(fresh(after, *_sidecar_node(ns)))
    # A Gateway change reaches no sidecar; it still reaches a gateway class.
    router = plane.connect(node(GATEWAY_NODE, {"istio": "ingressgateway"}))
    plane.snapshot(router)
    gateway = {**GATEWAY, "metadata": {"name": "gw", "namespace": "default",
                                       "labels": {"edited": "yes"}}}
    update(plane, 3, [*after[:3], gateway, *after[4:]], {Key("Gateway", "default", "gw")})
    assert plane.snapshot(handles["a"]).resources == second["a"].resources
    assert plane.snapshot(handles["b"]).resources == second["b"].resources
    assert not plane.needs_push(handles["a"]) and plane.needs_push(router)


def test_without_a_sidecar_resource_every_sidecar_class_sees_a_changed_virtual_service() -> None:
    before, after = _two_namespaces(False, "5s"), _two_namespaces(False, "7s")
    plane = Discovery(MeshConfig())
    update(plane, 1, before)
    handle = plane.connect(node(*_sidecar_node("b")))
    first = plane.snapshot(handle)
    update(plane, 2, after, {Key("VirtualService", "a", "web")})
    second = plane.snapshot(handle)
    assert second.get(types.ROUTE) is not first.get(types.ROUTE)
    assert payloads(second) == payloads(fresh(after, *_sidecar_node("b")))


def _gateway_vs(name: str, host: str, timeout: str = "5s") -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": [host], "gateways": ["gw"],
                     "http": [{"timeout": timeout, "route": [{"destination": {"host": "web"}}]}]}}


HASH_RULE = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
             "metadata": {"name": "web", "namespace": "default"},
             "spec": {"host": "web", "trafficPolicy": {
                 "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}}}


def test_gateway_routes_of_unchanged_virtual_services_are_kept_across_contexts() -> None:
    base = [service("web"), endpoint_slice("web", "10.1.0.1"), GATEWAY,
            _gateway_vs("a", "a.example.com"), _gateway_vs("b", "b.example.com")]
    steps = [
        # (changed documents, whether a's routes may be kept)
        ([_gateway_vs("b", "b.example.com", "7s")], True),
        # with endpoints in the same change set (routes read none)
        ([_gateway_vs("b", "b.example.com", "8s"), endpoint_slice("web", "10.1.0.9")], True),
        ([_gateway_vs("b", "b.example.com", "9s"), HASH_RULE], False),
    ]
    # The store hands over the very objects of unchanged keys, changed ones anew.
    objects = objects_of(base)
    plane = Discovery(MeshConfig())
    plane.update(ChangeSet(objects, frozenset(k for v in objects.values() for k in v), 1))
    handle = plane.connect(node(GATEWAY_NODE, {"istio": "ingressgateway"}))
    plane.snapshot(handle)

    def routes_of_a() -> Any:
        assert plane.push is not None
        (found,) = [v[1] for k, v in plane.push._kept.items() if k[1][-3] == "a"]
        return found

    docs = list(base)
    for version, (changed_docs, keeps) in enumerate(steps, start=2):
        before = routes_of_a()
        changed = objects_of(changed_docs)
        objects = {kind: {**objects.get(kind, {}), **changed.get(kind, {})}
                   for kind in {*objects, *changed}}
        plane.update(ChangeSet(objects, frozenset(k for v in changed.values() for k in v),
                               version))
        replaced = {(d["kind"], d["metadata"]["name"]) for d in changed_docs}
        docs = [d for d in docs if (d["kind"], d["metadata"]["name"]) not in replaced]
        docs += changed_docs
        after = plane.snapshot(handle)
        assert payloads(after) == payloads(fresh(docs, GATEWAY_NODE, {"istio": "ingressgateway"}))
        assert (routes_of_a() is before) is keeps


def test_an_endpoint_change_wakes_only_the_classes_holding_the_cluster() -> None:
    def slice_in(namespace: str, address: str) -> dict[str, Any]:
        return {**endpoint_slice("web", address),
                "metadata": {"name": "web", "namespace": namespace,
                             "labels": {"kubernetes.io/service-name": "web"}}}

    docs = [*_two_namespaces(True, "5s"), slice_in("a", "10.1.0.1"), slice_in("b", "10.2.0.1")]
    plane = Discovery(MeshConfig())
    update(plane, 1, docs)
    handles = {ns: plane.connect(node(*_sidecar_node(ns))) for ns in ("a", "b")}
    for handle in handles.values():
        plane.snapshot(handle)
    update(plane, 2, [*docs[:-2], slice_in("a", "10.1.0.2"), docs[-1]],
           {Key("EndpointSlice", "a", "web")})
    assert plane.needs_push(handles["a"]) and not plane.needs_push(handles["b"])


def _slice_in(namespace: str, address: str) -> dict[str, Any]:
    return {**endpoint_slice("web", address),
            "metadata": {"name": "web", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": "web"}}}


def _two_namespaces_with_slices(timeout: str, a: str, b: str) -> list[dict[str, Any]]:
    return [*_two_namespaces(True, timeout), _slice_in("a", a), _slice_in("b", b)]


SLICE_A, SLICE_B = Key("EndpointSlice", "a", "web"), Key("EndpointSlice", "b", "web")
VS_A = Key("VirtualService", "a", "web")


def _mixed_plane() -> tuple[Discovery, dict[str, Any], dict[str, Snapshot]]:
    plane = Discovery(MeshConfig())
    update(plane, 1, _two_namespaces_with_slices("5s", "10.1.0.1", "10.2.0.1"))
    handles = {ns: plane.connect(node(*_sidecar_node(ns))) for ns in ("a", "b")}
    return plane, handles, {ns: plane.snapshot(h) for ns, h in handles.items()}


def test_a_mixed_change_set_costs_the_union_of_its_parts() -> None:
    # a's VirtualService and b's endpoints change in one debounced change set: a regenerates
    # its listeners and routes only, b refreshes its EDS only; neither rebuilds its clusters.
    plane, handles, first = _mixed_plane()
    after = _two_namespaces_with_slices("7s", "10.1.0.1", "10.2.0.2")
    update(plane, 2, after, {VS_A, SLICE_B})
    second = {ns: plane.snapshot(h) for ns, h in handles.items()}
    assert plane.needs_push(handles["a"]) and plane.needs_push(handles["b"])
    assert second["a"].get(types.ROUTE) is not first["a"].get(types.ROUTE)
    for type_url in (types.CLUSTER, types.ENDPOINT):
        assert second["a"].get(type_url) is first["a"].get(type_url)
    for type_url in (types.CLUSTER, types.LISTENER, types.ROUTE):
        assert second["b"].get(type_url) is first["b"].get(type_url)
    assert second["b"].get(types.ENDPOINT) != first["b"].get(types.ENDPOINT)
    for ns in ("a", "b"):
        assert second[ns].version == "2"
        assert payloads(second[ns]) == payloads(fresh(after, *_sidecar_node(ns)))


def test_a_mixed_change_set_wakes_no_class_neither_part_reaches() -> None:
    plane, handles, first = _mixed_plane()
    after = _two_namespaces_with_slices("7s", "10.1.0.2", "10.2.0.1")
    update(plane, 2, after, {VS_A, SLICE_A})
    second = {ns: plane.snapshot(h) for ns, h in handles.items()}
    assert plane.needs_push(handles["a"]) and not plane.needs_push(handles["b"])
    assert second["b"].resources == first["b"].resources
    # a is reached by both parts: new routes and new endpoints over its kept clusters.
    assert second["a"].get(types.CLUSTER) is first["a"].get(types.CLUSTER)
    assert second["a"].get(types.ENDPOINT) != first["a"].get(types.ENDPOINT)
    for ns in ("a", "b"):
        assert payloads(second[ns]) == payloads(fresh(after, *_sidecar_node(ns)))


def test_endpoints_changed_while_a_class_kept_only_its_clusters_reach_its_next_snapshot() -> None:
    # No stream of a asks between the changes: the snapshot it finally generates keeps the
    # clusters of version 1 and still carries the endpoints of version 3.
    plane, handles, _ = _mixed_plane()
    update(plane, 2, _two_namespaces_with_slices("7s", "10.1.0.1", "10.2.0.1"), {VS_A})
    after = _two_namespaces_with_slices("9s", "10.1.0.3", "10.2.0.1")
    update(plane, 3, after, {VS_A, SLICE_A})
    assert payloads(plane.snapshot(handles["a"])) == payloads(fresh(after, *_sidecar_node("a")))


def test_a_gateway_class_in_a_mixed_change_set_keeps_its_clusters_and_gets_new_endpoints() -> None:
    before = [service("web"), endpoint_slice("web", "10.1.0.1"), GATEWAY,
              virtual_service("5s")]
    after = [service("web"), endpoint_slice("web", "10.1.0.2"), GATEWAY,
             virtual_service("7s")]
    plane, handle, first = _gateway_served(before)
    update(plane, 2, after, {Key("VirtualService", "default", "web"),
                             Key("EndpointSlice", "default", "web")})
    second = plane.snapshot(handle)
    assert second.get(types.CLUSTER) is first.get(types.CLUSTER)
    assert second.get(types.ENDPOINT) != first.get(types.ENDPOINT)
    assert second.get(types.ROUTE) != first.get(types.ROUTE)
    assert payloads(second) == payloads(fresh(after, GATEWAY_NODE, {"istio": "ingressgateway"}))


def test_a_mixed_change_set_with_a_headless_service_endpoint_regenerates_in_full() -> None:
    # A headless service's endpoints are b's listener addresses: b, which a's VirtualService
    # does not reach, still regenerates its listeners.
    headless = _service_in("db", "b", "None")
    db_slice = {**_slice_in("b", "10.2.0.7"),
                "metadata": {"name": "db", "namespace": "b",
                             "labels": {"kubernetes.io/service-name": "db"}}}
    moved = {**db_slice, "endpoints": [{"addresses": ["10.2.0.8"]}]}
    plane = Discovery(MeshConfig())
    update(plane, 1, [*_two_namespaces(True, "5s"), headless, db_slice])
    handle = plane.connect(node(*_sidecar_node("b")))
    first = plane.snapshot(handle)
    after = [*_two_namespaces(True, "7s"), headless, moved]
    update(plane, 2, after, {VS_A, Key("EndpointSlice", "b", "db")})
    second = plane.snapshot(handle)
    assert second.get(types.LISTENER) != first.get(types.LISTENER)
    assert payloads(second) == payloads(fresh(after, *_sidecar_node("b")))


def test_assignments_of_unchanged_endpoints_outlive_a_routing_change() -> None:
    # A class new after the change set (the web workload) shares the assignment built
    # before it for a's web, whose endpoints did not change; b's changed one is built anew.
    plane, _, first = _mixed_plane()
    update(plane, 2, _two_namespaces_with_slices("7s", "10.1.0.1", "10.2.0.2"), {VS_A, SLICE_B})
    late = {ns: plane.snapshot(plane.connect(node(
        f"sidecar~10.2.0.8~web-0.{ns}~{ns}.svc.cluster.local", {"app": "web"})))
        for ns in ("a", "b")}
    a_name = "outbound|80||web.a.svc.cluster.local"
    b_name = "outbound|80||web.b.svc.cluster.local"
    assert late["a"].get(types.ENDPOINT).by_name[a_name] is first["a"].get(
        types.ENDPOINT).by_name[a_name]
    assert late["b"].get(types.ENDPOINT).by_name[b_name] != first["b"].get(
        types.ENDPOINT).by_name[b_name]


def test_classes_of_namespaces_resolving_a_cluster_alike_share_its_assignment() -> None:
    # Sidecars of a and b resolve web to the same service and no DestinationRule: one
    # assignment. c's own DestinationRule keeps unhealthy endpoints out (outlier detection
    # with a minimum of healthy hosts): c gets its own.
    web_slice = endpoint_slice("web", "10.1.0.1")
    web_slice["endpoints"].append({"addresses": ["10.1.0.2"],
                                   "conditions": {"ready": False, "terminating": False}})
    rule = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "web", "namespace": "c"},
            "spec": {"host": "web.default.svc.cluster.local", "trafficPolicy": {
                "outlierDetection": {"consecutive5xxErrors": 3, "minHealthPercent": 50}}}}
    docs = [service("web"), web_slice, rule]
    plane = Discovery(MeshConfig())
    update(plane, 1, docs)
    snapshots = {ns: plane.snapshot(plane.connect(node(*_sidecar_node(ns))))
                 for ns in ("a", "b", "c")}
    name = "outbound|80||web.default.svc.cluster.local"
    a, b, c = (snapshots[ns].get(types.ENDPOINT).by_name[name] for ns in ("a", "b", "c"))
    assert a is b
    assert c.sotw_entry != a.sotw_entry
    for ns, snapshot in snapshots.items():
        assert payloads(snapshot) == payloads(fresh(docs, *_sidecar_node(ns)))


def test_a_class_keeps_its_proxies_across_changes_that_keep_every_view() -> None:
    # An endpoint change carries each class over whole (no proxy's view is recomputed):
    # the class lives until its last proxy leaves, as after a change that recomputes views.
    docs = _two_namespaces_with_slices("5s", "10.1.0.1", "10.2.0.1")
    plane = Discovery(MeshConfig())
    update(plane, 1, docs)
    ids = [f"sidecar~10.2.0.{i}~client-{i}.a~a.svc.cluster.local" for i in (1, 2)]
    first, second = (plane.connect(node(i, {"app": "client"})) for i in ids)
    plane.snapshot(first)
    update(plane, 2, _two_namespaces_with_slices("5s", "10.1.0.2", "10.2.0.1"), {SLICE_A})
    assert plane.class_count == 1 and plane.proxy_count == 2
    plane.disconnect(first)
    assert plane.class_count == 1
    assert payloads(plane.snapshot(second)) == payloads(
        fresh(_two_namespaces_with_slices("5s", "10.1.0.2", "10.2.0.1"), *_sidecar_node("a")))
    plane.disconnect(second)
    assert plane.class_count == 0
