"""One attribute of an AuthorizationPolicy rule as Envoy RBAC permissions and principals
(istiod's pilot/pkg/security/authz/model/generator.go).

A `from.source`, `to.operation` or `when` attribute is either a permission (what is asked:
host, method, path, port, destination IP, SNI, filter metadata) or a principal (who asks:
peer identity, namespace, service account, trust domain, addresses, request headers, JWT
claims). Each value becomes one matcher, ORed; `notValues` are ORed and negated. Attributes
that need HTTP raise `HttpOnly` on a TCP chain; the caller decides what that means for the
rule (translate/authz/rules.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from envoy.config.core.v3 import extension_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.type.matcher.v3 import metadata_pb2, string_pb2, value_pb2

from pilotpy.model.authorization import contains_path_template
from pilotpy.translate import pb
from pilotpy.translate.authz import matchers as m

Permission = rbac_pb2.Permission
Principal = rbac_pb2.Principal
SPIFFE = "spiffe://"


class HttpOnly(Exception):
    """The attribute cannot be evaluated on a TCP chain."""


class Side(Enum):
    PERMISSION = "permission"
    PRINCIPAL = "principal"


@dataclass(frozen=True, slots=True)
class Attribute:
    """A key with its values and notValues, as one entry of a rule's matcher list."""

    key: str
    values: tuple[str, ...]
    not_values: tuple[str, ...]
    # For `source.serviceAccount`: the namespace a bare account name belongs to.
    policy_namespace: str = ""


# -- principals ----------------------------------------------------------------------------

def authenticated(name: string_pb2.StringMatcher) -> rbac_pb2.Principal:
    """The peer's certificate identity (URI SAN, else subject) matches."""
    out = Principal()
    out.authenticated.principal_name.CopyFrom(name)
    return out


def _namespace(value: str) -> rbac_pb2.Principal:
    pattern = ".*".join(m.quote_meta(part) for part in value.split("*"))
    return authenticated(m.regex(f".*/ns/{pattern}/.*"))


def service_account_regex(default_namespace: str, value: str) -> str:
    namespace, slash, account = value.partition("/")
    if not slash:
        namespace, account = default_namespace, value
    return (f"spiffe://.+/ns/{m.quote_meta(namespace)}/(.+/|)sa/{m.quote_meta(account)}"
            "(/.+)?")


def _trust_domain(value: str) -> rbac_pb2.Principal:
    if value == "*":
        return authenticated(m.prefix(SPIFFE))
    if "*" not in value:
        return authenticated(m.prefix(f"{SPIFFE}{value}/"))
    before, _, after = value.partition("*")
    return authenticated(m.regex(
        f"{SPIFFE}{m.quote_meta(before)}[^/]*{m.quote_meta(after)}/.*"))


def _cidr_principal(value: str, *, remote: bool) -> rbac_pb2.Principal:
    out = Principal()
    (out.remote_ip if remote else out.direct_remote_ip).CopyFrom(m.cidr_range(value))
    return out


def _metadata_principal(matcher: metadata_pb2.MetadataMatcher) -> rbac_pb2.Principal:
    out = Principal()
    out.metadata.CopyFrom(matcher)
    return out


def _request_principal(value: str) -> rbac_pb2.Principal:
    """`<iss>/<sub>` (the last `/` splits them, issuers being URLs) with istiod's wildcard
    rules: `*` alone any, a leading `*` a suffix of the issuer (or of the subject without a
    `/`), a trailing `*` a prefix of the subject (or of the issuer without a `/`)."""
    at = value.rfind("/")
    found = at >= 0
    issuer, subject = (value[:at], value[at + 1:]) if found else (value, "")
    any_value = m.regex(m.ANY_VALUE)
    if value == "*":
        match_iss, match_sub = any_value, any_value
    elif value.startswith("*"):
        if found:
            match_iss = any_value if issuer == "*" else m.suffix(issuer[1:])
            match_sub = m.exact(subject)
        else:
            match_iss, match_sub = any_value, m.suffix(value[1:])
    elif value.endswith("*"):
        if found:
            match_iss = m.exact(issuer)
            match_sub = any_value if subject == "*" else m.prefix(subject[:-1])
        else:
            match_iss, match_sub = m.prefix(value[:-1]), any_value
    else:
        match_iss, match_sub = m.exact(issuer), m.exact(subject)
    out = Principal()
    out.and_ids.ids.extend([_metadata_principal(m.jwt_string_claim("iss", match_iss)),
                            _metadata_principal(m.jwt_string_claim("sub", match_sub))])
    return out


def _request_principals(values: Sequence[str]) -> rbac_pb2.Principal:
    alternatives = [_request_principal(v) for v in values]
    if len(alternatives) == 1:
        return alternatives[0]
    out = Principal()
    out.or_ids.ids.extend(alternatives)
    return out


def bracketed(text: str) -> str:
    """`[name]` -> `name` (validation made sure of the brackets)."""
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def nested_claims(text: str) -> list[str]:
    """`[a][b]` -> [a, b]; anything else is one bracketed name (istiod's
    extractNameInNestedBrackets)."""
    claims: list[str] = []
    begin = 0
    while begin < len(text):
        if text[begin] != "[":
            return [bracketed(text)]
        end = begin + 1
        while end < len(text) and text[end] not in "[]":
            end += 1
        if end >= len(text) or text[end] == "[":
            return [bracketed(text)]
        claims.append(text[begin + 1:end])
        begin = end + 1
    return claims


def one_principal(key: str, value: str, attribute: Attribute, *, tcp: bool) -> rbac_pb2.Principal:
    if key == "source.ip":
        return _cidr_principal(value, remote=False)
    if key == "remote.ip":
        return _cidr_principal(value, remote=True)
    if key == "source.namespace":
        return _namespace(value)
    if key == "source.trustDomain":
        return _trust_domain(value)
    if key == "source.serviceAccount":
        return authenticated(m.regex(service_account_regex(attribute.policy_namespace, value)))
    if key == "source.principal":
        return authenticated(m.string_matcher(value, SPIFFE))
    if key.startswith("request.headers"):
        if tcp:
            raise HttpOnly(key)
        out = Principal()
        out.header.CopyFrom(m.header_matcher(bracketed(key[len("request.headers"):]), value))
        return out
    raise ValueError(f"not a principal attribute: {key}")


def many_principal(key: str, values: Sequence[str], *, tcp: bool) -> rbac_pb2.Principal:
    """The attributes evaluated over all their values at once (istiod's extended
    generators): JWT claims of the verified request."""
    if tcp:
        raise HttpOnly(key)
    if key == "request.auth.principal":
        return _request_principals(values)
    if key == "request.auth.audiences":
        return _metadata_principal(m.jwt_claim(["aud"], m.string_or(values)))
    if key == "request.auth.presenter":
        return _metadata_principal(m.jwt_claim(["azp"], m.string_or(values)))
    claims = nested_claims(key[len("request.auth.claims"):])
    return _metadata_principal(m.jwt_claim(claims, m.string_or(values)))


# -- permissions ---------------------------------------------------------------------------

def _header_permission(name: str, value: str, *, ignore_case: bool = False) -> rbac_pb2.Permission:
    out = Permission()
    out.header.CopyFrom(m.header_matcher(name, value, ignore_case=ignore_case))
    return out


def _path_permission(value: str) -> rbac_pb2.Permission:
    out = Permission()
    if contains_path_template(value):
        out.uri_template.CopyFrom(extension_pb2.TypedExtensionConfig(
            name=m.URI_TEMPLATE, typed_config=pb.typed(m.path_template(value))))
    else:
        out.url_path.CopyFrom(m.path_matcher(value))
    return out


def envoy_filter_key(key: str) -> tuple[str, str]:
    """`experimental.envoy.filters.a.b[c]` -> (`envoy.filters.a.b`, `c`)."""
    name, _, field = key.removeprefix("experimental.").removesuffix("]").partition("[")
    return name, field


def _metadata_value(value: str) -> value_pb2.ValueMatcher:
    """`[v]` is a list holding `v`, anything else a string."""
    if value.startswith("[") and value.endswith("]"):
        out = value_pb2.ValueMatcher()
        out.list_match.one_of.CopyFrom(m.string_value(m.string_matcher(value.strip("[]"))))
        return out
    return m.string_value(m.string_matcher(value))


def one_permission(key: str, value: str, *, tcp: bool) -> rbac_pb2.Permission:
    out = Permission()
    if key == "destination.ip":
        out.destination_ip.CopyFrom(m.cidr_range(value))
    elif key == "destination.port":
        out.destination_port = int(value)
    elif key == "connection.sni":
        out.requested_server_name.CopyFrom(m.string_matcher(value))
    elif tcp:
        raise HttpOnly(key)
    elif key == ":authority":
        return _header_permission(key, value, ignore_case=True)
    elif key == ":method":
        return _header_permission(key, value)
    elif key == "path-matcher":
        return _path_permission(value)
    else:
        raise ValueError(f"not a permission attribute: {key}")
    return out


def many_permission(key: str, values: Sequence[str]) -> rbac_pb2.Permission:
    """`experimental.envoy.filters.*[...]`: filter metadata, any of the values."""
    name, field = envoy_filter_key(key)
    out = Permission()
    out.metadata.CopyFrom(m.metadata_matcher(name, [field], m.or_values(
        [_metadata_value(v) for v in values])))
    return out
