"""The informer's list/watch state machine against a scripted API (no sockets, no real time)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from pilotpy.runtime.backoff import Backoff
from pilotpy.sources.kube.api import ApiError
from pilotpy.sources.kube.informer import Informer
from pilotpy.sources.kube.kinds import WatchedKind


class Stop(BaseException):
    """Ends the informer's endless loop from inside a scripted call."""


Step = Any  # a dict (list page / discovery), a list of events, or an exception


class ScriptedApi:
    """Each get/watch call takes the next step of its script and records its parameters."""

    def __init__(self, gets: list[Step], watches: list[Step]) -> None:
        self.gets = gets
        self.watches = watches
        self.get_calls: list[tuple[str, dict[str, str]]] = []
        self.watch_calls: list[tuple[str, dict[str, str], float]] = []

    async def get(self, path: str, params: Mapping[str, str] | None = None,
                  timeout: float = 60.0) -> Any:
        self.get_calls.append((path, dict(params or {})))
        if not self.gets:
            raise Stop
        step = self.gets.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    async def watch(self, path: str, params: Mapping[str, str],
                    timeout: float) -> AsyncIterator[dict[str, Any]]:
        self.watch_calls.append((path, dict(params), timeout))
        if not self.watches:
            raise Stop
        step = self.watches.pop(0)
        if isinstance(step, BaseException):
            raise step
        for event in step:
            if isinstance(event, BaseException):
                raise event
            yield event


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.objects: dict[str, dict[str, Any]] = {}

    def replace(self, items: list[dict[str, Any]]) -> None:
        self.calls.append(("replace", [i["metadata"]["name"] for i in items]))
        self.objects = {i["metadata"]["name"]: i for i in items}

    def upsert(self, item: dict[str, Any]) -> None:
        self.calls.append(("upsert", item["metadata"]["name"]))
        self.objects[item["metadata"]["name"]] = item

    def delete(self, item: dict[str, Any]) -> None:
        self.calls.append(("delete", item["metadata"]["name"]))
        self.objects.pop(item["metadata"]["name"], None)


GATEWAYS = WatchedKind("Gateway", "networking.istio.io", ("v1", "v1beta1", "v1alpha3"),
                       "gateways", optional=True)
SERVICES = WatchedKind("Service", "", ("v1",), "services")


def served(plural: str) -> dict[str, Any]:
    return {"resources": [{"name": plural}, {"name": f"{plural}/status"}]}


def page(names: list[str], rv: str = "", token: str = "") -> dict[str, Any]:
    return {"metadata": {"resourceVersion": rv, "continue": token},
            "items": [{"metadata": {"name": n, "namespace": "default", "resourceVersion": "1",
                                    "managedFields": [{"manager": "kubectl"}]}}
                      for n in names]}


def event(kind: str, name: str, rv: str) -> dict[str, Any]:
    return {"type": kind, "object": {"apiVersion": "v1", "kind": "Service",
                                     "metadata": {"name": name, "namespace": "default",
                                                  "resourceVersion": rv}}}


def gone_event() -> dict[str, Any]:
    return {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                        "message": "too old resource version: 5 (90)"}}


def informer(api: ScriptedApi, kind: WatchedKind = SERVICES,
             reachability: list[bool] | None = None,
             ) -> tuple[Informer, RecordingSink, list[float]]:
    sink = RecordingSink()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    inf = Informer(api, kind, sink, sleep=sleep, rng=random.Random(7),  # type: ignore[arg-type]
                   backoff=Backoff(initial=1.0, maximum=8.0, jitter=0.0), page_size=2,
                   on_connected=None if reachability is None else reachability.append)
    return inf, sink, sleeps


async def run(inf: Informer) -> None:
    with pytest.raises(Stop):
        await inf.run()


async def test_paged_list_replaces_once_then_watches_from_the_lists_version() -> None:
    api = ScriptedApi(
        gets=[served("services"), page(["a", "b"], token="t1"), page(["c"], rv="42")],
        watches=[])
    inf, sink, _ = informer(api)
    await run(inf)
    assert sink.calls == [("replace", ["a", "b", "c"])]
    assert api.get_calls[2][1]["continue"] == "t1"
    assert api.get_calls[1][1]["limit"] == "2"
    item = sink.objects["a"]
    assert (item["apiVersion"], item["kind"]) == ("v1", "Service")
    assert "managedFields" not in item["metadata"]
    path, params, timeout = api.watch_calls[0]
    assert path == "/api/v1/services"
    assert params["resourceVersion"] == "42"
    assert params["allowWatchBookmarks"] == "true"
    server_timeout = int(params["timeoutSeconds"])
    assert 300 <= server_timeout < 600
    assert server_timeout < timeout <= server_timeout + 30
    assert inf.synced.is_set() and inf.status.connected


async def test_events_update_the_sink_and_the_resource_version() -> None:
    api = ScriptedApi(
        gets=[served("services"), page([], rv="10")],
        watches=[[event("ADDED", "a", "11"), event("MODIFIED", "a", "12"),
                  {"type": "BOOKMARK", "object": {"kind": "Service",
                                                  "metadata": {"resourceVersion": "15"}}},
                  event("DELETED", "a", "16")]])
    inf, sink, _ = informer(api)
    await run(inf)
    assert sink.calls == [("replace", []), ("upsert", "a"), ("upsert", "a"), ("delete", "a")]
    # The clean close is followed by a watch from the last version seen, without a list.
    assert api.watch_calls[1][1]["resourceVersion"] == "16"
    assert len(api.get_calls) == 2


async def test_bookmark_alone_moves_the_resource_version() -> None:
    api = ScriptedApi(
        gets=[served("services"), page([], rv="10")],
        watches=[[{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "99"}}}]])
    inf, sink, _ = informer(api)
    await run(inf)
    assert api.watch_calls[1][1]["resourceVersion"] == "99"
    assert sink.calls == [("replace", [])]


async def test_watch_error_event_410_relists_and_replaces() -> None:
    api = ScriptedApi(
        gets=[served("services"), page(["a", "b"], rv="10"), page(["b"], rv="90")],
        watches=[[event("ADDED", "c", "11"), gone_event()]])
    reachability: list[bool] = []
    inf, sink, sleeps = informer(api, reachability=reachability)
    await run(inf)
    assert reachability == [True]  # a 410 is an answer, not an outage
    assert sink.calls == [("replace", ["a", "b"]), ("upsert", "c"), ("replace", ["b"])]
    assert sink.objects.keys() == {"b"}
    assert api.watch_calls[-1][1]["resourceVersion"] == "90"
    assert inf.status.relists_after_gone == 1
    assert sleeps == []  # a re-list after 410 is not an outage


async def test_http_410_on_watch_relists() -> None:
    api = ScriptedApi(
        gets=[served("services"), page(["a"], rv="10"), page([], rv="90")],
        watches=[ApiError(410, "Gone", "too old resource version")])
    inf, sink, _ = informer(api)
    await run(inf)
    assert sink.calls == [("replace", ["a"]), ("replace", [])]


async def test_expired_continue_token_restarts_the_list() -> None:
    api = ScriptedApi(
        gets=[served("services"), page(["a", "b"], token="t1"),
              ApiError(410, "Expired", "continue token expired"),
              page(["a", "b"], token="t2"), page(["d"], rv="50")],
        watches=[])
    inf, sink, _ = informer(api)
    await run(inf)
    assert sink.calls == [("replace", ["a", "b", "d"])]
    assert "continue" not in api.get_calls[3][1]
    assert api.watch_calls[0][1]["resourceVersion"] == "50"


async def test_lost_connection_backs_off_and_resumes_the_watch_without_listing() -> None:
    refused = aiohttp.ClientConnectionError("connection refused")
    api = ScriptedApi(
        gets=[served("services"), page(["a"], rv="10")],
        watches=[[event("ADDED", "b", "11")], refused, refused, refused,
                 [event("ADDED", "c", "12")]])
    reachability: list[bool] = []
    inf, sink, sleeps = informer(api, reachability=reachability)
    await run(inf)
    assert reachability == [True, False, True]  # reported once per outage
    assert sleeps == [1.0, 2.0, 4.0]
    assert [c[1]["resourceVersion"] for c in api.watch_calls] == ["10", "11", "11", "11", "11",
                                                                  "12"]
    assert sink.calls == [("replace", ["a"]), ("upsert", "b"), ("upsert", "c")]
    assert len(api.get_calls) == 2
    assert inf.status.connected


async def test_lost_connection_keeps_the_last_state() -> None:
    refused = aiohttp.ClientConnectionError("connection refused")
    api = ScriptedApi(gets=[served("services"), page(["a"], rv="10")],
                      watches=[refused] * 6)
    inf, sink, sleeps = informer(api)
    await run(inf)
    assert sink.calls == [("replace", ["a"])]
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # capped
    assert not inf.status.connected
    assert "connection refused" in inf.status.last_error


async def test_forbidden_backs_off_and_relists_without_syncing() -> None:
    forbidden = ApiError(403, "Forbidden", 'services is forbidden: User "x" cannot list')
    api = ScriptedApi(gets=[served("services"), forbidden, forbidden, page(["a"], rv="3")],
                      watches=[])
    inf, sink, sleeps = informer(api)
    await run(inf)
    assert sleeps == [1.0, 2.0]
    assert sink.calls == [("replace", ["a"])]
    assert inf.status.errors == 2


async def test_forbidden_never_syncs() -> None:
    forbidden = ApiError(403, "Forbidden", "cannot list")
    api = ScriptedApi(gets=[served("services"), forbidden, forbidden], watches=[])
    inf, sink, _ = informer(api)
    await run(inf)
    assert not inf.synced.is_set()
    assert sink.calls == []
    assert "403" in inf.status.last_error


async def test_newest_served_version_is_watched() -> None:
    api = ScriptedApi(gets=[ApiError(404, "NotFound", ""), served("gateways"),
                            page([], rv="1")], watches=[])
    inf, _, _ = informer(api, GATEWAYS)
    await run(inf)
    assert [c[0] for c in api.get_calls] == [
        "/apis/networking.istio.io/v1", "/apis/networking.istio.io/v1beta1",
        "/apis/networking.istio.io/v1beta1/gateways"]
    assert inf.status.version == "v1beta1"


async def test_missing_crd_is_empty_and_synced_then_discovered_later() -> None:
    missing = ApiError(404, "NotFound", "")
    api = ScriptedApi(gets=[missing, missing, missing,  # not installed yet
                            served("gateways"), page(["gw"], rv="5")], watches=[])
    inf, sink, sleeps = informer(api, GATEWAYS)
    await run(inf)
    assert sink.calls == [("replace", []), ("replace", ["gw"])]
    assert sleeps == [30.0]
    assert inf.synced.is_set() and inf.status.installed


async def test_group_without_the_kind_counts_as_missing() -> None:
    api = ScriptedApi(gets=[served("virtualservices"), served("virtualservices"),
                            served("virtualservices")], watches=[])
    inf, sink, _ = informer(api, GATEWAYS)
    await run(inf)
    assert sink.calls == [("replace", [])]
    assert not inf.status.installed


def test_backoff_grows_is_capped_jittered_and_resets() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, jitter=0.5, rng=random.Random(1))
    delays = [backoff.delay() for _ in range(6)]
    bases = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.5 <= delay <= base
    assert len(set(delays)) == len(delays)  # jittered, not a fixed sequence
    backoff.reset()
    assert backoff.delay() <= 0.5


async def test_a_kind_that_vanishes_after_syncing_keeps_its_objects() -> None:
    missing = ApiError(404, "NotFound", "")
    api = ScriptedApi(
        gets=[served("gateways"), page(["gw"], rv="5"),
              missing,  # the list after the watch failed: the CRD is not served (restart)
              missing, missing, missing,  # discovery, while the API server loads its CRDs
              served("gateways"), page(["gw"], rv="9")],
        watches=[ApiError(500, "InternalError", "etcd leader changed")])
    inf, sink, sleeps = informer(api, GATEWAYS)
    await run(inf)
    assert sink.calls == [("replace", ["gw"]), ("replace", ["gw"])]
    assert inf.status.installed
    assert len(sleeps) == 3  # backing off, not the 30 s "not installed" wait
