"""The CRDs in manifests/ are what `pilotpy crds` generates from the model, and structural."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pilotpy.model.crds import crds
from pilotpy.model.schema import spec_schema

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def test_checked_in_crds_are_current() -> None:
    generated = subprocess.run([sys.executable, "-m", "pilotpy.cli", "crds"], check=True,
                               capture_output=True, text=True).stdout
    assert (MANIFESTS / "crds.yaml").read_text(encoding="utf-8") == generated, (
        "manifests/crds.yaml is stale: run `make manifests`")
    assert "&id" not in generated and "*id" not in generated  # plain YAML, no aliases


def _walk(schema: dict[str, Any], path: str) -> list[str]:
    """Nodes breaking the structural-schema rule: a type everywhere, unless unknown fields
    are preserved there."""
    bad = []
    if "type" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        bad.append(path)
    for key, child in schema.get("properties", {}).items():
        bad += _walk(child, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        bad += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        bad += _walk(schema["additionalProperties"], f"{path}.*")
    return bad


def test_schemas_are_structural_and_serve_every_istio_version() -> None:
    for crd in crds():
        versions = crd["spec"]["versions"]
        assert sum(v["storage"] for v in versions) == 1
        for version in versions:
            schema = version["schema"]["openAPIV3Schema"]
            assert _walk(schema, crd["metadata"]["name"]) == []
    names = {c["spec"]["names"]["kind"]: [v["name"] for v in c["spec"]["versions"]]
             for c in crds()}
    assert names["VirtualService"] == ["v1", "v1beta1", "v1alpha3"]
    assert names["PeerAuthentication"] == ["v1", "v1beta1"]


def test_schema_types_what_the_parser_reads() -> None:
    from pilotpy.model.virtualservice import parse_virtual_service

    spec = spec_schema("VirtualService", parse_virtual_service)
    http = spec["properties"]["http"]["items"]["properties"]
    assert spec["properties"]["hosts"] == {"type": "array", "items": {"type": "string"}}
    assert http["route"]["items"]["properties"]["weight"] == {"type": "integer"}
    assert http["timeout"] == {"type": "string"}
    assert http["match"]["items"]["properties"]["headers"]["type"] == "object"
    # Fields pilotpy does not read are kept, not pruned.
    assert spec["x-kubernetes-preserve-unknown-fields"] is True
    assert yaml.safe_dump(spec)
