"""Off the cluster (`serve --config` only), service-account JWTs are checked against a JWKS
and an issuer given the way istiod's JWT_RULE gives them: a JSON JWTRule
`{"issuer": ..., "jwksUri": ... | "jwks": ..., "audiences": [...]}`. The token's `sub`
(`system:serviceaccount:<ns>:<sa>`) is the caller."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from pilotpy.auth.caller import (
    ISTIO_CA_AUDIENCE,
    AuthError,
    Caller,
    TrustDomain,
    service_account_caller,
)
from pilotpy.ca.identity import service_account_subject

JWKS_REFRESH_SECONDS = 300.0
# A verified token is trusted again without re-verifying for this long (never past its exp):
# an agent sends the same token with every CSR and stream.
VERIFIED_CACHE_SECONDS = 30.0
VERIFIED_CACHE_LIMIT = 10_000
ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")


@dataclass(frozen=True)
class JwtRule:
    issuer: str
    jwks_uri: str = ""  # https://, http:// or file://
    jwks: str = ""  # the JWKS document itself
    audiences: tuple[str, ...] = (ISTIO_CA_AUDIENCE,)


def parse_jwt_rule(text: str) -> JwtRule:
    """A JWT_RULE JSON document; ValueError names what is wrong."""
    try:
        data: Any = json.loads(text)
    except ValueError as err:
        raise ValueError(f"JWT rule is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("JWT rule must be a JSON object")
    unknown = set(data) - {"issuer", "jwksUri", "jwks", "audiences"}
    if unknown:
        raise ValueError(f"JWT rule: unknown fields {sorted(unknown)}")
    issuer, uri, jwks = data.get("issuer"), data.get("jwksUri", ""), data.get("jwks", "")
    if not isinstance(issuer, str) or not issuer:
        raise ValueError("JWT rule: `issuer` is required")
    if not isinstance(uri, str) or not isinstance(jwks, str) or bool(uri) == bool(jwks):
        raise ValueError("JWT rule: give exactly one of `jwksUri` and `jwks`")
    if uri and not uri.startswith(("https://", "http://", "file://")):
        raise ValueError(f"JWT rule: jwksUri {uri!r} is not https://, http:// or file://")
    audiences = data.get("audiences") or [ISTIO_CA_AUDIENCE]
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise ValueError("JWT rule: `audiences` must be a list of strings")
    return JwtRule(issuer, uri, jwks, tuple(audiences))


class JwksAuthenticator:
    def __init__(self, rule: JwtRule, trust_domain: TrustDomain, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rule = rule
        self._trust_domain = trust_domain
        self._clock = clock
        self._keys: jwt.PyJWKSet | None = None
        self._fetched = float("-inf")
        self._lock = asyncio.Lock()
        # sha256(token) -> (namespace, account, trusted until on the clock)
        self._verified: dict[bytes, tuple[str, str, float]] = {}

    async def _document(self) -> str:
        uri = self.rule.jwks_uri
        if not uri:
            return self.rule.jwks
        if uri.startswith("file://"):
            return await asyncio.to_thread(Path(uri[len("file://"):]).read_text, "utf-8")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
                session.get(uri) as response:
            response.raise_for_status()
            return await response.text()

    async def _key_set(self, refresh: bool = False) -> jwt.PyJWKSet:
        async with self._lock:
            stale = self._clock() - self._fetched > JWKS_REFRESH_SECONDS
            if self._keys is None or stale or refresh:
                try:
                    self._keys = jwt.PyJWKSet.from_json(await self._document())
                except (OSError, aiohttp.ClientError, jwt.PyJWKSetError, ValueError) as err:
                    if self._keys is None:
                        raise AuthError(f"the JWKS of {self.rule.issuer} cannot be read: {err}"
                                        ) from None
                self._fetched = self._clock()
            return self._keys

    async def _signing_key(self, token: str) -> jwt.PyJWK:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as err:
            raise AuthError(f"the token is not a JWT: {err}") from None
        for refresh in (False, True):  # an unknown kid may be a rotated key: fetch once more
            keys = await self._key_set(refresh)
            found = [k for k in keys.keys if kid is None or k.key_id == kid]
            if found:
                return found[0]
        raise AuthError(f"the token's key {kid!r} is not in the JWKS of {self.rule.issuer}")

    async def authenticate(self, token: str) -> Caller:
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._verified.get(digest)
        if cached is not None and cached[2] > now:
            return service_account_caller(cached[0], cached[1], self._trust_domain())
        key = await self._signing_key(token)
        try:
            claims = jwt.decode(token, key, algorithms=list(ALGORITHMS),
                                audience=list(self.rule.audiences), issuer=self.rule.issuer,
                                options={"require": ["exp", "iss", "sub", "aud"]})
        except jwt.PyJWTError as err:
            raise AuthError(f"the token is not valid: {err}") from None
        subject = service_account_subject(str(claims.get("sub", "")))
        if subject is None:
            raise AuthError(f"the token's sub {claims.get('sub')!r} is not "
                            "system:serviceaccount:<namespace>:<name>")
        if len(self._verified) >= VERIFIED_CACHE_LIMIT:
            self._verified.clear()
        expires_in = float(claims["exp"]) - time.time()
        self._verified[digest] = (*subject, now + min(VERIFIED_CACHE_SECONDS, expires_in))
        return service_account_caller(*subject, self._trust_domain())
