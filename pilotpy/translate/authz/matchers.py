"""Envoy matchers for authorization values (istiod's pilot/pkg/security/authz/matcher): a
value with a leading `*` is a suffix match, a trailing `*` a prefix match, `*` alone matches
any non-empty value (presence for headers), anything else is exact."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from envoy.config.core.v3 import address_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, string_pb2, value_pb2

JWT_FILTER = "envoy.filters.http.jwt_authn"
# Where the jwt_authn filter writes a verified token's payload (istiod's
# EnvoyJwtFilterPayload); request.auth.* conditions read it.
JWT_PAYLOAD = "payload"
URI_TEMPLATE = "uri-template"

def exact(value: str, *, ignore_case: bool = False) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(exact=value, ignore_case=ignore_case)


def prefix(value: str, *, ignore_case: bool = False) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(prefix=value, ignore_case=ignore_case)


def suffix(value: str, *, ignore_case: bool = False) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(suffix=value, ignore_case=ignore_case)


def regex(pattern: str) -> string_pb2.StringMatcher:
    out = string_pb2.StringMatcher()
    out.safe_regex.regex = pattern
    return out


ANY_VALUE = ".+"
_GO_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def quote_meta(text: str) -> str:
    """Go's regexp.QuoteMeta (fewer escapes than Python's re.escape), so the regexes read
    as istiod writes them; Envoy's RE2 takes both."""
    return "".join("\\" + c if c in _GO_SPECIAL else c for c in text)


def string_matcher(value: str, scheme: str = "") -> string_pb2.StringMatcher:
    """istiod's StringMatcherWithPrefix: `scheme` is put in front of the value (the
    `spiffe://` of principals); a suffix match with a scheme becomes a regex."""
    if value == "*":
        return regex(ANY_VALUE)
    if value.startswith("*"):
        if not scheme:
            return suffix(value[1:])
        return regex(scheme + ".*" + quote_meta(value[1:]))
    if value.endswith("*"):
        return prefix(scheme + value[:-1])
    return exact(scheme + value)


def header_matcher(name: str, value: str, *, ignore_case: bool = False) -> rc.HeaderMatcher:
    """A header (`:method`, `:authority`, any request header) against one value; `*` only
    asks for the header to be present."""
    out = rc.HeaderMatcher(name=name)
    if value == "*":
        out.present_match = True
    elif value.startswith("*"):
        out.string_match.CopyFrom(suffix(value[1:], ignore_case=ignore_case))
    elif value.endswith("*"):
        out.string_match.CopyFrom(prefix(value[:-1], ignore_case=ignore_case))
    else:
        out.string_match.CopyFrom(exact(value, ignore_case=ignore_case))
    return out


def path_matcher(value: str) -> path_pb2.PathMatcher:
    return path_pb2.PathMatcher(path=string_matcher(value))


def path_template(value: str) -> uri_template_match_pb2.UriTemplateMatchConfig:
    """`{*}` and `{**}` become Envoy's `*` and `**` (istiod's sanitizePathTemplate)."""
    return uri_template_match_pb2.UriTemplateMatchConfig(
        path_template=value.replace("{**}", "**").replace("{*}", "*"))


def cidr_range(value: str) -> address_pb2.CidrRange:
    """An address (a /32 or /128) or a CIDR range, the address part as written."""
    address, _, length = value.partition("/")
    ip = ipaddress.ip_address(address)
    out = address_pb2.CidrRange(address_prefix=str(ip))
    out.prefix_len.value = int(length) if length else ip.max_prefixlen
    return out


def string_value(matcher: string_pb2.StringMatcher) -> value_pb2.ValueMatcher:
    return value_pb2.ValueMatcher(string_match=matcher)


def or_values(matchers: Sequence[value_pb2.ValueMatcher]) -> value_pb2.ValueMatcher:
    """One matcher alone, else their OR (istiod's OrMatcher)."""
    if len(matchers) == 1:
        return matchers[0]
    out = value_pb2.ValueMatcher()
    out.or_match.value_matchers.extend(matchers)
    return out


def string_or(values: Sequence[str]) -> value_pb2.ValueMatcher:
    return or_values([string_value(string_matcher(v)) for v in values])


def metadata_matcher(filter_name: str, path: Sequence[str],
                     value: value_pb2.ValueMatcher) -> metadata_pb2.MetadataMatcher:
    out = metadata_pb2.MetadataMatcher(filter=filter_name)
    for key in path:
        out.path.add(key=key)
    out.value.CopyFrom(value)
    return out


def jwt_claim(claims: Sequence[str], value: value_pb2.ValueMatcher
              ) -> metadata_pb2.MetadataMatcher:
    """A (nested) claim of the verified JWT's payload that is a list holding a match or a
    value matching (istiod's extended JWT matcher: a claim may be a string or a list)."""
    both = value_pb2.ValueMatcher()
    listed = both.or_match.value_matchers.add()
    listed.list_match.one_of.CopyFrom(value)
    both.or_match.value_matchers.append(value)
    return metadata_matcher(JWT_FILTER, [JWT_PAYLOAD, *claims], both)


def jwt_string_claim(claim: str, matcher: string_pb2.StringMatcher) -> metadata_pb2.MetadataMatcher:
    """A top-level string claim (`iss`, `sub`) of the verified JWT's payload."""
    return metadata_matcher(JWT_FILTER, [JWT_PAYLOAD, claim], string_value(matcher))

