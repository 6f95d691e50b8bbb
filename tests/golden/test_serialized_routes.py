"""Route configurations written as bytes from shared parts (sidecar_routes) are exactly what
protobuf writes for the same message: the goldens check their content, this their bytes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from envoy.config.route.v3 import route_pb2

from pilotpy.problems import ProblemLog
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.push import build_push_context
from pilotpy.server.controlplane import load_mesh_config
from pilotpy.server.settings import Settings
from pilotpy.sources.files import FileSource
from pilotpy.store import Store
from pilotpy.translate.generate import GeneratedConfig, generate
from tests.golden.test_golden import CASES


def generated_for(case: Path) -> GeneratedConfig:
    spec = yaml.safe_load((case / "case.yaml").read_text(encoding="utf-8"))
    store = Store(clock=time.monotonic)
    FileSource([case / "input"], store, ProblemLog()).load()
    mesh = load_mesh_config(Settings(
        mesh_config=case / spec["meshConfig"] if spec.get("meshConfig") else None))
    push, _ = build_push_context(store.snapshot().objects, mesh, 1)
    labels = spec.get("labels", {})
    proxy = parse_proxy(spec["nodeId"], {"LABELS": labels} if labels else {})
    return generate(push, view_proxy(proxy, push))


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_route_bytes_are_the_deterministic_serialization(case: Path) -> None:
    for route in generated_for(case).serialized_routes:
        message = route_pb2.RouteConfiguration.FromString(route.data)
        assert message.name == route.name
        assert route.data == message.SerializeToString(deterministic=True), route.name


def test_sidecar_cases_have_route_bytes_to_check() -> None:
    sidecars = [c for c in CASES if "sidecar~" in (c / "case.yaml").read_text(encoding="utf-8")]
    assert sum(1 for c in sidecars if generated_for(c).serialized_routes) >= 4
