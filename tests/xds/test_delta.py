"""Incremental ADS (DeltaAggregatedResources) against a running pilotpy: one test per rule of
docs/architecture.md#xds-protocol-rules (and istiod's pilot/pkg/xds/delta.go)."""

from __future__ import annotations

from typing import Any

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
    ConfigDir,
    Harness,
    decoded_delta,
    delta_converge,
    eds_names,
    endpoint_addresses,
    eventually,
    move_endpoint,
    round_robin,
    running,
)

UNKNOWN_EDS = "outbound|80||nothing.default.svc.cluster.local"
UNKNOWN_ROUTE = "http.9999"
GONE_CLUSTER = "outbound|80||gone.default.svc.cluster.local"


def names(response: Any) -> list[str]:
    return [r.name for r in response.resources]


async def test_delta_subscribe_unsubscribe(xds: Harness) -> None:
    async with xds.delta() as c:
        await c.subscribe(ENDPOINT, [HTTPBIN_V1])
        first = await c.recv()
        assert first.type_url == ENDPOINT
        assert names(first) == [HTTPBIN_V1]
        assert list(first.removed_resources) == []
        await c.ack(first)
        await c.expect_silence(SILENCE)

        await c.subscribe(ENDPOINT, [HTTPBIN_V2])
        second = await c.recv()
        assert names(second) == [HTTPBIN_V2]  # v1 is unchanged: not resent
        assert second.nonce != first.nonce
        await c.ack(second)

        await c.unsubscribe(ENDPOINT, [HTTPBIN_V1])
        await c.expect_silence(SILENCE)

        # v1 (and the unsubsetted cluster) move; v2, the only name left, does not.
        wait = xds.pushed()
        move_endpoint(xds.config, "httpbin-v1", "127.0.0.14")
        await wait()
        await c.expect_silence(SILENCE)

        await c.subscribe(ENDPOINT, [HTTPBIN_V1])
        again = await c.recv()
        assert names(again) == [HTTPBIN_V1]
        assert endpoint_addresses(decoded_delta(again)[HTTPBIN_V1]) == {"127.0.0.14"}
        assert again.resources[0].version != first.resources[0].version


async def test_delta_wildcard_star_and_explicit_cds_names(xds: Harness) -> None:
    async with xds.delta() as wildcard:
        await wildcard.request(CLUSTER, subscribe=["*"])
        everything = await wildcard.recv()
        assert set(names(everything)) >= HTTPBIN_CLUSTERS
        assert len(everything.resources) > len(HTTPBIN_CLUSTERS)
    async with xds.delta() as explicit:
        await explicit.subscribe(CLUSTER, [HTTPBIN_V1])
        only = await explicit.recv()
        assert names(only) == [HTTPBIN_V1]


async def test_delta_unknown_names_are_answered_empty(xds: Harness) -> None:
    async with xds.delta() as c:
        await c.subscribe(ENDPOINT, [HTTPBIN_V2, UNKNOWN_EDS])
        eds = await c.recv()
        assignments = decoded_delta(eds)
        assert set(assignments) == {HTTPBIN_V2, UNKNOWN_EDS}
        unknown = assignments[UNKNOWN_EDS]
        assert isinstance(unknown, endpoint_pb2.ClusterLoadAssignment)
        assert unknown.cluster_name == UNKNOWN_EDS
        assert list(unknown.endpoints) == []
        await c.ack(eds)

        await c.subscribe(ROUTE, [GATEWAY_ROUTE, UNKNOWN_ROUTE])
        rds = await c.recv()
        routes = decoded_delta(rds)
        assert set(routes) == {GATEWAY_ROUTE, UNKNOWN_ROUTE}
        empty = routes[UNKNOWN_ROUTE]
        assert isinstance(empty, route_pb2.RouteConfiguration)
        assert list(empty.virtual_hosts) == []
        assert empty.HasField("validate_clusters")
        assert empty.validate_clusters.value is False


async def test_delta_nack_is_recorded_and_not_answered(xds: Harness) -> None:
    async with xds.delta() as c:
        await c.subscribe(CLUSTER)
        cds = await c.recv()
        await c.nack(cds, "delta cluster rejected")
        status = xds.status().of(CLUSTER)
        await eventually(lambda: status.nacks == 1, what="NACK recorded")
        assert status.last_error == "delta cluster rejected"
        assert status.rejected_nonce == cds.nonce
        assert xds.plane.xds.stats.rejects[CLUSTER] == 1
        await c.expect_silence(SILENCE)
        await c.ack(cds)
        await eventually(lambda: status.acked_nonce == cds.nonce, what="ACK recorded")
        assert status.last_error == ""
        await c.expect_silence(SILENCE)  # an ACK without changes is not answered


async def test_delta_removed_resources_for_deleted_cluster(xds: Harness) -> None:
    async with xds.delta() as c:
        await delta_converge(c)
        known = c.known_versions(CLUSTER)
        assert {HTTPBIN_V1, HTTPBIN_V2} <= set(known)

        wait = xds.pushed()
        xds.config.remove("DestinationRule", "httpbin")  # its subsets' clusters go away
        await wait()
        cds = await c.recv()
        assert cds.type_url == CLUSTER
        assert sorted(cds.removed_resources) == sorted([HTTPBIN_V1, HTTPBIN_V2])
        for resource in cds.resources:  # anything sent did change
            assert known.get(resource.name) != resource.version
        modified = set(names(cds))
        # Modified clusters get their assignment unasked; the removed clusters' assignments
        # (still subscribed until Envoy unsubscribes) must not keep their endpoints.
        eds = await c.recv()
        assert eds.type_url == ENDPOINT
        assert modified <= set(names(eds))
        stale = decoded_delta(eds)
        for name in (HTTPBIN_V1, HTTPBIN_V2):
            assert name in eds.removed_resources or not stale[name].endpoints
        await c.ack(cds)
        await c.ack(eds)
        await c.expect_silence(SILENCE)
        assert HTTPBIN_V1 not in c.known_versions(CLUSTER)

        wait = xds.pushed()
        xds.config.remove("Gateway", "httpbin-gateway")
        await wait()
        lds = await c.recv()
        assert lds.type_url == LISTENER
        assert list(lds.removed_resources) == [GATEWAY_LISTENER]
        assert list(lds.resources) == []


async def test_delta_initial_resource_versions_are_honoured(xds: Harness) -> None:
    async with xds.delta() as first:
        await delta_converge(first)
    clusters = first.known_versions(CLUSTER)
    assignments = first.known_versions(ENDPOINT)

    async with xds.delta() as again:
        # Everything as the server has it: nothing to send, but the type is answered.
        await again.subscribe(CLUSTER, initial_versions=clusters)
        cds = await again.recv()
        assert names(cds) == []
        assert list(cds.removed_resources) == []
        await again.ack(cds)
        await again.subscribe(ENDPOINT, sorted(assignments), initial_versions=assignments)
        eds = await again.recv()
        assert names(eds) == []
        await again.ack(eds)

    async with xds.delta() as stale:
        # One outdated version and one cluster the server no longer has.
        held = {**clusters, HTTPBIN_V1: "0000000000000000", GONE_CLUSTER: "1234"}
        await stale.subscribe(CLUSTER, initial_versions=held)
        cds = await stale.recv()
        assert names(cds) == [HTTPBIN_V1]
        assert cds.resources[0].version == clusters[HTTPBIN_V1]
        assert list(cds.removed_resources) == [GONE_CLUSTER]


async def test_delta_modified_cluster_gets_its_assignment(xds: Harness) -> None:
    async with xds.delta() as c:
        before = await delta_converge(c)
        assignments = c.known_versions(ENDPOINT)

        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", round_robin)
        await wait()
        cds = await c.recv()
        assert cds.type_url == CLUSTER
        assert set(names(cds)) == HTTPBIN_CLUSTERS
        # Envoy asks nothing after a Delta CDS update; the modified clusters warm until
        # they get an assignment, so it follows unasked, though the endpoints are the same.
        eds = await c.recv()
        assert eds.type_url == ENDPOINT
        assert set(names(eds)) == set(eds_names(decoded_delta(cds).values()))
        for resource in eds.resources:
            assert resource.version == assignments[resource.name]
        await c.expect_silence(SILENCE)
        await c.ack(cds)
        await c.ack(eds)
        await c.expect_silence(SILENCE)
        assert eds.system_version_info == cds.system_version_info
        assert cds.system_version_info != before[CLUSTER].system_version_info


async def test_delta_endpoint_only_change_pushes_changed_assignments_only(
        xds: Harness) -> None:
    async with xds.delta() as c:
        await delta_converge(c)
        wait = xds.pushed()
        move_endpoint(xds.config, "httpbin-v2", "127.0.0.13")
        await wait()
        eds = await c.recv()
        assert eds.type_url == ENDPOINT
        assert sorted(names(eds)) == sorted([HTTPBIN_DEFAULT, HTTPBIN_V2])
        assert list(eds.removed_resources) == []
        await c.expect_silence(SILENCE)


async def _versions(config: ConfigDir, *, extra_push: bool) -> dict[str, dict[str, str]]:
    """name -> version per type, from a fresh Delta stream to a fresh pilotpy."""
    async with running(config.root) as plane:
        if extra_push:
            # Push contexts are counted per process; make this one's counter differ.
            wait = Harness(plane, config).pushed()
            config.add("mesh-only.yaml", {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "mesh-only", "namespace": "default"},
                "spec": {"hosts": ["httpbin-service"],
                         "http": [{"route": [{"destination": {"host": "httpbin-service"}}]}]},
            })
            await wait()
        node = Harness(plane, config)
        async with node.delta() as c:
            responses = await delta_converge(c)
        system = {t: r.system_version_info for t, r in responses.items()}
        out = {t: c.known_versions(t) for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE)}
        out["system"] = system
        return out


async def test_delta_versions_are_content_hashes_stable_across_restarts(
        config_dir: ConfigDir) -> None:
    first = await _versions(config_dir, extra_push=False)
    second = await _versions(config_dir, extra_push=True)  # restarted, one more push
    assert first["system"] != second["system"]  # the push counters differ...
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        assert first[type_url], type_url
        assert first[type_url] == second[type_url]  # ...the resource versions do not
    assert len(set(first[CLUSTER].values())) == len(first[CLUSTER])  # per resource


async def test_delta_subscription_change_applied_on_stale_nonce(xds: Harness) -> None:
    async with xds.delta() as c:
        await c.subscribe(ENDPOINT, [HTTPBIN_V1])
        first = await c.recv()
        await c.ack(first)
        await c.expect_silence(SILENCE)
        status = xds.status().of(ENDPOINT)
        await eventually(lambda: status.acked_nonce == first.nonce, what="ACK recorded")

        # Envoy can send a subscription change before it has seen the latest response.
        await c.request(ENDPOINT, subscribe=[HTTPBIN_V2], nonce="stale-nonce")
        second = await c.recv()
        assert names(second) == [HTTPBIN_V2]
        assert xds.plane.xds.stats.expired_nonces[ENDPOINT] == 1
        assert status.acked_nonce == first.nonce  # the stale nonce ACKed nothing

        await c.request(ENDPOINT, unsubscribe=[HTTPBIN_V1], nonce=first.nonce)  # stale too
        await c.expect_silence(SILENCE)
        wait = xds.pushed()
        move_endpoint(xds.config, "httpbin-v1", "127.0.0.14")
        await wait()
        await c.expect_silence(SILENCE)  # the unsubscribe was applied


async def test_delta_reconnect_with_versions_skips_unchanged_and_sends_changed(
        xds: Harness) -> None:
    async with xds.delta() as first:
        await delta_converge(first)
    held = first.known_versions(ENDPOINT)
    wait = xds.pushed()
    move_endpoint(xds.config, "httpbin-v2", "127.0.0.13")
    await wait()
    async with xds.delta() as again:
        await again.subscribe(ENDPOINT, sorted(held), initial_versions=held)
        eds = await again.recv()
        assert sorted(names(eds)) == sorted([HTTPBIN_DEFAULT, HTTPBIN_V2])


async def test_delta_ack_is_recorded(xds: Harness) -> None:
    async with xds.delta() as c:
        await c.subscribe(LISTENER)
        lds = await c.recv()
        status = xds.status().of(LISTENER)
        assert status.sent_nonce == lds.nonce
        assert status.sent_version == lds.system_version_info
        await c.ack(lds)
        await eventually(lambda: status.acked_nonce == lds.nonce, what="ACK recorded")
        # What was ACKed is what was sent: debug status compares the two to report sync.
        assert status.acked_version == status.sent_version == lds.system_version_info
        assert status.last_error == ""


async def test_delta_reconnect_modified_cluster_gets_its_assignment(xds: Harness) -> None:
    async with xds.delta() as first:
        await delta_converge(first)
    clusters = first.known_versions(CLUSTER)
    assignments = first.known_versions(ENDPOINT)

    # While Envoy is away, the clusters change but their endpoints do not.
    wait = xds.pushed()
    xds.config.edit("DestinationRule", "httpbin", round_robin)
    await wait()

    async with xds.delta() as again:
        await again.subscribe(CLUSTER, initial_versions=clusters)
        cds = await again.recv()
        assert set(names(cds)) == HTTPBIN_CLUSTERS
        # Envoy's EDS request carries the versions it holds, all current. The re-sent
        # clusters warm until they get an assignment, so theirs must be sent anyway.
        await again.subscribe(ENDPOINT, sorted(assignments), initial_versions=assignments)
        eds = await again.recv()
        assert set(names(eds)) == set(eds_names(decoded_delta(cds).values()))
