"""Propagation status per object (pilotpy/server/propagation.py) against real streams: which
connected proxies an object's change affects, and whether each acknowledged a config version
carrying it, refused it with its message, or has not answered; over SotW and Delta."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pilotpy.local.stack import http_get
from pilotpy.model.kinds import Kind
from pilotpy.model.meta import Key
from pilotpy.server.propagation import ObjectStatus, ProxyState
from pilotpy.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.xds.xds_harness import (
    GATEWAY_NODE,
    HTTPBIN_CLUSTERS,
    SILENCE,
    Doc,
    Harness,
    delta_converge,
    eventually,
    round_robin,
    sotw_converge,
)

VS = Key(Kind.VIRTUAL_SERVICE, "default", "httpbin")
DR = Key(Kind.DESTINATION_RULE, "default", "httpbin")
SERVICE = Key(Kind.SERVICE, "default", "httpbin-service")
OTHER_NODE = "router~127.0.0.2~gw-other.istio-system~istio-system.svc.cluster.local"
OTHER_META = {"LABELS": {"istio": "other-gateway"}, "NAMESPACE": "istio-system"}


def _status(xds: Harness, key: Key) -> ObjectStatus:
    return xds.plane.propagation.status(key)


def _states(xds: Harness, key: Key) -> dict[str, ProxyState]:
    return {p.proxy: p.state for p in _status(xds, key).proxies}


def _pending_metrics(xds: Harness) -> dict[str, float]:
    return {line.split()[0]: float(line.split()[1])
            for line in xds.plane.metrics.render().splitlines()
            if line.startswith(("pilotpy_config_pending_", "pilotpy_config_oldest_"))}


def _all_to_v1(doc: Doc) -> None:
    doc["spec"]["http"][0]["route"][0]["weight"] = 100
    doc["spec"]["http"][0]["route"][1]["weight"] = 0


async def test_a_change_is_pending_until_the_proxy_acks_it_sotw(xds: Harness) -> None:
    async with xds.sotw() as c:
        await sotw_converge(c)
        assert _states(xds, VS) == {GATEWAY_NODE: ProxyState.ACKED}
        before = _status(xds, VS).change
        assert before is not None

        wait = xds.pushed()
        xds.config.edit("VirtualService", "httpbin", _all_to_v1)
        await wait()
        routes = await c.recv()
        assert routes.type_url == ROUTE
        status = _status(xds, VS)
        assert status.change is not None and status.change.version > before.version
        assert _states(xds, VS) == {GATEWAY_NODE: ProxyState.PENDING}
        assert xds.plane.propagation.pending()[0] == 1
        # The oldest pending change's age, as the metrics give it.
        assert xds.plane.propagation.pending(now=status.change.at + 5.0) == (1, 5.0)
        metrics = _pending_metrics(xds)
        assert metrics["pilotpy_config_pending_objects"] == 1
        assert 0.0 <= metrics["pilotpy_config_oldest_pending_seconds"] < 60.0

        await c.ack(routes)
        await eventually(lambda: _states(xds, VS) == {GATEWAY_NODE: ProxyState.ACKED},
                         what="the VirtualService acknowledged")
        assert xds.plane.propagation.pending() == (0, 0.0)
        assert _pending_metrics(xds) == {"pilotpy_config_pending_objects": 0.0,
                                         "pilotpy_config_oldest_pending_seconds": 0.0}


async def test_a_nack_names_the_proxy_and_its_message_delta(xds: Harness) -> None:
    async with xds.delta() as c:
        await delta_converge(c)
        wait = xds.pushed()
        xds.config.edit("VirtualService", "httpbin", _all_to_v1)
        await wait()
        routes = await c.recv()
        assert routes.type_url == ROUTE
        await c.nack(routes, "route http.80: rejected by the test")

        def refused() -> bool:
            (proxy,) = _status(xds, VS).proxies
            return proxy.state is ProxyState.NACKED

        await eventually(refused, what="the refusal recorded")
        (proxy,) = _status(xds, VS).proxies
        assert (proxy.proxy, proxy.type_url, proxy.message) == (
            GATEWAY_NODE, ROUTE, "route http.80: rejected by the test")
        count, oldest = xds.plane.propagation.pending()
        assert count == 1 and oldest >= 0.0
        # An object whose types the refusal does not touch is unaffected by it.
        assert _states(xds, DR) == {GATEWAY_NODE: ProxyState.ACKED}


async def test_types_a_push_leaves_alone_count_as_acknowledged(xds: Harness) -> None:
    """A Service shapes every type; its change here alters clusters only. The listener and
    route the proxy holds are what the new version has, so once the clusters are ACKed the
    change has reached the proxy."""
    async with xds.delta() as c:
        await delta_converge(c)
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", round_robin)
        await wait()
        clusters = await c.recv()
        assert clusters.type_url == CLUSTER
        assignments = await c.recv()  # the warming clusters' assignments follow
        assert assignments.type_url == ENDPOINT
        await c.ack(clusters)
        assert _states(xds, DR) == {GATEWAY_NODE: ProxyState.PENDING}
        await c.ack(assignments)
        await c.expect_silence(SILENCE)
        await eventually(lambda: _states(xds, DR) == {GATEWAY_NODE: ProxyState.ACKED},
                         what="the DestinationRule acknowledged")

        wait = xds.pushed()
        xds.config.edit("Service", "httpbin-service",
                        lambda d: d["metadata"].setdefault("labels", {}).update(team="a"))
        await wait()
        # Nothing the proxy holds changed: no response, yet the new version has reached it.
        await c.expect_silence(SILENCE)
        assert _states(xds, SERVICE) == {GATEWAY_NODE: ProxyState.ACKED}


async def test_a_refusal_stands_for_later_versions_offering_the_same_resources(
        xds: Harness) -> None:
    async with xds.sotw() as c:
        await sotw_converge(c)
        wait = xds.pushed()
        xds.config.edit("VirtualService", "httpbin", _all_to_v1)
        await wait()
        routes = await c.recv()
        await c.nack(routes, "no")
        await eventually(lambda: _states(xds, VS) == {GATEWAY_NODE: ProxyState.NACKED},
                         what="the refusal recorded")
        # A Service change leaves the routes as they were refused: for that version too the
        # proxy holds no routes of its own choosing, and says so.
        wait = xds.pushed()
        xds.config.edit("Service", "httpbin-service",
                        lambda d: d["metadata"].setdefault("labels", {}).update(team="a"))
        await wait()
        await c.expect_silence(SILENCE)
        (proxy,) = _status(xds, SERVICE).proxies
        assert (proxy.state, proxy.type_url, proxy.message) == (ProxyState.NACKED, ROUTE, "no")


async def test_only_affected_proxies_are_listed(xds: Harness) -> None:
    async with xds.sotw() as gateway, xds.sotw(OTHER_NODE, OTHER_META) as other:
        await sotw_converge(gateway)
        for type_url, names in ((CLUSTER, []), (ENDPOINT, sorted(HTTPBIN_CLUSTERS)),
                                (LISTENER, [])):  # no listener, so no routes
            await other.request(type_url, names)
            await other.ack(await other.recv())
        # The other gateway is selected by no Gateway: the VirtualService is not its concern,
        # the DestinationRule (its clusters) is.
        assert set(_states(xds, VS)) == {GATEWAY_NODE}
        assert _states(xds, DR) == {GATEWAY_NODE: ProxyState.ACKED,
                                    OTHER_NODE: ProxyState.ACKED}


async def test_a_deleted_object_waits_for_the_proxies_that_held_it(xds: Harness) -> None:
    async with xds.sotw() as c:
        await sotw_converge(c)
        xds.plane.propagation.status(VS)  # nothing asked before: dependencies are known anyway
        wait = xds.pushed()
        xds.config.remove("VirtualService", "httpbin")
        await wait()
        routes = await c.recv()
        status = _status(xds, VS)
        assert status.change is not None and status.change.deleted
        assert _states(xds, VS) == {GATEWAY_NODE: ProxyState.PENDING}
        await c.ack(routes)
        await eventually(lambda: _states(xds, VS) == {GATEWAY_NODE: ProxyState.ACKED},
                         what="the deletion acknowledged")
        payload: dict[str, Any] = _status(xds, VS).to_json()
        assert (payload["served"], payload["deleted"], payload["acked"]) == (False, True, 1)


async def test_debug_status_answers_per_object_or_as_a_listing(xds: Harness) -> None:
    port = xds.plane.http_port

    def get(query: str) -> tuple[int, Any]:
        status, _, body = http_get(port, "pilotpy", f"/debug/status?{query}")
        return status, json.loads(body)

    async with xds.sotw() as c:
        await sotw_converge(c)
        code, one = await asyncio.to_thread(get, "kind=vs&namespace=default&name=httpbin")
        assert code == 200 and (one["kind"], one["acked"], one["served"]) == (
            "VirtualService", 1, True)
        code, listing = await asyncio.to_thread(get, "namespace=default")
        assert code == 200
        assert {"DestinationRule", "Gateway", "Service", "VirtualService"} <= {
            o["kind"] for o in listing}
        assert (await asyncio.to_thread(get, "kind=vs&namespace=default&name=nope"))[0] == 404
        assert (await asyncio.to_thread(get, "kind=widget"))[0] == 400
