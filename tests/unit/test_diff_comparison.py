"""The differential tier's comparison (tests/diff): field-by-field differences, the documented
normalisation, the accepted list and its rules, the README section generated from it, and the
workloads made for Istio's samples. No cluster: JSON trees in, differences out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilotpy.xds.types import LISTENER, ROUTE
from tests.diff import accepted
from tests.diff.compare import MISSING, Difference, differences, tree_differences
from tests.diff.normalize import gateway_route_names, normalize, rename_gateway_routes
from tests.diff.objects import service_accounts
from tests.diff.rules import RULES
from tests.diff.workloads import running

TRANSLATION_DOC = Path(__file__).resolve().parents[2] / "docs" / "translation.md"
HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")


def diffs(istiod: Any, pilotpy: Any) -> list[tuple[str, Any, Any]]:
    return list(tree_differences(istiod, pilotpy))


# -- compare -----------------------------------------------------------------------------------


def test_missing_and_changed_fields_are_named_by_path() -> None:
    assert diffs({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3, "d": 4}}) == [
        ("a.c", 2, 3), ("a.d", MISSING, 4)]


def test_named_items_are_paired_by_name_not_position() -> None:
    istiod = {"filters": [{"name": "istio.x"}, {"name": "router", "v": 1}]}
    pilotpy = {"filters": [{"name": "router", "v": 1}]}
    assert diffs(istiod, pilotpy) == [("filters[name=istio.x]", {"name": "istio.x"}, MISSING)]


def test_filter_chains_sharing_a_name_are_paired_by_their_match() -> None:
    mtls = {"name": "0.0.0.0_8000",
            "filterChainMatch": {"destinationPort": 8000, "transportProtocol": "tls"}}
    plain = {"name": "0.0.0.0_8000",
             "filterChainMatch": {"destinationPort": 8000, "transportProtocol": "raw_buffer"}}
    other = {"name": "0.0.0.0_9000", "filterChainMatch": {"destinationPort": 9000,
                                                          "applicationProtocols": ["a", "b"]}}
    istiod = {"filterChains": [mtls, plain, other]}
    pilotpy = {"filterChains": [mtls, {**other, "x": 1}]}
    assert diffs(istiod, pilotpy) == [
        ("filterChains[match=applicationProtocols=a|b,destinationPort=9000].x", MISSING, 1),
        ("filterChains[match=destinationPort=8000,transportProtocol=raw_buffer]", plain,
         MISSING)]


def test_order_of_named_items_matters_where_envoy_evaluates_in_order() -> None:
    istiod = {"httpFilters": [{"name": "fault"}, {"name": "router"}]}
    pilotpy = {"httpFilters": [{"name": "router"}, {"name": "fault"}]}
    assert diffs(istiod, pilotpy) == [
        ("httpFilters[order]", ["fault", "router"], ["router", "fault"])]


def test_virtual_host_order_does_not_matter() -> None:
    istiod = {"virtualHosts": [{"name": "a"}, {"name": "b"}]}
    pilotpy = {"virtualHosts": [{"name": "b"}, {"name": "a"}]}
    assert diffs(istiod, pilotpy) == []


def test_domains_are_compared_as_sets() -> None:
    assert diffs({"domains": ["a", "b"]}, {"domains": ["b", "a", "a:80"]}) == [
        ("domains[=a:80]", MISSING, "a:80")]


def test_a_resource_only_one_side_sends_is_one_difference() -> None:
    found = differences("c", "router", {ROUTE: {"r": {"name": "r"}}}, {ROUTE: {}})
    assert [(d.type, d.resource, d.path, d.side) for d in found] == [
        ("rds", "r", "", "istiod")]


# -- normalise ---------------------------------------------------------------------------------


def test_istio_filters_are_dropped_from_istiods_side_only() -> None:
    tree = {"filters": [{"name": "istio.metadata_exchange"}, {"name": "envoy.tcp"}]}
    assert normalize({LISTENER: {"l": tree}}, istiod=True)[LISTENER]["l"] == {
        "filters": [{"name": "envoy.tcp"}]}
    assert normalize({LISTENER: {"l": tree}}, istiod=False)[LISTENER]["l"] == tree


def test_istio_metadata_is_dropped_and_empty_metadata_with_it() -> None:
    tree = {"metadata": {"filterMetadata": {"istio": {"config": "x"}}}, "name": "c"}
    assert normalize({LISTENER: {"c": tree}}, istiod=False)[LISTENER]["c"] == {"name": "c"}


def test_unordered_lists_are_sorted_before_comparing() -> None:
    tree = {"lbEndpoints": [{"endpoint": {"address": "b"}}, {"endpoint": {"address": "a"}}]}
    out = normalize({LISTENER: {"x": tree}}, istiod=True)[LISTENER]["x"]
    assert [e["endpoint"]["address"] for e in out["lbEndpoints"]] == ["a", "b"]


def _listener(route: str) -> dict[str, Any]:
    return {"filterChains": [{"filters": [{"name": "hcm", "typedConfig": {
        "@type": HCM, "rds": {"routeConfigName": route}}}]}]}


def test_gateway_route_names_are_renamed_where_the_same_chain_uses_them() -> None:
    istiod = {LISTENER: {"0.0.0.0_8080": _listener("http.8080")},
              ROUTE: {"http.8080": {"name": "http.8080"}}}
    pilotpy = {LISTENER: {"0.0.0.0_8080": _listener("http.80")}}
    renames = gateway_route_names(istiod, pilotpy)
    assert renames == {"http.8080": "http.80"}
    renamed = rename_gateway_routes(istiod, renames)
    assert renamed[ROUTE] == {"http.80": {"name": "http.80"}}
    assert renamed[LISTENER] == pilotpy[LISTENER]


def test_only_gateway_route_names_are_renamed() -> None:
    istiod = {LISTENER: {"0.0.0.0_80": _listener("80")}}
    pilotpy = {LISTENER: {"0.0.0.0_80": _listener("9080")}}
    assert gateway_route_names(istiod, pilotpy) == {}


# -- the accepted list -------------------------------------------------------------------------


def difference(path: str, istiod: Any, pilotpy: Any, *, resource: str = "r",
               type_: str = "rds") -> Difference:
    return Difference("case", "router", type_, resource, path, istiod, pilotpy)


def test_patterns_treat_brackets_literally_and_star_as_anything() -> None:
    entry = accepted.Entry("x", "t", "r", [{"path": accepted.glob("a[name=b*].c")}])
    assert entry.explains(difference("a[name=bee].c", 1, 2), RULES, None, None)
    assert not entry.explains(difference("ab.c", 1, 2), RULES, None, None)


def test_every_entry_loads_and_names_known_rules() -> None:
    entries = accepted.load()
    assert entries
    assert {e.rule for e in entries if e.rule} <= set(RULES)


def test_bad_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "accepted.yaml"
    path.write_text("- {id: x, text: t}\n")
    with pytest.raises(ValueError, match="needs id, text and reason"):
        accepted.load(path)
    path.write_text("- {id: x, text: t, reason: r, match: [{pth: a}]}\n")
    with pytest.raises(ValueError, match="unknown match fields"):
        accepted.load(path)


def test_documented_differences_are_generated_from_the_accepted_list() -> None:
    text = TRANSLATION_DOC.read_text(encoding="utf-8")
    assert accepted.rewrite(text, accepted.load()) == text, (
        "docs/translation.md's Differences from istiod is out of date: run `make diff-doc`")


def _route(route: dict[str, Any]) -> dict[str, Any]:
    return {"virtualHosts": [{"name": "h:80", "routes": [{"name": "r", "route": route}]}]}


def test_single_weighted_destination_needs_the_same_cluster() -> None:
    rule = RULES["single_weighted_destination"]
    one = {"clusters": [{"name": "outbound|80|v2|h", "weight": 100}]}
    theirs = _route({"weightedClusters": one})
    same = _route({"cluster": "outbound|80|v2|h"})
    other = _route({"cluster": "outbound|80|v1|h"})
    path = "virtualHosts[name=h:80].routes[name=r].route.cluster"
    assert rule(difference(path, MISSING, "outbound|80|v2|h"), theirs, same)
    assert not rule(difference(path, MISSING, "outbound|80|v1|h"), theirs, other)


def _inbound(validation: dict[str, Any]) -> dict[str, Any]:
    return {"filterChains": [
        {"filterChainMatch": {"destinationPort": 8000, "transportProtocol": "tls"},
         "transportSocket": {"typedConfig": {"commonTlsContext": {"combinedValidationContext": {
             "defaultValidationContext": validation}}}}},
        {"filterChainMatch": {"destinationPort": 8000, "transportProtocol": "raw_buffer"}}]}


def test_spiffe_sans_rule_needs_the_same_ids_typed_as_uri() -> None:
    rule = RULES["spiffe_sans_as_uri"]
    ids = [{"exact": "spiffe://cluster.local/ns/default/sa/httpbin"}]
    theirs = _inbound({"matchSubjectAltNames": ids})
    typed = _inbound({"matchTypedSubjectAltNames": [{"matcher": i, "sanType": "URI"}
                                                    for i in ids]})
    as_dns = _inbound({"matchTypedSubjectAltNames": [{"matcher": i, "sanType": "DNS"}
                                                     for i in ids]})
    other = _inbound({"matchTypedSubjectAltNames": [
        {"matcher": {"exact": "spiffe://cluster.local/ns/default/sa/sleep"},
         "sanType": "URI"}]})
    context = ("filterChains[match=destinationPort=8000,transportProtocol=tls].transportSocket."
               "typedConfig.commonTlsContext.combinedValidationContext."
               "defaultValidationContext.")
    untyped = difference(context + "matchSubjectAltNames", ids, MISSING)
    assert rule(untyped, theirs, typed)
    assert rule(difference(context + "matchTypedSubjectAltNames", MISSING, []), theirs, typed)
    assert not rule(untyped, theirs, as_dns)
    assert not rule(untyped, theirs, other)


def test_port_80_rule_accepts_only_istiods_port_80_against_another_port() -> None:
    rule = RULES["port_80_route_to_service_port"]
    path = "virtualHosts[name=r:80].routes[0].route.cluster"
    good = difference(path, "outbound|80|v1|r.default", "outbound|9080|v1|r.default",
                      resource="80")
    assert rule(good, None, None)
    assert not rule(difference(path, "outbound|80|v1|r", "outbound|80|v2|r", resource="80"),
                    None, None)
    assert not rule(difference(path, "outbound|80|v1|r", "outbound|9080|v1|r",
                               resource="8080"), None, None)


# -- workloads for the samples -----------------------------------------------------------------


def test_pods_get_the_service_accounts_they_run_as() -> None:
    docs = [{"kind": "Pod", "metadata": {"name": "a", "namespace": "ns"},
             "spec": {"serviceAccountName": "httpbin"}},
            {"kind": "Pod", "metadata": {"name": "b", "namespace": "ns"}, "spec": {}},
            {"kind": "Pod", "metadata": {"name": "c", "namespace": "ns"},
             "spec": {"serviceAccountName": "sleep"}},
            {"kind": "ServiceAccount", "metadata": {"name": "sleep", "namespace": "ns"}}]
    assert service_accounts(docs) == [{"apiVersion": "v1", "kind": "ServiceAccount",
                                       "metadata": {"name": "httpbin", "namespace": "ns"}}]


def test_deployments_get_a_pod_and_services_an_endpoint_slice() -> None:
    docs = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web-v1"},
         "spec": {"template": {"metadata": {"labels": {"app": "web", "version": "v1"}},
                               "spec": {"containers": [{"name": "web", "ports": [
                                   {"name": "http-web", "containerPort": 8080}]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"},
                  "ports": [{"name": "http", "port": 80, "targetPort": "http-web"}]}},
    ]
    made, workloads = running(docs, block=7)
    assert [(w.pod, w.ip, w.labels) for w in workloads] == [
        ("web-v1-0", "10.244.7.10", {"app": "web", "version": "v1"})]
    [pod, endpoint_slice] = made
    assert pod["status"]["podIP"] == "10.244.7.10"
    assert endpoint_slice["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert endpoint_slice["endpoints"][0]["targetRef"]["name"] == "web-v1-0"
