"""Envoy's RBAC filters (extensions/filters/common/rbac): whether `rules` let a connection or
a request through.

A policy matches when one of its permissions and one of its principals match. ALLOW lets
through what some policy matches (no policies: nothing), DENY refuses what some policy
matches, LOG lets everything through; `shadow_rules` only count. The filters of a chain or a
connection manager run in order; the first refusal ends the call (403 `RBAC: access denied`
for HTTP, a closed connection for TCP).

What a request is matched on: the original destination address and port, the TLS SNI, the
peer's certificate identity (`authenticated`: never on plaintext), the connection's source
address (`direct_remote_ip`) and the client address the connection manager trusts
(`remote_ip`), request headers and pseudo-headers, the path without its query (`url_path`,
`uri_template`), and the verified JWT's payload (`metadata` of `envoy.filters.http.jwt_authn`).
On a TCP chain, HTTP matchers never match.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as http_ext_authz_pb2
from envoy.extensions.filters.network.ext_authz.v3 import (
    ext_authz_pb2 as network_ext_authz_pb2,
)
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2

from pilotpy.simulate.routing import (
    Request,
    UnsupportedConfig,
    full_match,
    header_matches,
    split_path,
    string_matches,
)

HTTP_RBAC = "envoy.extensions.filters.http.rbac.v3.RBAC"
NETWORK_RBAC = "envoy.extensions.filters.network.rbac.v3.RBAC"
HTTP_EXT_AUTHZ = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
NETWORK_EXT_AUTHZ = "envoy.extensions.filters.network.ext_authz.v3.ExtAuthz"
# The namespaces the RBAC filters write their dynamic metadata under.
HTTP_RBAC_NAME = "envoy.filters.http.rbac"
NETWORK_RBAC_NAME = "envoy.filters.network.rbac"
URI_TEMPLATE = "envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
JWT_FILTER = "envoy.filters.http.jwt_authn"
_ALLOW, _DENY, _LOG = 0, 1, 2  # envoy.config.rbac.v3.RBAC.Action
# Envoy's uri_template: `*` is one path segment, `**` any number of them (its last operator).
_SEGMENT = r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]+"
_SEGMENTS = r"[a-zA-Z0-9\-._~%!$&'()+,;:@=/]*"


@dataclass(frozen=True, slots=True)
class Subject:
    """What the RBAC filters of one chain see of a call."""

    destination_address: str
    destination_port: int
    source_address: str
    remote_address: str  # the client address the connection manager trusts
    server_name: str  # the TLS SNI ("" without TLS)
    peer_principal: str | None  # the peer certificate's URI SAN; None on plaintext
    request: Request | None = None  # None on a TCP chain
    jwt_payload: Mapping[str, Any] | None = None  # a verified token's claims


def uri_template_regex(template: str) -> str:
    out = []
    for part in re.split(r"(\*\*|\*)", template):
        out.append({"**": _SEGMENTS, "*": _SEGMENT}.get(part, re.escape(part)))
    return "".join(out)


def _in_cidr(address: str, cidr: Any) -> bool:
    try:
        network = ipaddress.ip_network(f"{cidr.address_prefix}/{cidr.prefix_len.value}",
                                       strict=False)
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


def _metadata_value(payload: Mapping[str, Any], path: list[str]) -> Any:
    value: Any = payload
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def value_matches(matcher: Any, value: Any) -> bool:
    """envoy.type.matcher.v3.ValueMatcher over a JSON value."""
    which = matcher.WhichOneof("match_pattern")
    if which == "string_match":
        return isinstance(value, str) and string_matches(matcher.string_match, value)
    if which == "list_match":
        return isinstance(value, list) and any(
            value_matches(matcher.list_match.one_of, item) for item in value)
    if which == "or_match":
        return any(value_matches(m, value) for m in matcher.or_match.value_matchers)
    if which == "present_match":
        return (value is not None) == bool(matcher.present_match)
    if which == "bool_match":
        return isinstance(value, bool) and value == matcher.bool_match
    if which == "null_match":
        return value is None
    raise UnsupportedConfig(f"value matcher {which} is not modelled")


def _metadata_matches(matcher: Any, subject: Subject) -> bool:
    if matcher.filter != JWT_FILTER:
        raise UnsupportedConfig(f"metadata of {matcher.filter} is not modelled")
    payload = subject.jwt_payload
    if payload is None:
        return bool(matcher.invert)
    found = value_matches(matcher.value, _metadata_value({"payload": payload},
                                                         [p.key for p in matcher.path]))
    return found != bool(matcher.invert)


def _url_path(subject: Subject) -> str | None:
    return split_path(subject.request.path)[0] if subject.request is not None else None


# The fields that combine permissions, and principals: any, and, or, not, the set's list.
_PERMISSION_TREE = ("any", "and_rules", "or_rules", "not_rule", "rules")
_PRINCIPAL_TREE = ("any", "and_ids", "or_ids", "not_id", "ids")


def _combined(node: Any, which: str | None, tree: tuple[str, str, str, str, str],
              match: Callable[[Any], bool]) -> bool | None:
    """The node's value when it combines others (`any`, and, or, not), else None."""
    any_field, and_field, or_field, not_field, items = tree
    if which == any_field:
        return bool(getattr(node, any_field))
    if which == and_field:
        return all(match(n) for n in getattr(getattr(node, and_field), items))
    if which == or_field:
        return any(match(n) for n in getattr(getattr(node, or_field), items))
    if which == not_field:
        return not match(getattr(node, not_field))
    return None


def permission_matches(permission: Any, subject: Subject) -> bool:
    which = permission.WhichOneof("rule")
    combined = _combined(permission, which, _PERMISSION_TREE,
                         lambda p: permission_matches(p, subject))
    if combined is not None:
        return combined
    if which == "destination_port":
        return subject.destination_port == int(permission.destination_port)
    if which == "destination_ip":
        return _in_cidr(subject.destination_address, permission.destination_ip)
    if which == "requested_server_name":
        return string_matches(permission.requested_server_name, subject.server_name)
    if which == "metadata":
        return _metadata_matches(permission.metadata, subject)
    if subject.request is None:
        return False  # an HTTP matcher on a connection
    if which == "header":
        return header_matches(permission.header, subject.request)
    if which == "url_path":
        return string_matches(permission.url_path.path, _url_path(subject) or "")
    if which == "uri_template":
        return _uri_template_matches(permission.uri_template, subject)
    raise UnsupportedConfig(f"RBAC permission {which} is not modelled")


def _uri_template_matches(extension: Any, subject: Subject) -> bool:
    config = uri_template_match_pb2.UriTemplateMatchConfig()
    if not extension.typed_config.Unpack(config):
        raise UnsupportedConfig(f"uri_template {extension.typed_config.type_url}")
    return full_match(uri_template_regex(config.path_template), _url_path(subject) or "")


def principal_matches(principal: Any, subject: Subject) -> bool:
    which = principal.WhichOneof("identifier")
    combined = _combined(principal, which, _PRINCIPAL_TREE,
                         lambda p: principal_matches(p, subject))
    if combined is not None:
        return combined
    if which == "authenticated":
        if subject.peer_principal is None:
            return False
        if not principal.authenticated.HasField("principal_name"):
            return True
        return string_matches(principal.authenticated.principal_name, subject.peer_principal)
    if which == "direct_remote_ip":
        return _in_cidr(subject.source_address, principal.direct_remote_ip)
    if which == "remote_ip":
        return _in_cidr(subject.remote_address, principal.remote_ip)
    if which == "metadata":
        return _metadata_matches(principal.metadata, subject)
    if which == "header":
        return subject.request is not None and header_matches(principal.header,
                                                              subject.request)
    raise UnsupportedConfig(f"RBAC principal {which} is not modelled")


def matched_policy(rules: Any, subject: Subject) -> str | None:
    """The name of the first policy (by name, as Envoy's map iterates) that matches."""
    for name in sorted(rules.policies):
        policy = rules.policies[name]
        if any(permission_matches(p, subject) for p in policy.permissions) and any(
                principal_matches(p, subject) for p in policy.principals):
            return str(name)
    return None


def refusal(config: Any, subject: Subject) -> str | None:
    """Why one RBAC filter refuses the call, None when it lets it through."""
    if not config.HasField("rules"):
        return None
    rules = config.rules
    found = matched_policy(rules, subject)
    if rules.action == _ALLOW:
        return None if found is not None else "no ALLOW policy matches"
    if rules.action == _DENY:
        return None if found is None else f"DENY policy {found} matches"
    if rules.action == _LOG:
        return None
    raise UnsupportedConfig(f"RBAC action {rules.action} is not modelled")


def shadow_metadata(config: Any, subject: Subject) -> dict[str, str]:
    """What the filter's shadow rules write: `<shadow_rules_stat_prefix>shadow_engine_result`
    and, when a policy matches, `..shadow_effective_policy_id`."""
    if not config.HasField("shadow_rules"):
        return {}
    prefix = str(config.shadow_rules_stat_prefix)
    found = matched_policy(config.shadow_rules, subject)
    allowed = (found is not None) == (config.shadow_rules.action == _ALLOW)
    out = {prefix + "shadow_engine_result": "allowed" if allowed else "denied"}
    if found is not None:
        out[prefix + "shadow_effective_policy_id"] = found
    return out


def ext_authz_enabled(typed_config: Any,
                      metadata: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether an ext_authz filter runs: its `filter_enabled_metadata` matches what a filter
    before it recorded (always, without that setting)."""
    config = (http_ext_authz_pb2.ExtAuthz() if type_of(typed_config) == HTTP_EXT_AUTHZ
              else network_ext_authz_pb2.ExtAuthz())
    typed_config.Unpack(config)
    if not config.HasField("filter_enabled_metadata"):
        return True
    matcher = config.filter_enabled_metadata
    recorded = metadata.get(str(matcher.filter), {})
    value = recorded.get(matcher.path[0].key) if len(matcher.path) == 1 else None
    return (value is not None and value_matches(matcher.value, value)) != bool(matcher.invert)


def type_of(typed_config: Any) -> str:
    return str(typed_config.type_url).rpartition("/")[2]
