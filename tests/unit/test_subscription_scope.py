"""What a subscription covers of a resource set (pilotpy/xds/resources.py): a wildcard gets
every resource but named-only ones, names get those they name (unknown RDS and EDS names
resolve to empty resources, unknown LDS and CDS names to nothing), `*` plus names both."""

from __future__ import annotations

from pilotpy.xds import types
from pilotpy.xds.resources import (
    ResourceSet,
    compute_diff,
    gains,
    make_resource,
    names,
    subscription,
    visible,
)


def _listeners(body: bytes = b"") -> ResourceSet:
    return ResourceSet(types.LISTENER,
                       [make_resource(types.LISTENER, "a.ns.svc.cluster.local:80", b"a" + body)],
                       named_only=[make_resource(types.LISTENER, "a:80", b"alias" + body)])


def test_wildcard_leaves_named_only_resources_out() -> None:
    assert list(visible(_listeners(), None)) == ["a.ns.svc.cluster.local:80"]


def test_a_named_only_resource_is_served_to_a_subscription_naming_it() -> None:
    assert list(visible(_listeners(), names(["a:80"]))) == ["a:80"]


def test_star_plus_names_covers_the_wildcard_and_the_named_only_names() -> None:
    scope = subscription(True, ["a:80"])
    assert list(visible(_listeners(), scope)) == ["a.ns.svc.cluster.local:80", "a:80"]


def test_star_without_names_is_the_plain_wildcard() -> None:
    assert subscription(True, []) is None


def test_unknown_listener_name_resolves_to_nothing_and_route_name_to_empty() -> None:
    assert list(visible(_listeners(), names(["b:80"]))) == []
    routes = ResourceSet(types.ROUTE, [])
    assert list(visible(routes, names(["80"]))) == ["80"]


def test_named_only_resources_count_in_the_set_version() -> None:
    assert _listeners().version != _listeners(b"changed").version
    alone = ResourceSet(types.LISTENER, [make_resource(types.LISTENER, "x", b"x")])
    same = ResourceSet(types.LISTENER, [make_resource(types.LISTENER, "x", b"x")], named_only=())
    assert alone.version == same.version


def test_a_named_listener_that_disappears_is_removed() -> None:
    before = _listeners()
    after = ResourceSet(types.LISTENER, before.by_name.values())
    diff = compute_diff(before, after, names(["a:80"]))
    assert diff.removed == ("a:80",)
    assert diff.changed == ()


def test_gains_when_a_subscription_names_more_or_becomes_a_wildcard() -> None:
    one, two = names(["a"]), names(["a", "b"])
    assert gains(one, two)
    assert not gains(two, one)
    assert gains(one, None)
    assert gains(None, one)  # `a` may be a named-only resource the wildcard left out
    assert not gains(None, None)
    assert gains(None, subscription(True, ["a:80"]))
