"""Which security policies apply to a workload (istiod's ListAuthorizationPolicies,
GetJwtPoliciesForWorkload and ShouldAttachPolicy), and that a policy change reaches the push
context."""

from __future__ import annotations

from typing import Any

from pilotpy.mesh import MeshConfig
from pilotpy.model import Key
from pilotpy.push import build_push_context
from tests.unit.authz_support import authorization_policy, request_authentication
from tests.unit.support import context, objects_of

GATEWAY_API_POD = {"gateway.networking.k8s.io/gateway-name": "edge", "app": "edge"}


def names(found: Any) -> list[str]:
    return [p.meta.name for p in found]


def test_root_namespace_policies_come_first_then_the_workloads_namespace() -> None:
    push = context(authorization_policy("local", "foo"),
                   authorization_policy("mesh", "istio-system"))
    assert names(push.authorization.for_workload("foo", {}).allow) == ["mesh", "local"]


def test_a_root_namespace_selector_selects_workloads_in_every_namespace() -> None:
    push = context(authorization_policy("web-only", "istio-system",
                                        selector={"matchLabels": {"app": "web"}}))
    assert names(push.authorization.for_workload("bar", {"app": "web"}).allow) == ["web-only"]
    assert not push.authorization.for_workload("bar", {"app": "db"})


def test_policies_of_a_namespace_are_oldest_first() -> None:
    push = context(
        authorization_policy("b") | {"metadata": {"name": "b", "namespace": "foo",
                                                  "creationTimestamp": "2024-01-01T00:00:00Z"}},
        authorization_policy("a") | {"metadata": {"name": "a", "namespace": "foo",
                                                  "creationTimestamp": "2024-02-01T00:00:00Z"}})
    assert names(push.authorization.for_workload("foo", {}).allow) == ["b", "a"]


def test_policies_are_split_by_action() -> None:
    push = context(authorization_policy("d", action="DENY", rules=[{}]),
                   authorization_policy("l", action="AUDIT", rules=[{}]),
                   authorization_policy("c", action="CUSTOM", provider={"name": "x"},
                                        rules=[{}]))
    found = push.authorization.for_workload("foo", {})
    assert (names(found.deny), names(found.audit), names(found.custom), found.allow) == (
        ["d"], ["l"], ["c"], ())


def test_a_gateway_api_gateway_takes_policies_naming_its_gateway() -> None:
    ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}
    push = context(authorization_policy("by-ref", "foo", targetRefs=[ref]),
                   authorization_policy("other-ns", "bar", targetRefs=[ref]),
                   authorization_policy("by-selector", "foo",
                                        selector={"matchLabels": {"app": "edge"}}))
    assert names(push.authorization.for_workload("foo", GATEWAY_API_POD).allow) == [
        "by-ref", "by-selector"]


def test_request_authentications_come_from_the_workloads_namespace_then_the_root() -> None:
    push = context(request_authentication({"issuer": "a"}, name="mesh",
                                          namespace="istio-system"),
                   request_authentication({"issuer": "b"}, name="local"))
    assert names(push.request_authentication.for_workload("foo", {})) == ["local", "mesh"]


def test_a_changed_policy_reaches_the_next_push_context() -> None:
    mesh = MeshConfig()
    first, _ = build_push_context(objects_of([]), mesh, 1)
    policy = authorization_policy("new")
    objects = objects_of([policy])
    key = Key("AuthorizationPolicy", "foo", "new")
    second, scope = build_push_context(objects, mesh, 2, first, [key])
    assert names(second.authorization.for_workload("foo", {}).allow) == ["new"]
    assert scope.full
