"""Subscriptions of 100,000 names (the default limit per subscription): the diffs and bodies
they cost stay within the response memo's budget and go when their streams go, and growing a
subscription costs what was added, not the whole subscription again."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from envoy.service.discovery.v3 import discovery_pb2

from pilotpy.xds import delta, resources, sotw
from pilotpy.xds.limits import StreamLimits
from pilotpy.xds.types import CLUSTER, ENDPOINT
from tests.xds.raw_stream import RawStream
from tests.xds.xds_harness import (
    GATEWAY_META,
    GATEWAY_NODE,
    ConfigDir,
    Harness,
    delta_converge,
    eventually,
    harness,
    round_robin,
    sotw_converge,
    sotw_names,
)
from tests.xds_client import build_node

NAMES = 100_000
BUDGET = 8 * 1024 * 1024


def unknown_names(prefix: str, count: int = NAMES) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


# Room for the unknown names these tests hold (more than the default allows across streams).
ROOMY = StreamLimits(max_unknown_names=4 * NAMES)


@pytest_asyncio.fixture
async def budgeted(config_dir: ConfigDir) -> AsyncIterator[Harness]:
    async with harness(config_dir, response_cache_bytes=BUDGET, stream_limits=ROOMY) as found:
        yield found


@pytest_asyncio.fixture
async def roomy(config_dir: ConfigDir) -> AsyncIterator[Harness]:
    async with harness(config_dir, stream_limits=ROOMY) as found:
        yield found


async def test_large_subscriptions_stay_within_the_memo_budget_and_leave_with_their_streams(
        budgeted: Harness) -> None:
    """Five streams at once each open a subscription to 30,000 assignments nobody has (a
    3 MB answer each, memoized for the other streams of the class): the memo stays within
    8 MiB, and nothing of theirs is left once they go."""
    memo = budgeted.plane.xds.memo
    async with budgeted.sotw() as healthy:
        await sotw_converge(healthy)
        baseline = len(memo)
        clients = [budgeted.sotw() for _ in range(5)]
        for index, client in enumerate(clients):
            await client.__aenter__()
            await sotw_converge(client)
            # An empty nonce opens the subscription anew, as a reconnecting Envoy does.
            await client.request(ENDPOINT, unknown_names(f"s{index}-", 30_000))
            answer = await client.recv(timeout=30)
            assert len(answer.resources) == 30_000
            assert memo.size_bytes <= BUDGET
        for client in clients:
            await client.close()
        await eventually(lambda: len(memo) <= baseline, what="the big entries gone")
        assert memo.size_bytes <= BUDGET


def delta_subscribe(names: list[str], *, first: bool = False) -> bytes:
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=CLUSTER if first else ENDPOINT, resource_names_subscribe=names)
    if first:
        request.node.CopyFrom(build_node(GATEWAY_NODE, GATEWAY_META))
    data: bytes = request.SerializeToString()
    return data


async def test_a_change_reaches_a_healthy_proxy_within_2s_beside_growing_100k_subscriptions(
        budgeted: Harness) -> None:
    """Two Delta streams hold 99,900 names each (what the limit on unknown names allows
    together) and send ten requests apiece, each adding one more name, without waiting for
    the answers; a config change made meanwhile reaches the healthy client within 2 s, and
    the memo stays within its budget."""
    async with budgeted.sotw() as healthy:
        await sotw_converge(healthy)
        attackers = [RawStream(budgeted.target, delta=True) for _ in range(2)]
        try:
            for index, raw in enumerate(attackers):
                await raw.__aenter__()
                raw.send(delta_subscribe([], first=True))
                await raw.recv()
                raw.send(delta_subscribe(unknown_names(f"s{index}-", NAMES - 100)))
                await raw.recv(timeout=30)
            growth = [[delta_subscribe([f"s{index}-more-{i}"]) for i in range(10)]
                      for index in range(len(attackers))]
            wait = budgeted.pushed()
            for raw, requests in zip(attackers, growth, strict=True):
                for request in requests:
                    raw.send(request)
            started = time.monotonic()
            budgeted.config.edit("DestinationRule", "httpbin", round_robin)
            pushed = await healthy.recv(timeout=10)
            elapsed = time.monotonic() - started
            await wait()
            assert pushed.type_url == CLUSTER
            assert elapsed < 2.0, f"the change took {elapsed:.2f} s to reach the healthy client"
            assert budgeted.plane.xds.memo.size_bytes <= BUDGET
        finally:
            for raw in attackers:
                await raw.close()


def _watch_full_diffs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the subscriptions every diff was computed over."""
    sizes: list[int] = []
    real_diff, real_sub_diff = resources.compute_diff, sotw._subscription_diff
    real_transition = resources.transition_diff

    def counted_diff(old: Any, new: Any, subscription: Any) -> Any:
        sizes.append(len(subscription.names) if subscription is not None else 0)
        return real_diff(old, new, subscription)

    def counted_sub_diff(sent: Any, current: Any, old: Any, new: Any, force: Any) -> Any:
        sizes.append(len(new.names))
        return real_sub_diff(sent, current, old, new, force)

    def counted_transition(old: Any, old_scope: Any, new: Any, new_scope: Any) -> Any:
        sizes.append(len(new_scope.names) if new_scope is not None else 0)
        return real_transition(old, old_scope, new, new_scope)

    monkeypatch.setattr(resources, "compute_diff", counted_diff)
    monkeypatch.setattr(sotw, "_subscription_diff", counted_sub_diff)
    monkeypatch.setattr(delta, "transition_diff", counted_transition)
    return sizes


async def test_a_delta_subscription_growing_one_name_at_a_time_is_not_rescanned(
        roomy: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    async with roomy.delta() as client:
        await delta_converge(client)
        await client.subscribe(ENDPOINT, unknown_names("big-", NAMES - 100))
        await client.ack(await client.recv(timeout=30))
        sizes = _watch_full_diffs(monkeypatch)
        for i in range(20):
            await client.subscribe(ENDPOINT, [f"one-more-{i}"])
            answer = await client.recv()
            assert [r.name for r in answer.resources] == [f"one-more-{i}"]
            await client.ack(answer)
        assert sizes == []


async def test_a_sotw_subscription_growing_one_name_at_a_time_is_not_rescanned(
        roomy: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    async with roomy.sotw() as client:
        responses = await sotw_converge(client)
        held = unknown_names("big-", NAMES - 100)
        await client.ack(responses[ENDPOINT], held)
        answer = await client.recv(timeout=30)
        sizes = _watch_full_diffs(monkeypatch)
        for i in range(20):
            held.append(f"one-more-{i}")
            await client.ack(answer, held)
            answer = await client.recv()
            assert sotw_names(answer) == [f"one-more-{i}"]
        assert sizes == []


async def test_a_large_new_subscription_is_answered_from_a_worker_thread(
        roomy: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the answer to 100,000 names takes a fraction of a second the loop spends
    serving everyone else instead."""
    threads: list[str] = []
    real = sotw.SotwStream.full_body.__func__  # type: ignore[attr-defined]

    def recorded(cls: type[sotw.SotwStream], current: Any, scope: Any) -> bytes:
        if scope is not None and len(scope.names) >= sotw.LARGE_SUBSCRIPTION:
            threads.append(threading.current_thread().name)
        body: bytes = real(cls, current, scope)
        return body

    monkeypatch.setattr(sotw.SotwStream, "full_body", classmethod(recorded))
    async with roomy.sotw() as client:
        await sotw_converge(client)
        await client.request(ENDPOINT, unknown_names("big-", NAMES - 100))
        assert len((await client.recv(timeout=30)).resources) == NAMES - 100
    assert threads and threading.main_thread().name not in threads
