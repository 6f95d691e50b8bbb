"""AuthorizationPolicy parsing and validation (istiod's ValidateAuthorizationPolicy and
pkg/config/security): each invalid policy names the field, and what istiod accepts parses."""

from __future__ import annotations

from typing import Any

import pytest

from pilotpy.model import InvalidObject, parse_object
from pilotpy.model.authorization import (
    Action,
    AuthorizationPolicy,
    Condition,
    Operation,
    Rule,
    Source,
)
from pilotpy.model.policy_target import TargetRef
from pilotpy.problems import Reason
from tests.unit.support import errors_of, parse_as


def policy(spec: dict[str, Any] | None = None, *, annotations: dict[str, str] | None = None,
           name: str = "p", namespace: str = "foo") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": metadata, "spec": spec if spec is not None else {}}


def rule(**parts: Any) -> dict[str, Any]:
    return {"rules": [parts]}


def test_a_full_policy_parses_every_field() -> None:
    parsed = parse_as(policy({
        "selector": {"matchLabels": {"app": "httpbin"}},
        "action": "DENY",
        "rules": [{
            "from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"],
                                 "notNamespaces": ["c"], "ipBlocks": ["10.0.0.0/8"],
                                 "remoteIpBlocks": ["1.2.3.4"],
                                 "requestPrincipals": ["https://iss/sub"]}}],
            "to": [{"operation": {"methods": ["GET"], "paths": ["/api/{*}"], "ports": ["80"],
                                  "notHosts": ["evil.com"]}}],
            "when": [{"key": "request.headers[x-id]", "values": ["1"], "notValues": ["2"]}],
        }]}), AuthorizationPolicy)
    assert parsed.action is Action.DENY
    assert parsed.target.selector == {"app": "httpbin"}
    (only,) = parsed.rules
    assert only.sources == (Source(principals=("cluster.local/ns/a/sa/b",),
                                   request_principals=("https://iss/sub",),
                                   not_namespaces=("c",), ip_blocks=("10.0.0.0/8",),
                                   remote_ip_blocks=("1.2.3.4",)),)
    assert only.operations == (Operation(not_hosts=("evil.com",), ports=("80",),
                                         methods=("GET",), paths=("/api/{*}",)),)
    assert only.when == (Condition("request.headers[x-id]", ("1",), ("2",)),)


def test_an_empty_spec_is_an_allow_policy_without_rules() -> None:
    parsed = parse_as(policy({}), AuthorizationPolicy)
    assert (parsed.action, parsed.rules) == (Action.ALLOW, ())


def test_the_dry_run_annotation_is_read_like_go_parse_bool() -> None:
    assert parse_as(policy(rule(), annotations={"istio.io/dry-run": "true"}),
                    AuthorizationPolicy).dry_run
    assert not parse_as(policy(rule(), annotations={"istio.io/dry-run": "0"}),
                        AuthorizationPolicy).dry_run


def test_an_unreadable_dry_run_annotation_enforces_and_warns() -> None:
    parsed = parse_object(policy(rule(), annotations={"istio.io/dry-run": "yes"}))
    assert isinstance(parsed.obj, AuthorizationPolicy) and not parsed.obj.dry_run
    (warning,) = parsed.warnings
    assert warning.path == "metadata.annotations.istio.io/dry-run"


def test_an_unknown_condition_key_is_invalid() -> None:
    errors = errors_of(policy(rule(when=[{"key": "request.body", "values": ["x"]}])))
    assert errors == {"spec.rules[0].when[0].key": ["unknown attribute: request.body"]}


@pytest.mark.parametrize(("key", "message"), [
    ("destination.labels[app]", "attribute destination.labels[app] is replaced by the "
                                "workload selector"),
    ("destination.name", "deprecated attribute destination.name: only supported in v1alpha1"),
    ("request.headers", "bad key (request.headers): should have format a[b]"),
    ("request.auth.claims[]", "bad key (request.auth.claims[]): should have format a[b]"),
])
def test_condition_keys_istiod_refuses_are_invalid(key: str, message: str) -> None:
    errors = errors_of(policy(rule(when=[{"key": key, "values": ["x"]}])))
    assert errors["spec.rules[0].when[0].key"] == [message]


def test_a_condition_needs_values_or_not_values() -> None:
    errors = errors_of(policy(rule(when=[{"key": "source.ip"}])))
    assert errors["spec.rules[0].when[0]"] == [
        "at least one of `values` or `notValues` must be set for key source.ip"]


def test_condition_values_are_checked_by_key() -> None:
    errors = errors_of(policy(rule(when=[{"key": "source.ip", "values": ["10.0.0.300"]},
                                         {"key": "destination.port", "notValues": ["http"]}])))
    assert errors["spec.rules[0].when[0].values[0]"] == ["bad IP address (10.0.0.300)"]
    assert errors["spec.rules[0].when[1].notValues[0]"] == [
        "bad port (http): must be a number in 0..65535"]


@pytest.mark.parametrize(("principal", "message"), [
    ("spiffe://cluster.local/ns/a/sa/b",
     "principal 'spiffe://cluster.local/ns/a/sa/b' must not start with spiffe:// (the scheme "
     "is added: write <trust domain>/ns/<namespace>/sa/<account>)"),
    ("cluster.local/ns/*/sa/b",
     "wildcard is only allowed at the start or end, found 'cluster.local/ns/*/sa/b'"),
    ("*/ns/a/sa/*", "at most one wildcard is allowed, found '*/ns/a/sa/*'"),
    ("", "empty value not allowed, found in principals"),
])
def test_a_principal_that_can_never_match_is_invalid(principal: str, message: str) -> None:
    errors = errors_of(policy(rule(**{"from": [{"source": {"principals": [principal]}}]})))
    assert errors == {"spec.rules[0].from[0].source.principals[0]": [message]}


def test_a_source_principal_condition_is_checked_like_principals() -> None:
    errors = errors_of(policy(rule(when=[{"key": "source.principal",
                                          "notValues": ["spiffe://x/ns/a/sa/b"]}])))
    assert list(errors) == ["spec.rules[0].when[0].notValues[0]"]


@pytest.mark.parametrize("path", ["/a/{**}/{*}", "/a/{x}", "/{*}/b c"])
def test_a_path_template_istiod_rejects_is_invalid(path: str) -> None:
    errors = errors_of(policy(rule(to=[{"operation": {"paths": [path]}}])))
    assert list(errors) == ["spec.rules[0].to[0].operation.paths[0]"]


def test_path_templates_istiod_accepts_parse() -> None:
    paths = ["/{*}/b", "/a/{**}", "/{*}/{*}/x/{**}", "/plain/*", "*/suffix"]
    parsed = parse_as(policy(rule(to=[{"operation": {"notPaths": paths}}])),
                      AuthorizationPolicy)
    assert parsed.rules[0].operations[0].not_paths == tuple(paths)


def test_ip_blocks_and_ports_are_checked() -> None:
    errors = errors_of(policy(rule(**{
        "from": [{"source": {"ipBlocks": ["10.0.0.0/33"], "notRemoteIpBlocks": ["x"]}}],
        "to": [{"operation": {"ports": ["70000"]}}]})))
    assert errors == {
        "spec.rules[0].from[0].source.ipBlocks[0]": ["bad CIDR range (10.0.0.0/33)"],
        "spec.rules[0].from[0].source.notRemoteIpBlocks[0]": ["bad IP address (x)"],
        "spec.rules[0].to[0].operation.ports[0]": [
            "bad port (70000): must be a number in 0..65535"]}


def test_service_accounts_are_checked() -> None:
    errors = errors_of(policy(rule(**{"from": [
        {"source": {"serviceAccounts": ["a/b/c", "x*"]}},
        {"source": {"serviceAccounts": ["sa"], "namespaces": ["ns"]}}]})))
    assert errors["spec.rules[0].from[0].source.serviceAccounts[0]"] == [
        "expected format 'serviceAccount' or 'namespace/serviceAccount', found 'a/b/c'"]
    assert errors["spec.rules[0].from[0].source.serviceAccounts[1]"] == [
        "wildcard not allowed"]
    assert errors["spec.rules[0].from[1].source.serviceAccounts"] == [
        "cannot set serviceAccounts with namespaces or principals"]


def test_trust_domains_take_one_wildcard_and_no_slash() -> None:
    errors = errors_of(policy(rule(**{"from": [
        {"source": {"trustDomains": ["a*b", "td/x"]}}]})))
    assert errors == {
        "spec.rules[0].from[0].source.trustDomains[0]": [
            "wildcard is only allowed at the start or end, found 'a*b'"],
        "spec.rules[0].from[0].source.trustDomains[1]": [
            "trust domain must not contain '/', found 'td/x'"]}


def test_empty_from_to_source_and_operation_are_invalid() -> None:
    errors = errors_of(policy({"rules": [{"from": [], "to": []},
                                         {"from": [{"source": {}}], "to": [{}]}]}))
    assert errors == {"spec.rules[0].from": ["`from` must not be empty"],
                      "spec.rules[0].to": ["`to` must not be empty"],
                      "spec.rules[1].from[0].source": ["`from.source` must not be empty"],
                      "spec.rules[1].to[0].operation": ["`to.operation` must not be nil"]}


def test_deny_without_rules_is_invalid() -> None:
    errors = errors_of(policy({"action": "DENY"}))
    assert list(errors) == ["spec.rules"]


def test_a_deny_rule_with_only_http_attributes_warns_it_denies_tcp_ports() -> None:
    parsed = parse_object(policy({"action": "DENY", **rule(to=[{"operation": {
        "methods": ["GET"]}}])}))
    (warning,) = parsed.warnings
    assert (warning.path, warning.reason) == ("spec.rules[0]", Reason.IGNORED)


def test_a_deny_rule_naming_a_port_does_not_warn() -> None:
    parsed = parse_object(policy({"action": "DENY", **rule(to=[{"operation": {
        "methods": ["GET"], "ports": ["8080"]}}])}))
    assert parsed.warnings == ()


def test_custom_needs_a_provider_and_refuses_identities() -> None:
    errors = errors_of(policy({"action": "CUSTOM", **rule(
        **{"from": [{"source": {"principals": ["a/ns/b/sa/c"]}}]},
        when=[{"key": "request.auth.claims[iss]", "values": ["x"]}])}))
    assert errors == {
        "spec.rules[0].from[0].source.principals": [
            "principals is currently not supported with CUSTOM action"],
        "spec.rules[0].when[0].key": [
            "request.auth.claims[iss] is currently not supported with CUSTOM action"],
        "spec.provider": ["`provider.name` must not be empty"]}


def test_a_provider_without_custom_is_invalid() -> None:
    errors = errors_of(policy({"provider": {"name": "opa"}, **rule()}))
    assert errors == {"spec.provider": ["`provider` must not be with non CUSTOM action, found "
                                        "ALLOW"]}


def test_selector_and_target_refs_are_exclusive() -> None:
    errors = errors_of(policy({"selector": {"matchLabels": {"app": "x"}},
                               "targetRefs": [{"kind": "Gateway", "name": "gw",
                                               "group": "gateway.networking.k8s.io"}]}))
    assert errors == {"spec.targetRefs": ["only one of targetRefs or workloadSelector can be "
                                          "set"]}


def test_target_refs_name_only_services_service_entries_and_gateways() -> None:
    errors = errors_of(policy({"targetRef": {"kind": "Pod", "name": "x", "namespace": "y"}}))
    assert set(errors) == {"spec.targetRef.kind", "spec.targetRef.namespace"}
    parsed = parse_as(policy({"targetRefs": [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}]}),
        AuthorizationPolicy)
    assert parsed.target.target_refs == (TargetRef("gateway.networking.k8s.io", "Gateway",
                                                   "gw"),)


def test_a_selector_with_a_wildcard_is_invalid() -> None:
    errors = errors_of(policy({"selector": {"matchLabels": {"app": "web-*"}}}))
    assert errors == {"spec.selector.matchLabels": ["wildcard is not supported in selector: "
                                                    "app=web-*"]}


def test_an_unserved_security_version_names_the_served_ones() -> None:
    doc = policy({}) | {"apiVersion": "security.istio.io/v1alpha1"}
    assert errors_of(doc) == {"apiVersion": [
        "'security.istio.io/v1alpha1' is not served; use security.istio.io/v1 or v1beta1"]}


def test_an_unknown_field_is_an_error_at_its_path() -> None:
    """Enforced without a field its author wrote, a policy could allow more than written."""
    errors = errors_of(policy({"actoin": "DENY", **rule(
        **{"from": [{"source": {"namespaces": ["a"], "notNamespace": ["b"]}}]})}))
    assert set(errors) == {"spec.actoin", "spec.rules[0].from[0].source.notNamespace"}
    assert all(m[0].startswith("unknown field") for m in errors.values())


def stand_in(doc: dict[str, Any]) -> AuthorizationPolicy | None:
    with pytest.raises(InvalidObject) as info:
        parse_object(doc)
    if info.value.fallback is None:
        return None
    found = info.value.fallback.obj
    assert isinstance(found, AuthorizationPolicy) and found.stand_in
    return found


BAD_RULES = rule(to=[{"operation": {"paths": ["/a/{**}/{*}"]}}])
WEB = {"selector": {"matchLabels": {"app": "web"}}}


def test_an_invalid_deny_or_custom_stands_in_as_deny_everything_it_selects() -> None:
    for action in ("DENY", "CUSTOM"):
        found = stand_in(policy({"action": action, **WEB, **BAD_RULES}))
        assert found is not None
        assert (found.action, found.rules, found.target.selector) == (
            Action.DENY, (Rule(),), {"app": "web"})


def test_an_invalid_allow_stands_in_as_allow_nothing() -> None:
    found = stand_in(policy({**WEB, **BAD_RULES}))
    assert found is not None and (found.action, found.rules) == (Action.ALLOW, ())


def test_an_unreadable_action_or_selector_makes_the_stand_in_wider() -> None:
    found = stand_in(policy({"action": "PERMIT", "selector": {"matchLabels": {"app": "*"}},
                             "rules": [{}]}))
    assert found is not None
    assert (found.action, found.rules, found.target.selector) == (Action.DENY, (Rule(),), None)


def test_invalid_audit_and_dry_run_policies_have_no_stand_in() -> None:
    assert stand_in(policy({"action": "AUDIT", **BAD_RULES})) is None
    assert stand_in(policy({"action": "DENY", **BAD_RULES},
                           annotations={"istio.io/dry-run": "true"})) is None
