"""The golden cases' layout, shared by every reader (the golden comparison, the extension
allowlist, the Envoy and gRPC acceptance tests and the simulation tests).

A case is a directory `testdata/<case>/` with `case.yaml` (node id, labels, description,
optional meshConfig, optional generator, optional knownBug), `input/*.yaml`, and one expected
file per part of the output: `expected.problems.json` and `expected.<type>.json` for each xDS
resource type, so a diff names the resource type that moved.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from pilotpy.cli.translate import node_metadata
from pilotpy.problems import ProblemLog
from pilotpy.proxy import AGENT_METADATA, parse_proxy, view_proxy
from pilotpy.push import build_push_context
from pilotpy.server.controlplane import load_mesh_config
from pilotpy.server.settings import Settings
from pilotpy.simulate import Simulation
from pilotpy.sources.files import FileSource
from pilotpy.store import Store
from pilotpy.translate.endpoints import eds_cluster_names
from pilotpy.translate.generate import GeneratedConfig, endpoints_for, generate

TESTDATA = Path(__file__).parent / "testdata"
# The four xDS resource types, in the order `pilotpy translate` prints them.
RESOURCE_TYPES = ("listeners", "routes", "clusters", "endpoints")
PROBLEMS = "problems"
PARTS = (PROBLEMS, *RESOURCE_TYPES)
# A case whose proxy proves an identity (`verifiedIdentity`) also gets the Secrets it is
# served over SDS.
SECRETS = "secrets"


@dataclass(frozen=True)
class Case:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = yaml.safe_load(
            (self.path / "case.yaml").read_text(encoding="utf-8"))
        return spec

    @property
    def node_id(self) -> str:
        return str(self.spec["nodeId"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.spec.get("labels") or {})

    @property
    def mesh_config(self) -> Path | None:
        return self.path / self.spec["meshConfig"] if self.spec.get("meshConfig") else None

    @property
    def generator(self) -> str:
        """The node's GENERATOR metadata: `grpc` for a proxyless gRPC client, else ""."""
        return str(self.spec.get("generator") or "")

    @property
    def agent(self) -> bool:
        """The proxy runs under pilot-agent (`agent: true`): its node metadata carries
        PROXY_CONFIG and its bootstrap has the agent's SDS cluster `sds-grpc`."""
        return bool(self.spec.get("agent"))

    @property
    def verified_identity(self) -> str:
        """The SPIFFE id the proxy's stream proves (`verifiedIdentity`), "" for none."""
        return str(self.spec.get("verifiedIdentity") or "")

    @property
    def parts(self) -> tuple[str, ...]:
        return (*PARTS, SECRETS) if self.verified_identity else PARTS

    @property
    def metadata(self) -> dict[str, Any]:
        """The node metadata the case says (labels, GENERATOR, PROXY_CONFIG); the rest is
        what pilot-agent sends for the node (`node_metadata`)."""
        out: dict[str, Any] = {"LABELS": self.labels} if self.labels else {}
        if self.generator:
            out["GENERATOR"] = self.generator
        if self.agent:
            out[AGENT_METADATA] = {}
        return out

    @property
    def is_sidecar(self) -> bool:
        return self.node_id.startswith("sidecar~") and not self.generator

    @property
    def is_envoy(self) -> bool:
        """Whether an Envoy takes this config (not a proxyless gRPC one)."""
        return self.generator != "grpc"

    def expected_file(self, part: str) -> Path:
        return self.path / f"expected.{part}.json"

    def expected(self, part: str) -> list[Any]:
        data: list[Any] = json.loads(self.expected_file(part).read_text(encoding="utf-8"))
        return data


def all_cases() -> list[Case]:
    return [Case(p) for p in sorted(TESTDATA.iterdir()) if (p / "case.yaml").exists()]


@dataclass(frozen=True)
class Translation:
    """A case translated in-process: the messages, as the xDS server would send them."""

    generated: GeneratedConfig
    endpoints: list[Any]


def translate_case(case: Case) -> Translation:
    store = Store(clock=time.monotonic)
    FileSource([case.path / "input"], store, ProblemLog()).load()
    mesh = load_mesh_config(Settings(mesh_config=case.mesh_config))
    push, _ = build_push_context(store.snapshot().objects, mesh, 1)
    # What pilot-agent would send, plus the case's own (PROXY_CONFIG for `agent: true`).
    metadata = {**node_metadata(case.node_id, case.labels, case.generator), **case.metadata}
    view = view_proxy(parse_proxy(case.node_id, metadata,
                                  verified_identity=case.verified_identity), push)
    generated = generate(push, view)
    clusters = [*generated.clusters, *generated.named_only_clusters]
    return Translation(generated, endpoints_for(push, view, eds_cluster_names(clusters)))


def simulation(case: Case) -> Simulation:
    """The case's translation, ready to take calls (pilotpy.simulate; Envoy cases only)."""
    assert case.is_envoy, f"{case.name}: pilotpy.simulate follows Envoy, not gRPC"
    translation = translate_case(case)
    generated = translation.generated
    return Simulation(generated.listeners, generated.routes, generated.clusters,
                      translation.endpoints)


def case_named(name: str) -> Case:
    return Case(TESTDATA / name)
