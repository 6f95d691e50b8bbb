"""What a proxy class keeps across push contexts, and what classes share within one: after a
change of routing kinds only, the CDS and EDS sets are kept and equal a fresh generation;
ClusterLoadAssignments are built once per push context and proxy namespace."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from pilotpy.discovery import Discovery
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


def test_a_routing_change_keeps_the_cluster_and_endpoint_sets_and_matches_a_fresh_build() -> None:
    before = [service("web"), endpoint_slice("web", "10.1.0.1"), GATEWAY,
              virtual_service("5s")]
    after = [*before[:3], virtual_service("7s")]
    plane = Discovery(MeshConfig())
    update(plane, 1, before)
    handle = plane.connect(node(GATEWAY_NODE, {"istio": "ingressgateway"}))
    first = plane.snapshot(handle)
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
    plane = Discovery(MeshConfig())
    update(plane, 1, before)
    handle = plane.connect(node(GATEWAY_NODE, {"istio": "ingressgateway"}))
    first = plane.snapshot(handle)
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
