"""The kube source's sinks: API objects -> validated model objects in store partitions."""

from __future__ import annotations

from typing import Any

from pilotpy.mesh import MESH_CONFIG_KIND, MeshConfig
from pilotpy.model import Key
from pilotpy.model.kinds import Kind
from pilotpy.problems import ProblemLog
from pilotpy.sources.kube.kinds import watched_kinds
from pilotpy.sources.kube.source import _MeshConfigSink, _ObjectSink
from pilotpy.store import Store

VS_KIND = next(k for k in watched_kinds("istio-system") if k.kind == "VirtualService")


def vs(name: str, weight: int = 100) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
            "spec": {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"},
                                                          "weight": weight}]}]}}


def sink() -> tuple[_ObjectSink, Store, ProblemLog]:
    store = Store(clock=lambda: 0.0)
    diagnostics = ProblemLog()
    return _ObjectSink(VS_KIND, store, diagnostics), store, diagnostics


def stored(store: Store) -> dict[Key, Any]:
    return dict(store.snapshot().objects.get("VirtualService", {}))


def test_invalid_object_is_reported_and_skipped_next_to_valid_ones() -> None:
    s, store, diagnostics = sink()
    s.replace([vs("good"), vs("bad", weight=-1)])
    assert set(stored(store)) == {Key("VirtualService", "default", "good")}
    [problem] = diagnostics.errors()
    assert "VirtualService default/bad" in str(problem)
    assert "spec.http[0].route[0].weight" in str(problem)


def test_edit_into_an_invalid_state_keeps_the_last_valid_version() -> None:
    s, store, diagnostics = sink()
    s.upsert(vs("r", weight=100))
    s.upsert(vs("r", weight=-5))
    [obj] = stored(store).values()
    assert obj.http[0].route[0].weight == 100
    assert "keeping its last valid version" in str(diagnostics.errors()[0])
    s.upsert(vs("r", weight=100))
    assert diagnostics.errors() == []


def test_delete_removes_the_object_and_its_report() -> None:
    s, store, diagnostics = sink()
    s.replace([vs("a"), vs("bad", weight=-1)])
    s.delete(vs("a"))
    s.delete(vs("bad", weight=-1))
    assert stored(store) == {}
    assert diagnostics.problems() == []


def test_relist_drops_what_was_deleted_meanwhile_and_its_reports() -> None:
    s, store, diagnostics = sink()
    s.replace([vs("a"), vs("b"), vs("bad", weight=-1)])
    s.replace([vs("b")])
    assert set(stored(store)) == {Key("VirtualService", "default", "b")}
    assert diagnostics.problems() == []


def test_mesh_config_map_is_published_and_a_broken_one_keeps_the_last() -> None:
    store = Store(clock=lambda: 0.0)
    diagnostics = ProblemLog()
    mesh = _MeshConfigSink(store, diagnostics)
    cm = {"metadata": {"name": "istio", "namespace": "istio-system"},
          "data": {"mesh": "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n"}}
    mesh.replace([cm])
    [config] = store.snapshot().objects[MESH_CONFIG_KIND].values()
    assert config == MeshConfig(outbound_traffic_policy="REGISTRY_ONLY")
    mesh.upsert({**cm, "data": {"mesh": "outboundTrafficPolicy: {mode: SOMETIMES}"}})
    assert not store.pending
    assert "ConfigMap istio-system/istio" in str(diagnostics.errors()[0])
    mesh.delete(cm)
    assert MESH_CONFIG_KIND not in store.snapshot().objects or not store.snapshot(
    ).objects[MESH_CONFIG_KIND]
    assert diagnostics.problems() == []


def test_the_kube_source_watches_every_kind_pilotpy_reads() -> None:
    """What the file source reads, the API server gives too (PeerAuthentication was once
    left out: `serve --kube` enforced none)."""
    watched = {k.kind for k in watched_kinds("istio-system")}
    assert [k for k in Kind if k not in watched] == [Kind.MESH_CONFIG]


AP_KIND = next(k for k in watched_kinds("istio-system") if k.kind == "AuthorizationPolicy")


def deny(name: str, path: str) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
            "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": [path]}}]}]}}


def policies(store: Store) -> dict[Key, Any]:
    return dict(store.snapshot().objects.get("AuthorizationPolicy", {}))


def test_an_invalid_policy_without_a_valid_version_is_served_as_its_stand_in() -> None:
    """Fail closed: the stand-in denies everything until the policy is corrected; it is
    never taken for a last valid version; deleting the policy removes it."""
    store, diagnostics = Store(clock=lambda: 0.0), ProblemLog()
    s = _ObjectSink(AP_KIND, store, diagnostics)
    s.upsert(deny("d", "/a/{**}/{*}"))
    [stand_in] = policies(store).values()
    assert stand_in.stand_in and stand_in.rules[0].operations == ()
    s.replace([deny("d", "/a/{**}/{*}")])
    assert [p.stand_in for p in policies(store).values()] == [True]
    assert "keeping its last valid version" not in str(diagnostics.errors()[0])
    s.upsert(deny("d", "/admin"))
    s.upsert(deny("d", "/a/{**}/{*}"))
    [kept] = policies(store).values()
    assert not kept.stand_in and kept.rules[0].operations[0].paths == ("/admin",)
    s.delete(deny("d", "/admin"))
    s.upsert(deny("d", "/a/{**}/{*}"))
    s.delete(deny("d", "/a/{**}/{*}"))
    assert policies(store) == {} and diagnostics.problems() == []
