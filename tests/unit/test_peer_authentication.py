"""PeerAuthentication: validation as istiod's ValidatePeerAuthentication, and which mTLS mode
a workload and a namespace get, as istiod's ComposePeerAuthentication and
GetNamespaceMutualTLSMode compute it (pilotpy/push/peer_authn.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pilotpy.model.peerauthentication import PeerAuthentication
from pilotpy.push.peer_authn import MtlsMode, PeerAuthnIndex
from tests.unit.support import errors_of, parse_as

ROOT = "istio-system"
HTTPBIN = {"app": "httpbin", "version": "v1"}


def policy_doc(name: str, namespace: str = "default", *, created: str = "2026-01-01T00:00:00Z",
               **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
            "spec": spec}


def policy(name: str, namespace: str = "default", *, mode: str | None = None,
           selector: dict[str, str] | None = None, ports: dict[int, str] | None = None,
           created: str = "2026-01-01T00:00:00Z") -> PeerAuthentication:
    spec: dict[str, Any] = {}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if ports is not None:
        spec["portLevelMtls"] = {str(p): ({"mode": m} if m else {}) for p, m in ports.items()}
    return parse_as(policy_doc(name, namespace, created=created, **spec), PeerAuthentication)


def index(*policies: PeerAuthentication) -> PeerAuthnIndex:
    return PeerAuthnIndex(policies, ROOT)


# -- validation ----------------------------------------------------------------------------


def test_a_full_policy_parses() -> None:
    parsed = policy("p", selector={"app": "httpbin"}, mode="STRICT",
                    ports={8080: "DISABLE", 9090: ""})
    assert (parsed.selector, parsed.mode) == ({"app": "httpbin"}, "STRICT")
    assert parsed.port_level == {8080: "DISABLE", 9090: "UNSET"}


def test_port_level_mtls_needs_a_selector() -> None:
    errors = errors_of(policy_doc("p", portLevelMtls={"8080": {"mode": "DISABLE"}}))
    assert list(errors) == ["spec.portLevelMtls"]


def test_port_level_mtls_defined_empty_is_invalid() -> None:
    errors = errors_of(policy_doc("p", selector={"matchLabels": {"app": "a"}},
                                  portLevelMtls={}))
    assert list(errors) == ["spec.portLevelMtls"]


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_port_level_ports_must_be_port_numbers(port: str) -> None:
    errors = errors_of(policy_doc("p", selector={"matchLabels": {"app": "a"}},
                                  portLevelMtls={port: {"mode": "DISABLE"}}))
    assert list(errors) == [f"spec.portLevelMtls.{port}"]


def test_unknown_mode_is_invalid() -> None:
    errors = errors_of(policy_doc("p", mtls={"mode": "STRICTER"}))
    assert list(errors) == ["spec.mtls.mode"]


@pytest.mark.parametrize("labels", [{"": "a"}, {"app": "*"}, {"a*": "b"}])
def test_selector_labels_cannot_be_empty_keys_or_wildcards(labels: dict[str, str]) -> None:
    errors = errors_of(policy_doc("p", selector={"matchLabels": labels}))
    assert list(errors) == ["spec.selector.matchLabels"]


# -- a workload's mode -----------------------------------------------------------------------


def test_no_policy_means_permissive() -> None:
    assert index().for_workload("default", HTTPBIN).for_port(8080) is MtlsMode.PERMISSIVE


def test_workload_overrides_namespace_which_overrides_mesh() -> None:
    mesh = policy("mesh", ROOT, mode="STRICT")
    namespace = policy("ns", mode="DISABLE")
    workload = policy("wl", mode="PERMISSIVE", selector={"app": "httpbin"})
    assert index(mesh).for_workload("default", HTTPBIN).mode is MtlsMode.STRICT
    assert index(mesh, namespace).for_workload("default", HTTPBIN).mode is MtlsMode.DISABLE
    assert (index(mesh, namespace, workload).for_workload("default", HTTPBIN).mode
            is MtlsMode.PERMISSIVE)


def test_unset_inherits_from_the_level_above() -> None:
    mesh = policy("mesh", ROOT, mode="STRICT")
    namespace = policy("ns", mode="UNSET")
    workload = policy("wl", selector={"app": "httpbin"})  # no mtls at all
    assert index(mesh, namespace, workload).for_workload("default", HTTPBIN).mode is (
        MtlsMode.STRICT)


def test_port_level_overrides_and_an_unset_port_inherits_the_workload_mode() -> None:
    namespace = policy("ns", mode="STRICT")
    workload = policy("wl", selector={"app": "httpbin"}, mode="PERMISSIVE",
                      ports={8080: "DISABLE", 9090: "UNSET"})
    found = index(namespace, workload).for_workload("default", HTTPBIN)
    assert (found.for_port(8080), found.for_port(9090), found.for_port(7070)) == (
        MtlsMode.DISABLE, MtlsMode.PERMISSIVE, MtlsMode.PERMISSIVE)


def test_the_oldest_namespace_wide_policy_wins_and_the_other_is_reported() -> None:
    older = policy("older", mode="STRICT", created="2026-01-01T00:00:00Z")
    newer = policy("newer", mode="DISABLE", created="2026-02-01T00:00:00Z")
    built = index(newer, older)
    assert built.for_workload("default", HTTPBIN).mode is MtlsMode.STRICT
    assert [(p.ref.name if p.ref else "", p.reason) for p in built.problems] == [
        ("newer", "Conflict")]


def test_the_oldest_matching_workload_policy_wins() -> None:
    older = policy("older", selector={"app": "httpbin"}, mode="DISABLE",
                   created="2026-01-01T00:00:00Z")
    newer = policy("newer", selector={"version": "v1"}, mode="STRICT",
                   created="2026-02-01T00:00:00Z")
    assert index(newer, older).for_workload("default", HTTPBIN).mode is MtlsMode.DISABLE


def test_a_selector_must_match_every_label() -> None:
    workload = policy("wl", selector={"app": "httpbin", "version": "v2"}, mode="STRICT")
    assert index(workload).for_workload("default", HTTPBIN).mode is MtlsMode.PERMISSIVE


def test_policies_of_another_namespace_do_not_apply() -> None:
    other = policy("other", "bookinfo", mode="STRICT")
    selected = policy("sel", "bookinfo", mode="STRICT", selector={"app": "httpbin"})
    assert index(other, selected).for_workload("default", HTTPBIN).mode is MtlsMode.PERMISSIVE


def test_a_root_namespace_selector_policy_applies_to_nothing_and_is_reported() -> None:
    rooted = policy("rooted", ROOT, mode="STRICT", selector={"app": "httpbin"})
    built = index(rooted)
    assert built.for_workload("default", HTTPBIN).mode is MtlsMode.PERMISSIVE
    assert built.for_workload(ROOT, HTTPBIN).mode is MtlsMode.PERMISSIVE
    assert [p.reason for p in built.problems] == ["Ignored"]


def test_a_root_namespace_workload_gets_the_mesh_policy() -> None:
    assert index(policy("mesh", ROOT, mode="STRICT")).for_workload(ROOT, {}).mode is (
        MtlsMode.STRICT)


# -- a namespace's mode (what auto-mTLS asks of a destination) ----------------------------------


def test_namespace_mode_is_unknown_without_policies() -> None:
    assert index().namespace_mode("default") is MtlsMode.UNKNOWN


def test_namespace_mode_falls_back_to_the_mesh_policy() -> None:
    built = index(policy("mesh", ROOT, mode="DISABLE"))
    assert built.namespace_mode("default") is MtlsMode.DISABLE


def test_an_unset_mesh_policy_means_permissive() -> None:
    assert index(policy("mesh", ROOT)).namespace_mode("default") is MtlsMode.PERMISSIVE


def test_an_unset_namespace_policy_inherits_the_mesh_mode_else_permissive() -> None:
    namespace = policy("ns", mode="UNSET")
    assert index(namespace).namespace_mode("default") is MtlsMode.PERMISSIVE
    assert index(namespace, policy("mesh", ROOT, mode="STRICT")).namespace_mode(
        "default") is MtlsMode.STRICT


def test_workload_policies_do_not_change_the_namespace_mode() -> None:
    workload = policy("wl", selector={"app": "httpbin"}, mode="DISABLE")
    assert index(workload).namespace_mode("default") is MtlsMode.UNKNOWN
