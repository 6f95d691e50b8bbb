"""The injection cases in tests/golden/injection/<case>/: `pod.yaml` (the pod as created),
`case.yaml` (what the case shows; optionally `native: true` for a cluster with native
sidecars, `values` (Istio's Helm values), `meshConfig`, and `refused`: the refusal expected),
`expected.json` (injected or not, the warnings, the JSON patch). `make golden` rewrites the
expected files; review the diff."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from pilotpy.inject.injector import InjectorConfig
from pilotpy.inject.values import parse_values
from pilotpy.mesh import parse_mesh_config

ROOT = Path(__file__).with_name("injection")


@dataclass(frozen=True)
class InjectionCase:
    name: str
    path: Path

    @cached_property
    def spec(self) -> dict[str, Any]:
        found = yaml.safe_load((self.path / "case.yaml").read_text(encoding="utf-8"))
        assert isinstance(found, dict) and found.get("description"), self.name
        return found

    @cached_property
    def pod(self) -> dict[str, Any]:
        found = yaml.safe_load((self.path / "pod.yaml").read_text(encoding="utf-8"))
        assert isinstance(found, dict), self.name
        return found

    @property
    def native(self) -> bool:
        return bool(self.spec.get("native", False))

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.spec.get("values") or {})

    @property
    def mesh_config(self) -> dict[str, Any]:
        return dict(self.spec.get("meshConfig") or {})

    @property
    def refused(self) -> str:
        return str(self.spec.get("refused") or "")

    @property
    def expected_file(self) -> Path:
        return self.path / "expected.json"

    def config(self) -> InjectorConfig:
        mesh, _ = parse_mesh_config(self.mesh_config)
        return InjectorConfig(values=parse_values(self.values), mesh=mesh)


def injection_cases() -> list[InjectionCase]:
    return [InjectionCase(p.name, p) for p in sorted(ROOT.iterdir()) if p.is_dir()]
