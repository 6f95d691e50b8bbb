"""JWTs for the tests, signed by RSA keys the tests make:

- `TokenIssuer`: service-account JWTs as the API server's TokenRequest issues them (RS256,
  audience istio-ca, `sub: system:serviceaccount:<ns>:<sa>`), and the `--jwt-rule` pilotpy
  checks them with, for tiers without a Kubernetes API;
- `EndUserIssuer`: an identity provider's tokens for RequestAuthentication (any issuer,
  subject and claims), its JWKS, and `jwks_server` serving that JWKS over HTTP for Envoy to
  fetch (`jwksUri`)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.http_server import LoopbackHttpServer

ISSUER = "https://kubernetes.default.svc.cluster.local"
JWKS_PATH = "/jwks.json"


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class _Signer:
    """An RSA key, the JWKS that publishes it, and RS256 tokens it signs."""

    key: rsa.RSAPrivateKey = field(default_factory=_new_key)
    kid: str = "pilotpy-tests"

    def jwks(self) -> str:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return json.dumps({"keys": [jwk]})

    def sign(self, claims: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> str:
        return jwt.encode(claims, key or self.key, algorithm="RS256",
                          headers={"kid": self.kid})


@dataclass
class TokenIssuer(_Signer):
    """Service-account JWTs as the API server issues them; `jwt_rule()` is pilotpy's
    --jwt-rule for them."""

    def jwt_rule(self) -> str:
        return json.dumps({"issuer": ISSUER, "jwks": self.jwks(), "audiences": ["istio-ca"]})

    def token(self, namespace: str, service_account: str, *, lifetime: float = 3600,
              key: rsa.RSAPrivateKey | None = None) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": ["istio-ca"], "iat": now, "nbf": now,
                  "exp": now + int(lifetime),
                  "sub": f"system:serviceaccount:{namespace}:{service_account}"}
        return self.sign(claims, key)

    def forged(self, namespace: str, service_account: str) -> str:
        """Well-formed, same key id, signed by a key pilotpy does not trust."""
        return self.token(namespace, service_account, key=_new_key())


@dataclass
class EndUserIssuer(_Signer):
    """An identity provider: `token("alice", groups=["admins"])` is alice's JWT from
    `issuer`; `forged(...)` the same claims signed by a key its JWKS does not hold."""

    issuer: str = "https://idp.pilotpy.test"
    kid: str = "idp-1"

    def token(self, subject: str, *, lifetime: float = 3600,
              key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        return self.sign({"iss": self.issuer, "sub": subject, "iat": now,
                          "exp": now + int(lifetime), **claims}, key)

    def forged(self, subject: str, **claims: Any) -> str:
        return self.token(subject, key=_new_key(), **claims)


def jwks_server(jwks: str) -> LoopbackHttpServer:
    """Serves the JWKS at `/jwks.json` on loopback (`.url(JWKS_PATH)` is the jwksUri);
    `.received` lists the fetches."""
    body = jwks.encode()

    def respond(path: str, _: Mapping[str, str]) -> tuple[int, str, bytes]:
        found = path == JWKS_PATH
        return (200 if found else 404), "application/json", body if found else b""

    return LoopbackHttpServer(respond)
