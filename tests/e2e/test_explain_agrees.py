"""W1 with a real Envoy: for each request, what `pilotpy explain` says (the route, the
VirtualService it came from, the cluster and endpoint) is what Envoy's access log reports it
picked for that request (tests/explain_agreement.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pilotpy.cli.translate import load_config
from pilotpy.local.stack import eventually
from tests.e2e.support import W1Factory, weighted_virtual_service
from tests.explain_agreement import disagreements, entries, explain_logged, mesh_config

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]


def _mesh_yaml(log_file: Path) -> str:
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in mesh_config(str(log_file)).items())


async def test_explain_names_the_route_and_cluster_envoy_picked(w1: W1Factory,
                                                                tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    env = await w1(mesh_config=_mesh_yaml(log_file))
    # Two named rules: /status goes 50/50 to v1 and v2, the rest to v2.
    split = weighted_virtual_service(50, 50).replace(
        "  - retries:", "  - name: split\n    match: [{uri: {prefix: /status}}]\n    retries:")
    env.write("virtualservice.yaml", split + weighted_virtual_service(0, 100).split(
        "  http:\n", 1)[1].replace("  - retries:", "  - name: rest\n    retries:"))
    await eventually(lambda: b'"split"' in env.envoy.admin_get("/config_dump").encode(),
                     "the named routes at Envoy")
    # 16 calls to the 50/50 split reach both clusters but with probability 2**-15.
    requests = [("httpbin.local", "/headers")] * 2 + [("httpbin.local", "/status/200")] * 16
    requests += [("unknown.local", "/headers")]
    for index, (host, path) in enumerate(requests):
        # A query of our own tells these requests from the fixture's in the log.
        await asyncio.to_thread(env.get, host, f"{path}?explain={index}")

    def ours() -> list[dict[str, Any]]:
        found = entries(log_file.read_text()) if log_file.exists() else []
        return [e for e in found if "explain=" in (e.get("path") or "")]

    logged = await eventually(lambda: len(e := ours()) == len(requests) and e,
                              "an access log line per request")
    loaded = load_config([env.config])
    checked: dict[str, int] = {}
    for entry in logged:
        answer = explain_logged(loaded, env.stack.node_id, env.stack.labels, entry)
        assert not disagreements(answer, entry), (entry, answer)
        key = f"{entry['route_name']} {entry['upstream_cluster']}"
        checked[key] = checked.get(key, 0) + 1
    # Every kind of answer was compared: both rules, both clusters of the split, the 404.
    assert {k.split()[0] for k in checked} == {"split", "rest", "None"}, checked
    assert len([k for k in checked if k.startswith("split ")]) == 2, checked

    # The command itself answers the same for the first request.
    done = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "pilotpy.cli", "explain", "--config", str(env.config),
        "--node-id", env.stack.node_id, *[a for k, v in env.stack.labels.items()
                                          for a in ("--label", f"{k}={v}")],
        "GET http://httpbin.local/headers", "-o", "json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    first = next(e for e in logged if e["route_name"] == "rest")
    assert not disagreements(json.loads(done.stdout), {**first, "path": "/headers"})
