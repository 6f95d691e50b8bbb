"""Kubernetes service-account tokens checked by the API server's TokenReview (audience
istio-ca), as istiod's KubeJWTAuthenticator; answers are cached briefly so a reconnect storm
does not become a TokenReview storm."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from pilotpy.auth.caller import (
    ISTIO_CA_AUDIENCE,
    AuthError,
    Caller,
    TrustDomain,
    service_account_caller,
)
from pilotpy.ca.identity import service_account_subject

log = logging.getLogger("pilotpy.auth")
CACHE_SECONDS = 30.0
CACHE_LIMIT = 10_000
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


class ApiPoster(Protocol):
    async def post(self, path: str, body: dict[str, Any], timeout: float = ...) -> Any: ...


class TokenReviewer:
    def __init__(self, api: ApiPoster, trust_domain: TrustDomain, *,
                 audiences: tuple[str, ...] = (ISTIO_CA_AUDIENCE,),
                 cache_seconds: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._trust_domain = trust_domain
        self._audiences = audiences
        self._cache_seconds = cache_seconds
        self._clock = clock
        # sha256(token) -> (namespace, service account, expiry on the clock)
        self._cache: dict[bytes, tuple[str, str, float]] = {}
        self.reviews = 0  # TokenReview calls made (for tests of the cache)

    async def authenticate(self, token: str) -> Caller:
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[2] > now:
            return service_account_caller(cached[0], cached[1], self._trust_domain())
        namespace, account = await self._review(token)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache = {k: v for k, v in self._cache.items() if v[2] > now}
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
        self._cache[digest] = (namespace, account, now + self._cache_seconds)
        return service_account_caller(namespace, account, self._trust_domain())

    async def _review(self, token: str) -> tuple[str, str]:
        self.reviews += 1
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": list(self._audiences)}}
        try:
            answer = await self._api.post(TOKEN_REVIEWS, body, timeout=10.0)
        except Exception as err:  # the API server's answer or its absence: not the caller's
            log.warning("TokenReview failed: %s", err)
            raise AuthError(f"the token could not be reviewed by the Kubernetes API: {err}"
                            ) from None
        status = answer.get("status") or {} if isinstance(answer, dict) else {}
        if status.get("error"):
            raise AuthError(f"the token was not accepted: {status['error']}")
        if not status.get("authenticated"):
            raise AuthError("the token is not authenticated (expired, revoked, forged, or "
                            f"not for audience {', '.join(self._audiences)})")
        user = status.get("user") or {}
        if "system:serviceaccounts" not in (user.get("groups") or []):
            raise AuthError("the token is not a service account's")
        subject = service_account_subject(str(user.get("username", "")))
        if subject is None:
            raise AuthError(f"unexpected TokenReview username {user.get('username')!r}")
        return subject
