"""Envoy's HTTP routing over a RouteConfiguration (router/config_impl.cc): the virtual host for
the request's authority, then the first route whose match fits, then what its action does.

Virtual hosts: with `ignore_port_in_host_matching` the Host's port is dropped; the lower-cased
host is looked up as an exact domain, then against suffix wildcards (`*.foo.com`, `*-bar.com`)
from the longest, then prefix wildcards (`foo.*`) from the longest, then `*`. A wildcard must
match at least one character. A configuration whose only domain is `*` answers any request.

Routes, first match wins: every header matcher (`invert_match`, `present_match`,
`treat_missing_header_as_empty`), every query parameter (its first value), then the path
without query and fragment: `prefix`, `path`, `safe_regex` (the whole path) or
`path_separated_prefix` (the prefix, then the end or a `/`), honouring `case_sensitive`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilotpy.simulate.call import Call, port_start

REDIRECT_STATUS = {0: 301, 1: 302, 2: 303, 3: 307, 4: 308}  # RedirectAction.RedirectResponseCode


def split_path(path: str) -> tuple[str, str]:
    """(path, `?query` or `#fragment` and what follows) of a request target."""
    cut = min((i for i in (path.find("?"), path.find("#")) if i >= 0), default=len(path))
    return path[:cut], path[cut:]


def find_virtual_host(route_configuration: Any, host: str) -> Any | None:
    """The virtual host Envoy picks for `host` (the Host / :authority value; "" when absent)."""
    exact: dict[str, Any] = {}
    suffixes: dict[str, Any] = {}
    prefixes: dict[str, Any] = {}
    default = None
    for vhost in route_configuration.virtual_hosts:
        for domain in vhost.domains:
            domain = str(domain).lower()
            if domain == "*":
                default = default or vhost
            elif domain.startswith("*"):
                suffixes.setdefault(domain[1:], vhost)
            elif domain.endswith("*"):
                prefixes.setdefault(domain[:-1], vhost)
            else:
                exact.setdefault(domain, vhost)
    if not (exact or suffixes or prefixes):
        return default
    if not host:
        return None
    if route_configuration.ignore_port_in_host_matching:
        start = port_start(host)
        if start >= 0:
            host = host[:start]
    host = host.lower()
    if host in exact:
        return exact[host]
    for wildcard in sorted(suffixes, key=len, reverse=True):
        if len(wildcard) < len(host) and host.endswith(wildcard):
            return suffixes[wildcard]
    for wildcard in sorted(prefixes, key=len, reverse=True):
        if len(wildcard) < len(host) and host.startswith(wildcard):
            return prefixes[wildcard]
    return default


@dataclass(frozen=True, slots=True)
class Request:
    """The request as route matching sees it."""

    authority: str
    path: str
    method: str
    scheme: str
    headers: Mapping[str, str]

    @classmethod
    def of(cls, call: Call, scheme: str) -> Request:
        return cls(call.host, call.path or "/", call.method.upper(), scheme, call.headers)

    def header(self, name: str) -> str | None:
        """A header's value as matchers see it; the request line fills the pseudo-headers."""
        name = name.lower()
        pseudo = {":authority": self.authority or None, ":path": self.path,
                  ":method": self.method, ":scheme": self.scheme}
        if name in pseudo:
            return pseudo[name]
        return self.headers.get(name)

    def query_parameter(self, name: str) -> str | None:
        """The first value of a query parameter, undecoded, as Envoy's parseQueryString."""
        query = self.path.partition("?")[2].partition("#")[0]
        for pair in query.split("&"):
            if not pair:
                continue
            key, _, value = pair.partition("=")
            if key == name:
                return value
        return None


class UnsupportedConfig(Exception):
    """Config the simulator cannot evaluate (the message says which)."""


def full_match(regex: str, value: str) -> bool:
    """RE2 semantics approximated by Python's `re` (the syntax pilotpy emits is common)."""
    try:
        return re.fullmatch(regex, value) is not None
    except re.error as err:
        raise UnsupportedConfig(f"regex {regex!r} is not one Python can evaluate: {err}") from err


def string_matches(matcher: Any, value: str) -> bool:
    """envoy.type.matcher.v3.StringMatcher."""
    which = matcher.WhichOneof("match_pattern")
    ignore_case = bool(matcher.ignore_case)
    subject = value.lower() if ignore_case else value

    def expected(pattern: str) -> str:
        return pattern.lower() if ignore_case else pattern

    if which == "exact":
        return subject == expected(matcher.exact)
    if which == "prefix":
        return subject.startswith(expected(matcher.prefix))
    if which == "suffix":
        return subject.endswith(expected(matcher.suffix))
    if which == "contains":
        return expected(matcher.contains) in subject
    if which == "safe_regex":
        return full_match(matcher.safe_regex.regex, value)
    raise UnsupportedConfig(f"string matcher {which} is not modelled")


def header_matches(matcher: Any, request: Request) -> bool:
    """envoy.config.route.v3.HeaderMatcher (Envoy's HeaderUtility header data)."""
    value = request.header(matcher.name)
    which = matcher.WhichOneof("header_match_specifier")
    invert = bool(matcher.invert_match)
    if which == "present_match":
        return ((value is not None) == bool(matcher.present_match)) != invert
    if value is None:
        if not matcher.treat_missing_header_as_empty:
            return False  # inverted or not: a missing header never matches a value
        value = ""
    if which == "string_match":
        found = string_matches(matcher.string_match, value)
    elif which == "exact_match":
        found = value == matcher.exact_match
    elif which == "prefix_match":
        found = value.startswith(matcher.prefix_match)
    elif which == "suffix_match":
        found = value.endswith(matcher.suffix_match)
    elif which == "contains_match":
        found = matcher.contains_match in value
    elif which == "safe_regex_match":
        found = full_match(matcher.safe_regex_match.regex, value)
    elif which == "range_match":
        found = value.lstrip("-").isdigit() and (
            matcher.range_match.start <= int(value) < matcher.range_match.end)
    elif which is None:
        found = True  # no specifier: presence alone (value already known present)
    else:
        raise UnsupportedConfig(f"header matcher {which} is not modelled")
    return found != invert


def query_matches(matcher: Any, request: Request) -> bool:
    value = request.query_parameter(matcher.name)
    if value is None:
        return False
    if matcher.present_match or not matcher.HasField("string_match"):
        return True
    return string_matches(matcher.string_match, value)


def _path_matches(match: Any, request: Request) -> tuple[bool, str]:
    """Whether the path fits, and the part of it a prefix rewrite replaces."""
    path, _ = split_path(request.path)
    which = match.WhichOneof("path_specifier")
    case_sensitive = not match.HasField("case_sensitive") or bool(match.case_sensitive.value)
    subject = path if case_sensitive else path.lower()

    def fold(value: str) -> str:
        return value if case_sensitive else value.lower()

    if which == "prefix":
        return subject.startswith(fold(match.prefix)), match.prefix
    if which == "path":
        return subject == fold(match.path), match.path
    if which == "safe_regex":
        return full_match(match.safe_regex.regex, path), ""
    if which == "path_separated_prefix":
        prefix = fold(match.path_separated_prefix)
        fits = subject.startswith(prefix) and (len(subject) == len(prefix)
                                               or subject[len(prefix)] == "/")
        return fits, match.path_separated_prefix
    raise UnsupportedConfig(f"path specifier {which} is not modelled")


def route_matches(route: Any, request: Request) -> bool:
    match = route.match
    if match.HasField("runtime_fraction") or match.dynamic_metadata or match.HasField("grpc"):
        raise UnsupportedConfig(f"route {route.name or '(unnamed)'} matches on runtime, "
                                "dynamic metadata or gRPC, which are not modelled")
    if not all(header_matches(h, request) for h in match.headers):
        return False
    if not all(query_matches(q, request) for q in match.query_parameters):
        return False
    return _path_matches(match, request)[0]


def find_route(virtual_host: Any, request: Request) -> tuple[int, Any] | None:
    for index, route in enumerate(virtual_host.routes):
        if route_matches(route, request):
            return index, route
    return None


def rewritten_path(route: Any, request: Request, prefix_rewrite: str, regex_rewrite: Any) -> str:
    """The path after a prefix or regex rewrite (the query string kept)."""
    path, rest = split_path(request.path)
    if prefix_rewrite:
        _, matched = _path_matches(route.match, request)
        return prefix_rewrite + path[len(matched):] + rest
    if regex_rewrite is not None and regex_rewrite.pattern.regex:
        substitution = re.sub(r"\\(\d)", r"\\g<\1>", regex_rewrite.substitution)
        try:
            return re.sub(regex_rewrite.pattern.regex, substitution, path) + rest
        except re.error as err:
            raise UnsupportedConfig(f"regex rewrite {regex_rewrite.pattern.regex!r}: {err}") \
                from err
    return request.path


def redirect_location(route: Any, request: Request) -> tuple[int, str]:
    """The status and Location of a redirect action (Envoy's createRedirectPath, simplified:
    the scheme, the host and port, then the path)."""
    action = route.redirect
    scheme = action.scheme_redirect or ("https" if action.https_redirect else request.scheme)
    host = action.host_redirect or request.authority
    start = port_start(host)
    port = host[start + 1:] if start >= 0 else ""
    host = host[:start] if start >= 0 else host
    if action.port_redirect:
        port = str(action.port_redirect)
    elif scheme != request.scheme and port in ("80", "443"):
        port = ""  # a scheme change drops the old standard port
    if action.path_redirect:
        path = action.path_redirect
    else:
        path = rewritten_path(route, request, action.prefix_rewrite,
                              action.regex_rewrite if action.HasField("regex_rewrite")
                              else None)
    if action.strip_query:
        path = split_path(path)[0]
    authority = f"{host}:{port}" if port else host
    return REDIRECT_STATUS.get(int(action.response_code), 301), f"{scheme}://{authority}{path}"
