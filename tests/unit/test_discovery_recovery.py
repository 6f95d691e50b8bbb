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
