"""Sidecar parsing and validation (istio's ValidateSidecar), and which Sidecar a workload
gets (the oldest selecting it, else the namespace default, else the root namespace's)."""

from __future__ import annotations

from typing import Any

from pilotpy.model import parse_object
from pilotpy.model.protocol import Protocol
from pilotpy.model.sidecar import EgressHost, Sidecar
from tests.unit.support import context, errors_of, parse_as


def sidecar(name: str = "default", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": name, "namespace": namespace,
                         "creationTimestamp": spec.pop("created", "")},
            "spec": spec}


def test_egress_hosts_ports_and_policy_parse() -> None:
    parsed = parse_as(sidecar(
        workloadSelector={"labels": {"app": "sleep"}},
        egress=[{"port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                 "hosts": ["bookinfo/*"]},
                {"hosts": ["./*", "istio-system/*.example.com", "*/Foo.com"]}],
        outboundTrafficPolicy={"mode": "REGISTRY_ONLY"}), Sidecar)
    assert parsed.workload_selector == {"app": "sleep"}
    assert parsed.outbound_traffic_policy == "REGISTRY_ONLY"
    port_scoped, catch_all = parsed.egress
    assert (port_scoped.port, port_scoped.protocol) == (9080, Protocol.HTTP)
    assert port_scoped.hosts == (EgressHost("bookinfo", "*"),)
    assert catch_all.port is None
    # `.` is the Sidecar's own namespace; hosts compare lower-case.
    assert catch_all.hosts == (EgressHost("default", "*"),
                               EgressHost("istio-system", "*.example.com"),
                               EgressHost("*", "foo.com"))


def test_invalid_sidecars_name_every_bad_field() -> None:
    errors = errors_of(sidecar(
        workloadSelector={"labels": {}},
        egress=[{"hosts": ["no-namespace"]}, {"hosts": ["Bad_NS/*"]},
                {"port": {"number": 70000}, "hosts": ["./*"]}],
        outboundTrafficPolicy={"mode": "SOMETIMES"}))
    assert errors["spec.workloadSelector.labels"] == [
        "a workloadSelector needs at least one label"]
    assert errors["spec.egress[0].hosts"] == [
        "host 'no-namespace' must be of the form namespace/dnsName"]
    assert errors["spec.egress[1].hosts"] == ["host 'Bad_NS/*': invalid namespace 'Bad_NS'"]
    assert errors["spec.egress[2].port.number"] == ["70000 is above the maximum 65535"]
    assert "spec.egress" in errors  # two catch-all listeners
    assert errors["spec.outboundTrafficPolicy.mode"] == [
        "'SOMETIMES' is not one of ALLOW_ANY, REGISTRY_ONLY"]


def test_fields_pilotpy_does_not_translate_are_warnings() -> None:
    parsed = parse_object(sidecar(ingress=[{"port": {"number": 80}}],
                                  egress=[{"hosts": ["./*"], "captureMode": "NONE"}]))
    assert {w.path for w in parsed.warnings} == {"spec.ingress", "spec.egress[0].captureMode"}


def test_selection_prefers_a_matching_selector_then_the_namespace_then_the_root() -> None:
    push = context(
        sidecar("ns-default", created="2024-01-01T00:00:00Z"),
        sidecar("for-sleep", created="2024-01-02T00:00:00Z",
                workloadSelector={"labels": {"app": "sleep"}}),
        sidecar("mesh-default", namespace="istio-system"),
    )
    pick = push.sidecars.for_workload
    found = pick("default", {"app": "sleep", "version": "v1"})
    assert found is not None and found.meta.name == "for-sleep"
    found = pick("default", {"app": "httpbin"})
    assert found is not None and found.meta.name == "ns-default"
    found = pick("other", {"app": "sleep"})
    assert found is not None and found.meta.name == "mesh-default"


def test_the_oldest_of_two_namespace_sidecars_wins() -> None:
    push = context(sidecar("newer", created="2024-02-01T00:00:00Z"),
                   sidecar("older", created="2024-01-01T00:00:00Z"))
    found = push.sidecars.for_workload("default", {})
    assert found is not None and found.meta.name == "older"


def test_tilde_prefixed_hosts_are_exclusions_per_namespace_or_everywhere() -> None:
    """Istio 1.31's `~ns/host`: `~` alone excludes in every namespace, `~.` in the Sidecar's."""
    parsed = parse_as(sidecar(egress=[{"hosts": [
        "*/*", "~istio-system/*", "~/*.internal.example.com", "~./skip.example.com"]}]),
        Sidecar)
    assert parsed.egress[0].hosts == (
        EgressHost("*", "*"), EgressHost("istio-system", "*", excluded=True),
        EgressHost("*", "*.internal.example.com", excluded=True),
        EgressHost("default", "skip.example.com", excluded=True))
    assert errors_of(sidecar(egress=[{"hosts": ["~bad_ns/x", "~ns/"]}])) == {
        "spec.egress[0].hosts": ["host '~bad_ns/x': invalid namespace 'bad_ns'",
                                 "host '~ns/': the namespace and the dnsName cannot be empty"]}


def test_an_exclusion_wins_over_any_import_of_the_same_host() -> None:
    from pilotpy.proxy import parse_proxy, view_proxy
    from pilotpy.translate.sidecar_scope import sidecar_scope

    push = context(sidecar(egress=[{"hosts": ["*/*", "~istio-system/*", "~/*.example.com"]}]))
    node = "sidecar~10.244.0.5~sleep-1.default~default.svc.cluster.local"
    scope = sidecar_scope(push, view_proxy(parse_proxy(node), push))
    assert scope.allows("default", "httpbin.default.svc.cluster.local", 80)
    assert not scope.allows("istio-system", "istiod.istio-system.svc.cluster.local", 15012)
    assert not scope.allows("default", "api.example.com", 443)
    assert scope.allows("default", "example.com", 443)  # `*.example.com` is not example.com
