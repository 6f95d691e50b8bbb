"""AuthorizationPolicy through translation, stated as calls through the sidecar's and the
gateway's translated config (pilotpy.simulate evaluates the RBAC filters as Envoy does):
istiod's semantics and their edge cases, one per test. What the filters look like field by
field is in the golden cases (`authz-*`) and tests/unit/test_authz_rules.py."""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from pilotpy.mesh import MeshConfig, parse_mesh_config
from pilotpy.problems import Reason, Severity
from pilotpy.simulate import Call, Outcome, Protocol
from tests.unit.authz_support import (
    GATEWAY,
    HCM_FILTER,
    HTTP_PORT,
    TCP_PORT,
    UNDECLARED_PORT,
    authorization_policy,
    chain,
    filter_names,
    inbound,
    listener,
    simulation,
    translated,
    unpack_filter,
)

ALLOW_NOTHING = authorization_policy("allow-nothing")
TCP = {"protocol": Protocol.TCP}


def allow(*rules: dict[str, Any], name: str = "allow", namespace: str = "foo",
          **spec: Any) -> dict[str, Any]:
    return authorization_policy(name, namespace, rules=list(rules), **spec)


def deny(*rules: dict[str, Any], name: str = "deny", namespace: str = "foo",
         **spec: Any) -> dict[str, Any]:
    return authorization_policy(name, namespace, action="DENY", rules=list(rules), **spec)


def to(**operation: Any) -> dict[str, Any]:
    return {"to": [{"operation": operation}]}


def when(key: str, *values: str, negate: bool = False) -> dict[str, Any]:
    return {"when": [{"key": key, ("notValues" if negate else "values"): list(values)}]}


def forbidden(result: Any) -> bool:
    return bool(result.outcome is Outcome.FORBIDDEN)


# -- what applies ----------------------------------------------------------------------------


def _has_rbac(filter_chain: Any) -> bool:
    return any("rbac" in name for name in filter_names(filter_chain))


def test_without_policies_the_inbound_chains_carry_no_rbac() -> None:
    config = translated()
    assert not any(_has_rbac(c) for c in listener(config, "virtualInbound").filter_chains)


def test_allow_nothing_denies_every_request_and_connection() -> None:
    sim = simulation([ALLOW_NOTHING])
    result = inbound(sim)
    assert (result.outcome, result.status) == (Outcome.FORBIDDEN, 403)
    assert forbidden(inbound(sim, TCP_PORT, **TCP))


def test_ports_no_service_declares_are_protected_too() -> None:
    sim = simulation([ALLOW_NOTHING])
    assert forbidden(inbound(sim, UNDECLARED_PORT))
    assert forbidden(inbound(sim, UNDECLARED_PORT, **TCP))


def test_no_allow_policy_means_allow() -> None:
    sim = simulation([deny(to(paths=["/admin"]))])
    assert not forbidden(inbound(sim, path="/anything"))


def test_an_allow_rule_lets_only_what_it_matches_through() -> None:
    sim = simulation([allow(to(methods=["GET"]))])
    assert not forbidden(inbound(sim, method="GET"))
    assert forbidden(inbound(sim, method="POST"))


def test_allow_policies_are_ored() -> None:
    sim = simulation([allow(to(methods=["GET"]), name="a"), allow(to(paths=["/post"]), name="b")])
    assert not forbidden(inbound(sim, method="POST", path="/post"))
    assert forbidden(inbound(sim, method="POST", path="/other"))


def test_deny_is_evaluated_before_allow() -> None:
    sim = simulation([allow(to(methods=["GET"])), deny(to(paths=["/admin/*"]))])
    assert forbidden(inbound(sim, method="GET", path="/admin/users"))
    assert not forbidden(inbound(sim, method="GET", path="/users"))


def test_an_empty_allow_rule_allows_everything() -> None:
    assert not forbidden(inbound(simulation([allow({})]), method="DELETE"))


def test_audit_never_changes_the_outcome() -> None:
    audit = authorization_policy("audit", action="AUDIT", rules=[{}])
    assert not forbidden(inbound(simulation([audit])))


def test_a_dry_run_policy_is_not_enforced() -> None:
    dry = authorization_policy("dry", action="DENY", rules=[{}],
                               annotations={"istio.io/dry-run": "true"})
    sim = simulation([dry])
    assert not forbidden(inbound(sim))
    assert not forbidden(inbound(sim, TCP_PORT, **TCP))


def test_root_namespace_policies_apply_mesh_wide() -> None:
    sim = simulation([deny({}, namespace="istio-system")])
    assert forbidden(inbound(sim))
    assert forbidden(simulation([deny({}, namespace="istio-system")], node=GATEWAY).run(
        Call(port=8080, host="httpbin.example")))


def test_another_namespaces_policies_do_not_apply() -> None:
    assert not forbidden(inbound(simulation([deny({}, namespace="bar")])))


def test_a_selector_limits_the_policy_to_the_workloads_it_matches() -> None:
    assert forbidden(inbound(simulation([deny({}, selector={"matchLabels": {"version": "v1"}})])))
    assert not forbidden(inbound(simulation([deny({}, selector={"matchLabels": {
        "version": "v2"}})])))


def test_target_refs_never_select_a_sidecar() -> None:
    policy = deny({}, targetRefs=[{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                   "name": "httpbin"}])
    assert not forbidden(inbound(simulation([policy])))


def test_outbound_chains_never_enforce_the_workloads_policies() -> None:
    config = translated([ALLOW_NOTHING])
    outbound = [li for li in config.listeners if li.name != "virtualInbound"]
    assert outbound
    for li in outbound:
        for c in [*li.filter_chains, li.default_filter_chain]:
            assert not _has_rbac(c), (li.name, c.name)


def test_the_inbound_blackhole_chain_carries_no_rbac() -> None:
    config = translated([ALLOW_NOTHING])
    assert not _has_rbac(chain(config, "virtualInbound", "virtualInbound-blackhole"))


def test_network_rbac_goes_before_tcp_proxy() -> None:
    config = translated([ALLOW_NOTHING])
    assert filter_names(chain(config, "virtualInbound", "0.0.0.0_9000")) == [
        "envoy.filters.network.rbac", "envoy.filters.network.tcp_proxy"]


# -- HTTP-only attributes on TCP chains -------------------------------------------------------


def test_an_allow_rule_with_http_attributes_is_left_out_on_tcp_ports() -> None:
    sim = simulation([allow(to(methods=["GET"]))])
    assert forbidden(inbound(sim, TCP_PORT, **TCP))
    assert not forbidden(inbound(sim, method="GET"))


def test_an_allow_rule_naming_only_tcp_attributes_works_on_tcp_ports() -> None:
    sim = simulation([allow(to(ports=[str(TCP_PORT)]))])
    assert not forbidden(inbound(sim, TCP_PORT, **TCP))
    assert forbidden(inbound(sim))  # HTTP on 8080 is not named


def test_a_deny_rule_with_only_http_attributes_denies_every_tcp_connection() -> None:
    sim = simulation([deny(to(methods=["POST"]))])
    assert forbidden(inbound(sim, TCP_PORT, **TCP))
    assert not forbidden(inbound(sim, method="GET"))


def test_a_deny_rule_keeps_its_tcp_attributes_on_tcp_ports() -> None:
    sim = simulation([deny(to(methods=["POST"], ports=[str(HTTP_PORT)]))])
    assert not forbidden(inbound(sim, TCP_PORT, **TCP))


def test_a_deny_by_request_principal_denies_tcp_connections() -> None:
    sim = simulation([deny({"from": [{"source": {"requestPrincipals": ["*"]}}]})])
    assert forbidden(inbound(sim, TCP_PORT, **TCP))
    assert not forbidden(inbound(sim))  # no token, no request principal


# -- attributes --------------------------------------------------------------------------------


def test_paths_match_exactly_by_prefix_suffix_or_presence() -> None:
    sim = simulation([allow(to(paths=["/exact", "/prefix/*", "*.json"]))])
    assert not forbidden(inbound(sim, path="/exact?x=1"))
    assert not forbidden(inbound(sim, path="/prefix/a/b"))
    assert not forbidden(inbound(sim, path="/data/x.json"))
    assert forbidden(inbound(sim, path="/exact/more"))


def test_path_templates_match_one_segment_or_any_number() -> None:
    sim = simulation([allow(to(paths=["/api/{*}/items", "/static/{**}"]))])
    assert not forbidden(inbound(sim, path="/api/v1/items"))
    assert forbidden(inbound(sim, path="/api/v1/x/items"))
    assert not forbidden(inbound(sim, path="/static/css/site.css"))


def test_hosts_match_ignoring_case() -> None:
    sim = simulation([allow(to(hosts=["httpbin.example", "*.internal"]))])
    assert not forbidden(inbound(sim, host="HTTPBIN.example"))
    assert not forbidden(inbound(sim, host="api.internal"))
    assert forbidden(inbound(sim, host="other.example"))


def test_not_values_negate() -> None:
    sim = simulation([allow(to(notMethods=["DELETE"]))])
    assert not forbidden(inbound(sim, method="PUT"))
    assert forbidden(inbound(sim, method="DELETE"))


def test_a_deny_on_a_header() -> None:
    sim = simulation([deny(when("request.headers[x-user]", "mallory*"))])
    assert forbidden(inbound(sim, headers={"x-user": "mallory-2"}))
    assert not forbidden(inbound(sim, headers={"x-user": "alice"}))
    assert not forbidden(inbound(sim))


def test_ip_blocks_match_the_connections_source() -> None:
    sim = simulation([allow({"from": [{"source": {"ipBlocks": ["10.244.1.0/24"]}}]})])
    assert not forbidden(inbound(sim, source="10.244.1.9"))
    assert forbidden(inbound(sim, source="10.244.2.9"))
    assert not forbidden(inbound(sim, TCP_PORT, source="10.244.1.9", **TCP))


def test_destination_port_and_ip_conditions_are_permissions() -> None:
    sim = simulation([allow(when("destination.port", str(TCP_PORT)))])
    assert not forbidden(inbound(sim, TCP_PORT, **TCP))
    assert forbidden(inbound(sim))


def test_identities_never_match_plaintext() -> None:
    """Peer principals and namespaces come from the client certificate: without mutual TLS
    an ALLOW by identity lets nothing through and a DENY by identity denies nothing."""
    by_namespace = {"from": [{"source": {"namespaces": ["foo"]}}]}
    assert forbidden(inbound(simulation([allow(by_namespace)])))
    assert not forbidden(inbound(simulation([deny(by_namespace)])))


# -- gateways ----------------------------------------------------------------------------------


def gateway_policy(*rules: dict[str, Any], action: str = "ALLOW") -> dict[str, Any]:
    return authorization_policy("gw", "istio-system", action=action, rules=list(rules),
                                selector={"matchLabels": {"istio": "ingressgateway"}})


def test_a_gateway_matches_remote_ip_blocks_against_the_client_address() -> None:
    sim = simulation([gateway_policy({"from": [{"source": {"remoteIpBlocks": ["203.0.113.0/24"]
                                                           }}]})], node=GATEWAY)
    assert not forbidden(sim.run(Call(port=8080, host="h", source="203.0.113.5")))
    assert forbidden(sim.run(Call(port=8080, host="h", source="198.51.100.5")))


def test_a_gateway_does_not_trust_a_clients_x_forwarded_for() -> None:
    sim = simulation([gateway_policy({"from": [{"source": {"remoteIpBlocks": ["203.0.113.0/24"]
                                                           }}]})], node=GATEWAY)
    lying = Call(port=8080, host="h", source="198.51.100.5",
                 headers={"x-forwarded-for": "203.0.113.5"})
    assert forbidden(sim.run(lying))


def test_a_gateway_tcp_server_enforces_network_rbac() -> None:
    sim = simulation([gateway_policy({"from": [{"source": {"remoteIpBlocks": ["203.0.113.0/24"]
                                                           }}]}, action="DENY")], node=GATEWAY)
    assert forbidden(sim.run(Call(port=31400, protocol=Protocol.TCP, source="203.0.113.1")))
    assert not forbidden(sim.run(Call(port=31400, protocol=Protocol.TCP, source="192.0.2.9")))


# -- CUSTOM ------------------------------------------------------------------------------------


def custom(*rules: dict[str, Any], provider: str = "opa", name: str = "ext",
           **metadata: Any) -> dict[str, Any]:
    return authorization_policy(name, action="CUSTOM", provider={"name": provider},
                                rules=list(rules), **metadata)


AUTHZ_SERVICE = {"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "ext-authz", "namespace": "istio-system"},
                 "spec": {"clusterIP": "10.96.7.7", "ports": [{"name": "http", "port": 8000},
                                                              {"name": "grpc", "port": 9000}]}}


def providers(kind: str = "envoyExtAuthzHttp", port: int = 8000,
              service: str = "ext-authz.istio-system.svc.cluster.local") -> MeshConfig:
    mesh, _ = parse_mesh_config({"extensionProviders": [
        {"name": "opa", kind: {"service": service, "port": port}}]})
    return mesh


def test_custom_sends_only_the_requests_its_rules_select_to_the_provider() -> None:
    sim = simulation([AUTHZ_SERVICE, custom(to(paths=["/admin/*"]))], mesh=providers())
    asked = inbound(sim, path="/admin/x")
    assert asked.outcome is Outcome.UNSUPPORTED and "ext_authz" in asked.reason
    assert inbound(sim, path="/public").outcome is Outcome.FORWARDED


def test_custom_filters_come_first_rbac_then_ext_authz() -> None:
    config = translated([AUTHZ_SERVICE, custom({}), ALLOW_NOTHING], mesh=providers())
    assert filter_names(chain(config, "virtualInbound", "0.0.0.0_8080"))[1:4] == [
        f"{HCM_FILTER}/envoy.filters.http.rbac", f"{HCM_FILTER}/envoy.filters.http.ext_authz",
        f"{HCM_FILTER}/envoy.filters.http.rbac"]


def test_an_http_provider_leaves_tcp_chains_alone() -> None:
    config = translated([AUTHZ_SERVICE, custom({})], mesh=providers())
    assert filter_names(chain(config, "virtualInbound", "0.0.0.0_9000")) == [
        "envoy.filters.network.tcp_proxy"]


def test_a_grpc_provider_authorizes_tcp_connections_too() -> None:
    config = translated([AUTHZ_SERVICE, custom({})],
                        mesh=providers("envoyExtAuthzGrpc", 9000))
    assert filter_names(chain(config, "virtualInbound", "0.0.0.0_9000")) == [
        "envoy.filters.network.rbac", "envoy.filters.network.ext_authz",
        "envoy.filters.network.tcp_proxy"]


def test_custom_with_an_unknown_provider_denies_what_it_would_have_sent() -> None:
    sim = simulation([custom(to(paths=["/admin/*"]))])
    assert forbidden(inbound(sim, path="/admin/x"))
    assert not forbidden(inbound(sim, path="/public"))
    assert forbidden(inbound(sim, TCP_PORT, **TCP))  # the DENY's HTTP-only field drops on TCP


def test_custom_with_an_unusable_provider_is_reported() -> None:
    problems = translated([custom(to(paths=["/admin/*"]))], mesh=providers()).problems
    (problem,) = problems
    assert (problem.reason, problem.severity, problem.field, problem.ref) == (
        Reason.NOT_FOUND, Severity.ERROR, "spec.provider.name",
        ("AuthorizationPolicy", "foo", "ext"))
    assert "could not find service ext-authz.istio-system.svc.cluster.local" in problem.message


def test_two_custom_providers_on_one_workload_both_deny() -> None:
    sim = simulation([AUTHZ_SERVICE, custom(to(paths=["/a"]), name="a"),
                      custom(to(paths=["/b"]), name="b", provider="other")], mesh=providers())
    assert forbidden(inbound(sim, path="/a")) and forbidden(inbound(sim, path="/b"))
    assert not forbidden(inbound(sim, path="/c"))


def test_a_dry_run_custom_policy_denies_as_istiod_writes_it() -> None:
    sim = simulation([AUTHZ_SERVICE, custom(to(paths=["/try/*"]), annotations={
        "istio.io/dry-run": "true"})], mesh=providers())
    assert forbidden(inbound(sim, path="/try/x"))


# -- JWT claims --------------------------------------------------------------------------------


def test_request_principals_match_the_verified_tokens_issuer_and_subject() -> None:
    sim = simulation([allow({"from": [{"source": {"requestPrincipals": [
        "https://issuer.example/alice"]}}]})])
    alice = {"iss": "https://issuer.example", "sub": "alice"}
    assert not forbidden(inbound(sim, jwt_payload=alice))
    assert forbidden(inbound(sim, jwt_payload={**alice, "sub": "bob"}))
    assert forbidden(inbound(sim))


def test_request_principal_wildcard_requires_any_token() -> None:
    sim = simulation([allow({"from": [{"source": {"requestPrincipals": ["*"]}}]})])
    assert not forbidden(inbound(sim, jwt_payload={"iss": "i", "sub": "s"}))
    assert forbidden(inbound(sim))


def test_a_claim_condition_matches_a_string_or_a_list_member() -> None:
    sim = simulation([allow(when("request.auth.claims[groups]", "admins"))])
    assert not forbidden(inbound(sim, jwt_payload={"groups": ["users", "admins"]}))
    assert not forbidden(inbound(sim, jwt_payload={"groups": "admins"}))
    assert forbidden(inbound(sim, jwt_payload={"groups": ["users"]}))


def test_a_nested_claim_condition() -> None:
    sim = simulation([allow(when("request.auth.claims[realm][role]", "ops"))])
    assert not forbidden(inbound(sim, jwt_payload={"realm": {"role": "ops"}}))


def test_audiences_and_presenter_conditions() -> None:
    sim = simulation([allow({"when": [{"key": "request.auth.audiences", "values": ["api"]},
                                      {"key": "request.auth.presenter", "values": ["web"]}]})])
    assert not forbidden(inbound(sim, jwt_payload={"aud": ["api", "x"], "azp": "web"}))
    assert forbidden(inbound(sim, jwt_payload={"aud": "api", "azp": "cli"}))


def test_principals_follow_the_mesh_trust_domain_and_its_aliases() -> None:
    policy = allow({"from": [{"source": {"principals": ["cluster.local/ns/foo/sa/sleep"]}}]})
    config = translated([policy], mesh=MeshConfig(trust_domain="td1",
                                                  trust_domain_aliases=("old-td",)))
    rbac = unpack_filter(chain(config, "virtualInbound", "0.0.0.0_9000"),
                         "envoy.filters.network.rbac", network_rbac_pb2.RBAC())
    (only,) = rbac.rules.policies["ns[foo]-policy[allow]-rule[0]"].principals
    names = [p.authenticated.principal_name.exact for p in only.and_ids.ids[0].or_ids.ids]
    assert names == ["spiffe://td1/ns/foo/sa/sleep", "spiffe://old-td/ns/foo/sa/sleep"]


def test_a_gateway_tls_passthrough_chain_enforces_network_rbac() -> None:
    passthrough = [
        {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
         "metadata": {"name": "tls", "namespace": "istio-system"},
         "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
             {"port": {"number": 443, "name": "tls", "protocol": "TLS"},
              "hosts": ["secure.example"], "tls": {"mode": "PASSTHROUGH"}}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "tls", "namespace": "istio-system"},
         "spec": {"hosts": ["secure.example"], "gateways": ["tls"], "tls": [
             {"match": [{"port": 443, "sniHosts": ["secure.example"]}],
              "route": [{"destination": {"host": "httpbin.foo.svc.cluster.local",
                                         "port": {"number": 9000}}}]}]}},
        gateway_policy({"from": [{"source": {"remoteIpBlocks": ["203.0.113.0/24"]}}]},
                       action="DENY")]
    config = translated(passthrough, node=GATEWAY)
    (only,) = listener(config, "0.0.0.0_443").filter_chains
    assert filter_names(only) == ["envoy.filters.network.rbac",
                                  "envoy.filters.network.tcp_proxy"]
    sim = simulation(passthrough, node=GATEWAY)
    def call(source: str) -> Call:
        return Call(port=443, source=source, tls=True, sni="secure.example",
                    protocol=Protocol.TCP)

    assert forbidden(sim.run(call("203.0.113.9")))
    assert not forbidden(sim.run(call("192.0.2.9")))
