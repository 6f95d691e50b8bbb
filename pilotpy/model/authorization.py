"""AuthorizationPolicy (security.istio.io), validated like istiod's
ValidateAuthorizationPolicy (pkg/config/validation) and pkg/config/security.

The model keeps what the policy says; translation (pilotpy/translate/authz) decides what each
proxy enforces. pilotpy refuses a little more than istiod where istiod would accept a value
that can never match (docs/translation.md#differences-from-istiod): a principal written with
`spiffe://` (istiod adds the scheme itself) or with `*` anywhere but at one end.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from pilotpy.model.errors import Fallback, Issue
from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta
from pilotpy.model.policy_target import PolicyTarget, parse_policy_target
from pilotpy.problems import Reason

DRY_RUN_ANNOTATION = "istio.io/dry-run"
MATCH_ONE_TEMPLATE = "{*}"
MATCH_ANY_TEMPLATE = "{**}"
# RFC 3986 pchar: what a literal path segment of a path template may hold.
_VALID_LITERAL = re.compile(r"^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$")


class Action(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"
    CUSTOM = "CUSTOM"


@dataclass(frozen=True, slots=True)
class Source:
    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()
    not_service_accounts: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()
    trust_domains: tuple[str, ...] = ()
    not_trust_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    # `from` and `to`: each entry is ORed; absent (empty) matches any source or operation.
    sources: tuple[Source, ...] = ()
    operations: tuple[Operation, ...] = ()
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationPolicy:
    meta: Meta
    action: Action = Action.ALLOW
    # Empty: the policy has no rules (an ALLOW policy then matches nothing).
    rules: tuple[Rule, ...] = ()
    target: PolicyTarget = field(default_factory=PolicyTarget)
    provider: str = ""  # CUSTOM only
    # The istio.io/dry-run annotation: evaluated as shadow rules, never enforced.
    dry_run: bool = False
    # Served in place of an invalid policy (fail_closed): never a last valid version.
    stand_in: bool = False


# -- values ------------------------------------------------------------------------------

_SOURCE_FIELDS = (
    ("principals", "principals"), ("notPrincipals", "not_principals"),
    ("requestPrincipals", "request_principals"),
    ("notRequestPrincipals", "not_request_principals"),
    ("namespaces", "namespaces"), ("notNamespaces", "not_namespaces"),
    ("serviceAccounts", "service_accounts"), ("notServiceAccounts", "not_service_accounts"),
    ("ipBlocks", "ip_blocks"), ("notIpBlocks", "not_ip_blocks"),
    ("remoteIpBlocks", "remote_ip_blocks"), ("notRemoteIpBlocks", "not_remote_ip_blocks"),
    ("trustDomains", "trust_domains"), ("notTrustDomains", "not_trust_domains"),
)
_OPERATION_FIELDS = (
    ("hosts", "hosts"), ("notHosts", "not_hosts"), ("ports", "ports"),
    ("notPorts", "not_ports"), ("methods", "methods"), ("notMethods", "not_methods"),
    ("paths", "paths"), ("notPaths", "not_paths"),
)
# Fields an L4 (TCP) chain can evaluate: a DENY rule without any is enforced as "deny every
# connection" on TCP ports (istiod's warning).
_TCP_SOURCE_FIELDS = frozenset({"principals", "not_principals", "namespaces", "not_namespaces",
                                "ip_blocks", "not_ip_blocks", "remote_ip_blocks",
                                "not_remote_ip_blocks", "service_accounts",
                                "not_service_accounts"})
_CUSTOM_FORBIDDEN_SOURCE = ("namespaces", "notNamespaces", "serviceAccounts",
                            "notServiceAccounts", "trustDomains", "notTrustDomains",
                            "principals", "notPrincipals", "requestPrincipals",
                            "notRequestPrincipals")
_CUSTOM_FORBIDDEN_KEYS = ("source.namespace", "source.serviceAccount", "source.trustDomain",
                          "source.principal")


def ip_problem(value: str) -> str:
    """istiod's ValidateIPs for one value ("" when valid): an address or a CIDR range."""
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return (f"bad CIDR range ({value})" if "/" in value else f"bad IP address ({value})")
    return ""


def port_problem(value: str) -> str:
    if not value.isdigit() or int(value) > 65535:
        return f"bad port ({value}): must be a number in 0..65535"
    return ""


def wildcard_problem(value: str) -> str:
    """istiod's CheckWildcardValues: at most one `*`, only at the start or the end."""
    count = value.count("*")
    if count > 1:
        return f"at most one wildcard is allowed, found {value!r}"
    if count == 1 and value != "*" and not value.startswith("*") and not value.endswith("*"):
        return f"wildcard is only allowed at the start or end, found {value!r}"
    return ""


def service_account_problem(value: str) -> str:
    """istiod's CheckServiceAccount for one value."""
    if "*" in value:
        return "wildcard not allowed"
    if value.count("/") > 1:
        return f"expected format 'serviceAccount' or 'namespace/serviceAccount', found {value!r}"
    if len(value) > 320:
        return f"value cannot exceed 320 characters, found {value!r}"
    namespace, slash, account = value.partition("/")
    if slash and not namespace:
        return f"expected format 'namespace/serviceAccount', found empty namespace {value!r}"
    if slash and not account:
        return f"expected format 'namespace/serviceAccount', found empty serviceAccount {value!r}"
    return ""


def trust_domain_problem(value: str) -> str:
    problem = wildcard_problem(value)
    if not problem and "/" in value:
        problem = f"trust domain must not contain '/', found {value!r}"
    return problem


def principal_problem(value: str) -> str:
    """pilotpy's check of a peer principal (`<trust domain>/ns/<ns>/sa/<sa>`): istiod accepts
    these forms, but they can never match an identity, so the policy would not do what it
    says."""
    if value.lower().startswith("spiffe://"):
        return (f"principal {value!r} must not start with spiffe:// (the scheme is added: "
                "write <trust domain>/ns/<namespace>/sa/<account>)")
    return wildcard_problem(value)


def contains_path_template(value: str) -> bool:
    return MATCH_ONE_TEMPLATE in value or MATCH_ANY_TEMPLATE in value


def path_template_problem(path: str) -> str:
    """istiod's CheckValidPathTemplate for one path ("" when valid)."""
    templated = contains_path_template(path)
    trimmed = path.strip("/")
    any_seen = False
    for glob in trimmed.split("/"):
        if glob in (MATCH_ONE_TEMPLATE, MATCH_ANY_TEMPLATE):
            if any_seen:
                return f"invalid or unsupported path {trimmed}: {{**}} is not the last operator"
            any_seen = glob == MATCH_ANY_TEMPLATE
            continue
        if "{" in glob or "}" in glob:
            return (f"invalid or unsupported path {trimmed}: contains '{{' or '}}' beyond a "
                    "supported path template")
        if templated and not _VALID_LITERAL.match(glob):
            return (f"invalid or unsupported path {trimmed}: segment {glob!r} is not a valid "
                    "literal")
    return ""


def _map_key_problem(key: str) -> str:
    """`a[b]` with a non-empty name in the brackets."""
    open_at = key.find("[")
    if key.endswith("]") and 0 < open_at < len(key) - 2:
        return ""
    return f"bad key ({key}): should have format a[b]"


# Every condition key istiod knows, with the check its values get ("" accepts any value).
_EXACT_KEYS = {
    "source.ip": "ip", "remote.ip": "ip", "source.namespace": "", "source.serviceAccount": "sa",
    "source.principal": "principal", "source.trustDomain": "wildcard",
    "request.auth.principal": "", "request.auth.audiences": "", "request.auth.presenter": "",
    "destination.ip": "ip", "destination.port": "port", "connection.sni": "",
}
_MAP_KEYS = ("request.headers", "request.auth.claims", "experimental.envoy.filters.")
_REPLACED_KEYS = {
    "destination.namespace": "attribute destination.namespace is replaced by "
                             "metadata.namespace",
    "destination.name": "deprecated attribute destination.name: only supported in v1alpha1",
    "destination.user": "deprecated attribute destination.user: only supported in v1alpha1",
}
_VALUE_CHECKS = {"ip": ip_problem, "port": port_problem, "sa": service_account_problem,
                 "wildcard": wildcard_problem, "principal": principal_problem}


def condition_key_problem(key: str) -> str:
    """istiod's ValidateAttribute on the key: "" for a key it translates."""
    if key in _EXACT_KEYS:
        return ""
    if any(key.startswith(prefix) for prefix in _MAP_KEYS):
        return _map_key_problem(key)
    if key.startswith("destination.labels"):
        return f"attribute {key} is replaced by the workload selector"
    return _REPLACED_KEYS.get(key, f"unknown attribute: {key}")


# -- parsing -----------------------------------------------------------------------------

def _values(f: Fields, key: str, check: Callable[[str], str] | None = None
            ) -> tuple[str, ...]:
    """A list of non-empty strings, each checked by `check` (returning a problem or "")."""
    values = f.string_list(key)
    for index, value in enumerate(values):
        where = f"{key}[{index}]"
        if not value:
            f.error(f"empty value not allowed, found in {key}", where)
        elif check is not None:
            problem = check(value)
            if problem:
                f.error(problem, where)
    return values


_SOURCE_CHECKS = {
    "principals": principal_problem, "notPrincipals": principal_problem,
    "ipBlocks": ip_problem, "notIpBlocks": ip_problem, "remoteIpBlocks": ip_problem,
    "notRemoteIpBlocks": ip_problem, "serviceAccounts": service_account_problem,
    "notServiceAccounts": service_account_problem, "trustDomains": trust_domain_problem,
    "notTrustDomains": trust_domain_problem,
}


def _parse_source(f: Fields, custom: bool) -> Source:
    values = {attr: _values(f, key, _SOURCE_CHECKS.get(key)) for key, attr in _SOURCE_FIELDS}
    f.done()
    source = Source(**values)
    if not any(values.values()):
        f.error("`from.source` must not be empty")
    for key in ("serviceAccounts", "notServiceAccounts"):
        if len(f.string_list(key)) > 16:
            f.error("may not have more than 16 values", key)
    if (source.service_accounts or source.not_service_accounts) and (
            source.principals or source.not_principals or source.namespaces
            or source.not_namespaces):
        f.error("cannot set serviceAccounts with namespaces or principals", "serviceAccounts")
    if custom:
        for key in _CUSTOM_FORBIDDEN_SOURCE:
            if f.string_list(key):
                f.error(f"{key} is currently not supported with CUSTOM action", key)
    return source


_OPERATION_CHECKS = {"ports": port_problem, "notPorts": port_problem,
                     "paths": path_template_problem, "notPaths": path_template_problem}


def _parse_operation(f: Fields) -> Operation:
    values = {attr: _values(f, key, _OPERATION_CHECKS.get(key)) for key, attr in
              _OPERATION_FIELDS}
    f.done()
    if not any(values.values()):
        f.error("`to.operation` must not be empty")
    return Operation(**values)


def _parse_condition(f: Fields, custom: bool) -> Condition | None:
    key = f.string("key", required=True)
    if not key:
        f.done()
        return None
    problem = condition_key_problem(key)
    if problem:
        f.error(problem, "key")
    check = _VALUE_CHECKS.get(_EXACT_KEYS.get(key, ""))
    values = _values(f, "values", None if problem else check)
    not_values = _values(f, "notValues", None if problem else check)
    if not values and not not_values:
        f.error(f"at least one of `values` or `notValues` must be set for key {key}")
    if custom and (key in _CUSTOM_FORBIDDEN_KEYS or key.startswith("request.auth.")):
        f.error(f"{key} is currently not supported with CUSTOM action", "key")
    f.done()
    return Condition(key, values, not_values) if not problem else None


def _is_tcp_source(source: Source) -> bool:
    return any(getattr(source, attr) for attr in _TCP_SOURCE_FIELDS)


def _parse_rule(f: Fields, custom: bool, action: Action) -> Rule:
    sources: list[Source] = []
    items = f.children("from")
    if not items and f.has("from"):
        f.error("`from` must not be empty", "from")
    for item in items:
        source = item.child("source")
        if source is None:
            item.error("`from.source` must not be nil", "source")
        else:
            sources.append(_parse_source(source, custom))
        item.done()
    operations: list[Operation] = []
    items = f.children("to")
    if not items and f.has("to"):
        f.error("`to` must not be empty", "to")
    for item in items:
        operation = item.child("operation")
        if operation is None:
            item.error("`to.operation` must not be nil", "operation")
        else:
            operations.append(_parse_operation(operation))
        item.done()
    when = [c for c in (_parse_condition(item, custom) for item in f.children("when")) if c]
    f.done()
    rule = Rule(tuple(sources), tuple(operations), tuple(when))
    tcp_from = any(_is_tcp_source(s) for s in sources)
    tcp_to = any(o.ports or o.not_ports for o in operations)
    if action is Action.DENY and ((sources and not operations and not tcp_from)
                                  or (operations and not tcp_to)):
        f.warn("this DENY rule uses only HTTP attributes: it denies every connection to the "
               "TCP ports the policy applies to; name the port to limit it",
               reason=Reason.IGNORED)
    return rule


def _parse_dry_run(meta: Meta, spec: Fields) -> bool:
    """Go's strconv.ParseBool, as istiod reads the annotation; anything else enforces."""
    value = meta.annotations.get(DRY_RUN_ANNOTATION)
    if value is None:
        return False
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value not in ("0", "f", "F", "FALSE", "false", "False"):
        spec.warn_at(f"metadata.annotations.{DRY_RUN_ANNOTATION}",
                     f"{value!r} is not a boolean: the policy is enforced")
    return False


def parse_authorization_policy(meta: Meta, spec: Fields) -> AuthorizationPolicy:
    target = parse_policy_target(spec)
    action = Action(spec.enum("action", [a.value for a in Action], default="ALLOW") or "ALLOW")
    custom = action is Action.CUSTOM
    provider = ""
    provider_fields = spec.child("provider")
    if provider_fields is not None:
        provider = provider_fields.string("name")
        provider_fields.done()
        if not custom:
            spec.error(f"`provider` must not be with non CUSTOM action, found {action}",
                       "provider")
    rules = tuple(_parse_rule(item, custom, action) for item in spec.children("rules"))
    if not rules and action in (Action.DENY, Action.CUSTOM):
        spec.error(f"{action} action without `rules` is meaningless as it will never be "
                   "triggered, add an empty rule `{}` if you want it be triggered for every "
                   "request", "rules")
    if custom and rules and not provider:
        spec.error("`provider.name` must not be empty", "provider")
    spec.done()
    return AuthorizationPolicy(meta, action, rules, target, provider,
                               _parse_dry_run(meta, spec))


def _errors_under(errors: list[Issue], *fields: str) -> bool:
    return any(i.path == f or i.path.startswith((f + ".", f + "[")) for i in errors
               for f in fields)


def fail_closed(policy: AuthorizationPolicy, errors: list[Issue]) -> Fallback | None:
    """What an invalid policy without a last valid version is enforced as, so that skipping
    it never opens access it meant to close: a DENY (or CUSTOM, or an unreadable action)
    denies every request and connection to the workloads it selects; an ALLOW allows
    nothing of its own (other ALLOW policies still do). An unreadable selector or targetRefs
    widens it to every workload the policy could select (the namespace, or the mesh from the
    root namespace). AUDIT, which never changes an outcome, and dry-run policies are just
    skipped (None)."""
    if policy.dry_run or not policy.meta.name:
        return None
    action = Action.DENY if _errors_under(errors, "spec.action") else policy.action
    if action is Action.AUDIT:
        return None
    target = PolicyTarget() if _errors_under(
        errors, "spec.selector", "spec.targetRef", "spec.targetRefs") else policy.target
    if action is Action.ALLOW:
        return Fallback(AuthorizationPolicy(policy.meta, Action.ALLOW, (), target,
                                            stand_in=True),
                        "until it is corrected it allows nothing (as an ALLOW policy "
                        "without rules)")
    return Fallback(AuthorizationPolicy(policy.meta, Action.DENY, (Rule(),), target,
                                        stand_in=True),
                    "until it is corrected it denies every request to the workloads it "
                    "selects")
