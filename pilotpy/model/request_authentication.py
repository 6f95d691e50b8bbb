"""RequestAuthentication (security.istio.io), validated like istiod's
ValidateRequestAuthentication and validateJwtRule: the JWTs a workload accepts, each rule an
issuer with its keys (an inline `jwks`, or a `jwksUri` Envoy fetches)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pilotpy.model.errors import Fallback, Issue
from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta
from pilotpy.model.policy_target import PolicyTarget, parse_policy_target
from pilotpy.problems import Reason

_STRICT_HEADER_NAME = re.compile(r"^[-_A-Za-z0-9]+$")
_KEY_TYPES = frozenset({"RSA", "EC", "oct", "OKP"})
# JWK members that only a private (or symmetric) key has.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")
MILLISECOND = 1_000_000


@dataclass(frozen=True, slots=True)
class JwtHeader:
    name: str
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class ClaimToHeader:
    header: str
    claim: str


@dataclass(frozen=True, slots=True)
class JwtRule:
    issuer: str = ""
    audiences: tuple[str, ...] = ()
    jwks_uri: str = ""
    jwks: str = ""
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    output_payload_to_header: str = ""
    forward_original_token: bool = False
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    timeout_ns: int | None = None
    space_delimited_claims: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestAuthentication:
    meta: Meta
    target: PolicyTarget = field(default_factory=PolicyTarget)
    jwt_rules: tuple[JwtRule, ...] = ()
    # Served in place of an invalid policy (fail_closed): never a last valid version.
    stand_in: bool = False


@dataclass(frozen=True, slots=True)
class JwksUri:
    """A jwksUri taken apart as istiod's ParseJwksURI does."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def parse_jwks_uri(uri: str) -> JwksUri | str:
    """The parts of `uri`, or why istiod rejects it."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as error:
        return f"jwksUri {uri!r}: {error}"
    if parts.scheme not in ("http", "https"):
        return f"jwksUri {uri!r}: URI scheme {parts.scheme!r} is not supported"
    if not parts.hostname:
        return f"jwksUri {uri!r} has no host"
    return JwksUri(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https"
                                                          else 80))


def _jwk_problem(key: Any) -> str:
    if not isinstance(key, dict):
        return "a key must be a JSON object"
    if key.get("kty") not in _KEY_TYPES:
        return f"key type {key.get('kty')!r} is not one of {', '.join(sorted(_KEY_TYPES))}"
    return ""


def jwks_problems(text: str) -> tuple[str, list[int]]:
    """(why the JWKS cannot be parsed or "", the indexes of keys holding private material)."""
    try:
        document = json.loads(text)
    except ValueError as error:
        return f"jwks parse error: {error}", []
    keys = document.get("keys") if isinstance(document, dict) and "keys" in document else [
        document]
    if not isinstance(keys, list):
        return "jwks parse error: `keys` must be a list", []
    for index, key in enumerate(keys):
        problem = _jwk_problem(key)
        if problem:
            return f"jwks parse error: key {index}: {problem}", []
    private = [i for i, key in enumerate(keys) if any(m in key for m in _PRIVATE_MEMBERS)]
    return "", private


def _parse_rule(f: Fields) -> JwtRule:
    issuer = f.string("issuer")
    audiences = f.string_list("audiences")
    for index, audience in enumerate(audiences):
        if not audience:
            f.error("audience must be non-empty string", f"audiences[{index}]")
    # `jwks_uri` is the proto field's own name, which Istio's CRD and istiod accept too.
    uri_key = "jwks_uri" if f.has("jwks_uri") and not f.has("jwksUri") else "jwksUri"
    jwks_uri = f.string("jwksUri") or f.string("jwks_uri")
    if not issuer and not jwks_uri:
        f.error("issuer or jwksUri must be non-empty string", "issuer")
    if jwks_uri:
        parsed = parse_jwks_uri(jwks_uri)
        if isinstance(parsed, str):
            f.error(parsed, uri_key)
    jwks = f.string("jwks")
    if sum(bool(f.string(k)) for k in ("jwks", "jwksUri", "jwks_uri")) > 1:
        f.error("only one of jwks or jwksUri can be set", "jwks")
    if jwks:
        problem, private = jwks_problems(jwks)
        if problem:
            f.error(problem, "jwks")
        for index in private:
            f.warn(f"jwks key at index {index} contains private key material; only public "
                   "keys are used for verification", "jwks", Reason.IGNORED)
    headers = []
    for item in f.children("fromHeaders"):
        name = item.string("name")
        if not name:
            item.error("location header name must be non-empty string", "name")
        headers.append(JwtHeader(name, item.string("prefix")))
        item.done()
    params = f.string_list("fromParams")
    for index, param in enumerate(params):
        if not param:
            f.error("location query must be non-empty string", f"fromParams[{index}]")
    cookies = f.string_list("fromCookies")
    for index, cookie in enumerate(cookies):
        if not cookie:
            f.error("cookie name must be non-empty string", f"fromCookies[{index}]")
    claims = []
    for item in f.children("outputClaimToHeaders"):
        header, claim = item.string("header"), item.string("claim")
        if not header or not claim:
            item.error("outputClaimToHeaders header and claim value must be non-empty string")
        elif not _STRICT_HEADER_NAME.match(header):
            item.error(f"header name {header} is not a valid header name", "header")
        else:
            claims.append(ClaimToHeader(header, claim))
        item.done()
    timeout = f.duration_ns("timeout")
    if timeout is not None and (timeout < MILLISECOND or timeout % MILLISECOND):
        f.error("duration must be at least 1ms, to ms precision", "timeout")
    spaced = f.string_list("spaceDelimitedClaims")
    rule = JwtRule(issuer, audiences, jwks_uri, jwks, tuple(headers), params, cookies,
                   f.string("outputPayloadToHeader"), f.boolean("forwardOriginalToken"),
                   tuple(claims), timeout, spaced)
    f.done()
    return rule


def parse_request_authentication(meta: Meta, spec: Fields) -> RequestAuthentication:
    target = parse_policy_target(spec)
    rules = tuple(_parse_rule(item) for item in spec.children("jwtRules"))
    spec.done()
    return RequestAuthentication(meta, target, rules)


def fail_closed(policy: RequestAuthentication, errors: list[Issue]) -> Fallback | None:
    """What an invalid RequestAuthentication without a last valid version is enforced as,
    so that its tokens are never let through unverified: one JWT rule without issuer or
    keys, which every token fails (401) unless another policy's issuer verifies it;
    requests without a token pass, as with any RequestAuthentication. An unreadable
    selector or targetRefs widens it to every workload the policy could select."""
    if not policy.meta.name:
        return None
    target = policy.target
    if any(i.path.startswith(("spec.selector", "spec.targetRef")) for i in errors):
        target = PolicyTarget()
    return Fallback(RequestAuthentication(policy.meta, target, (JwtRule(),), stand_in=True),
                    "until it is corrected every token is refused (401) unless another "
                    "policy's issuer verifies it")
