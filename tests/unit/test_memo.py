"""The response memo (pilotpy/xds/memo.py): bounded in bytes, and an entry lives no longer
than the objects its key names; and the placeholders of unknown names, which large
subscriptions are made of."""

from __future__ import annotations

import gc

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2

from pilotpy.xds.memo import ENTRY_OVERHEAD, Memo
from pilotpy.xds.resources import ResourceSet, empty_resource, make_resource, names
from pilotpy.xds.types import ENDPOINT, ROUTE


def test_an_entry_goes_with_the_subscription_it_was_computed_for() -> None:
    memo = Memo()
    current = ResourceSet(ENDPOINT, ())
    subscription = names([f"n{i}" for i in range(10)])
    memo.put(b"x" * 1000, 1000, "body", current, subscription)
    assert memo.get("body", current, subscription) == b"x" * 1000
    assert memo.size_bytes == 1000 + ENTRY_OVERHEAD
    del subscription
    gc.collect()
    assert len(memo) == 0 and memo.size_bytes == 0
    assert memo.get("body", current, None) is None


def test_entries_are_evicted_least_recently_used_first_past_the_budget() -> None:
    memo = Memo(budget_bytes=10 * (1000 + ENTRY_OVERHEAD))
    current = ResourceSet(ENDPOINT, ())
    for i in range(30):
        memo.put(i, 1000, "entry", current, str(i))
        memo.get("entry", current, "0")  # keep the first one in use
    assert memo.size_bytes <= memo.budget_bytes
    assert len(memo) == 10
    assert memo.get("entry", current, "0") == 0
    assert memo.get("entry", current, "29") == 29
    assert memo.get("entry", current, "5") is None
    memo.set_budget(2 * (1000 + ENTRY_OVERHEAD))
    assert len(memo) == 2


def test_a_long_lived_key_object_keeps_no_trace_of_entries_gone_before_it() -> None:
    """The current set of a class outlives thousands of short subscriptions: what it
    remembers about their entries goes with them."""
    memo = Memo(budget_bytes=50 * (10 + ENTRY_OVERHEAD))
    current = ResourceSet(ENDPOINT, ())
    for i in range(2000):
        memo.put(i, 10, "entry", current, names([f"n{i}"]))
        gc.collect(0)
    gc.collect()
    assert len(memo) == 0
    assert memo._watched == {}


@pytest.mark.parametrize("name", ["outbound|80||a.default.svc.cluster.local", "", "é" * 100,
                                  "x" * 20_000])
def test_the_empty_resources_of_unknown_names_are_what_protobuf_writes(name: str) -> None:
    for type_url, message in (
            (ENDPOINT, endpoint_pb2.ClusterLoadAssignment(cluster_name=name)),
            (ROUTE, route_pb2.RouteConfiguration(name=name,
                                                 validate_clusters=wrappers_pb2.BoolValue()))):
        value = message.SerializeToString(deterministic=True)
        expected = make_resource(type_url, name, value)
        found = empty_resource(type_url, name)
        assert found is not None
        assert (found.name, found.version, found.sotw_entry, found.delta_entry) == (
            expected.name, expected.version, expected.sotw_entry, expected.delta_entry)
