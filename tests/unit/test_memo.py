"""The response memo (pilotpy/xds/memo.py): bounded in bytes, and an entry lives no longer
than the objects its key names."""

from __future__ import annotations

import gc

from pilotpy.xds.memo import ENTRY_OVERHEAD, Memo
from pilotpy.xds.resources import ResourceSet, names
from pilotpy.xds.types import ENDPOINT


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
