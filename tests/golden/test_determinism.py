"""Same config, same bytes: whatever the order of documents, files and map keys, and in any
process (upb writes maps in hash order unless asked to be deterministic)."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotpy.mesh import MeshConfig
from pilotpy.problems import ProblemLog
from pilotpy.proxy import parse_proxy, view_proxy
from pilotpy.push import build_push_context
from pilotpy.sources.files import FileSource
from pilotpy.store import Store
from pilotpy.translate.endpoints import eds_cluster_names
from pilotpy.translate.generate import endpoints_for, generate

TESTDATA = Path(__file__).parent / "testdata"
CASES = ("http-routes", "destination-rule-policies", "endpoint-slices", "service-entries",
         "merged-servers", "app-namespace")
NODE_ID = ("router~10.244.0.7~istio-ingressgateway-5c8d-abcde.istio-system"
           "~istio-system.svc.cluster.local")
GATEWAY_METADATA = {"LABELS": {"istio": "ingressgateway"}}
# A proxyless gRPC server, whose config holds client and server sides.
GRPC_CASES = ("grpc-client", "grpc-server", "grpc-unsupported")
GRPC_NODE_ID = "sidecar~127.0.0.31~echo-v1.default~default.svc.cluster.local"
GRPC_METADATA = {"GENERATOR": "grpc"}


def documents(cases: tuple[str, ...] = CASES) -> list[dict[str, Any]]:
    """The documents of several cases, each object once."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for case in cases:
        for path in sorted((TESTDATA / case / "input").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                meta = doc["metadata"]
                key = (doc["kind"], meta.get("namespace", ""), meta["name"])
                seen.setdefault(key, doc)
    return list(seen.values())


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same value with every mapping's keys in a random order (lists keep theirs)."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


def render_bytes(config: Path, node_id: str = NODE_ID,
                 metadata: dict[str, Any] | None = None) -> list[bytes]:
    store = Store(clock=time.monotonic)
    FileSource([config], store, ProblemLog()).load()
    push, _ = build_push_context(store.snapshot().objects, MeshConfig(), 1)
    view = view_proxy(parse_proxy(node_id, metadata or GATEWAY_METADATA), push)
    generated = generate(push, view)
    clusters = [*generated.clusters, *generated.named_only_clusters]
    messages = [*clusters, *generated.listeners, *generated.named_only_listeners,
                *endpoints_for(push, view, eds_cluster_names(clusters))]
    # Route configurations as xDS sends them: the bytes translation wrote.
    return ([m.SerializeToString(deterministic=True) for m in messages]
            + [r.data for r in generated.serialized_routes])


def write_shuffled(directory: Path, docs: list[dict[str, Any]], seed: int) -> None:
    rng = random.Random(seed)
    order = [shuffled(d, rng) for d in docs]
    rng.shuffle(order)
    files = rng.randint(1, 5)
    directory.mkdir()
    for index in range(files):
        part = order[index::files]
        name = f"{rng.randrange(10**6):06d}-{index}.yaml"
        (directory / name).write_text(yaml.safe_dump_all(part, sort_keys=False),
                                      encoding="utf-8")


@pytest.mark.parametrize(("cases", "node_id", "metadata"), [
    (CASES, NODE_ID, GATEWAY_METADATA), (GRPC_CASES, GRPC_NODE_ID, GRPC_METADATA)],
    ids=["gateway", "grpc"])
def test_shuffled_input_gives_identical_bytes(tmp_path: Path, cases: tuple[str, ...],
                                              node_id: str, metadata: dict[str, Any]) -> None:
    docs = documents(cases)
    reference: list[bytes] | None = None
    for seed in range(5):
        directory = tmp_path / f"seed-{seed}"
        write_shuffled(directory, docs, seed)
        rendered = render_bytes(directory, node_id, metadata)
        assert len(rendered) > (50 if cases is CASES else 25)
        if reference is None:
            reference = rendered
        else:
            assert rendered == reference, f"seed {seed} produced different bytes"


def test_bytes_are_identical_in_another_process(tmp_path: Path) -> None:
    directory = tmp_path / "config"
    write_shuffled(directory, documents(), seed=42)
    here = hashlib.sha256(b"".join(render_bytes(directory))).hexdigest()
    script = (
        "import hashlib, sys; from pathlib import Path; "
        "from tests.golden.test_determinism import render_bytes; "
        "print(hashlib.sha256(b''.join(render_bytes(Path(sys.argv[1])))).hexdigest())"
    )
    other = subprocess.run([sys.executable, "-c", script, str(directory)], check=True,
                           capture_output=True, text=True, cwd=Path(__file__).parents[2],
                           timeout=120).stdout.strip()
    assert other == here
