"""Real Envoys: W1's gateway and W2's sidecars accept what istiod sends and what pilotpy sends
(no rejected update), and answer the same requests the same way (tests/diff/envoys.py)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.diff import objects
from tests.diff.cases import ProxySpec
from tests.diff.envoys import config, observe, registry, start_pods
from tests.diff.harness import SideBySide, istio_config_keys
from tests.mesh.netns import Network
from tests.mesh.pods import Pod


@pytest.fixture(scope="module")
def pods(side_by_side: SideBySide, network: Network) -> Iterator[dict[str, Pod]]:
    workdir = Path(tempfile.mkdtemp(prefix="pilotpy-diff-envoys-"))
    workdir.chmod(0o755)  # the sidecars run as uid 1337
    applied = objects.Applied()
    try:
        pods = start_pods(network, workdir)
        applied = objects.apply(side_by_side.admin, [*registry(pods), *config()])
        assert not applied.refused, applied.refused
        yield pods
    finally:
        objects.delete(side_by_side.admin, applied.docs)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_envoys_accept_both_and_answer_alike(side_by_side: SideBySide,
                                                   pods: dict[str, Pod]) -> None:
    # Both have the objects and have pushed them before any Envoy connects.
    await side_by_side.wait_config(istio_config_keys(config()), present=True)
    await side_by_side.settled([ProxySpec(f"sidecar {p.spec.name}", p.node_id, p.spec.labels)
                                for p in pods.values() if p.spec.has_proxy])
    theirs = await asyncio.to_thread(observe, side_by_side.istiod, pods)
    ours = await asyncio.to_thread(observe, side_by_side.pilotpy, pods)
    assert theirs.rejected == ours.rejected == {p: {} for p in theirs.rejected}, (
        f"rejected updates: istiod's config {theirs.rejected}; pilotpy's {ours.rejected}")
    assert ours.answers == theirs.answers
    # And the answers are the walkthroughs': the gateway routes httpbin.local to v2 only and
    # answers anything else with 404; the sidecar's VirtualService sends the client to v2.
    assert set(ours.answers["gateway httpbin.local /headers"]) == {(200, "v2", "istio-envoy")}
    assert [a[0] for a in ours.answers["gateway unknown.local /headers"]] == [404]
    assert {a[:2] for a in ours.answers["sleep -> httpbin-service /headers"]} == {(200, "v2")}
