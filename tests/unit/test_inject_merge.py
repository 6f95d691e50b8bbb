"""The strategic merge of a template into a pod, as Kubernetes does it for the Pod type."""

from __future__ import annotations

from typing import Any

from pilotpy.inject.jsonpatch import apply, diff
from pilotpy.inject.merge import strategic_merge
from pilotpy.inject.quantity import canonical


def test_lists_with_a_merge_key_merge_item_by_item() -> None:
    pod: dict[str, Any] = {"spec": {"containers": [{"name": "app", "image": "a", "env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}
    patch = {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "3"}]}]}}
    merged = strategic_merge(pod, patch)
    assert merged["spec"]["containers"] == [{"name": "app", "image": "a", "env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "3"}]}]
    assert pod["spec"]["containers"][0]["env"][1]["value"] == "2"  # not modified


def test_new_items_come_before_the_pods_own_as_kubernetes_orders_them() -> None:
    pod = {"spec": {"volumes": [{"name": "data", "emptyDir": {}}]}}
    patch = {"spec": {"volumes": [{"name": "istio-envoy"}, {"name": "istio-data"}]}}
    names = [v["name"] for v in strategic_merge(pod, patch)["spec"]["volumes"]]
    assert names == ["istio-envoy", "istio-data", "data"]


def test_lists_without_a_merge_key_are_replaced() -> None:
    pod = {"spec": {"containers": [{"name": "p", "args": ["a", "b"]}]}}
    patch = {"spec": {"containers": [{"name": "p", "args": ["c"]}]}}
    assert strategic_merge(pod, patch)["spec"]["containers"][0]["args"] == ["c"]


def test_a_null_deletes_and_is_never_added() -> None:
    pod = {"spec": {"containers": [{"name": "p", "resources": {"limits": {"cpu": "1"}}}]}}
    patch = {"spec": {"containers": [{"name": "p", "resources": None}]},
             "metadata": {"labels": {"x": None}}}
    assert strategic_merge(pod, patch) == {"spec": {"containers": [{"name": "p"}]},
                                           "metadata": {"labels": {}}}
    added = strategic_merge({}, {"spec": {"volumes": [{"name": "v", "emptyDir": None}]}})
    assert added == {"spec": {"volumes": [{"name": "v"}]}}


def test_ports_merge_by_container_port_and_mounts_by_path() -> None:
    pod = {"spec": {"containers": [{"name": "p", "ports": [{"containerPort": 80}],
                                    "volumeMounts": [{"name": "a", "mountPath": "/a"}]}]}}
    patch = {"spec": {"containers": [{"name": "p", "ports": [{"containerPort": 80,
                                                               "name": "http"}],
                                      "volumeMounts": [{"name": "b", "mountPath": "/a"}]}]}}
    container = strategic_merge(pod, patch)["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 80, "name": "http"}]
    assert container["volumeMounts"] == [{"name": "b", "mountPath": "/a"}]


def test_a_patch_turns_one_document_into_the_other() -> None:
    before = {"metadata": {"labels": {"a": "1", "gone": "x"}}, "spec": {"containers": [
        {"name": "app"}]}}
    after = {"metadata": {"labels": {"a": "2"}, "annotations": {"k/v": "x~y"}},
             "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]}}
    operations = diff(before, after)
    assert {"op": "add", "path": "/metadata/annotations", "value": {"k/v": "x~y"}} in operations
    assert {"op": "remove", "path": "/metadata/labels/gone"} in operations
    assert apply(before, operations) == after
    assert apply(after, diff(after, {**after, "metadata": {"labels": {"a~b/c": "1"}}})) == {
        **after, "metadata": {"labels": {"a~b/c": "1"}}}


def test_quantities_take_the_api_servers_canonical_form() -> None:
    assert [canonical(q) for q in ("2000m", "1024Mi", "100m", "1000", "0.5", "1.5Gi",
                                   "0.5Ki", "1e3", "1200")] == [
        "2", "1Gi", "100m", "1k", "500m", "1536Mi", "512", "1e3", "1200"]
