"""Hostile and broken config next to a real Envoy gateway (docs/operations.md#limits): the
change that follows it still reaches Envoy, and /ready tells when a source cannot deliver."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pilotpy.local.stack import eventually, http_get
from pilotpy.sources.files import FileSource
from tests.e2e.support import W1, W1Factory, deep_policy, weighted_virtual_service

pytestmark = pytest.mark.e2e


def get(env: W1, path: str) -> tuple[int, str]:
    status, _, body = http_get(env.stack.plane.http_port, "127.0.0.1", path)
    return status, body.decode()


def metric(env: W1, sample: str) -> float | None:
    _, _, body = http_get(env.stack.plane.monitoring_port, "127.0.0.1", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_a_deeply_nested_object_and_its_edits_leave_changes_flowing_to_envoy(
        w1: W1Factory) -> None:
    """1000 levels under an AuthorizationPolicy's spec, written, read, then edited (the edit
    is what compared two versions recursively), then a route change: Envoy gets it."""
    env = await w1()
    plane = env.stack.plane
    path = env.config / "policy.yaml"
    env.write("policy.yaml", deep_policy(1000))
    await eventually(lambda: path in plane.files._files, "the policy file read")
    env.write("policy.yaml", deep_policy(1000, leaf="y"))
    env.write("virtualservice.yaml", weighted_virtual_service(100, 0))
    await eventually(lambda: set(env.versions(10)) == {"v1"}, "the new route in Envoy")
    assert any(p.message.startswith("line 104: past a limit: nested more than 100 levels")
               for p in plane.problems.problems())
    assert await asyncio.to_thread(get, env, "/ready") == (200, "ready\n")
    status, configz = await asyncio.to_thread(get, env, "/debug/configz")
    assert status == 200 and "AuthorizationPolicy" not in configz
    path.unlink()
    env.write("virtualservice.yaml", weighted_virtual_service(0, 100))
    await eventually(lambda: set(env.versions(10)) == {"v2"}, "the route back to v2")


async def test_a_file_source_that_cannot_deliver_turns_ready_false_until_it_recovers(
        w1: W1Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    env = await w1()

    def broken(_: Any) -> Any:
        raise RuntimeError("a bug in the file source")

    monkeypatch.setattr(FileSource, "_survey", broken)
    _, reason = await eventually(lambda: (r := get(env, "/ready"))[0] == 503 and r,
                                 "/ready to answer 503")
    assert reason == ("not ready: config changes are not delivered, serving the last good "
                      "config: files (RuntimeError: a bug in the file source)\n")
    assert await asyncio.to_thread(metric, env, 'pilotpy_source_healthy{source="files"}') == 0
    failures = await asyncio.to_thread(metric, env,
                                       'pilotpy_task_failures_total{task="files"}')
    assert failures is not None and failures >= 1
    assert set(await asyncio.to_thread(env.versions, 5)) == {"v2"}  # the last good config

    monkeypatch.undo()
    env.write("virtualservice.yaml", weighted_virtual_service(100, 0))
    await eventually(lambda: set(env.versions(10)) == {"v1"}, "the change after recovery")
    await eventually(lambda: get(env, "/ready") == (200, "ready\n"), "/ready 200 again")
    assert await asyncio.to_thread(metric, env, 'pilotpy_source_healthy{source="files"}') == 1
    _, adsz = await asyncio.to_thread(get, env, "/debug/adsz")
    assert json.loads(adsz)["totalClients"] == 1
