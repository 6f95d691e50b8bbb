"""One AuthorizationPolicy rule as one Envoy RBAC policy (istiod's
pilot/pkg/security/authz/model/model.go).

A rule is an OR of its `from` entries (principals) and an OR of its `to` entries
(permissions); each entry ANDs its attributes, and the `when` conditions are ANDed into every
entry of their side. The order of the matchers follows istiod: the entry's own attributes
first (principals: principals, requestPrincipals, serviceAccounts, trustDomains, namespaces,
remoteIpBlocks, ipBlocks; permissions: hosts, methods, paths, ports), then the conditions in
the order written.

On a TCP chain an HTTP-only attribute cannot be evaluated. For ALLOW the whole rule is left
out (it allows less); for DENY and AUDIT only that attribute is (the rule denies more): a
policy that cannot be fully expressed never opens access it meant to close.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.rbac.v3 import rbac_pb2

from pilotpy.model.authorization import Action, Operation, Rule, Source
from pilotpy.translate.authz.attributes import (
    Attribute,
    HttpOnly,
    Permission,
    Principal,
    Side,
    many_permission,
    many_principal,
    one_permission,
    one_principal,
)
from pilotpy.translate.authz.trust_domain import TrustDomains

# Condition keys whose values are matched together (extended generators) rather than one
# matcher per value.
_MANY_PREFIXES = ("request.auth.principal", "request.auth.audiences", "request.auth.presenter",
                  "request.auth.claims", "experimental.envoy.filters.")
_PERMISSION_KEYS = ("destination.ip", "destination.port", "connection.sni",
                    "experimental.envoy.filters.")


def side_of(key: str) -> Side:
    return Side.PERMISSION if key.startswith(_PERMISSION_KEYS) else Side.PRINCIPAL


def _is_many(key: str) -> bool:
    return key.startswith(_MANY_PREFIXES)


@dataclass(frozen=True, slots=True)
class RuleContext:
    action: Action
    tcp: bool
    trust_domains: TrustDomains
    policy_namespace: str


def _source_attributes(source: Source, namespace: str) -> list[Attribute]:
    """The entry's attributes in istiod's order (each inserted at the front in turn)."""
    pairs = (
        ("source.principal", source.principals, source.not_principals),
        ("request.auth.principal", source.request_principals, source.not_request_principals),
        ("source.serviceAccount", source.service_accounts, source.not_service_accounts),
        ("source.trustDomain", source.trust_domains, source.not_trust_domains),
        ("source.namespace", source.namespaces, source.not_namespaces),
        ("remote.ip", source.remote_ip_blocks, source.not_remote_ip_blocks),
        ("source.ip", source.ip_blocks, source.not_ip_blocks),
    )
    return [Attribute(key, values, not_values, namespace) for key, values, not_values in pairs
            if values or not_values]


def _operation_attributes(operation: Operation) -> list[Attribute]:
    pairs = ((":authority", operation.hosts, operation.not_hosts),
             (":method", operation.methods, operation.not_methods),
             ("path-matcher", operation.paths, operation.not_paths),
             ("destination.port", operation.ports, operation.not_ports))
    return [Attribute(key, values, not_values) for key, values, not_values in pairs
            if values or not_values]


def _lenient(ctx: RuleContext) -> bool:
    """DENY and AUDIT drop what they cannot evaluate and keep the rest of the rule."""
    return ctx.action is not Action.ALLOW


def _matchers(attribute: Attribute, ctx: RuleContext,
              build: Callable[[tuple[str, ...]], Any], negate: Callable[[Any], Any]
              ) -> list[Any]:
    """The attribute's values as one matcher (`build`), its notValues as another, negated;
    what the chain cannot evaluate is left out of DENY and AUDIT rules and fails ALLOW
    rules (HttpOnly propagates)."""
    out = []
    for values, negated in ((attribute.values, False), (attribute.not_values, True)):
        if not values:
            continue
        try:
            matched = build(values)
        except HttpOnly:
            if _lenient(ctx):
                continue
            raise
        out.append(negate(matched) if negated else matched)
    return out


def _permissions(attribute: Attribute, ctx: RuleContext) -> list[rbac_pb2.Permission]:
    key = attribute.key

    def build(values: tuple[str, ...]) -> rbac_pb2.Permission:
        if _is_many(key):
            return many_permission(key, values)
        out = Permission()
        out.or_rules.rules.extend(one_permission(key, v, tcp=ctx.tcp) for v in values)
        return out

    return _matchers(attribute, ctx, build, lambda m: Permission(not_rule=m))


def _principals(attribute: Attribute, ctx: RuleContext) -> list[rbac_pb2.Principal]:
    key = attribute.key

    def build(values: tuple[str, ...]) -> rbac_pb2.Principal:
        if key == "source.principal":
            values = ctx.trust_domains.replace_aliases(values)
        elif key == "source.trustDomain":
            values = ctx.trust_domains.expand_aliases(values)
        if _is_many(key):
            return many_principal(key, values, tcp=ctx.tcp)
        out = Principal()
        out.or_ids.ids.extend(one_principal(key, v, attribute, tcp=ctx.tcp) for v in values)
        return out

    return _matchers(attribute, ctx, build, lambda m: Principal(not_id=m))


def _and_permission(attributes: Sequence[Attribute], ctx: RuleContext) -> rbac_pb2.Permission:
    rules = [p for a in attributes for p in _permissions(a, ctx)] or [Permission(any=True)]
    out = Permission()
    out.and_rules.rules.extend(rules)
    return out


def _and_principal(attributes: Sequence[Attribute], ctx: RuleContext) -> rbac_pb2.Principal:
    ids = [p for a in attributes for p in _principals(a, ctx)] or [Principal(any=True)]
    out = Principal()
    out.and_ids.ids.extend(ids)
    return out


def rule_policy(rule: Rule, ctx: RuleContext) -> rbac_pb2.Policy | None:
    """The rule as an RBAC policy, or None when an ALLOW rule cannot be evaluated on this
    chain (it is left out: the policy allows less)."""
    conditions = [Attribute(c.key, c.values, c.not_values, ctx.policy_namespace)
                  for c in rule.when]
    base_permission = [c for c in conditions if side_of(c.key) is Side.PERMISSION]
    base_principal = [c for c in conditions if side_of(c.key) is Side.PRINCIPAL]
    permission_lists = ([_operation_attributes(o) + base_permission for o in rule.operations]
                        or [base_permission])
    principal_lists = ([_source_attributes(s, ctx.policy_namespace) + base_principal
                        for s in rule.sources] or [base_principal])
    try:
        permissions = [_and_permission(a, ctx) for a in permission_lists]
        principals = [_and_principal(a, ctx) for a in principal_lists]
    except HttpOnly:
        return None
    return rbac_pb2.Policy(permissions=permissions, principals=principals)


def match_never() -> rbac_pb2.Policy:
    """A policy no request matches: an ALLOW policy without rules allows nothing."""
    never_permission = Permission()
    never_permission.not_rule.any = True
    never_principal = Principal()
    never_principal.not_id.any = True
    return rbac_pb2.Policy(permissions=[never_permission], principals=[never_principal])
