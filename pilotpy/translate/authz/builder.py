"""The AuthorizationPolicies of one workload as Envoy RBAC filters (istiod's
pilot/pkg/security/authz/builder): `envoy.filters.http.rbac` for HTTP chains,
`envoy.filters.network.rbac` for TCP chains.

One filter per action, AUDIT (Envoy's LOG), then DENY, then ALLOW, so a request any DENY
matches is refused before an ALLOW can let it through; no ALLOW policy means no ALLOW
filter (everything not denied is allowed), an ALLOW policy without rules matches nothing
(so it allows nothing). Each rule is one RBAC policy named `ns[<ns>]-policy[<name>]-rule[<i>]`.
Policies with the `istio.io/dry-run` annotation go to `shadow_rules`: evaluated and counted,
never enforced.

CUSTOM policies delegate to their ext_authz provider (translate/authz/ext_authz.py): an RBAC
filter whose shadow rules select the requests to send, then the provider's ext_authz filter.
A provider that cannot be used (unknown, its service not found, several on one workload)
turns its policies' rules into DENY rules, as istiod does, and each policy is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from pilotpy.model.authorization import Action, AuthorizationPolicy
from pilotpy.problems import Problem, Reason, Severity
from pilotpy.push.security import WorkloadPolicies
from pilotpy.translate import pb
from pilotpy.translate.authz.ext_authz import (
    EXT_AUTHZ_PREFIX,
    SHADOW_STAT_PREFIX,
    ExtAuthzFilters,
)
from pilotpy.translate.authz.rules import RuleContext, match_never, rule_policy
from pilotpy.translate.authz.trust_domain import TrustDomains

HTTP_RBAC = "envoy.filters.http.rbac"
NETWORK_RBAC = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."
DRY_RUN_ALLOW_PREFIX = "istio_dry_run_allow_"
DRY_RUN_DENY_PREFIX = "istio_dry_run_deny_"
BAD_CUSTOM_SUFFIX = "-deny-due-to-bad-CUSTOM-action"
INVALID_SUFFIX = "-invalid-policy-fails-closed"

_ENVOY_ACTION = {Action.ALLOW: rbac_pb2.RBAC.ALLOW, Action.DENY: rbac_pb2.RBAC.DENY,
                 Action.AUDIT: rbac_pb2.RBAC.LOG, Action.CUSTOM: rbac_pb2.RBAC.DENY}


def policy_name(policy: AuthorizationPolicy, rule: int) -> str:
    """`ns[<ns>]-policy[<name>]-rule[<i>]`; the stand-in of an invalid policy (it fails
    closed) says so in a suffix, as istiod marks its bad-CUSTOM denials."""
    name = f"ns[{policy.meta.namespace}]-policy[{policy.meta.name}]-rule[{rule}]"
    return name + INVALID_SUFFIX if policy.stand_in else name


@dataclass(frozen=True, slots=True)
class _Built:
    rules: rbac_pb2.RBAC | None
    shadow: rbac_pb2.RBAC | None


def _build(policies: Sequence[AuthorizationPolicy], action: Action, *, tcp: bool,
           trust_domains: TrustDomains, prefix: str = "") -> _Built:
    """The policies' rules as enforced and shadow (dry-run) RBAC rules, each None when no
    policy goes there; rules are named `<prefix>ns[...]-policy[...]-rule[...]`."""
    enforced = rbac_pb2.RBAC(action=_ENVOY_ACTION[action])
    shadow = rbac_pb2.RBAC(action=_ENVOY_ACTION[action])
    any_enforced = any_shadow = False
    for policy in policies:
        target = shadow if policy.dry_run else enforced
        any_shadow |= policy.dry_run
        any_enforced |= not policy.dry_run
        ctx = RuleContext(action, tcp, trust_domains, policy.meta.namespace)
        for index, rule in enumerate(policy.rules):
            generated = rule_policy(rule, ctx)
            if generated is not None:
                target.policies[prefix + policy_name(policy, index)].CopyFrom(generated)
        if not policy.rules:
            target.policies[prefix + policy_name(policy, 0)].CopyFrom(match_never())
    return _Built(enforced if any_enforced else None, shadow if any_shadow else None)


def _shadow_prefix(built: _Built) -> str:
    """istiod names the shadow statistics after the shadow rules' action, ALLOW when there
    are none."""
    if built.shadow is None or built.shadow.action == rbac_pb2.RBAC.ALLOW:
        return DRY_RUN_ALLOW_PREFIX
    return DRY_RUN_DENY_PREFIX if built.shadow.action == rbac_pb2.RBAC.DENY else ""


def _http_filter(built: _Built) -> hcm_pb2.HttpFilter:
    config = http_rbac_pb2.RBAC(shadow_rules_stat_prefix=_shadow_prefix(built))
    if built.rules is not None:
        config.rules.CopyFrom(built.rules)
    if built.shadow is not None:
        config.shadow_rules.CopyFrom(built.shadow)
    return hcm_pb2.HttpFilter(name=HTTP_RBAC, typed_config=pb.typed(config))


def _network_filter(built: _Built) -> lc.Filter:
    config = network_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX,
                                   shadow_rules_stat_prefix=_shadow_prefix(built))
    if built.rules is not None:
        config.rules.CopyFrom(built.rules)
    if built.shadow is not None:
        config.shadow_rules.CopyFrom(built.shadow)
    return lc.Filter(name=NETWORK_RBAC, typed_config=pb.typed(config))


def _ordered(policies: WorkloadPolicies) -> list[tuple[Action, tuple[AuthorizationPolicy, ...]]]:
    return [(a, p) for a, p in ((Action.AUDIT, policies.audit), (Action.DENY, policies.deny),
                                (Action.ALLOW, policies.allow)) if p]


@dataclass(frozen=True, slots=True)
class AuthorizationFilters:
    """What a proxy's inbound (sidecar) or gateway chains carry: the CUSTOM filters go
    first, before authentication; the RBAC filters after it."""

    http_custom: tuple[hcm_pb2.HttpFilter, ...] = ()
    http: tuple[hcm_pb2.HttpFilter, ...] = ()
    tcp: tuple[lc.Filter, ...] = ()
    problems: tuple[Problem, ...] = ()


NO_FILTERS = AuthorizationFilters()
# Provider name -> its ext_authz filters, or why it cannot be used.
ProviderResolver = Callable[[str], ExtAuthzFilters | str]


def _denials(rules: rbac_pb2.RBAC | None) -> rbac_pb2.RBAC:
    """istiod's getBadCustomDenyRules: the provider's rules, renamed, as DENY rules."""
    out = rbac_pb2.RBAC(action=rbac_pb2.RBAC.DENY)
    for name, policy in (rules.policies.items() if rules is not None else ()):
        out.policies[name + BAD_CUSTOM_SUFFIX].CopyFrom(policy)
    return out


def _custom_rbac(config: Any, built: _Built, *, usable: bool) -> Any:
    """The RBAC filter in front of a provider's ext_authz (`usable`): its enforced rules
    only select what goes to the provider (shadow rules), its dry-run rules are `rules` (as
    istiod writes them: they deny). Otherwise the rules deny."""
    if not usable:
        config.rules.CopyFrom(_denials(built.rules))
        return config
    config.shadow_rules.CopyFrom(built.rules or rbac_pb2.RBAC(action=rbac_pb2.RBAC.DENY))
    config.shadow_rules_stat_prefix = SHADOW_STAT_PREFIX
    if built.shadow is not None and built.shadow.policies:
        config.rules.CopyFrom(built.shadow)
    return config


def _custom_problem(policy: AuthorizationPolicy, why: str) -> Problem:
    return Problem(Reason.NOT_FOUND, f"action CUSTOM: {why}; the requests its rules match are "
                   "denied, as istiod does", policy.meta.key, "spec.provider.name",
                   Severity.ERROR)


def _custom(policies: Sequence[AuthorizationPolicy], trust_domains: TrustDomains,
            resolve: ProviderResolver
            ) -> tuple[list[hcm_pb2.HttpFilter], list[lc.Filter], list[Problem]]:
    """One RBAC and one ext_authz filter per provider (istiod allows one provider per
    workload: with several, each provider's rules deny)."""
    http: list[hcm_pb2.HttpFilter] = []
    tcp: list[lc.Filter] = []
    problems: list[Problem] = []
    providers = sorted({p.provider for p in policies})
    for provider in providers:
        listed = [p for p in policies if p.provider == provider]
        prefix = f"{EXT_AUTHZ_PREFIX}-{provider}-"
        on_http = _build(listed, Action.CUSTOM, tcp=False, trust_domains=trust_domains,
                         prefix=prefix)
        on_tcp = _build(listed, Action.CUSTOM, tcp=True, trust_domains=trust_domains,
                        prefix=prefix)
        resolved = (resolve(provider) if len(providers) == 1 else
                    f"several CUSTOM providers {providers} apply to this workload (istiod's "
                    "PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS is off)")
        usable = not isinstance(resolved, str)
        http.append(hcm_pb2.HttpFilter(name=HTTP_RBAC, typed_config=pb.typed(_custom_rbac(
            http_rbac_pb2.RBAC(), on_http, usable=usable))))
        if isinstance(resolved, str):
            tcp.append(lc.Filter(name=NETWORK_RBAC, typed_config=pb.typed(_custom_rbac(
                network_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX), on_tcp, usable=False))))
            problems += [_custom_problem(p, resolved) for p in listed]
            continue
        http.append(resolved.http)
        if resolved.tcp is not None:  # HTTP providers leave TCP chains alone, as istiod
            tcp.append(lc.Filter(name=NETWORK_RBAC, typed_config=pb.typed(_custom_rbac(
                network_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX), on_tcp, usable=True))))
            tcp.append(resolved.tcp)
    return http, tcp, problems


def _unresolved(name: str) -> str:
    return f"no ext_authz provider {name!r} is configured"


def authorization_filters(policies: WorkloadPolicies, trust_domains: TrustDomains,
                          resolve: ProviderResolver = _unresolved) -> AuthorizationFilters:
    if not policies:
        return NO_FILTERS
    http_custom: list[hcm_pb2.HttpFilter] = []
    tcp: list[lc.Filter] = []
    problems: list[Problem] = []
    if policies.custom:
        http_custom, tcp, problems = _custom(policies.custom, trust_domains, resolve)
    http: list[hcm_pb2.HttpFilter] = []
    for action, listed in _ordered(policies):
        http.append(_http_filter(_build(listed, action, tcp=False, trust_domains=trust_domains)))
        tcp.append(_network_filter(_build(listed, action, tcp=True,
                                          trust_domains=trust_domains)))
    return AuthorizationFilters(tuple(http_custom), tuple(http), tuple(tcp), tuple(problems))
