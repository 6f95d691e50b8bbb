"""RequestAuthentication parsing and validation (istiod's validateJwtRule and Istio's CRD
rules)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pilotpy.model import InvalidObject, parse_object
from pilotpy.model.request_authentication import (
    ClaimToHeader,
    JwtHeader,
    JwtRule,
    RequestAuthentication,
    parse_jwks_uri,
)
from tests.unit.support import errors_of, parse_as

JWKS = json.dumps({"keys": [{"kty": "RSA", "e": "AQAB", "n": "abc", "kid": "1"}]})


def request_authentication(*rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": "foo"},
            "spec": {**spec, "jwtRules": list(rules)}}


def test_a_full_rule_parses_every_field() -> None:
    parsed = parse_as(request_authentication({
        "issuer": "https://issuer.example", "audiences": ["a", "b"],
        "jwksUri": "https://issuer.example/keys", "fromHeaders": [
            {"name": "x-jwt", "prefix": "Bearer "}], "fromParams": ["token"],
        "fromCookies": ["session"], "outputPayloadToHeader": "x-payload",
        "forwardOriginalToken": True, "timeout": "2s",
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
        "spaceDelimitedClaims": ["roles"]}, selector={"matchLabels": {"app": "x"}}),
        RequestAuthentication)
    (rule,) = parsed.jwt_rules
    assert parsed.target.selector == {"app": "x"}
    assert rule.from_headers == (JwtHeader("x-jwt", "Bearer "),)
    assert rule.output_claim_to_headers == (ClaimToHeader("x-sub", "sub"),)
    assert (rule.timeout_ns, rule.forward_original_token, rule.space_delimited_claims) == (
        2_000_000_000, True, ("roles",))


def test_the_proto_name_jwks_uri_is_read_too() -> None:
    parsed = parse_as(request_authentication({"issuer": "i",
                                              "jwks_uri": "http://keys.example:8080/k"}),
                      RequestAuthentication)
    assert parsed.jwt_rules[0].jwks_uri == "http://keys.example:8080/k"


def test_a_rule_needs_an_issuer_or_a_jwks_uri() -> None:
    assert errors_of(request_authentication({"audiences": ["a"]})) == {
        "spec.jwtRules[0].issuer": ["issuer or jwksUri must be non-empty string"]}


def test_a_jwks_uri_must_be_http_or_https() -> None:
    assert errors_of(request_authentication({"issuer": "i", "jwksUri": "ftp://keys/x"})) == {
        "spec.jwtRules[0].jwksUri": ["jwksUri 'ftp://keys/x': URI scheme 'ftp' is not "
                                     "supported"]}


def test_jwks_and_jwks_uri_are_exclusive() -> None:
    errors = errors_of(request_authentication({"issuer": "i", "jwks": JWKS,
                                               "jwksUri": "http://keys/k"}))
    assert errors == {"spec.jwtRules[0].jwks": ["only one of jwks or jwksUri can be set"]}


def test_unparsable_jwks_is_invalid() -> None:
    errors = errors_of(request_authentication({"issuer": "i", "jwks": '{"keys": [{"n": 1}]}'}))
    assert errors == {"spec.jwtRules[0].jwks": [
        "jwks parse error: key 0: key type None is not one of EC, OKP, RSA, oct"]}


def test_private_key_material_in_jwks_is_a_warning() -> None:
    private = json.dumps({"keys": [{"kty": "RSA", "e": "AQAB", "n": "abc", "d": "secret"}]})
    parsed = parse_object(request_authentication({"issuer": "i", "jwks": private}))
    (warning,) = parsed.warnings
    assert warning.path == "spec.jwtRules[0].jwks" and "index 0" in warning.message


def test_empty_locations_and_bad_claim_headers_are_invalid() -> None:
    errors = errors_of(request_authentication({
        "issuer": "i", "audiences": [""], "fromHeaders": [{"prefix": "x"}],
        "fromParams": [""], "outputClaimToHeaders": [{"header": "x y", "claim": "sub"}],
        "timeout": "1500us"}))
    assert errors == {
        "spec.jwtRules[0].audiences[0]": ["audience must be non-empty string"],
        "spec.jwtRules[0].fromHeaders[0].name": [
            "location header name must be non-empty string"],
        "spec.jwtRules[0].fromParams[0]": ["location query must be non-empty string"],
        "spec.jwtRules[0].outputClaimToHeaders[0].header": [
            "header name x y is not a valid header name"],
        "spec.jwtRules[0].timeout": ["duration must be at least 1ms, to ms precision"]}


def test_jwks_uri_ports_default_by_scheme() -> None:
    assert parse_jwks_uri("https://keys.example/k") == parse_jwks_uri(
        "https://keys.example:443/x")
    uri = parse_jwks_uri("http://10.0.0.1/k")
    assert not isinstance(uri, str) and (uri.host, uri.port, uri.tls) == ("10.0.0.1", 80, False)


def test_an_unknown_field_is_an_error_at_its_path() -> None:
    """Read without `jwksURI` (a misspelt jwksUri) the rule would have no keys."""
    errors = errors_of(request_authentication({"issuer": "a", "jwksURI": "https://k"}))
    assert list(errors) == ["spec.jwtRules[0].jwksURI"]


def test_an_invalid_policy_stands_in_as_refusing_every_token() -> None:
    doc = request_authentication({"issuer": "a", "jwksUri": "ftp://k"},
                                 selector={"matchLabels": {"app": "web"}})
    with pytest.raises(InvalidObject) as info:
        parse_object(doc)
    assert info.value.fallback is not None
    found = info.value.fallback.obj
    assert isinstance(found, RequestAuthentication) and found.stand_in
    assert (found.jwt_rules, found.target.selector) == ((JwtRule(),), {"app": "web"})
