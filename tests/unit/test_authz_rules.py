"""The RBAC matchers istiod writes for each attribute form (pilot/pkg/security/authz model and
matcher), and the shape of the filters a workload's policies become (builder)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from google.protobuf import json_format

from pilotpy.model.authorization import Action, AuthorizationPolicy, Rule
from pilotpy.push.security import WorkloadPolicies
from pilotpy.translate.authz.builder import authorization_filters
from pilotpy.translate.authz.rules import RuleContext, rule_policy
from pilotpy.translate.authz.trust_domain import TrustDomains
from tests.unit.support import parse_as

LOCAL = TrustDomains(("cluster.local",))


def parsed(spec: dict[str, Any], name: str = "p", **metadata: Any) -> AuthorizationPolicy:
    return parse_as({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                     "metadata": {"name": name, "namespace": "foo", **metadata},
                     "spec": spec}, AuthorizationPolicy)


def one_rule(**rule: Any) -> Rule:
    return parsed({"rules": [rule]}).rules[0]


def policy_json(rule: Rule, *, action: Action = Action.ALLOW, tcp: bool = False,
                trust_domains: TrustDomains = LOCAL) -> dict[str, Any] | None:
    generated = rule_policy(rule, RuleContext(action, tcp, trust_domains, "foo"))
    return None if generated is None else json_format.MessageToDict(generated)


def principal_ids(rule: Rule, **kwargs: Any) -> list[dict[str, Any]]:
    found = policy_json(rule, **kwargs)
    assert found is not None
    ids: list[dict[str, Any]] = found["principals"][0]["andIds"]["ids"]
    return ids


def source(**values: list[str]) -> Rule:
    return one_rule(**{"from": [{"source": values}]})


def authenticated(matcher: dict[str, Any]) -> dict[str, Any]:
    return {"authenticated": {"principalName": matcher}}


@pytest.mark.parametrize(("value", "matcher"), [
    ("cluster.local/ns/a/sa/b", {"exact": "spiffe://cluster.local/ns/a/sa/b"}),
    ("cluster.local/ns/a/*", {"prefix": "spiffe://cluster.local/ns/a/"}),
    ("*/sa/b", {"safeRegex": {"regex": "spiffe://.*/sa/b"}}),
    ("*", {"safeRegex": {"regex": ".+"}}),
])
def test_principal_forms(value: str, matcher: dict[str, Any]) -> None:
    assert principal_ids(source(principals=[value])) == [
        {"orIds": {"ids": [authenticated(matcher)]}}]


def test_namespaces_match_the_identitys_namespace_segment() -> None:
    (ids,) = principal_ids(source(namespaces=["foo", "team-*"]))
    assert [i["authenticated"]["principalName"]["safeRegex"]["regex"]
            for i in ids["orIds"]["ids"]] == [".*/ns/foo/.*", ".*/ns/team-.*/.*"]


def test_service_accounts_default_to_the_policys_namespace() -> None:
    (ids,) = principal_ids(source(serviceAccounts=["bar/api", "web"]))
    assert [i["authenticated"]["principalName"]["safeRegex"]["regex"]
            for i in ids["orIds"]["ids"]] == [
        "spiffe://.+/ns/bar/(.+/|)sa/api(/.+)?", "spiffe://.+/ns/foo/(.+/|)sa/web(/.+)?"]


@pytest.mark.parametrize(("value", "matcher"), [
    ("*", {"prefix": "spiffe://"}),
    ("example.org", {"prefix": "spiffe://example.org/"}),
    ("*.example.org", {"safeRegex": {"regex": "spiffe://[^/]*\\.example\\.org/.*"}}),
])
def test_trust_domain_forms(value: str, matcher: dict[str, Any]) -> None:
    assert principal_ids(source(trustDomains=[value])) == [
        {"orIds": {"ids": [authenticated(matcher)]}}]


def _iss_sub(ids: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    iss, sub = ids["andIds"]["ids"]
    return (iss["metadata"]["value"]["stringMatch"], sub["metadata"]["value"]["stringMatch"])


@pytest.mark.parametrize(("value", "iss", "sub"), [
    ("https://issuer/alice", {"exact": "https://issuer"}, {"exact": "alice"}),
    ("*", {"safeRegex": {"regex": ".+"}}, {"safeRegex": {"regex": ".+"}}),
    ("https://issuer/*", {"exact": "https://issuer"}, {"safeRegex": {"regex": ".+"}}),
    ("*/alice", {"safeRegex": {"regex": ".+"}}, {"exact": "alice"}),
    ("*issuer/alice", {"suffix": "issuer"}, {"exact": "alice"}),
    ("issuer*", {"prefix": "issuer"}, {"safeRegex": {"regex": ".+"}}),
    # The last `/` splits issuer and subject, even inside a URL (as istiod).
    ("https://iss*", {"exact": "https:/"}, {"prefix": "iss"}),
    ("*alice", {"safeRegex": {"regex": ".+"}}, {"suffix": "alice"}),
])
def test_request_principal_forms(value: str, iss: dict[str, Any], sub: dict[str, Any]) -> None:
    (ids,) = principal_ids(source(requestPrincipals=[value]))
    assert _iss_sub(ids) == (iss, sub)


def test_source_attributes_come_in_istiods_order_then_conditions() -> None:
    rule = one_rule(**{"from": [{"source": {
        "ipBlocks": ["1.2.3.4"], "remoteIpBlocks": ["5.6.7.8"], "namespaces": ["n"],
        "requestPrincipals": ["i/s"], "principals": ["td/ns/n/sa/s"]}}]},
        when=[{"key": "request.headers[x]", "values": ["y"]}])
    kinds = [next(iter(i["orIds"]["ids"][0])) if "orIds" in i else next(iter(i))
             for i in principal_ids(rule)]
    assert kinds == ["authenticated", "andIds", "authenticated", "remoteIp", "directRemoteIp",
                     "header"]


def test_operation_attributes_come_in_istiods_order() -> None:
    rule = one_rule(to=[{"operation": {"ports": ["80"], "paths": ["/p"], "methods": ["GET"],
                                       "hosts": ["h"]}}])
    found = policy_json(rule)
    assert found is not None
    rules = found["permissions"][0]["andRules"]["rules"]
    assert [next(iter(r["orRules"]["rules"][0])) for r in rules] == [
        "header", "header", "urlPath", "destinationPort"]


def test_a_path_template_becomes_a_uri_template_permission() -> None:
    found = policy_json(one_rule(to=[{"operation": {"paths": ["/a/{*}/b/{**}"]}}]))
    assert found is not None
    (template,) = found["permissions"][0]["andRules"]["rules"][0]["orRules"]["rules"]
    assert template["uriTemplate"]["name"] == "uri-template"
    assert template["uriTemplate"]["typedConfig"]["pathTemplate"] == "/a/*/b/**"


def test_an_allow_rule_with_http_attributes_is_dropped_on_tcp() -> None:
    assert policy_json(one_rule(to=[{"operation": {"methods": ["GET"]}}]), tcp=True) is None


def test_a_deny_rule_drops_only_its_http_attributes_on_tcp() -> None:
    found = policy_json(one_rule(to=[{"operation": {"methods": ["GET"], "ports": ["80"]}}]),
                        action=Action.DENY, tcp=True)
    assert found is not None
    assert found["permissions"] == [{"andRules": {"rules": [
        {"orRules": {"rules": [{"destinationPort": 80}]}}]}}]


def test_a_rule_without_from_or_to_matches_any_request() -> None:
    assert policy_json(Rule()) == {"permissions": [{"andRules": {"rules": [{"any": True}]}}],
                                   "principals": [{"andIds": {"ids": [{"any": True}]}}]}


def test_trust_domains_replace_and_expand() -> None:
    domains = TrustDomains(("td1", "old"))
    assert domains.replace_aliases(["cluster.local/ns/a/sa/b", "other/ns/a/sa/b",
                                    "*/ns/a/sa/b"]) == (
        "td1/ns/a/sa/b", "old/ns/a/sa/b", "other/ns/a/sa/b", "*/ns/a/sa/b")
    assert domains.expand_aliases(["old", "x"]) == ("td1", "old", "x")


# -- filters -----------------------------------------------------------------------------------


def http_rbac(filter_: Any) -> Any:
    out = http_rbac_pb2.RBAC()
    filter_.typed_config.Unpack(out)
    return out


def test_filters_come_audit_then_deny_then_allow() -> None:
    policies = WorkloadPolicies(
        deny=(parsed({"action": "DENY", "rules": [{}]}, name="d"),),
        allow=(parsed({"rules": [{}]}, name="a"),),
        audit=(parsed({"action": "AUDIT", "rules": [{}]}, name="l"),))
    built = authorization_filters(policies, LOCAL)
    assert [http_rbac(f).rules.action for f in built.http] == [
        rbac_pb2.RBAC.LOG, rbac_pb2.RBAC.DENY, rbac_pb2.RBAC.ALLOW]
    assert len(built.tcp) == 3


def test_rules_are_named_after_namespace_policy_and_index() -> None:
    built = authorization_filters(WorkloadPolicies(allow=(
        parsed({"rules": [{}, {"to": [{"operation": {"methods": ["GET"]}}]}]}),)), LOCAL)
    assert sorted(http_rbac(built.http[0]).rules.policies) == [
        "ns[foo]-policy[p]-rule[0]", "ns[foo]-policy[p]-rule[1]"]


def test_a_stand_in_of_an_invalid_policy_is_named_as_failing_closed() -> None:
    stand_in = dataclasses.replace(parsed({"action": "DENY", "rules": [{}]}), stand_in=True)
    built = authorization_filters(WorkloadPolicies(deny=(stand_in,)), LOCAL)
    assert list(http_rbac(built.http[0]).rules.policies) == [
        "ns[foo]-policy[p]-rule[0]-invalid-policy-fails-closed"]


def test_an_allow_policy_without_rules_matches_nothing() -> None:
    built = authorization_filters(WorkloadPolicies(allow=(parsed({}),)), LOCAL)
    policy = http_rbac(built.http[0]).rules.policies["ns[foo]-policy[p]-rule[0]"]
    assert json_format.MessageToDict(policy) == {
        "permissions": [{"notRule": {"any": True}}], "principals": [{"notId": {"any": True}}]}


def test_dry_run_policies_become_shadow_rules_with_their_stat_prefix() -> None:
    dry = parsed({"action": "DENY", "rules": [{}]},
                 annotations={"istio.io/dry-run": "true"})
    config = http_rbac(authorization_filters(WorkloadPolicies(deny=(dry,)), LOCAL).http[0])
    assert not config.HasField("rules")
    assert list(config.shadow_rules.policies) == ["ns[foo]-policy[p]-rule[0]"]
    assert config.shadow_rules_stat_prefix == "istio_dry_run_deny_"


def test_custom_policies_become_deny_rules_named_as_istiod_does() -> None:
    custom = parsed({"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]})
    built = authorization_filters(WorkloadPolicies(custom=(custom,)), LOCAL)
    (config,) = [http_rbac(f) for f in built.http_custom]
    assert config.rules.action == rbac_pb2.RBAC.DENY
    assert list(config.rules.policies) == [
        "istio-ext-authz-opa-ns[foo]-policy[p]-rule[0]-deny-due-to-bad-CUSTOM-action"]
    assert built.http == () and len(built.tcp) == 1
