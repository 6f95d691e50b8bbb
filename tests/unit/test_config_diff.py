"""cli/config_diff.py: field-level differences between Envoy resources in proto3 JSON."""

from __future__ import annotations

from typing import Any

from pilotpy.cli.config_diff import field_changes, resource_changes


def _route(prefix: str, cluster: str, header: str = "") -> dict[str, Any]:
    match: dict[str, Any] = {"prefix": prefix}
    if header:
        match["headers"] = [{"name": "end-user", "stringMatch": {"exact": header}}]
    return {"match": match, "route": {"cluster": cluster}}


def test_a_changed_leaf_is_named_by_its_path() -> None:
    (change,) = field_changes({"route": {"timeout": "0s"}}, {"route": {"timeout": "0.5s"}})
    assert str(change) == '~ route.timeout: "0s" -> "0.5s"'


def test_named_elements_are_matched_by_name_not_position() -> None:
    old = {"clusters": [{"name": "v1", "weight": 80}, {"name": "v2", "weight": 20}]}
    new = {"clusters": [{"name": "v0", "weight": 10}, {"name": "v1", "weight": 70},
                        {"name": "v2", "weight": 20}]}
    assert [str(c) for c in field_changes(old, new)] == [
        '+ clusters[v0]: {"name":"v0","weight":10}', "~ clusters[v1].weight: 80 -> 70"]


def test_unnamed_routes_are_matched_by_their_match() -> None:
    old = {"routes": [_route("/", "v1", header="jason"), _route("/", "v1")]}
    new = {"routes": [_route("/", "v3")]}
    changes = [str(c) for c in field_changes(old, new)]
    assert changes[0].startswith("- routes[prefix /, header end-user exact jason]: ")
    assert changes[1:] == ['~ routes[prefix /].route.cluster: "v1" -> "v3"']


def test_a_reordering_alone_is_reported() -> None:
    old = {"virtualHosts": [{"name": "a"}, {"name": "b"}]}
    new = {"virtualHosts": [{"name": "b"}, {"name": "a"}]}
    (change,) = field_changes(old, new)
    assert change.path == "virtualHosts(order)"


def test_other_lists_are_aligned_on_equal_elements() -> None:
    (change,) = field_changes({"domains": ["a", "b", "c"]}, {"domains": ["a", "x", "b", "c"]})
    assert str(change) == '+ domains[1]: "x"'


def test_resources_are_compared_by_name_per_type() -> None:
    old: dict[str, list[dict[str, Any]]] = {
        "clusters": [{"name": "a", "type": "EDS"}, {"name": "gone"}],
        "endpoints": [{"clusterName": "a", "endpoints": []}]}
    new: dict[str, list[dict[str, Any]]] = {
        "clusters": [{"name": "a", "type": "STRICT_DNS"}, {"name": "new"}],
        "endpoints": [{"clusterName": "a", "endpoints": []}]}
    changes = resource_changes(old, new)
    assert [(c.type, c.name, c.action) for c in changes] == [
        ("clusters", "a", "changed"), ("clusters", "gone", "removed"),
        ("clusters", "new", "added")]
    assert [str(f) for f in changes[0].fields] == ['~ type: "EDS" -> "STRICT_DNS"']
    assert changes[2].to_json()["resource"] == {"name": "new"}
