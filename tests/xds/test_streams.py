"""Stream lifecycle against a running pilotpy: node validation, readiness, keepalive, and the
sharing of generated config and response bodies across the streams of one proxy class
(docs/architecture.md#xds-protocol-rules, docs/architecture.md#performance-principles)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

import pilotpy.discovery
import pilotpy.xds.server
from pilotpy.xds.sotw import SotwStream
from pilotpy.xds.types import CLUSTER, ENDPOINT, LISTENER
from tests.xds.xds_harness import (
    GATEWAY_META,
    GATEWAY_NODE,
    HTTPBIN_V2,
    SILENCE,
    Harness,
    decoded,
    eventually,
    move_endpoint,
    round_robin,
)
from tests.xds_client import DeltaClient, SotwClient, StreamClosedError

GATEWAY_2 = "router~127.0.0.2~gw-2.istio-system~istio-system.svc.cluster.local"
DEBUG_NODE = "debug~0.0.0.0~istioctl~cluster.local"
SYNCZ = "istio.io/debug/syncz"


def _open(xds: Harness, protocol: str, node_id: str) -> SotwClient | DeltaClient:
    if protocol == "sotw":
        return xds.sotw(node_id)
    return xds.delta(node_id)


async def _first_request(client: SotwClient | DeltaClient, *, send_node: bool = True) -> None:
    await client.request(CLUSTER, send_node=send_node)


# -- node validation ------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["sotw", "delta"])
async def test_missing_node_id_fails_invalid_argument(xds: Harness, protocol: str) -> None:
    async with _open(xds, protocol, GATEWAY_NODE) as c:
        await _first_request(c, send_node=False)
        assert await c.wait_closed(5.0) == grpc.StatusCode.INVALID_ARGUMENT
        assert "node" in (c.details or "")
    assert xds.plane.discovery.proxy_count == 0


@pytest.mark.parametrize("protocol", ["sotw", "delta"])
async def test_three_part_node_id_fails_invalid_argument(xds: Harness, protocol: str) -> None:
    async with _open(xds, protocol, "router~127.0.0.1~gw-1.istio-system") as c:
        await _first_request(c)
        assert await c.wait_closed(5.0) == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(StreamClosedError):
            await c.recv(timeout=1.0)
    assert xds.plane.discovery.proxy_count == 0


@pytest.mark.parametrize("node_id", [
    "router~not-an-ip~gw-1.istio-system~istio-system.svc.cluster.local",
    "~127.0.0.1~gw-1.istio-system~istio-system.svc.cluster.local",
    "router~127.0.0.1~gw-1.istio-system~istio-system.svc.cluster.local~extra",
])
async def test_malformed_node_ids_fail_invalid_argument(xds: Harness, node_id: str) -> None:
    async with xds.sotw(node_id) as c:
        await c.request(CLUSTER)
        assert await c.wait_closed(5.0) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("protocol", ["sotw", "delta"])
async def test_metadata_namespace_contradicting_the_node_id_fails_invalid_argument(
        xds: Harness, protocol: str) -> None:
    """Config is chosen by namespace: an id naming istio-system with metadata saying
    `default` would be served another namespace's config."""
    client = (xds.sotw if protocol == "sotw" else xds.delta)(
        GATEWAY_NODE, {"NAMESPACE": "default", "LABELS": {"istio": "ingressgateway"}})
    async with client as c:
        await _first_request(c)
        assert await c.wait_closed(5.0) == grpc.StatusCode.INVALID_ARGUMENT
        assert "names namespace 'istio-system' but its metadata NAMESPACE is 'default'" in (
            c.details or "")
    assert xds.plane.discovery.proxy_count == 0


async def test_later_requests_may_omit_node(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER)
        await c.ack(await c.recv())
        await c.request(ENDPOINT, [HTTPBIN_V2])
        eds = await c.recv()
        assert [a.cluster_name for a in decoded(eds)] == [HTTPBIN_V2]
        assert c.sent[0].HasField("node")
        assert not any(r.HasField("node") for r in c.sent[1:])


async def test_debug_node_type_is_accepted(xds: Harness) -> None:
    async with xds.sotw(DEBUG_NODE, {}) as c:
        await c.request(SYNCZ)
        assert (await c.recv()).type_url == SYNCZ  # not rejected: answered
        await c.request(CLUSTER)
        cds = await c.recv()  # the stream serves
        assert cds.type_url == CLUSTER
        assert not c.closed
    async with xds.delta(DEBUG_NODE, {}) as d:
        await d.subscribe(CLUSTER)
        assert (await d.recv()).type_url == CLUSTER


# -- lifecycle ------------------------------------------------------------------------------

async def test_stream_before_ready_waits_then_succeeds(xds: Harness) -> None:
    xds.plane.xds.ready.clear()
    async with xds.sotw() as c:
        await c.request(CLUSTER)
        await c.expect_silence(SILENCE)  # held, not failed, until the sources have synced
        xds.plane.xds.ready.set()
        cds = await c.recv()
        assert cds.type_url == CLUSTER
        assert len(cds.resources) > 0


async def test_stream_never_ready_fails_unavailable(xds: Harness,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pilotpy.xds.server, "READY_WAIT_SECONDS", 0.2)
    xds.plane.xds.ready.clear()
    async with xds.sotw() as c:
        await c.request(CLUSTER)
        assert await c.wait_closed(5.0) == grpc.StatusCode.UNAVAILABLE


async def test_disconnect_forgets_the_stream(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER)
        await c.recv()
        assert len(xds.statuses()) == 1
        assert xds.plane.discovery.proxy_count == 1
    await eventually(lambda: not xds.plane.xds.connections, what="stream forgotten")
    assert xds.plane.discovery.proxy_count == 0


async def test_keepalive_pings_every_second_for_10s_keep_the_stream(xds: Harness) -> None:
    # pilot-agent and Envoy ping far more often than gRPC C-core's server defaults allow;
    # a GOAWAY(too_many_pings) would end the stream.
    async with xds.sotw(keepalive_ms=1000) as c:
        await c.request(CLUSTER)
        await c.ack(await c.recv())
        await c.expect_silence(10.0)  # neither a response nor the stream's end
        await c.request(LISTENER)
        lds = await c.recv()
        assert lds.type_url == LISTENER
        assert len(xds.statuses()) == 1


# -- sharing across the streams of one proxy class ------------------------------------------

def _count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Wrap owner.name to count its calls; returns a one-element counter."""
    calls = [0]
    original: Callable[..., Any] = getattr(owner, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


async def test_streams_of_one_class_share_one_generation(
        xds: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    generated = _count_calls(monkeypatch, pilotpy.discovery, "generate")
    async with xds.sotw() as one, xds.sotw(GATEWAY_2) as two, xds.delta(GATEWAY_2) as three:
        for c in (one, two):
            await c.request(CLUSTER)
            await c.ack(await c.recv())
        await three.subscribe(CLUSTER)
        await three.ack(await three.recv())
        assert generated[0] == 1  # three proxies, one class, one generation

        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", round_robin)
        await wait()
        pushed = [await one.recv(), await two.recv(), await three.recv()]
        assert {r.type_url for r in pushed} == {CLUSTER}
        assert generated[0] == 2  # once more per push context, not per stream

        other = {"LABELS": {"istio": "other-gateway"}, "NAMESPACE": "istio-system"}
        async with xds.sotw("router~127.0.0.3~gw-3.istio-system~istio-system.svc.cluster.local",
                            other) as four:
            await four.request(CLUSTER)
            await four.recv()
        assert generated[0] == 3  # a different class is generated on its own


async def test_sotw_response_bodies_shared_across_streams(
        xds: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = _count_calls(monkeypatch, SotwStream, "_body")
    async with xds.sotw() as one, xds.sotw(GATEWAY_2, GATEWAY_META) as two:
        responses = []
        for c in (one, two):
            await c.request(CLUSTER)
            responses.append(await c.recv())
        assert bodies[0] == 1  # serialized once for both streams
        assert responses[0].nonce and responses[1].nonce
        a, b = (type(r)() for r in responses)
        for copy, r in zip((a, b), responses, strict=True):
            copy.CopyFrom(r)
            copy.nonce = ""
        assert a.SerializeToString() == b.SerializeToString()  # identical but for the nonce

        for c, r in zip((one, two), responses, strict=True):
            await c.ack(r)
            await c.request(ENDPOINT, [HTTPBIN_V2])
            await c.recv()
        assert bodies[0] == 2  # one EDS body for the same subscription

        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", round_robin)
        await wait()
        pushed = [await one.recv(), await two.recv()]
        assert [r.type_url for r in pushed] == [CLUSTER, CLUSTER]
        assert bodies[0] == 3  # and one body per push
        assert pushed[0].nonce and pushed[1].nonce


async def test_a_pushed_eds_body_is_joined_once_for_the_streams_of_a_class(
        xds: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # EDS (named resources) pushes only what changed: the streams of one class holding the
    # same assignments within the same subscription share the joined body too.
    async with xds.sotw() as one, xds.sotw(GATEWAY_2, GATEWAY_META) as two:
        for c in (one, two):
            await c.request(CLUSTER)
            await c.ack(await c.recv())
            await c.request(ENDPOINT, [HTTPBIN_V2])
            await c.ack(await c.recv())
        bodies = [0]
        join = SotwStream._body

        def counting(*args: Any) -> bytes:
            bodies[0] += 1
            return join(*args)

        monkeypatch.setattr(SotwStream, "_body", staticmethod(counting))
        wait = xds.pushed()
        move_endpoint(xds.config, "httpbin-v2", "127.0.0.13")
        await wait()
        pushed = [await one.recv(), await two.recv()]
        assert [r.type_url for r in pushed] == [ENDPOINT, ENDPOINT]
        assert bodies[0] == 1
        assert decoded(pushed[0]) == decoded(pushed[1])


# -- a failing generation --------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["sotw", "delta"])
async def test_a_class_whose_generation_fails_is_refused_unavailable_others_are_served(
        xds: Harness, protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A translation bug in one proxy class never takes the server down: a proxy of that
    class with no config yet is refused with Unavailable (it retries); the others are
    served, and readiness is unchanged."""
    from pilotpy.translate.generate import generate as real

    def broken(push: Any, view: Any, **options: Any) -> Any:
        if view.labels.get("istio") == "broken":
            raise RuntimeError("a translation bug")
        return real(push, view, **options)

    monkeypatch.setattr(pilotpy.discovery, "generate", broken)
    async with _open(xds, protocol, GATEWAY_NODE) as healthy:
        await healthy.request(CLUSTER)
        assert len((await healthy.recv()).resources) >= 3  # the httpbin clusters
    client = (xds.sotw if protocol == "sotw" else xds.delta)(
        GATEWAY_2, {"LABELS": {"istio": "broken"}, "NAMESPACE": "istio-system"})
    async with client as c:
        await _first_request(c)
        assert await c.wait_closed(5.0) == grpc.StatusCode.UNAVAILABLE
        assert "could not generate config for this proxy" in (c.details or "")
    assert xds.plane.ready
    assert xds.plane.discovery.generation_failures == {"router": 1}
