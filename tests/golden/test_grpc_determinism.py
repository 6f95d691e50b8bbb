"""The gRPC generator writes the same bytes whatever the order of documents, files and map
keys (tests/golden/test_determinism.py does the same for a gateway)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from pilotpy.mesh import MeshConfig
from pilotpy.problems import ProblemLog
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.push import build_push_context
from pilotpy.sources.files import FileSource
from pilotpy.store import Store
from pilotpy.translate.endpoints import eds_cluster_names
from pilotpy.translate.generate import endpoints_for, generate
from tests.golden.test_determinism import write_shuffled

CASES = ("grpc-client", "grpc-server", "grpc-unsupported")
NODE_ID = "sidecar~127.0.0.31~echo-v1.default~default.svc.cluster.local"
TESTDATA = Path(__file__).parent / "testdata"


def documents() -> list[dict[str, Any]]:
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for case in CASES:
        for path in sorted((TESTDATA / case / "input").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                meta = doc["metadata"]
                seen.setdefault((doc["kind"], meta.get("namespace", ""), meta["name"]), doc)
    return list(seen.values())


def render_bytes(config: Path) -> list[bytes]:
    store = Store(clock=time.monotonic)
    FileSource([config], store, ProblemLog()).load()
    push, _ = build_push_context(store.snapshot().objects, MeshConfig(), 1)
    view = view_proxy(parse_proxy(NODE_ID, {"GENERATOR": "grpc"}), push)
    generated = generate(push, view)
    clusters = generated.named_only_clusters
    messages = [*clusters, *generated.listeners, *generated.named_only_listeners,
                *endpoints_for(push, view, eds_cluster_names(clusters))]
    return ([m.SerializeToString(deterministic=True) for m in messages]
            + [r.data for r in generated.serialized_routes])


def test_grpc_shuffled_input_gives_identical_bytes(tmp_path: Path) -> None:
    docs = documents()
    reference: list[bytes] | None = None
    for seed in range(4):
        directory = tmp_path / f"seed-{seed}"
        write_shuffled(directory, docs, seed)
        rendered = render_bytes(directory)
        assert len(rendered) > 30
        if reference is None:
            reference = rendered
        else:
            assert rendered == reference, f"seed {seed} produced different bytes"
