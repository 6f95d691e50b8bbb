"""RequestAuthentication through translation: the jwt_authn filter istiod writes, where it
goes, and the clusters its providers fetch keys through."""

from __future__ import annotations

import json
from typing import Any

from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from google.protobuf import json_format

from pilotpy.problems import Reason, Severity
from pilotpy.translate.generate import GeneratedConfig
from pilotpy.translate.jwt_authn import PUBLIC_ONLY_JWKS
from tests.unit.authz_support import (
    GATEWAY,
    authorization_policy,
    chain,
    filter_names,
    listener,
    request_authentication,
    translated,
    unpack_filter,
)

JWKS = json.dumps({"keys": [{"kty": "RSA", "e": "AQAB", "n": "abc", "kid": "k"}]})
JWT = "envoy.filters.http.jwt_authn"
HCM = "envoy.filters.network.http_connection_manager"


def jwt_config(config: GeneratedConfig, chain_name: str = "0.0.0.0_8080") -> Any:
    return unpack_filter(chain(config, "virtualInbound", chain_name), JWT,
                         jwt_pb2.JwtAuthentication())


def as_json(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(message)
    return out


def test_one_issuer_accepts_its_token_or_none() -> None:
    config = jwt_config(translated([request_authentication({"issuer": "iss", "jwks": JWKS})]))
    assert as_json(config)["rules"] == [{"match": {"prefix": "/"}, "requires": {"requiresAny": {
        "requirements": [{"providerName": "origins-0"}, {"allowMissing": {}}]}}}]
    assert config.bypass_cors_preflight


def test_the_verified_payload_goes_to_metadata_for_authorization() -> None:
    provider = jwt_config(translated([request_authentication(
        {"issuer": "iss", "jwks": JWKS})])).providers["origins-0"]
    assert as_json(provider) == {
        "issuer": "iss", "localJwks": {"inlineString": JWKS}, "payloadInMetadata": "payload",
        "normalizePayloadInMetadata": {"spaceDelimitedClaims": ["permission", "scope"]}}


def test_several_issuers_take_any_valid_token_and_refuse_any_invalid_one() -> None:
    config = jwt_config(translated([request_authentication(
        {"issuer": "b", "jwks": JWKS}, {"issuer": "a", "jwks": JWKS})]))
    assert [config.providers[n].issuer for n in ("origins-0", "origins-1")] == ["a", "b"]
    optional = [{"requiresAny": {"requirements": [{"providerName": f"origins-{i}"},
                                                  {"allowMissing": {}}]}} for i in (0, 1)]
    assert as_json(config)["rules"][0]["requires"] == {"requiresAny": {"requirements": [
        {"providerName": "origins-0"}, {"providerName": "origins-1"},
        {"requiresAll": {"requirements": optional}}]}}


def test_token_locations_and_outputs_map_to_the_provider() -> None:
    provider = jwt_config(translated([request_authentication({
        "issuer": "iss", "jwks": JWKS, "audiences": ["api"],
        "fromHeaders": [{"name": "x-token", "prefix": "Bearer "}], "fromParams": ["t"],
        "fromCookies": ["c"], "outputPayloadToHeader": "x-payload",
        "forwardOriginalToken": True, "spaceDelimitedClaims": ["roles"],
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}]})])).providers[
        "origins-0"]
    found = as_json(provider)
    assert (found["audiences"], found["fromHeaders"], found["fromParams"],
            found["fromCookies"], found["forwardPayloadHeader"], found["forward"],
            found["claimToHeaders"]) == (
        ["api"], [{"name": "x-token", "valuePrefix": "Bearer "}], ["t"], ["c"], "x-payload",
        True, [{"headerName": "x-sub", "claimName": "sub"}])
    assert found["normalizePayloadInMetadata"]["spaceDelimitedClaims"] == [
        "permission", "roles", "scope"]


def test_jwt_authn_comes_before_rbac_and_after_custom() -> None:
    config = translated([
        request_authentication({"issuer": "iss", "jwks": JWKS}),
        authorization_policy("ext", action="CUSTOM", provider={"name": "opa"},
                             rules=[{"to": [{"operation": {"paths": ["/x"]}}]}]),
        authorization_policy("allow", rules=[{}])])
    names = filter_names(chain(config, "virtualInbound", "0.0.0.0_8080"))
    assert names[1:5] == [f"{HCM}/envoy.filters.http.rbac", f"{HCM}/{JWT}",
                          f"{HCM}/envoy.filters.http.rbac", f"{HCM}/envoy.filters.http.grpc_stats"]


def test_the_passthrough_http_chain_validates_tokens_too() -> None:
    config = translated([request_authentication({"issuer": "iss", "jwks": JWKS})])
    assert f"{HCM}/{JWT}" in filter_names(
        chain(config, "virtualInbound", "virtualInbound-catchall-http"))


def test_only_gateways_clear_the_route_cache() -> None:
    policy = request_authentication({"issuer": "iss", "jwks": JWKS}, namespace="istio-system")
    sidecar = jwt_config(translated([policy]))
    gateway = unpack_filter(listener(translated([policy], node=GATEWAY), "0.0.0.0_8080")
                            .filter_chains[0], JWT, jwt_pb2.JwtAuthentication())
    assert not sidecar.providers["origins-0"].clear_route_cache
    assert gateway.providers["origins-0"].clear_route_cache


def test_a_jwks_uri_is_fetched_by_envoy_through_a_cluster_it_adds() -> None:
    config = translated([request_authentication(
        {"issuer": "iss", "jwksUri": "https://keys.example.com/jwks.json", "timeout": "2s"})])
    remote = jwt_config(config).providers["origins-0"].remote_jwks
    assert as_json(remote) == {"httpUri": {"uri": "https://keys.example.com/jwks.json",
                                           "cluster": "outbound|443||keys.example.com",
                                           "timeout": "2s"}, "cacheDuration": "300s"}
    (cluster,) = [c for c in config.clusters if c.name == "outbound|443||keys.example.com"]
    found = as_json(cluster)
    assert (found["type"], found["dnsLookupFamily"]) == ("LOGICAL_DNS", "V4_ONLY")
    context = found["transportSocket"]["typedConfig"]
    assert context["sni"] == "keys.example.com"
    assert context["commonTlsContext"]["validationContext"]["trustedCa"] == {
        "filename": "/etc/ssl/certs/ca-certificates.crt"}


def test_a_jwks_uri_by_address_gets_a_static_plaintext_cluster() -> None:
    config = translated([request_authentication(
        {"issuer": "iss", "jwksUri": "http://127.0.0.1:8081/keys"})])
    (cluster,) = [c for c in config.clusters if c.name == "outbound|8081||127.0.0.1"]
    assert as_json(cluster)["type"] == "STATIC" and not cluster.HasField("transport_socket")


def test_a_jwks_uri_of_a_mesh_service_uses_its_outbound_cluster() -> None:
    uri = "http://httpbin.foo.svc.cluster.local:8000/keys"
    config = translated([request_authentication({"issuer": "iss", "jwksUri": uri})])
    named = [c for c in config.clusters if c.name == "outbound|8000||httpbin.foo.svc.cluster.local"]
    assert len(named) == 1 and as_json(named[0])["type"] == "EDS"


def test_an_issuer_without_keys_refuses_its_tokens_and_is_reported() -> None:
    config = translated([request_authentication({"issuer": "https://accounts.example"})])
    provider = jwt_config(config).providers["origins-0"]
    assert provider.local_jwks.inline_string == PUBLIC_ONLY_JWKS
    assert [(p.reason, p.severity, p.field) for p in config.problems] == [
        (Reason.UNSUPPORTED, Severity.ERROR, "spec.jwtRules[0]")]


def test_an_invalid_request_authentication_refuses_the_tokens_it_cannot_verify() -> None:
    """Its stand-in: a provider without issuer whose keys verify nothing, so a token passes
    only when another policy's issuer verifies it; no token still passes; not reported
    again (its invalid fields are)."""
    invalid = request_authentication({"issuer": "bad", "jwksUri": "ftp://keys"}, name="bad")
    config = translated([invalid, request_authentication({"issuer": "good", "jwks": JWKS})])
    jwt = jwt_config(config)
    assert {n: (p.issuer, p.local_jwks.inline_string) for n, p in jwt.providers.items()} == {
        "origins-0": ("", PUBLIC_ONLY_JWKS), "origins-1": ("good", JWKS)}
    assert "allowMissing" in json.dumps(as_json(jwt.rules[0]))
    assert config.problems == ()


def test_a_policy_for_other_workloads_adds_nothing() -> None:
    config = translated([request_authentication(
        {"issuer": "iss", "jwksUri": "https://keys.example.com/k"},
        selector={"matchLabels": {"app": "other"}})])
    assert f"{HCM}/{JWT}" not in filter_names(chain(config, "virtualInbound", "0.0.0.0_8080"))
    assert not any(c.name == "outbound|443||keys.example.com" for c in config.clusters)
