"""The cases of the differential tier: every golden case, the walkthrough configurations
(tests/diff/walkthroughs/<name>/), and Istio's own samples (read from the pinned istio.io/istio
module, never copied here) with the registry objects they need.

A case is YAML applied to the API server, the proxies connected to both control planes, and
optionally a mesh config (merged over the tier's base, tests/diff/harness.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pilotpy.local.bootstrap import agent_node_metadata
from tests.diff.fetch import Identity

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "testdata"
WALKTHROUGHS = Path(__file__).with_name("walkthroughs")
# The version the pinned pilot-agent reports (istio-bins.sh builds it as 1.31-dev).
ISTIO_VERSION = "1.31.0"


@dataclass(frozen=True)
class ProxySpec:
    """One proxy identity: `label` names it in the report."""

    label: str
    node_id: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def identity(self) -> Identity:
        metadata = agent_node_metadata(self.node_id, labels=self.labels,
                                       istio_version=ISTIO_VERSION)
        workload = metadata["WORKLOAD_NAME"]
        return Identity(self.node_id, metadata, f"{workload}.{metadata['NAMESPACE']}")


@dataclass(frozen=True)
class Case:
    name: str
    paths: tuple[Path, ...]
    proxies: tuple[ProxySpec, ...]
    mesh: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def _golden(directory: Path) -> Case:
    spec = yaml.safe_load((directory / "case.yaml").read_text(encoding="utf-8"))
    mesh = {}
    if spec.get("meshConfig"):
        mesh = yaml.safe_load((directory / spec["meshConfig"]).read_text(encoding="utf-8"))
    node_id = spec["nodeId"]
    proxy = ProxySpec(node_id.split("~", 1)[0], node_id, spec.get("labels") or {})
    return Case(f"golden/{directory.name}", (directory / "input",), (proxy,), mesh or {})


def _walkthrough(directory: Path) -> Case:
    spec = yaml.safe_load((directory / "case.yaml").read_text(encoding="utf-8"))
    paths = [directory / p for p in spec.get("files", [])]
    paths += [ROOT / p for p in spec.get("repoFiles", [])]
    proxies = tuple(ProxySpec(p["label"], p["nodeId"], p.get("labels") or {})
                    for p in spec["proxies"])
    return Case(f"walkthrough/{directory.name}", tuple(paths), proxies,
                spec.get("meshConfig") or {})


def golden_cases() -> list[Case]:
    return [_golden(d) for d in sorted(GOLDEN.iterdir()) if (d / "case.yaml").exists()]


def walkthrough_cases() -> list[Case]:
    return [_walkthrough(d) for d in sorted(WALKTHROUGHS.iterdir())
            if (d / "case.yaml").exists()]


def all_cases() -> list[Case]:
    return golden_cases() + walkthrough_cases()
