"""pilotpy emits only upstream Envoy extensions, from a checked-in allowlist
(docs/architecture.md#deliberate-differences-from-istiod)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.golden.cases import RESOURCE_TYPES, all_cases

HERE = Path(__file__).parent
# Every expected resource file (problems are text, not Envoy config).
GOLDENS = sorted(c.expected_file(t) for c in all_cases() for t in RESOURCE_TYPES)
# Those of proxies without pilot-agent (docs/architecture.md#proxies-with-and-without-pilot-agent).
STOCK_GOLDENS = sorted(c.expected_file(t) for c in all_cases() if not c.agent
                       for t in RESOURCE_TYPES)
PER_NAME_MAPS = ("typedPerFilterConfig", "typedExtensionProtocolOptions")


def allowlist() -> set[str]:
    lines = (HERE / "extensions-allowlist.txt").read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def extensions(node: Any) -> Iterator[str]:
    """Every @type, every name of an object carrying a typed config, every per-name key."""
    if isinstance(node, dict):
        if "@type" in node:
            yield node["@type"]
        if "typedConfig" in node and "name" in node:
            yield node["name"]
        for key in PER_NAME_MAPS:
            if isinstance(node.get(key), dict):
                yield from node[key]
        for value in node.values():
            yield from extensions(value)
    elif isinstance(node, list):
        for value in node:
            yield from extensions(value)


def test_goldens_exist() -> None:
    assert GOLDENS


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("golden", GOLDENS, ids=_id)
def test_golden_uses_only_allowed_extensions(golden: Path) -> None:
    used = set(extensions(json.loads(golden.read_text(encoding="utf-8"))))
    assert used <= allowlist(), f"not in the allowlist: {sorted(used - allowlist())}"


@pytest.mark.parametrize("golden", GOLDENS, ids=_id)
def test_golden_never_references_istio_only_parts(golden: Path) -> None:
    used = set(extensions(json.loads(golden.read_text(encoding="utf-8"))))
    assert not {u for u in used if u.startswith("istio.") or ".istio." in u}


@pytest.mark.parametrize("golden", STOCK_GOLDENS, ids=_id)
def test_stock_proxy_config_never_names_sds_grpc(golden: Path) -> None:
    # Only pilot-agent's bootstrap has sds-grpc; Envoy hangs silently on a missing SDS cluster.
    assert "sds-grpc" not in golden.read_text(encoding="utf-8")


def test_agent_cases_exist_and_name_sds_grpc() -> None:
    # The rule above is only worth something while agent cases do use the agent's SDS.
    agent = [c for c in all_cases() if c.agent]
    assert agent
    assert all(any("sds-grpc" in c.expected_file(t).read_text(encoding="utf-8")
                   for t in RESOURCE_TYPES) for c in agent)


def test_the_walk_finds_extensions() -> None:
    sample = {"httpFilters": [{"name": "x.filter", "typedConfig": {"@type": "t/x.Config"}}],
              "typedPerFilterConfig": {"y.filter": {"@type": "t/y.Config"}}}
    assert set(extensions(sample)) == {"x.filter", "t/x.Config", "y.filter", "t/y.Config"}
