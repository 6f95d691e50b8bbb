"""State-of-the-world ADS (StreamAggregatedResources) against a running pilotpy: one test per
protocol rule of docs/architecture.md#xds-protocol-rules (and istiod's pkg/xds/server.go
ShouldRespond)."""

from __future__ import annotations

import logging
import shutil
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2

from pilotpy.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.xds.xds_harness import (
    GATEWAY_LISTENER,
    GATEWAY_ROUTE,
    HTTPBIN_CLUSTERS,
    HTTPBIN_DEFAULT,
    HTTPBIN_V1,
    HTTPBIN_V2,
    SILENCE,
    Doc,
    Harness,
    decoded,
    eds_names,
    endpoint_addresses,
    eventually,
    move_endpoint,
    raw_resources,
    round_robin,
    route_names,
    sotw_converge,
    sotw_names,
)

UNKNOWN_EDS = "outbound|80||nothing.default.svc.cluster.local"
UNKNOWN_ROUTE = "http.9999"


# -- ACK, NACK, nonces ------------------------------------------------------------------------

async def test_ack_is_recorded(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER)
        response = await c.recv()
        status = xds.status().of(CLUSTER)
        assert status.sent_nonce == response.nonce
        assert not status.acked_nonce
        await c.ack(response)
        await eventually(lambda: status.acked_nonce == response.nonce, what="ACK recorded")
        assert status.acked_version == response.version_info
        assert status.last_error == ""
        assert status.nacks == 0
        await c.expect_silence(SILENCE)  # an ACK is not answered


async def test_nack_is_recorded_and_not_answered(xds: Harness,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pilotpy.xds")
    async with xds.sotw() as c:
        await c.request(CLUSTER)
        first = await c.recv()
        await c.nack(first, "cluster rejected by test")
        status = xds.status().of(CLUSTER)
        await eventually(lambda: status.nacks == 1, what="NACK recorded")
        assert status.last_error == "cluster rejected by test"
        assert status.rejected_nonce == first.nonce
        assert status.acked_nonce == ""
        assert xds.plane.xds.stats.rejects[CLUSTER] == 1
        assert any("NACK" in r.getMessage() and "cluster rejected by test" in r.getMessage()
                   for r in caplog.records)
        await c.expect_silence(SILENCE)  # the previous config stays; nothing is resent

        # The stream lives on: the next change is pushed, and its ACK clears the error.
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", round_robin)
        await wait()
        second = await c.recv()
        assert second.type_url == CLUSTER
        assert second.nonce != first.nonce
        assert second.version_info != first.version_info
        await c.ack(second)
        await eventually(lambda: status.acked_nonce == second.nonce, what="ACK recorded")
        assert status.last_error == ""
        assert status.nacks == 1


async def test_stale_nonce_is_ignored(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(ENDPOINT, [HTTPBIN_V1])
        first = await c.recv()
        await c.request(ENDPOINT, [HTTPBIN_V1])  # renewed subscription: a newer nonce
        second = await c.recv()
        assert second.nonce != first.nonce

        # Adding a name would be answered, but not with a nonce that is not the latest.
        await c.request(ENDPOINT, [HTTPBIN_V1, HTTPBIN_V2], version=first.version_info,
                        nonce=first.nonce)
        await c.expect_silence(SILENCE)
        await c.request(ENDPOINT, [HTTPBIN_V1, HTTPBIN_V2], version=first.version_info,
                        nonce="never-sent")
        await c.expect_silence(SILENCE)
        assert xds.plane.xds.stats.expired_nonces[ENDPOINT] == 2
        assert xds.status().of(ENDPOINT).acked_nonce == ""  # a stale nonce ACKs nothing

        await c.request(ENDPOINT, [HTTPBIN_V1, HTTPBIN_V2], version=second.version_info,
                        nonce=second.nonce)
        third = await c.recv()
        assert sotw_names(third) == [HTTPBIN_V2]


async def test_empty_nonce_with_version_is_answered_after_reconnect(xds: Harness) -> None:
    async with xds.sotw() as first:
        before = await sotw_converge(first)
    eds = eds_names(decoded(before[CLUSTER]))
    routes = route_names(decoded(before[LISTENER]))

    # Envoy reconnects with the versions it holds and no nonce: every type must be answered
    # (with the same content, since nothing changed), or the proxy waits forever.
    async with xds.sotw() as again:
        for type_url, names in ((CLUSTER, []), (ENDPOINT, eds), (LISTENER, []),
                                (ROUTE, routes)):
            await again.request(type_url, names, version=before[type_url].version_info)
            response = await again.recv()
            assert response.type_url == type_url
            assert response.nonce
            assert response.version_info == before[type_url].version_info
            assert raw_resources(response) == raw_resources(before[type_url])


async def test_empty_nonce_on_an_open_stream_renews_the_subscription(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(LISTENER)
        first = await c.recv()
        await c.ack(first)
        await c.expect_silence(SILENCE)
        await c.request(LISTENER, version=first.version_info)  # no nonce
        second = await c.recv()
        assert second.nonce != first.nonce
        assert raw_resources(second) == raw_resources(first)


# -- every requested name is answered -------------------------------------------------------

async def test_unknown_route_name_is_answered_empty(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(ROUTE, [GATEWAY_ROUTE, UNKNOWN_ROUTE])
        response = await c.recv()
        routes: dict[str, Any] = {r.name: r for r in decoded(response)}
        assert set(routes) == {GATEWAY_ROUTE, UNKNOWN_ROUTE}
        assert all(isinstance(r, route_pb2.RouteConfiguration) for r in routes.values())
        unknown = routes[UNKNOWN_ROUTE]
        assert list(unknown.virtual_hosts) == []
        assert unknown.HasField("validate_clusters")
        assert unknown.validate_clusters.value is False
        assert len(routes[GATEWAY_ROUTE].virtual_hosts) > 0


async def test_unknown_eds_name_is_answered_empty(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(ENDPOINT, [HTTPBIN_V2, UNKNOWN_EDS])
        response = await c.recv()
        assignments: dict[str, Any] = {a.cluster_name: a for a in decoded(response)}
        assert set(assignments) == {HTTPBIN_V2, UNKNOWN_EDS}
        assert all(isinstance(a, endpoint_pb2.ClusterLoadAssignment)
                   for a in assignments.values())
        assert list(assignments[UNKNOWN_EDS].endpoints) == []
        assert endpoint_addresses(assignments[HTTPBIN_V2]) == {"127.0.0.12"}


async def test_every_requested_name_is_answered(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER)
        cds = await c.recv()
        clusters: list[Any] = decoded(cds)
        assert all(isinstance(x, cluster_pb2.Cluster) for x in clusters)
        wanted = eds_names(clusters)
        assert set(wanted) >= HTTPBIN_CLUSTERS
        await c.ack(cds)
        await c.request(ENDPOINT, wanted)
        eds = await c.recv()
        assert sorted(sotw_names(eds)) == wanted  # one response, every name
        # Clusters without endpoints (the gateway's own Service has no EndpointSlice) get
        # an empty assignment rather than no answer.
        empty = [a.cluster_name for a in decoded(eds) if not a.endpoints]
        assert empty, "the example has EDS clusters without endpoints"
        await c.ack(eds)

        await c.request(LISTENER)
        lds = await c.recv()
        await c.ack(lds)
        routes = route_names(decoded(lds))
        assert routes == [GATEWAY_ROUTE]
        await c.request(ROUTE, [*routes, UNKNOWN_ROUTE])
        rds = await c.recv()
        assert sorted(sotw_names(rds)) == sorted([*routes, UNKNOWN_ROUTE])
        await c.ack(rds)
        await c.expect_silence(SILENCE)


async def test_ack_adding_names_answers_only_the_added_names(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(ENDPOINT, [HTTPBIN_V1])
        first = await c.recv()
        assert sotw_names(first) == [HTTPBIN_V1]
        await c.ack(first, [HTTPBIN_V1, HTTPBIN_V2, UNKNOWN_EDS])
        second = await c.recv()
        assert sorted(sotw_names(second)) == sorted([HTTPBIN_V2, UNKNOWN_EDS])
        await c.ack(second, [HTTPBIN_V2])  # dropping names is not answered
        await c.expect_silence(SILENCE)


async def test_eds_empty_names_unsubscribes(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(ENDPOINT, [HTTPBIN_V2])
        first = await c.recv()
        await c.ack(first, [])
        await c.expect_silence(SILENCE)
        wait = xds.pushed()
        move_endpoint(xds.config, "httpbin-v2", "127.0.0.13")
        await wait()
        await c.expect_silence(SILENCE)  # no watch left, no push


# -- pushes ---------------------------------------------------------------------------------

async def test_no_response_when_nothing_changed(xds: Harness) -> None:
    async with xds.sotw() as c:
        await sotw_converge(c)
        pushes = sum(xds.plane.xds.stats.pushes.values())

        # The same objects in a rewritten file: the store sees no change.
        for path in xds.config.files():
            xds.config.write(path.name, xds.config.read(path), comment="reformatted")
        await c.expect_silence(SILENCE)

        # A real change that does not touch this gateway's config (a mesh-only
        # VirtualService): a new push context, regenerated, identical, so nothing is sent.
        wait = xds.pushed()
        xds.config.add("mesh-only.yaml", {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "httpbin-mesh", "namespace": "default"},
            "spec": {"hosts": ["httpbin-service"],
                     "http": [{"route": [{"destination": {"host": "httpbin-service"}}]}]},
        })
        await wait()
        await c.expect_silence(SILENCE)
        assert sum(xds.plane.xds.stats.pushes.values()) == pushes


async def test_push_order_cds_eds_lds_rds(xds: Harness) -> None:
    async with xds.sotw() as c:
        before = await sotw_converge(c)

        def add_server(doc: Doc) -> None:
            doc["spec"]["servers"].append({
                "port": {"number": 443, "name": "http-alt", "protocol": "HTTP"},
                "hosts": ["httpbin.local"],
            })

        def fewer_retries(doc: Doc) -> None:
            doc["spec"]["http"][0]["retries"]["attempts"] = 3

        # One change set touching every type: no await between the edits.
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", round_robin)  # CDS
        move_endpoint(xds.config, "httpbin-v2", "127.0.0.13")  # EDS
        xds.config.edit("Gateway", "httpbin-gateway", add_server)  # LDS
        xds.config.edit("VirtualService", "httpbin", fewer_retries)  # RDS
        await wait()
        responses = [await c.recv() for _ in range(4)]
        await c.expect_silence(SILENCE)
        assert [r.type_url for r in responses] == [CLUSTER, ENDPOINT, LISTENER, ROUTE]
        for response in responses:
            assert response.version_info != before[response.type_url].version_info
        assert set(sotw_names(responses[2])) == {GATEWAY_LISTENER, "0.0.0.0_8443"}
        assignments = {a.cluster_name: a for a in decoded(responses[1])}
        assert endpoint_addresses(assignments[HTTPBIN_V2]) == {"127.0.0.13"}


async def test_eds_request_after_cds_push_is_answered(xds: Harness) -> None:
    async with xds.sotw() as c:
        before = await sotw_converge(c)
        eds = eds_names(decoded(before[CLUSTER]))

        # Without a cluster change, re-sending the EDS request as an ACK is not answered.
        await c.request(ENDPOINT, eds, version=before[ENDPOINT].version_info,
                        nonce=before[ENDPOINT].nonce)
        await c.expect_silence(SILENCE)

        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", round_robin)
        await wait()
        cds = await c.recv()
        assert cds.type_url == CLUSTER
        await c.expect_silence(SILENCE)  # endpoints did not change: no EDS push
        old, new = raw_resources(before[CLUSTER]), raw_resources(cds)
        modified = {n for n in new if old.get(n) != new[n]}
        assert modified == HTTPBIN_CLUSTERS

        # Envoy ACKs CDS and, as the modified clusters warm, asks for EDS again with the
        # nonce it last saw. The clusters warm until they get an assignment: answer it.
        await c.ack(cds)
        await c.request(ENDPOINT, eds, version=before[ENDPOINT].version_info,
                        nonce=before[ENDPOINT].nonce)
        answer = await c.recv()
        assert answer.type_url == ENDPOINT
        assert set(sotw_names(answer)) == modified
        previous = raw_resources(before[ENDPOINT])
        for name, value in raw_resources(answer).items():
            assert value == previous[name]  # same endpoints, freshly sent

        await c.ack(answer)
        await c.expect_silence(SILENCE)  # and only once


async def test_endpoint_only_change_pushes_eds_only(xds: Harness) -> None:
    async with xds.sotw() as c:
        before = await sotw_converge(c)
        wait = xds.pushed()
        move_endpoint(xds.config, "httpbin-v2", "127.0.0.13")
        await wait()
        eds = await c.recv()
        assert eds.type_url == ENDPOINT
        await c.expect_silence(SILENCE)  # no CDS, LDS or RDS
        assignments = {a.cluster_name: a for a in decoded(eds)}
        # Only the assignments that changed: v2 and the unsubsetted cluster, not v1.
        assert set(assignments) == {HTTPBIN_V2, HTTPBIN_DEFAULT}
        assert endpoint_addresses(assignments[HTTPBIN_V2]) == {"127.0.0.13"}
        assert endpoint_addresses(assignments[HTTPBIN_DEFAULT]) == {"127.0.0.11", "127.0.0.13"}
        assert eds.version_info != before[ENDPOINT].version_info
        stats = xds.plane.xds.stats.pushes
        assert (stats[CLUSTER], stats[LISTENER], stats[ROUTE]) == (1, 1, 1)


async def test_identical_resources_are_byte_identical_across_versions(xds: Harness) -> None:
    async with xds.sotw() as c:
        before = await sotw_converge(c)
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", round_robin)
        await wait()
        cds = await c.recv()
        assert cds.type_url == CLUSTER
        assert cds.version_info != before[CLUSTER].version_info
        # A SotW CDS response carries the full set, in the same order.
        assert sotw_names(cds) == sotw_names(before[CLUSTER])
        old, new = raw_resources(before[CLUSTER]), raw_resources(cds)
        unchanged = {n for n in new if n not in HTTPBIN_CLUSTERS}
        assert unchanged
        for name in unchanged:
            assert new[name] == old[name], f"{name} changed bytes without changing content"
        for name in HTTPBIN_CLUSTERS:
            assert new[name] != old[name]
        await c.ack(cds)
        await c.expect_silence(SILENCE)  # and listeners/routes were not resent


# -- full sets, last good config ------------------------------------------------------------

async def test_gateway_without_gateway_gets_an_empty_listener_set(xds: Harness) -> None:
    node = "router~127.0.0.2~other-1.istio-system~istio-system.svc.cluster.local"
    meta = {"LABELS": {"istio": "other-gateway"}, "NAMESPACE": "istio-system"}
    async with xds.sotw(node, meta) as c:
        await c.request(LISTENER)
        lds = await c.recv()  # an answer, with zero listeners
        assert lds.type_url == LISTENER
        assert list(lds.resources) == []
        assert lds.version_info


async def test_deleted_gateway_pushes_an_empty_listener_set(xds: Harness) -> None:
    async with xds.sotw() as c:
        before = await sotw_converge(c)
        assert sotw_names(before[LISTENER]) == [GATEWAY_LISTENER]
        wait = xds.pushed()
        xds.config.remove("Gateway", "httpbin-gateway")
        await wait()
        lds = await c.recv()
        rds = await c.recv()
        await c.expect_silence(SILENCE)
        # No clusters changed; listeners first (the full, now empty, set), then the route
        # Envoy still watches, answered empty.
        assert (lds.type_url, rds.type_url) == (LISTENER, ROUTE)
        assert list(lds.resources) == []
        (route,) = decoded(rds)
        assert isinstance(route, route_pb2.RouteConfiguration)
        assert route.name == GATEWAY_ROUTE
        assert list(route.virtual_hosts) == []


async def test_broken_config_keeps_the_last_good_config(xds: Harness) -> None:
    async with xds.sotw() as c:
        before = await sotw_converge(c)
        xds.config.write_text("httpbin-gateway.yaml", "kind: Gateway\n  spec: [unclosed\n")
        await c.expect_silence(SILENCE)
    async with xds.sotw() as fresh:
        after = await sotw_converge(fresh)
    for type_url in (CLUSTER, LISTENER, ROUTE):
        assert raw_resources(after[type_url]) == raw_resources(before[type_url])


async def test_vanished_config_directory_keeps_the_last_good_config(xds: Harness) -> None:
    async with xds.sotw() as c:
        before = await sotw_converge(c)
        shutil.rmtree(xds.config.root)
        await c.expect_silence(1.0)
    # A proxy connecting while the source is gone still gets the whole last good config.
    async with xds.sotw() as fresh:
        after = await sotw_converge(fresh)
    for type_url in (CLUSTER, LISTENER, ROUTE):
        assert raw_resources(after[type_url]) == raw_resources(before[type_url])
    assert raw_resources(after[LISTENER])
