"""Service-account JWTs as the API server's TokenRequest issues them (RS256, audience
istio-ca, `sub: system:serviceaccount:<ns>:<sa>`), and the `--jwt-rule` pilotpy checks them
with, for tiers without a Kubernetes API."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass
class TokenIssuer:
    """Service-account JWTs as the API server issues them; `jwt_rule()` is pilotpy's
    --jwt-rule for them."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    kid: str = "pilotpy-tests"

    def jwks(self) -> str:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return json.dumps({"keys": [jwk]})

    def jwt_rule(self) -> str:
        return json.dumps({"issuer": ISSUER, "jwks": self.jwks(), "audiences": ["istio-ca"]})

    def token(self, namespace: str, service_account: str, *, lifetime: float = 3600,
              key: rsa.RSAPrivateKey | None = None) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": ["istio-ca"], "iat": now, "nbf": now,
                  "exp": now + int(lifetime),
                  "sub": f"system:serviceaccount:{namespace}:{service_account}"}
        return jwt.encode(claims, key or self.key, algorithm="RS256",
                          headers={"kid": self.kid})

    def forged(self, namespace: str, service_account: str) -> str:
        """Well-formed, same key id, signed by a key pilotpy does not trust."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.token(namespace, service_account, key=other)
