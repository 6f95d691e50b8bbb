"""Authentication without a server: bearer metadata, JWT_RULE tokens, TokenReview answers
and their cache, and matching a caller to the node it claims to be."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from envoy.config.core.v3 import base_pb2

from pilotpy.auth.caller import AuthError, Caller, bearer_token
from pilotpy.auth.guard import matching_identity, node_namespace, node_service_account
from pilotpy.auth.jwtrule import JwksAuthenticator, parse_jwt_rule
from pilotpy.auth.tokenreview import TokenReviewer
from tests.tokens import ISSUER, TokenIssuer

SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"


def domain() -> str:
    return "cluster.local"


def test_bearer_metadata() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    with pytest.raises(AuthError, match="no authorization metadata"):
        bearer_token([("x", "y")])
    with pytest.raises(AuthError, match="not `Bearer <JWT>`"):
        bearer_token([("authorization", "Basic abc")])


@pytest.mark.parametrize("rule,reason", [
    ("{", "not JSON"),
    ('{"jwks": "{}"}', "`issuer` is required"),
    ('{"issuer": "x"}', "exactly one of `jwksUri` and `jwks`"),
    ('{"issuer": "x", "jwksUri": "ftp://k"}', "not https://"),
    ('{"issuer": "x", "jwks": "{}", "audience": []}', "unknown fields"),
])
def test_jwt_rule_errors_name_the_problem(rule: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_jwt_rule(rule)


async def test_jwt_rule_accepts_a_service_account_token() -> None:
    issuer = TokenIssuer()
    authenticator = JwksAuthenticator(parse_jwt_rule(issuer.jwt_rule()), domain)
    caller = await authenticator.authenticate(issuer.token("default", "sleep"))
    assert caller == Caller((SLEEP,), "token")


@pytest.mark.parametrize("case,reason", [
    ("expired", "expired"),
    ("forged", "Signature verification failed"),
    ("audience", "Audience doesn't match"),
    ("issuer", "Invalid issuer"),
    ("subject", "is not system:serviceaccount"),
    ("garbage", "not a JWT"),
])
async def test_jwt_rule_refuses_bad_tokens(case: str, reason: str) -> None:
    issuer = TokenIssuer()
    authenticator = JwksAuthenticator(parse_jwt_rule(issuer.jwt_rule()), domain)
    tokens = {
        "expired": issuer.token("default", "sleep", lifetime=-60),
        "forged": issuer.forged("default", "sleep"),
        "audience": jwt.encode({"iss": ISSUER, "aud": ["other"], "exp": 2**31,
                                "sub": "system:serviceaccount:default:sleep"}, issuer.key,
                               algorithm="RS256", headers={"kid": issuer.kid}),
        "issuer": jwt.encode({"iss": "https://elsewhere", "aud": ["istio-ca"], "exp": 2**31,
                              "sub": "system:serviceaccount:default:sleep"}, issuer.key,
                             algorithm="RS256", headers={"kid": issuer.kid}),
        "subject": jwt.encode({"iss": ISSUER, "aud": ["istio-ca"], "exp": 2**31,
                               "sub": "alice"}, issuer.key, algorithm="RS256",
                              headers={"kid": issuer.kid}),
        "garbage": "not-a-token",
    }
    with pytest.raises(AuthError, match=reason):
        await authenticator.authenticate(tokens[case])


class FakeReviews:
    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.bodies: list[Any] = []

    async def post(self, path: str, body: dict[str, Any], timeout: float = 0) -> Any:
        assert path == "/apis/authentication.k8s.io/v1/tokenreviews"
        self.bodies.append(body)
        return {"status": self.status}


SERVICE_ACCOUNT_USER = {"username": "system:serviceaccount:default:sleep",
                        "groups": ["system:serviceaccounts", "system:authenticated"]}


async def test_token_review_asks_for_audience_istio_ca_and_caches_the_answer() -> None:
    now = [0.0]
    api = FakeReviews({"authenticated": True, "user": SERVICE_ACCOUNT_USER})
    reviewer = TokenReviewer(api, domain, clock=lambda: now[0])
    assert await reviewer.authenticate("t") == Caller((SLEEP,), "token")
    assert await reviewer.authenticate("t") == Caller((SLEEP,), "token")
    assert reviewer.reviews == 1
    assert api.bodies[0]["spec"] == {"token": "t", "audiences": ["istio-ca"]}
    now[0] = 31.0  # past the cache
    await reviewer.authenticate("t")
    assert reviewer.reviews == 2


@pytest.mark.parametrize("status,reason", [
    ({"authenticated": False}, "not authenticated"),
    ({"error": "token expired"}, "token expired"),
    ({"authenticated": True, "user": {"username": "alice", "groups": ["dev"]}},
     "not a service account"),
])
async def test_token_review_refusals(status: dict[str, Any], reason: str) -> None:
    reviewer = TokenReviewer(FakeReviews(status), domain)
    with pytest.raises(AuthError, match=reason):
        await reviewer.authenticate("t")
    assert reviewer.reviews == 1


def node(node_id: str, **metadata: str) -> base_pb2.Node:
    out = base_pb2.Node(id=node_id)
    out.metadata.update(metadata)
    return out


def test_node_identity_comes_from_metadata_else_the_node_id() -> None:
    with_meta = node("sidecar~1.1.1.1~a.x~x.svc.cluster.local", NAMESPACE="y",
                     SERVICE_ACCOUNT="sa")
    assert (node_namespace(with_meta), node_service_account(with_meta)) == ("y", "sa")
    bare = node("sidecar~1.1.1.1~a.x~x.svc.cluster.local")
    assert (node_namespace(bare), node_service_account(bare)) == ("x", "")


def test_a_caller_matches_a_node_of_its_namespace_and_account_only() -> None:
    caller = Caller((SLEEP,), "token")
    assert matching_identity(caller, "default", "sleep").service_account == "sleep"
    assert matching_identity(caller, "default", "").namespace == "default"
    with pytest.raises(PermissionError, match="matched other/sleep"):
        matching_identity(caller, "other", "sleep")
    with pytest.raises(PermissionError, match="matched default/httpbin"):
        matching_identity(caller, "default", "httpbin")
