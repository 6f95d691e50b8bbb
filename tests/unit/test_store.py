"""The store: debounce like istiod (100 ms quiet, 10 s at most), no-op writes, partitions, and
immutable change sets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotpy.model import Key
from pilotpy.store import ChangeSet, Debounce, Store

# -- Debounce, with explicit times -------------------------------------------------------------


def test_nothing_pending_means_no_deadline() -> None:
    debounce = Debounce()
    assert not debounce.pending
    assert debounce.deadline() is None
    assert not debounce.due(1e9)


def test_single_event_fires_after_the_quiet_period() -> None:
    debounce = Debounce(quiet=0.1, max_wait=10.0)
    debounce.event(5.0)
    assert debounce.pending
    assert debounce.deadline() == pytest.approx(5.1)
    assert not debounce.due(5.09)
    assert debounce.due(5.1)


def test_each_event_restarts_the_quiet_period() -> None:
    debounce = Debounce(quiet=0.1, max_wait=10.0)
    debounce.event(0.0)
    debounce.event(0.05)
    assert not debounce.due(0.1)
    assert debounce.deadline() == pytest.approx(0.15)


def test_steady_stream_of_events_still_fires_at_max_wait() -> None:
    # An event every 90 ms never leaves 100 ms of quiet; istiod pushes anyway after 10 s.
    debounce = Debounce(quiet=0.1, max_wait=10.0)
    fired_at = None
    for tick in range(200):  # 18 s of events
        now = tick * 0.09
        deadline = debounce.deadline()
        if deadline is not None and deadline <= now:
            fired_at = deadline
            break
        debounce.event(now)
    assert fired_at == pytest.approx(10.0)


def test_reset_forgets_the_burst() -> None:
    debounce = Debounce(quiet=0.1, max_wait=10.0)
    debounce.event(0.0)
    debounce.event(9.0)
    debounce.reset()
    assert not debounce.pending and debounce.deadline() is None
    debounce.event(20.0)
    # a new burst starts its own 10 s budget
    assert debounce.deadline() == pytest.approx(20.1)


# -- Store writes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Obj:
    """A stand-in for a parsed object: compared by value, like the model's dataclasses."""

    name: str
    version: int = 1


def key(name: str, kind: str = "Service", namespace: str = "default") -> Key:
    return Key(kind, namespace, name)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def new_store() -> Store:
    return Store(clock=FakeClock())


def test_upsert_is_in_the_next_snapshot() -> None:
    store = new_store()
    store.upsert("a.yaml", key("reviews"), Obj("reviews"))
    assert store.pending
    snapshot = store.snapshot()
    assert snapshot.objects == {"Service": {key("reviews"): Obj("reviews")}}
    assert snapshot.changed == {key("reviews")}
    assert snapshot.version == 1
    assert not store.pending


def test_storing_an_equal_object_is_a_no_op() -> None:
    store = new_store()
    store.upsert("a.yaml", key("reviews"), Obj("reviews"))
    store.snapshot()
    store.upsert("a.yaml", key("reviews"), Obj("reviews"))  # a new, equal instance
    assert not store.pending
    assert store.snapshot().changed == frozenset()


def test_replacing_a_partition_with_equal_content_is_a_no_op() -> None:
    store = new_store()
    store.replace_partition("a.yaml", {key("a"): Obj("a"), key("b"): Obj("b")})
    store.snapshot()
    store.replace_partition("a.yaml", {key("a"): Obj("a"), key("b"): Obj("b")})
    assert not store.pending


def test_changed_object_is_recorded() -> None:
    store = new_store()
    store.upsert("a.yaml", key("reviews"), Obj("reviews"))
    store.snapshot()
    store.upsert("a.yaml", key("reviews"), Obj("reviews", 2))
    snapshot = store.snapshot()
    assert snapshot.changed == {key("reviews")}
    assert snapshot.objects["Service"][key("reviews")] == Obj("reviews", 2)
    assert snapshot.version == 2


def test_replace_partition_drops_objects_no_longer_there() -> None:
    store = new_store()
    store.replace_partition("a.yaml", {key("a"): Obj("a"), key("b"): Obj("b")})
    store.snapshot()
    store.replace_partition("a.yaml", {key("a"): Obj("a")})
    snapshot = store.snapshot()
    assert snapshot.changed == {key("b")}
    assert snapshot.objects["Service"] == {key("a"): Obj("a")}


def test_delete_removes_the_object() -> None:
    store = new_store()
    store.upsert("kube", key("a"), Obj("a"))
    store.snapshot()
    store.delete("kube", key("a"))
    snapshot = store.snapshot()
    assert snapshot.changed == {key("a")}
    assert key("a") not in snapshot.objects["Service"]


def test_deleting_an_unknown_key_is_a_no_op() -> None:
    store = new_store()
    store.upsert("kube", key("a"), Obj("a"))
    store.snapshot()
    store.delete("kube", key("missing"))
    store.delete("elsewhere", key("a"))  # held by another partition
    assert not store.pending
    assert store.snapshot().objects["Service"] == {key("a"): Obj("a")}


def test_same_key_in_two_partitions_the_last_by_name_wins(
        caplog: pytest.LogCaptureFixture) -> None:
    """`kubectl apply -f dir` applies files in name order: the last one's version stays."""
    store = new_store()
    store.upsert("b.yaml", key("reviews"), Obj("from-b"))
    store.upsert("a.yaml", key("reviews"), Obj("from-a"))
    assert store.snapshot().objects["Service"][key("reviews")] == Obj("from-b")
    assert "is defined in a.yaml, b.yaml; using b.yaml (the last, as kubectl apply -f " \
           "would)" in caplog.text


def test_removing_the_winner_falls_back_to_the_other_partition() -> None:
    store = new_store()
    store.upsert("a.yaml", key("reviews"), Obj("from-a"))
    store.upsert("b.yaml", key("reviews"), Obj("from-b"))
    store.snapshot()
    store.replace_partition("b.yaml", {})
    snapshot = store.snapshot()
    assert snapshot.changed == {key("reviews")}
    assert snapshot.objects["Service"][key("reviews")] == Obj("from-a")
    store.delete("a.yaml", key("reviews"))
    assert key("reviews") not in store.snapshot().objects["Service"]


def test_a_losing_partition_changing_is_not_a_change() -> None:
    store = new_store()
    store.upsert("a.yaml", key("reviews"), Obj("from-a"))
    store.upsert("b.yaml", key("reviews"), Obj("from-b"))
    store.snapshot()
    store.upsert("a.yaml", key("reviews"), Obj("from-a", 2))
    assert not store.pending


def test_objects_are_grouped_by_kind() -> None:
    store = new_store()
    store.upsert("x", key("reviews", "Service"), Obj("svc"))
    store.upsert("x", key("reviews", "VirtualService"), Obj("vs"))
    objects = store.snapshot().objects
    assert objects["Service"] == {key("reviews", "Service"): Obj("svc")}
    assert objects["VirtualService"] == {key("reviews", "VirtualService"): Obj("vs")}


def test_a_snapshot_is_not_changed_by_later_writes() -> None:
    store = new_store()
    store.upsert("x", key("a"), Obj("a"))
    store.upsert("x", key("b"), Obj("b"))
    first = store.snapshot()
    store.upsert("x", key("a"), Obj("a", 2))
    store.delete("x", key("b"))
    store.upsert("x", key("c"), Obj("c"))
    store.upsert("x", key("vs", "VirtualService"), Obj("vs"))
    second = store.snapshot()
    assert first.objects == {"Service": {key("a"): Obj("a"), key("b"): Obj("b")}}
    assert second.objects["Service"] == {key("a"): Obj("a", 2), key("c"): Obj("c")}
    assert first.changed == {key("a"), key("b")}
    assert second.changed == {key("a"), key("b"), key("c"), key("vs", "VirtualService")}


def test_unchanged_kinds_are_shared_between_snapshots() -> None:
    # Sharing is what lets the push context skip rebuilding indexes of untouched kinds.
    store = new_store()
    store.upsert("x", key("a"), Obj("a"))
    store.upsert("x", key("vs", "VirtualService"), Obj("vs"))
    first = store.snapshot()
    store.upsert("x", key("vs", "VirtualService"), Obj("vs", 2))
    second = store.snapshot()
    assert second.objects["Service"] is first.objects["Service"]
    assert second.objects["VirtualService"] is not first.objects["VirtualService"]


# -- changes(): debounced change sets ----------------------------------------------------------


async def next_change(changes: AsyncIterator[ChangeSet], timeout: float) -> ChangeSet:
    return await asyncio.wait_for(anext(changes), timeout)


async def test_a_burst_is_coalesced_into_one_change_set() -> None:
    store = Store(quiet=0.05, max_wait=2.0)
    changes = store.changes()
    consumer = asyncio.ensure_future(next_change(changes, 2.0))
    for i in range(5):
        store.upsert("x", key(f"s{i}"), Obj(f"s{i}"))
        await asyncio.sleep(0.01)
    change_set = await consumer
    assert change_set.changed == {key(f"s{i}") for i in range(5)}
    assert change_set.version == 1
    with pytest.raises(TimeoutError):
        await next_change(changes, 0.15)


async def test_a_change_set_waits_for_quiet() -> None:
    store = Store(quiet=0.1, max_wait=2.0)
    changes = store.changes()
    started = time.monotonic()
    store.upsert("x", key("a"), Obj("a"))
    change_set = await next_change(changes, 2.0)
    assert time.monotonic() - started >= 0.09
    assert change_set.changed == {key("a")}


async def test_a_steady_stream_is_cut_at_max_wait() -> None:
    store = Store(quiet=0.1, max_wait=0.3)
    changes = store.changes()
    consumer = asyncio.ensure_future(next_change(changes, 2.0))
    started = time.monotonic()
    written = 0
    while not consumer.done() and time.monotonic() - started < 1.5:
        store.upsert("x", key(f"s{written}"), Obj("s"))
        written += 1
        await asyncio.sleep(0.03)
    change_set = await consumer
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.0
    assert 0 < len(change_set.changed) <= written


async def test_no_op_writes_do_not_wake_the_consumer() -> None:
    store = Store(quiet=0.02, max_wait=1.0)
    store.upsert("x", key("a"), Obj("a"))
    changes = store.changes()
    await next_change(changes, 1.0)
    store.upsert("x", key("a"), Obj("a"))
    with pytest.raises(TimeoutError):
        await next_change(changes, 0.15)


async def test_changes_after_a_change_set_start_a_new_one() -> None:
    store = Store(quiet=0.02, max_wait=1.0)
    changes = store.changes()
    store.upsert("x", key("a"), Obj("a"))
    first = await next_change(changes, 1.0)
    store.upsert("x", key("b"), Obj("b"))
    second = await next_change(changes, 1.0)
    assert first.changed == {key("a")}
    assert second.changed == {key("b")}
    assert second.version == first.version + 1
    assert set(second.objects["Service"]) == {key("a"), key("b")}


# -- property: the store is "first partition by name wins", and reports exactly what changed ---

_PARTITION = st.sampled_from(["a.yaml", "b.yaml", "c.yaml"])
_KEY = st.sampled_from([key("x"), key("y"), key("z", "VirtualService")])
_VALUE = st.builds(Obj, st.just("o"), st.integers(1, 2))
_WRITE = st.one_of(
    st.tuples(st.just("upsert"), _PARTITION, _KEY, _VALUE),
    st.tuples(st.just("delete"), _PARTITION, _KEY),
    st.tuples(st.just("replace"), _PARTITION, st.dictionaries(_KEY, _VALUE, max_size=3)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_WRITE, max_size=12))
def test_store_matches_a_model_of_partitions(writes: list[tuple[Any, ...]]) -> None:
    store = new_store()
    model: dict[str, dict[Key, Obj]] = {}
    visible: dict[Key, Obj] = {}
    taken: list[tuple[ChangeSet, dict[str, dict[Key, Any]]]] = []
    for write in writes:
        if write[0] == "upsert":
            _, partition, k, value = write
            model.setdefault(partition, {})[k] = value
            store.upsert(partition, k, value)
        elif write[0] == "delete":
            _, partition, k = write
            model.get(partition, {}).pop(k, None)
            store.delete(partition, k)
        else:
            _, partition, objects = write
            model[partition] = dict(objects)
            store.replace_partition(partition, objects)
        expected: dict[Key, Obj] = {}
        for partition in sorted(model):  # the last by name is applied last, so it wins
            expected.update(model[partition])
        snapshot = store.snapshot()
        flat = {k: v for by_key in snapshot.objects.values() for k, v in by_key.items()}
        assert flat == expected
        assert snapshot.changed == {k for k in expected.keys() | visible.keys()
                                    if expected.get(k) != visible.get(k)}
        visible = expected
        taken.append((snapshot, {kind: dict(by_key) for kind, by_key in
                                 snapshot.objects.items()}))
    for snapshot, copy in taken:  # later writes never show through an earlier snapshot
        assert snapshot.objects == copy
