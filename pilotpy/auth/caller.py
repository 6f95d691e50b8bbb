"""An authenticated caller and the errors authentication gives."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pilotpy.ca.identity import SpiffeId, parse_spiffe

ISTIO_CA_AUDIENCE = "istio-ca"  # istiod's TOKEN_AUDIENCES default


class AuthError(Exception):
    """The caller could not be authenticated (gRPC Unauthenticated); the message says why."""


@dataclass(frozen=True)
class Caller:
    identities: tuple[str, ...]  # SPIFFE URIs
    source: str  # "token" or "certificate"

    @property
    def spiffe_ids(self) -> list[SpiffeId]:
        return [i for i in map(parse_spiffe, self.identities) if i is not None]

    def __str__(self) -> str:
        return ", ".join(self.identities)


class TokenAuthenticator(Protocol):
    async def authenticate(self, token: str) -> Caller:
        """The caller a bearer token proves, or AuthError."""


TrustDomain = Callable[[], str]


def service_account_caller(namespace: str, service_account: str,
                           trust_domain: str) -> Caller:
    return Caller((SpiffeId(trust_domain, namespace, service_account).uri,), "token")


def bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    """The token of gRPC metadata `authorization: Bearer <token>`, or AuthError."""
    values = [v for k, v in metadata if k.lower() == "authorization"]
    if not values:
        raise AuthError("no authorization metadata: send `authorization: Bearer <JWT>` "
                        "(audience istio-ca)")
    value = values[0].decode() if isinstance(values[0], bytes) else values[0]
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the authorization metadata is not `Bearer <JWT>`")
    return token.strip()
