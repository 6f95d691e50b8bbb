"""What a push context and discovery retain between generations, as bytes rather than
protobuf messages: a message holds a protobuf (upb) arena of a few kB whatever its size on
the wire, so S1 at 10k services held 54 MB of kept gateway routes and 27 MB of shared
clusters as messages (docs/benchmarks.md). The memory itself is measured by the benchmark,
never here; these tests hold the structural rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from pilotpy.discovery import NO_CLASSES, Discovery
from pilotpy.mesh import MeshConfig
from pilotpy.model import Key
from pilotpy.store import ChangeSet
from pilotpy.translate.clusters import SharedCluster
from tests.unit.support import objects_of
from tests.unit.test_discovery_reuse import (
    GATEWAY,
    GATEWAY_NODE,
    endpoint_slice,
    node,
    payloads,
    service,
    update,
)

RULE = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"host": "web", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}


def _vs(name: str, host: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": [host, "web"], "gateways": ["gw", "mesh"],
                     "http": [{"match": [{"uri": {"prefix": "/api"}}], "timeout": "5s",
                               "route": [{"destination": {"host": "web", "subset": "v1"}}]},
                              {"route": [{"destination": {"host": "web"}}]}]}}


DOCS = [service("web"), endpoint_slice("web", "10.1.0.1"), GATEWAY, RULE,
        _vs("a", "a.example.com"), _vs("b", "b.example.com")]


def _messages(value: Any) -> Iterator[Message]:
    """Protobuf messages in `value`, looking into containers and shared clusters."""
    if isinstance(value, Message):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _messages(item)
    elif isinstance(value, tuple | list | frozenset | set):
        for item in value:
            yield from _messages(item)


def _generated() -> Discovery:
    plane = Discovery(MeshConfig())
    update(plane, 1, DOCS)
    for node_id, labels in ((GATEWAY_NODE, {"istio": "ingressgateway"}),
                            ("sidecar~10.2.0.1~app-1.default~default.svc.cluster.local",
                             {"app": "app-1"})):
        plane.snapshot(plane.connect(node(node_id, labels)))
    return plane


def test_kept_gateway_routes_are_bytes_not_messages() -> None:
    plane = _generated()
    assert plane.push is not None
    kept = plane.push._kept
    assert kept, "the gateway's routes are kept"
    assert not list(_messages(kept))
    # ... and still after a change that keeps them (a VirtualService edit).
    update(plane, 2, [*DOCS[:-1], _vs("b", "c.example.com")],
           {Key("VirtualService", "default", "b")})
    handle = plane.connect(node(GATEWAY_NODE, {"istio": "ingressgateway"}))
    plane.snapshot(handle)
    assert plane.push._kept and not list(_messages(plane.push._kept))


def test_shared_clusters_are_bytes_in_the_push_memo_and_in_discovery() -> None:
    plane = _generated()
    assert plane.push is not None
    memo = plane.push._memo
    shared = [v[0] for k, v in memo.items() if k[0] == "outbound-cluster"]
    assert shared and all(isinstance(c, SharedCluster) for c in shared)
    assert not list(_messages(memo))
    held = [entry[0] for entry in plane._cluster_resources.values()]
    assert any(isinstance(c, SharedCluster) for c in held)
    assert not [c for c in held if isinstance(c, cluster_pb2.Cluster)
                and c.name.startswith("outbound|")]


def test_a_shared_cluster_serves_the_bytes_of_its_message() -> None:
    plane = _generated()
    snapshot = plane.snapshot(plane.connect(node(GATEWAY_NODE, {"istio": "ingressgateway"})))
    assert plane.push is not None
    for key, value in plane.push._memo.items():
        cluster = value[0] if key[0] == "outbound-cluster" else None
        if cluster is not None:
            message = cluster.message()
            assert message.SerializeToString(deterministic=True) == cluster.data
            assert message.name == cluster.name
            assert cluster.eds_service_name == message.eds_cluster_config.service_name
    assert set(payloads(snapshot)[
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"]) >= {
        "outbound|80||web.default.svc.cluster.local",
        "outbound|80|v1|web.default.svc.cluster.local"}


def test_object_changes_depending_on_no_class_share_one_empty_set() -> None:
    plane = Discovery(MeshConfig())
    update(plane, 1, DOCS)
    changes = list(plane.object_changes.values())
    assert len(changes) >= 4
    assert all(change.before is NO_CLASSES for change in changes)


def test_kept_routes_of_a_class_no_longer_connected_are_dropped() -> None:
    # The store hands over the very objects of unchanged keys, changed ones anew.
    objects = objects_of(DOCS)
    plane = Discovery(MeshConfig())
    plane.update(ChangeSet(objects, frozenset(k for v in objects.values() for k in v), 1))
    gateways = [plane.connect(node(f"router~10.0.0.{i}~gw-{i}.istio-system~istio-system"
                                   ".svc.cluster.local", {"istio": "ingressgateway"}))
                for i in (1, 2)]
    plane.snapshot(gateways[0])
    assert plane.push is not None and plane.push._kept
    classes = {key[0] for key in plane.push._kept}

    def edit_b(version: int, host: str) -> None:
        changed = objects_of([_vs("b", host)])
        merged = {**objects, "VirtualService": {**objects["VirtualService"],
                                                **changed["VirtualService"]}}
        plane.update(ChangeSet(merged, frozenset(changed["VirtualService"]), version))

    # One proxy of the class is still connected: a VirtualService change keeps its routes.
    plane.disconnect(gateways[0])
    edit_b(2, "c.example.com")
    assert {key[0] for key in plane.push._kept} == classes
    # The last one gone, the next context carries nothing of the class over.
    plane.disconnect(gateways[1])
    edit_b(3, "d.example.com")
    assert not plane.push._kept


def test_resources_hold_the_shared_bytes_they_are_written_from_not_copies() -> None:
    """A route configuration's resource holds the kept gateway routes and the sidecar's
    shared route bytes themselves, a shared cluster's resource its bytes: no joined copy."""
    plane = Discovery(MeshConfig())
    update(plane, 1, DOCS)
    gateway = plane.snapshot(plane.connect(node(GATEWAY_NODE, {"istio": "ingressgateway"})))
    sidecar = plane.snapshot(plane.connect(node(
        "sidecar~10.2.0.1~app-1.default~default.svc.cluster.local", {"app": "app-1"})))
    assert plane.push is not None

    def parts(snapshot: Any, type_url: str) -> set[int]:
        return {id(p) for r in snapshot.get(type_url).by_name.values() for p in r._parts}

    route_url = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    kept = [v[1] for v in plane.push._kept.values()]
    assert kept and all(id(r.others) in parts(gateway, route_url)
                        for r in kept if r.others)
    shared_routes = [v for k, v in plane.push._memo.items() if k[0] == "sidecar-vs-routes"]
    assert shared_routes and all(id(r) in parts(sidecar, route_url) for r in shared_routes)
    cluster_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    shared = [v[0] for k, v in plane.push._memo.items()
              if k[0] == "outbound-cluster" and v[0] is not None]
    served = parts(gateway, cluster_url) | parts(sidecar, cluster_url)
    assert shared and all(id(c.data) in served for c in shared)
