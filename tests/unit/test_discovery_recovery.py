"""A failed push-context build keeps the last good config and makes the next build a full one."""

from __future__ import annotations

from typing import Any

import pytest

from pilotpy import discovery
from pilotpy.discovery import Discovery
from pilotpy.mesh import MeshConfig
from pilotpy.model import Key, parse_object
from pilotpy.push import build_push_context
from pilotpy.store import ChangeSet


def change(version: int, port: int) -> ChangeSet:
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "ns"},
           "spec": {"selector": {"app": "a"}, "ports": [{"name": "http", "port": port}]}}
    obj = parse_object(doc).obj
    return ChangeSet({"Service": {obj.meta.key: obj}}, frozenset({obj.meta.key}), version)


def test_failed_build_keeps_the_previous_context_and_rebuilds_fully_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plane = Discovery(MeshConfig())
    plane.update(change(1, 80))
    good = plane.push
    real = build_push_context
    calls: list[Any] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[4])
        raise RuntimeError("boom")

    monkeypatch.setattr(discovery, "build_push_context", failing)
    with pytest.raises(RuntimeError):
        plane.update(change(2, 81))
    assert plane.push is good, "a failed build must not replace the last good context"

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[4])
        return real(*args, **kwargs)

    monkeypatch.setattr(discovery, "build_push_context", recording)
    plane.update(change(3, 82))
    assert calls[-1] is None, "the build after a failure must be a full one"
    assert plane.push is not None and plane.push.version == 3
    service = plane.push.services.kube_service("ns", "a")
    assert service is not None and service.ports[0].number == 82
    plane.update(change(4, 83))
    assert calls[-1] == frozenset({Key("Service", "ns", "a")}), "then incremental again"


def _node(node_id: str, labels: dict[str, str]) -> Any:
    from envoy.config.core.v3 import base_pb2
    from google.protobuf import json_format

    node = base_pb2.Node(id=node_id)
    json_format.ParseDict({"LABELS": labels}, node.metadata)
    return node


GATEWAY = "router~10.0.0.1~gw-1.istio-system~istio-system.svc.cluster.local"
SIDECAR = "sidecar~10.0.0.2~a-1.ns~ns.svc.cluster.local"


def test_a_failing_class_keeps_its_last_good_config_and_spares_the_others(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A translation bug hit by one proxy class: that class keeps serving its last good
    snapshot, every other class gets the new config, the failure is logged once per push
    context and counted."""
    from pilotpy.xds.server import ConfigUnavailable

    plane = Discovery(MeshConfig())
    plane.update(change(1, 80))
    gateway = plane.connect(_node(GATEWAY, {"istio": "ingressgateway"}))
    sidecar = plane.connect(_node(SIDECAR, {"app": "a"}))
    good = plane.snapshot(gateway)
    plane.snapshot(sidecar)
    from pilotpy.translate.generate import generate as real

    def broken_for_routers(push: Any, view: Any, **options: Any) -> Any:
        if view.proxy.is_router:
            raise KeyError("a translation bug")
        return real(push, view, **options)

    monkeypatch.setattr(discovery, "generate", broken_for_routers)
    plane.update(change(2, 81))
    with caplog.at_level("ERROR", logger="pilotpy.discovery"):
        assert plane.snapshot(gateway) is good
        assert plane.snapshot(gateway) is good
    assert plane.snapshot(sidecar).version == "2"
    (record,) = [r for r in caplog.records
                 if r.name == "pilotpy.discovery" and r.levelname == "ERROR"]
    assert "router class of gw-1.istio-system" in record.getMessage()
    assert "push context 2" in record.getMessage()
    assert "serving its last good config" in record.getMessage()
    assert record.exc_info is not None
    assert plane.generation_failures == {"router": 1}

    # A class that never had config gets none: its streams are refused and retry.
    newcomer = plane.connect(_node(GATEWAY.replace("istio-system", "other"), {"istio": "x"}))
    with pytest.raises(ConfigUnavailable, match="push context 2"):
        plane.snapshot(newcomer)

    # The bug fixed, the next push context serves everyone again.
    monkeypatch.setattr(discovery, "generate", real)
    plane.update(change(3, 82))
    assert plane.snapshot(gateway).version == "3"
    assert plane.snapshot(newcomer).version == "3"


def test_shared_prototypes_cannot_be_changed_through_what_callers_get() -> None:
    """The default retry policy and the cluster prototype are cached; a caller changing what
    it was handed must not change them for every route and cluster after it. (Classes share
    a push context's outbound clusters as bytes: the message looked at is built anew.)"""
    from pilotpy.translate.clusters import build_outbound_cluster
    from pilotpy.translate.retry import retry_policy

    policy = retry_policy(None, consistent_hash=False)
    assert policy is not None
    policy.num_retries.value = 99
    policy.retry_host_predicate.add(name="stray")
    again = retry_policy(None, consistent_hash=False)
    assert again is not None and again.num_retries.value == 2
    assert [p.name for p in again.retry_host_predicate] == [
        "envoy.retry_host_predicates.previous_hosts"]

    push, _ = build_push_context(change(1, 80).objects, MeshConfig(), 1)
    (service,) = [s for s in push.services.all if s.namespace == "ns"]

    def build() -> Any:
        cluster, _ = build_outbound_cluster(push, service, service.ports[0], subset="",
                                            rule=None, subset_labels=None)
        assert cluster is not None
        return cluster

    first = build()
    first.circuit_breakers.thresholds.add().max_connections.value = 1
    first.connect_timeout.seconds = 99
    second = build()
    assert len(second.circuit_breakers.thresholds) == 1
    assert second.connect_timeout.seconds == 10
