"""server/status_writer.py against a stand-in API: the Reconciled condition and
observedGeneration istiod writes, other status kept, one write per state, conflicts retried,
objects the API does not hold skipped, writes rate-limited."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from typing import Any

import pytest

from pilotpy.discovery import Discovery
from pilotpy.mesh import MeshConfig
from pilotpy.model import parse_object
from pilotpy.server.propagation import Propagation
from pilotpy.server.status_writer import StatusWriter, TokenBucket, updated_status
from pilotpy.store import ChangeSet
from pilotpy.xds.server import XdsServer

PATH = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews"
OTHER = {"type": "Healthy", "status": "True", "message": "someone else's"}


class ApiError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(str(code))
        self.code = code


class FakeApi:
    def __init__(self, generation: int = 3) -> None:
        self.object: dict[str, Any] = {
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default", "generation": generation,
                         "resourceVersion": "7"},
            "spec": {"hosts": ["reviews"]}, "status": {"conditions": [dict(OTHER)]}}
        self.puts: list[dict[str, Any]] = []
        self.fail_next: int = 0

    async def get(self, path: str, params: Any = None, timeout: float = 0) -> Any:
        if path != PATH:
            raise ApiError(404)
        return copy.deepcopy(self.object)

    async def send(self, method: str, path: str, body: Any, content_type: str = "",
                   timeout: float = 0) -> Any:
        assert (method, path) == ("PUT", f"{PATH}/status")
        if self.fail_next:
            code, self.fail_next = self.fail_next, 0
            raise ApiError(code)
        self.puts.append(body)
        self.object = copy.deepcopy(body)
        return body


def _writer(api: FakeApi, generation: int = 3) -> StatusWriter:
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "reviews", "namespace": "default", "generation": generation},
           "spec": {"hosts": ["reviews"], "http": [{"route": [
               {"destination": {"host": "reviews"}}]}]}}
    vs = parse_object(doc).obj
    discovery = Discovery(MeshConfig())
    discovery.update(ChangeSet({"VirtualService": {vs.meta.key: vs}}, frozenset({vs.meta.key}),
                               1))
    propagation = Propagation(XdsServer(discovery), discovery)
    return StatusWriter(api, propagation, discovery,
                        lambda key: PATH if key == vs.meta.key else None)


def _reconciled(status: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in status["conditions"] if c["type"] == "Reconciled")
    return found


def test_the_reconciled_condition_and_observed_generation_are_written() -> None:
    api = FakeApi()
    assert asyncio.run(_writer(api).write_once()) == 1
    (body,) = api.puts
    assert body["metadata"]["resourceVersion"] == "7"  # a concurrent edit conflicts
    status = body["status"]
    assert status["observedGeneration"] == 3
    condition = _reconciled(status)
    assert (condition["status"], condition["message"], condition["observedGeneration"]) == (
        "True", "0/0 proxies up to date.", 3)
    assert OTHER in status["conditions"]


def test_a_state_is_written_once() -> None:
    api = FakeApi()
    writer = _writer(api)

    async def rounds() -> list[int]:
        return [await writer.write_once() for _ in range(3)]

    assert asyncio.run(rounds()) == [1, 0, 0]
    assert len(api.puts) == 1


def test_status_already_in_the_api_is_not_rewritten() -> None:
    api = FakeApi()
    asyncio.run(_writer(api).write_once())
    assert asyncio.run(_writer(api).write_once()) == 0  # a new leader reads it first
    assert len(api.puts) == 1


def test_a_conflict_is_retried_on_the_next_round() -> None:
    api = FakeApi()
    api.fail_next = 409
    writer = _writer(api)

    async def rounds() -> list[int]:
        return [await writer.write_once() for _ in range(2)]

    assert asyncio.run(rounds()) == [0, 1]


def test_objects_the_api_does_not_hold_and_newer_generations_are_left_alone() -> None:
    api = FakeApi(generation=4)  # edited again; pilotpy has not taken generation 4 yet
    assert asyncio.run(_writer(api, generation=3).write_once()) == 0
    assert api.puts == []
    writer = _writer(api, generation=3)
    writer._object_path = lambda key: PATH + "-file-only"
    assert asyncio.run(writer.write_once()) == 0


def test_the_transition_time_moves_only_when_the_state_does() -> None:
    first = updated_status(None, 1, "False", "0/1 proxies up to date.", 1_000_000)
    same = updated_status(first, 1, "False", "0/1 proxies up to date.", 2_000_000)
    flipped = updated_status(same, 2, "True", "1/1 proxies up to date.", 3_000_000)
    assert (_reconciled(same)["lastTransitionTime"]
            == _reconciled(first)["lastTransitionTime"])
    assert _reconciled(same)["lastProbeTime"] != _reconciled(first)["lastProbeTime"]
    assert (_reconciled(flipped)["lastTransitionTime"]
            != _reconciled(first)["lastTransitionTime"])
    assert len(flipped["conditions"]) == 1


def test_writes_are_rate_limited_after_a_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=2)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.1]
    assert bucket.take(1.0) == 0.0  # refilled



def test_a_sustained_run_of_writes_waits_longer_each_time() -> None:
    """Once the burst is spent, each write waits its turn: a deficit is never mistaken for
    a fresh bucket (which would grant the whole burst again)."""
    bucket = TokenBucket(rate=10.0, burst=2)
    waits = [bucket.take(0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])
    now = 0.0
    for _ in range(20):  # a writer that sleeps as told: 20 writes after the burst take 2 s
        now += bucket.take(now)
    assert now == pytest.approx(0.3 + 2.0)


def test_a_new_leadership_term_starts_from_what_the_object_holds() -> None:
    """Between two terms another leader may have written its own count: the writer's
    memory of what it wrote is dropped when it leads again, so it corrects the object."""
    api = FakeApi()
    writer = _writer(api)

    async def term() -> None:
        task = asyncio.create_task(writer.run())
        for _ in range(100):
            await asyncio.sleep(0)
            if writer.writes:
                break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(term())
    assert _reconciled(api.object["status"])["message"] == "0/0 proxies up to date."
    api.object["status"] = updated_status(api.object["status"], 3, "False",
                                          "0/2 proxies up to date.", 0.0)  # another leader
    asyncio.run(term())
    assert writer.writes == 2
    assert _reconciled(api.object["status"])["message"] == "0/0 proxies up to date."
