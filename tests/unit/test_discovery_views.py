"""Proxy views are recomputed only when their inputs (Pods, Services) change."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2

from pilotpy.discovery import Discovery, ProxyHandle
from pilotpy.mesh import MeshConfig
from pilotpy.store import ChangeSet
from pilotpy.xds.server import NodeRejected
from tests.unit.support import objects_of

NODE = "router~10.0.0.7~gw-1.istio-system~istio-system.svc.cluster.local"


def pod(labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "gw-1", "namespace": "istio-system", "labels": labels},
            "status": {"podIP": "10.0.0.7"}}


def gateway(hosts: list[str]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {"selector": {"istio": "ingressgateway"},
                     "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                  "hosts": hosts}]}}


def change(version: int, *docs: dict[str, Any], changed_kinds: set[str]) -> ChangeSet:
    objects = objects_of(docs)
    keys = frozenset(k for kind, by_key in objects.items() if kind in changed_kinds
                     for k in by_key)
    return ChangeSet(objects, keys, version)


def connected(plane: Discovery) -> ProxyHandle:
    node = base_pb2.Node(id=NODE)
    return plane.connect(node)


def test_views_survive_changes_they_do_not_depend_on() -> None:
    plane = Discovery(MeshConfig())
    labels = {"istio": "ingressgateway"}
    plane.update(change(1, pod(labels), gateway(["a.example.com"]),
                        changed_kinds={"Pod", "Gateway"}))
    handle = connected(plane)
    view = handle.view
    plane.update(change(2, pod(labels), gateway(["b.example.com"]), changed_kinds={"Gateway"}))
    assert handle.view is view, "a Gateway change recomputed the proxy's view"


def test_views_follow_their_pod() -> None:
    plane = Discovery(MeshConfig())
    plane.update(change(1, pod({"istio": "ingressgateway"}), gateway(["a.example.com"]),
                        changed_kinds={"Pod", "Gateway"}))
    handle = connected(plane)
    before = handle.key
    plane.update(change(2, pod({"istio": "egressgateway"}), gateway(["a.example.com"]),
                        changed_kinds={"Pod"}))
    assert handle.view.labels == {"istio": "egressgateway"}
    assert handle.key != before
    assert plane.snapshot(handle).get(
        "type.googleapis.com/envoy.config.listener.v3.Listener").by_name == {}


def test_a_published_mesh_config_replaces_the_starting_one() -> None:
    from pilotpy.discovery import Discovery
    from pilotpy.mesh import MESH_CONFIG_KIND, MeshConfig
    from pilotpy.model import Key
    from pilotpy.problems import ProblemLog
    from pilotpy.store import ChangeSet

    discovery = Discovery(MeshConfig(), ProblemLog())
    published = MeshConfig(outbound_traffic_policy="REGISTRY_ONLY")
    key = Key(MESH_CONFIG_KIND, "istio-system", "istio")
    discovery.update(ChangeSet({MESH_CONFIG_KIND: {key: published}}, frozenset({key}), 1))
    assert discovery.push is not None and discovery.push.mesh == published
    discovery.update(ChangeSet({}, frozenset({key}), 2))
    assert discovery.push.mesh == MeshConfig()


def gateway_selecting(selector: dict[str, str]) -> dict[str, Any]:
    doc = gateway(["a.example.com"])
    doc["spec"]["selector"] = selector
    return doc


def router(ip: str, team: str) -> base_pb2.Node:
    node = base_pb2.Node(id=f"router~{ip}~gw-{team}.istio-system~istio-system.svc.cluster.local")
    node.metadata.update({"LABELS": {"istio": "ingressgateway", "team": team}})
    return node


def test_a_selector_reading_a_new_label_splits_the_class_it_shared() -> None:
    """Proxies differing in a label no selector reads share a class; a Gateway that starts
    reading it (a Gateway change, no Pod or Service) gives each its own."""
    plane = Discovery(MeshConfig())
    plane.update(change(1, gateway_selecting({"istio": "ingressgateway"}),
                        changed_kinds={"Gateway"}))
    a = plane.connect(router("10.0.0.1", "a"))
    b = plane.connect(router("10.0.0.2", "b"))
    assert a.key == b.key and plane.class_count == 1
    plane.update(change(2, gateway_selecting({"istio": "ingressgateway", "team": "a"}),
                        changed_kinds={"Gateway"}))
    assert a.key != b.key and plane.class_count == 2
    listeners = "type.googleapis.com/envoy.config.listener.v3.Listener"
    assert plane.snapshot(a).get(listeners).by_name
    assert not plane.snapshot(b).get(listeners).by_name


def test_proxies_of_a_new_class_past_the_limit_are_refused_resource_exhausted(
        caplog: pytest.LogCaptureFixture) -> None:
    plane = Discovery(MeshConfig(), max_classes=2)
    plane.update(change(1, gateway_selecting({"team": "a"}), changed_kinds={"Gateway"}))
    plane.connect(router("10.0.0.1", "a"))
    plane.connect(router("10.0.0.2", "b"))
    with caplog.at_level("WARNING", logger="pilotpy.discovery"):
        for ip in ("10.0.0.3", "10.0.0.4"):
            with pytest.raises(NodeRejected) as refused:
                plane.connect(router(ip, "c"))
            assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(refused.value) == ("pilotpy serves at most 2 proxy classes (distinct configs) "
                                  "and has that many; retry later")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("2 proxy classes, the limit (--max-proxy-classes): refusing "
                              "gw-c.istio-system")
    assert plane.connect(router("10.0.0.5", "a")).key  # an existing class is still served
    assert (plane.proxy_count, plane.class_count, plane.refused_for_class_limit) == (3, 2, 2)
