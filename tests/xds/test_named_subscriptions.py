"""Named LDS and CDS subscriptions, by the xDS spec's wildcard rules
(docs/architecture.md#xds-protocol-rules): no names on every request so far (the legacy
form) or `*` among the names subscribes to everything; names without `*` to exactly those
(a proxyless gRPC client names its listeners and clusters). A SotW LDS or CDS response
carries everything the subscription covers, since the client takes a name missing from it as
removed; Delta lists a subscribed name that no longer exists in `removed_resources`. Envoy's
wildcard streams are unchanged (test_sotw.py, test_delta.py)."""

from __future__ import annotations

from pilotpy.xds.types import CLUSTER
from tests.xds.xds_harness import (
    HTTPBIN_CLUSTERS,
    HTTPBIN_V1,
    HTTPBIN_V2,
    SILENCE,
    Doc,
    Harness,
    round_robin,
    sotw_names,
)
from tests.xds.xds_harness import decoded_delta as delta_resources

UNKNOWN_CLUSTER = "outbound|80||nothing.default.svc.cluster.local"


def v2_round_robin(doc: Doc) -> None:
    """A DestinationRule edit that changes cluster v2 alone."""
    for subset in doc["spec"]["subsets"]:
        if subset["name"] == "v2":
            subset["trafficPolicy"] = {"loadBalancer": {"simple": "ROUND_ROBIN"}}


def without_v2(doc: Doc) -> None:
    doc["spec"]["subsets"] = [s for s in doc["spec"]["subsets"] if s["name"] != "v2"]


def delta_names(response: object) -> list[str]:
    return sorted(delta_resources(response))


# -- SotW -------------------------------------------------------------------------------------

async def test_sotw_named_cds_request_gets_exactly_the_named_clusters(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER, [HTTPBIN_V2, HTTPBIN_V1])
        response = await c.recv()
        assert sotw_names(response) == [HTTPBIN_V1, HTTPBIN_V2]


async def test_sotw_legacy_empty_cds_request_is_a_wildcard(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER)
        everything = set(sotw_names(await c.recv()))
        assert everything > HTTPBIN_CLUSTERS  # the blackhole too


async def test_sotw_star_plus_names_gets_the_full_set(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER)
        everything = sotw_names(await c.recv())
    async with xds.sotw() as c:
        await c.request(CLUSTER, ["*", HTTPBIN_V1])
        assert sotw_names(await c.recv()) == everything


async def test_sotw_unknown_cds_name_is_left_out_of_the_answer(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER, [HTTPBIN_V1, UNKNOWN_CLUSTER])
        assert sotw_names(await c.recv()) == [HTTPBIN_V1]


async def test_sotw_named_cds_ack_adding_a_name_answers_every_subscribed_cluster(
        xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER, [HTTPBIN_V1])
        first = await c.recv()
        await c.ack(first, [HTTPBIN_V1, HTTPBIN_V2])
        second = await c.recv()
        # V1 did not change, yet it is resent: a name missing from the answer is removed.
        assert sotw_names(second) == [HTTPBIN_V1, HTTPBIN_V2]


async def test_sotw_named_cds_ack_dropping_a_name_is_not_answered(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER, [HTTPBIN_V1, HTTPBIN_V2])
        first = await c.recv()
        await c.ack(first, [HTTPBIN_V1])
        await c.expect_silence(SILENCE)


async def test_sotw_named_cds_push_resends_every_subscribed_cluster(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER, [HTTPBIN_V1, HTTPBIN_V2])
        first = await c.recv()
        await c.ack(first)
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", v2_round_robin)
        await wait()
        pushed = await c.recv()
        assert sotw_names(pushed) == [HTTPBIN_V1, HTTPBIN_V2]


async def test_sotw_named_cds_change_outside_the_subscription_is_not_pushed(
        xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER, [HTTPBIN_V1])
        await c.ack(await c.recv())
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", v2_round_robin)
        await wait()
        await c.expect_silence(SILENCE)


async def test_sotw_named_cds_removed_cluster_is_left_out_of_the_push(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER, [HTTPBIN_V1, HTTPBIN_V2])
        await c.ack(await c.recv())
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", without_v2)
        await wait()
        assert sotw_names(await c.recv()) == [HTTPBIN_V1]


async def test_sotw_empty_cds_list_after_names_subscribes_to_nothing(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER, [HTTPBIN_V1])
        first = await c.recv()
        await c.ack(first, [])
        await c.expect_silence(SILENCE)  # no longer the legacy wildcard: nothing to send
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", round_robin)
        await wait()
        await c.expect_silence(SILENCE)


async def test_sotw_star_added_to_named_cds_answers_the_full_set(xds: Harness) -> None:
    async with xds.sotw() as c:
        await c.request(CLUSTER, [HTTPBIN_V1])
        first = await c.recv()
        await c.ack(first, ["*", HTTPBIN_V1])
        everything = set(sotw_names(await c.recv()))
        assert everything > HTTPBIN_CLUSTERS


# -- Delta ------------------------------------------------------------------------------------

async def test_delta_named_cds_removed_cluster_is_listed_as_removed(xds: Harness) -> None:
    async with xds.delta() as c:
        await c.subscribe(CLUSTER, [HTTPBIN_V1, HTTPBIN_V2])
        first = await c.recv()
        assert delta_names(first) == [HTTPBIN_V1, HTTPBIN_V2]
        await c.ack(first)
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", without_v2)
        await wait()
        pushed = await c.recv()
        assert pushed.type_url == CLUSTER
        assert list(pushed.removed_resources) == [HTTPBIN_V2]


async def test_delta_unknown_cds_name_is_not_answered_with_a_resource(xds: Harness) -> None:
    async with xds.delta() as c:
        await c.subscribe(CLUSTER, [HTTPBIN_V1, UNKNOWN_CLUSTER])
        assert delta_names(await c.recv()) == [HTTPBIN_V1]


async def test_delta_legacy_wildcard_ends_when_names_are_subscribed(xds: Harness) -> None:
    async with xds.delta() as c:
        await c.subscribe(CLUSTER)
        everything = await c.recv()
        assert set(delta_names(everything)) > HTTPBIN_CLUSTERS
        await c.ack(everything)
        await c.subscribe(CLUSTER, [HTTPBIN_V1])
        await c.expect_silence(SILENCE)  # the client holds V1 already
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", v2_round_robin)
        await wait()
        await c.expect_silence(SILENCE)  # V2 is no longer subscribed


async def test_delta_star_plus_names_stays_a_wildcard(xds: Harness) -> None:
    async with xds.delta() as c:
        await c.request(CLUSTER, subscribe=["*", HTTPBIN_V1])
        everything = await c.recv()
        assert set(delta_names(everything)) > HTTPBIN_CLUSTERS
        await c.ack(everything)
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", v2_round_robin)
        await wait()
        assert delta_names(await c.recv()) == [HTTPBIN_V2]


async def test_delta_unsubscribing_star_keeps_the_named_clusters(xds: Harness) -> None:
    async with xds.delta() as c:
        await c.request(CLUSTER, subscribe=["*", HTTPBIN_V1])
        await c.ack(await c.recv())
        await c.unsubscribe(CLUSTER, ["*"])
        await c.expect_silence(SILENCE)
        wait = xds.pushed()
        xds.config.edit("DestinationRule", "httpbin", round_robin)
        await wait()
        assert delta_names(await c.recv()) == [HTTPBIN_V1]  # not the default or V2
