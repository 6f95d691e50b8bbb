"""Broken and hostile ADS clients (docs/operations.md#limits): each is refused with a status
that names what it did, the server forgets it at once (nothing left in /debug/adsz, no
proxy counted), and a well-behaved client beside it keeps getting its pushes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from pilotpy import discovery
from pilotpy.server.controlplane import ControlPlane
from pilotpy.translate.generate import generate
from pilotpy.xds.debug import CONFIG_DUMP
from pilotpy.xds.limits import StreamLimits
from pilotpy.xds.types import CLUSTER, ENDPOINT
from tests.xds.raw_stream import RawStream
from tests.xds.xds_harness import (
    GATEWAY_META,
    GATEWAY_NODE,
    HTTPBIN_CLUSTERS,
    ConfigDir,
    Harness,
    eventually,
    harness,
    round_robin,
    sotw_converge,
)
from tests.xds_client import build_node

# What istioctl's ADS client sends (tests/xds/test_debug_syncz.py).
ISTIOCTL_NODE = "sidecar~10.0.0.9~test-1.istio-system~istio-system.svc.cluster.local"
ISTIOCTL_META = {"GENERATOR": "event", "NAMESPACE": "istio-system"}
# Field 1 (a string) whose length runs far past the end of the message.
GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"
SMALL_LIMITS = StreamLimits(max_resource_names=50, max_type_urls=6, max_node_id_bytes=300,
                            max_unknown_names=100)


def sotw_request(type_url: str, names: list[str] | None = None, *, node: str | None = None,
                 nonce: str = "", error: str | None = None) -> bytes:
    request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names or [],
                                             response_nonce=nonce)
    if node is not None:
        request.node.CopyFrom(build_node(node, GATEWAY_META))
    if error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    data: bytes = request.SerializeToString()
    return data


def delta_request(type_url: str, subscribe: list[str] | None = None, *,
                  node: str | None = None) -> bytes:
    request = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url,
                                                  resource_names_subscribe=subscribe or [])
    if node is not None:
        request.node.CopyFrom(build_node(node, GATEWAY_META))
    data: bytes = request.SerializeToString()
    return data


def first_request(delta: bool) -> bytes:
    return (delta_request(CLUSTER, node=GATEWAY_NODE) if delta
            else sotw_request(CLUSTER, node=GATEWAY_NODE))


async def debug_json(plane: ControlPlane, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{plane.http_port}{path}") as response:
        assert response.status == 200, path
        return await response.json()


async def still_served(xds: Harness, healthy: Any) -> None:
    """The well-behaved client gets the next change."""
    wait = xds.pushed()
    xds.config.edit("DestinationRule", "httpbin", round_robin)
    await wait()
    assert (await healthy.recv()).type_url == CLUSTER


@pytest_asyncio.fixture
async def limited(config_dir: ConfigDir) -> AsyncIterator[Harness]:
    """A control plane with small stream limits."""
    async with harness(config_dir, stream_limits=SMALL_LIMITS) as found:
        yield found


@pytest_asyncio.fixture
async def short_queue(config_dir: ConfigDir) -> AsyncIterator[Harness]:
    """A control plane that queues two requests per stream."""
    async with harness(config_dir, stream_limits=StreamLimits(max_queued_requests=2)) as found:
        yield found


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_a_corrupt_message_mid_stream_ends_it_invalid_argument_and_leaves_adsz_clean(
        xds: Harness, delta: bool, caplog: pytest.LogCaptureFixture) -> None:
    async with xds.sotw() as healthy:
        await sotw_converge(healthy)
        async with RawStream(xds.target, delta=delta) as raw:
            raw.send(first_request(delta))
            await raw.recv()
            assert (await debug_json(xds.plane, "/debug/adsz"))["totalClients"] == 2
            with caplog.at_level(logging.INFO):
                raw.send(GARBAGE)
                code, details = await raw.wait_closed()
                await eventually(lambda: len(xds.plane.xds.connections) == 1,
                                 what="one stream left")
        # One line at INFO (the disconnect and why), no traceback.
        assert [r.levelname for r in caplog.records if r.levelno >= logging.WARNING] == []
        (gone,) = [r.getMessage() for r in caplog.records if "disconnected" in r.getMessage()]
        assert gone.endswith("INVALID_ARGUMENT: malformed request (6 bytes): Error parsing "
                             f"message with type 'envoy.service.discovery.v3."
                             f"{'Delta' if delta else ''}DiscoveryRequest': Wire format was "
                             "corrupt"), gone
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("malformed request (6 bytes)"), details
        assert "class" not in details and len(details) < 300
        await eventually(lambda: len(xds.plane.xds.connections) == 1, what="one stream left")
        adsz = await debug_json(xds.plane, "/debug/adsz")
        assert adsz["totalClients"] == 1
        assert len(await debug_json(xds.plane, "/debug/syncz")) == 1
        assert xds.plane.discovery.proxy_count == 1
        await still_served(xds, healthy)


async def test_a_client_that_sends_without_reading_is_cut_off_resource_exhausted(
        short_queue: Harness) -> None:
    """Each request asks for 40,000 new assignments (a 5 MB answer) and the client reads
    none of the answers: the server's first write waits for the client, the next two
    requests wait in the stream's queue (its bound here), and the one after them ends the
    stream. The client finds RESOURCE_EXHAUSTED behind the responses it had not read.
    (It sends one request at a time: a send still pending when the stream ends would fail
    the call on the client's side with INTERNAL and hide the server's status.)"""
    flood = sotw_request(ENDPOINT, [f"outbound|80||flood-{i}.example" for i in range(40_000)])
    connections = short_queue.plane.xds.connections
    async with short_queue.sotw() as healthy:
        await sotw_converge(healthy)
        async with RawStream(short_queue.target) as raw:
            raw.send(first_request(delta=False))
            await raw.recv()
            for _ in range(10):
                raw.send(flood)
                with contextlib.suppress(AssertionError):
                    await eventually(lambda: len(connections) == 1, timeout=0.5)
                    break
            assert len(connections) == 1, "the flooding stream is still served"
            assert short_queue.plane.discovery.proxy_count == 1
            await still_served(short_queue, healthy)
            code, details = await raw.drain()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details == ("more than 2 requests or 8388608 bytes sent ahead of the answers; "
                           "a client must read its responses")


async def test_a_node_id_over_the_limit_is_refused_without_echoing_it(
        limited: Harness) -> None:
    node = "router~127.0.0.1~" + "x" * 100_000 + ".istio-system~istio-system.svc.cluster.local"
    async with RawStream(limited.target) as raw:
        raw.send(sotw_request(CLUSTER, node=node))
        code, details = await raw.wait_closed()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == (f"node.id is {len(node)} characters long, at most 300 are accepted")
    assert not limited.plane.xds.connections


async def test_more_resource_names_than_the_limit_in_one_request_are_refused(
        limited: Harness) -> None:
    async with RawStream(limited.target) as raw:
        raw.send(first_request(delta=False))
        await raw.recv()
        raw.send(sotw_request(ENDPOINT, [f"name-{i}" for i in range(51)]))
        code, details = await raw.wait_closed()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == ("request for eds: 51 resource names, at most 50 are served per request "
                       "and per subscription")
    await eventually(lambda: not limited.plane.xds.connections, what="no stream left")


async def test_a_delta_subscription_grown_past_the_limit_is_refused(limited: Harness) -> None:
    """Delta subscriptions accumulate: 30 names twice is 60, over a limit of 50."""
    async with RawStream(limited.target, delta=True) as raw:
        raw.send(first_request(delta=True))
        await raw.recv()
        raw.send(delta_request(ENDPOINT, [f"a-{i}" for i in range(30)]))
        await raw.recv()
        raw.send(delta_request(ENDPOINT, [f"b-{i}" for i in range(30)]))
        code, details = await raw.wait_closed()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.startswith("subscription to eds: 60 resource names, at most 50"), details
    await eventually(lambda: not limited.plane.xds.connections, what="no stream left")


async def test_names_matching_no_resource_are_bounded_across_streams(
        limited: Harness) -> None:
    """40 unknown names per stream, 100 for every stream together: the third stream is
    refused, and its room comes back when another stream goes. Known names cost nothing."""
    known = sorted(HTTPBIN_CLUSTERS)

    async def subscribe(raw: RawStream, prefix: str) -> None:
        raw.send(first_request(delta=False))
        await raw.recv()
        raw.send(sotw_request(ENDPOINT, [*known, *(f"{prefix}-{i}" for i in range(40))]))
        await raw.recv()

    async with RawStream(limited.target) as first, RawStream(limited.target) as second:
        await subscribe(first, "a")
        await subscribe(second, "b")
        assert limited.plane.xds.unknown_names == 80
        async with RawStream(limited.target) as third:
            third.send(first_request(delta=False))
            await third.recv()
            third.send(sotw_request(ENDPOINT, [f"c-{i}" for i in range(40)]))
            code, details = await third.wait_closed()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details == ("40 eds names match no resource; pilotpy holds at most 100 such "
                           "names across its streams")
        await first.close()
        await eventually(lambda: limited.plane.xds.unknown_names == 40, what="room back")
        async with RawStream(limited.target) as fourth:
            await subscribe(fourth, "d")
            assert limited.plane.xds.unknown_names == 80


async def test_more_type_urls_than_the_limit_on_one_stream_are_refused(
        limited: Harness) -> None:
    async with RawStream(limited.target) as raw:
        raw.send(first_request(delta=False))
        await raw.recv()
        for i in range(5):
            raw.send(sotw_request(f"type.googleapis.com/made.up.T{i}", ["x"]))
            await raw.recv()
        raw.send(sotw_request("type.googleapis.com/made.up.T5", ["x"]))
        code, details = await raw.wait_closed()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == "more than 6 type URLs on one stream"


async def test_unknown_type_urls_are_counted_under_one_other_label(xds: Harness) -> None:
    rejects = xds.plane.xds.stats.rejects
    for i in range(20):
        async with RawStream(xds.target) as raw:
            raw.send(first_request(delta=False))
            await raw.recv()
            raw.send(sotw_request(f"type.googleapis.com/made.up.Type{i}", ["x"]))
            await raw.recv()
            raw.send(sotw_request(f"type.googleapis.com/made.up.Type{i}", ["x"], nonce="nope",
                                  error="no such type"))

            def counted(expected: int = i + 1) -> bool:
                return sum(rejects.values()) == expected

            await eventually(counted, what="the NACK")
    text = xds.plane.metrics.render()
    assert "made.up" not in text and 'type="type' not in text
    assert 'pilot_xds_pushes{type="other"} 20' in text
    assert 'pilot_total_xds_rejects{type="other"} 20' in text


async def test_a_huge_nack_message_is_kept_and_logged_bounded(
        xds: Harness, caplog: pytest.LogCaptureFixture) -> None:
    async with xds.sotw() as client:
        responses = await sotw_converge(client)
        with caplog.at_level(logging.INFO, logger="pilotpy.xds"):
            await client.nack(responses[CLUSTER], message="e" * 1_000_000)
            await eventually(lambda: xds.status().types[CLUSTER].nacks == 1, what="the NACK")
        error = xds.status().types[CLUSTER].last_error
        assert error.startswith("eeee") and len(error) < 4200
        (record,) = [r for r in caplog.records if r.getMessage().startswith("NACK")]
        assert len(record.getMessage()) < 1000


async def test_a_config_dump_asking_for_many_long_names_is_logged_bounded(
        xds: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """A debug client names 1000 proxies of 1000 characters: no such proxy, an empty
    answer, and one log line of bounded length (not the megabyte of names)."""
    names = [f"p{i}-" + "x" * 1000 for i in range(1000)]
    async with xds.sotw(ISTIOCTL_NODE, ISTIOCTL_META) as debug:
        with caplog.at_level(logging.INFO, logger="pilotpy.xds"):
            await debug.request(CONFIG_DUMP, names)
            answer = await debug.recv()
    assert list(answer.resources) == []
    (record,) = [r for r in caplog.records if r.getMessage().startswith("config_dump")]
    assert record.getMessage().startswith("config_dump: proxy p0-xxx")
    assert len(record.getMessage()) < 400


async def test_label_only_variants_share_one_class_and_one_generation(
        xds: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """100 gateways differing in a label no selector reads (the examples' Gateway selects
    `istio`): one class, its config generated once per change, not once per label value."""
    generated: list[str] = []
    real = generate

    def counted(push: Any, view: Any, **kwargs: Any) -> Any:
        generated.append(view.proxy.id)
        return real(push, view, **kwargs)

    monkeypatch.setattr(discovery, "generate", counted)
    clients = [xds.sotw(GATEWAY_NODE.replace("gw-1", f"gw-{i}"),
                        {**GATEWAY_META, "LABELS": {"istio": "ingressgateway", "run": str(i)}})
               for i in range(100)]
    for client in clients:
        await client.__aenter__()
        await client.request(CLUSTER)
        await client.recv()
    assert xds.plane.discovery.class_count == 1
    assert len(generated) == 1
    wait = xds.pushed()
    xds.config.edit("DestinationRule", "httpbin", round_robin)
    await wait()
    for client in clients:
        assert (await client.recv()).type_url == CLUSTER
    assert len(generated) == 2
