"""Diffs over explicit subscriptions (pilotpy/xds/resources.py compute_diff): the same answer
as the general transition, at a cost that follows the resources held, not the names a client
subscribed to."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotpy.xds import resources
from pilotpy.xds.resources import (
    ResourceSet,
    compute_diff,
    make_resource,
    names,
    transition_diff,
)
from pilotpy.xds.types import CLUSTER, ENDPOINT

NAMES = [f"n{i}" for i in range(8)]


def resource_set(type_url: str, held: dict[str, int], named_only: dict[str, int]) -> ResourceSet:
    def made(items: dict[str, int]) -> list[resources.Resource]:
        return [make_resource(type_url, n, f"{n}:{v}".encode()) for n, v in items.items()]

    return ResourceSet(type_url, made(held), made(named_only))


contents = st.dictionaries(st.sampled_from(NAMES), st.integers(0, 2), max_size=6)
# A set's resources, and its named-only ones.
sets = st.tuples(contents, contents)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([ENDPOINT, CLUSTER]), sets, sets,
       st.sets(st.sampled_from([*NAMES, "unknown-a", "unknown-b"]), max_size=10))
def test_a_diff_over_explicit_names_is_the_general_transition(
        type_url: str, before: tuple[dict[str, int], dict[str, int]],
        after: tuple[dict[str, int], dict[str, int]], subscribed: set[str]) -> None:
    old = resource_set(type_url, *before)
    new = resource_set(type_url, *after)
    scope = names(subscribed)
    fast, general = compute_diff(old, new, scope), transition_diff(old, scope, new, scope)
    assert [(r.name, r.version) for r in fast.changed] == [
        (r.name, r.version) for r in general.changed]
    assert fast.removed == general.removed


def test_a_push_to_a_subscription_of_100k_unknown_names_looks_at_the_config_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a config change every stream diffs its subscription against the new set:
    names that exist in neither set are not even looked up."""
    old = resource_set(ENDPOINT, {"n0": 0, "n1": 0}, {})
    new = resource_set(ENDPOINT, {"n0": 1, "n1": 0}, {})
    scope = names([*(f"unknown-{i}" for i in range(100_000)), "n0", "n1"])
    looked_up: list[str] = []
    real = ResourceSet.get

    def counted(self: ResourceSet, name: str) -> resources.Resource | None:
        looked_up.append(name)
        return real(self, name)

    monkeypatch.setattr(ResourceSet, "get", counted)
    diff = compute_diff(old, new, scope)
    assert [r.name for r in diff.changed] == ["n0"] and diff.removed == ()
    assert sorted(set(looked_up)) == ["n0", "n1"]
