"""The AuthorizationPolicies of one workload as Envoy RBAC filters (istiod's
pilot/pkg/security/authz/builder): `envoy.filters.http.rbac` for HTTP chains,
`envoy.filters.network.rbac` for TCP chains.

One filter per action, AUDIT (Envoy's LOG), then DENY, then ALLOW, so a request any DENY
matches is refused before an ALLOW can let it through; no ALLOW policy means no ALLOW
filter (everything not denied is allowed), an ALLOW policy without rules matches nothing
(so it allows nothing). Each rule is one RBAC policy named `ns[<ns>]-policy[<name>]-rule[<i>]`.
Policies with the `istio.io/dry-run` annotation go to `shadow_rules`: evaluated and counted,
never enforced.

CUSTOM policies delegate to an ext_authz provider, which pilotpy does not configure: like
istiod with a provider it cannot use, their rules become DENY rules (the requests they would
have sent to the provider are refused), and the policy is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
from pilotpy.translate.authz.rules import RuleContext, match_never, rule_policy
from pilotpy.translate.authz.trust_domain import TrustDomains

HTTP_RBAC = "envoy.filters.http.rbac"
NETWORK_RBAC = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."
DRY_RUN_ALLOW_PREFIX = "istio_dry_run_allow_"
DRY_RUN_DENY_PREFIX = "istio_dry_run_deny_"
EXT_AUTHZ_PREFIX = "istio-ext-authz"
BAD_CUSTOM_SUFFIX = "-deny-due-to-bad-CUSTOM-action"

_ENVOY_ACTION = {Action.ALLOW: rbac_pb2.RBAC.ALLOW, Action.DENY: rbac_pb2.RBAC.DENY,
                 Action.AUDIT: rbac_pb2.RBAC.LOG, Action.CUSTOM: rbac_pb2.RBAC.DENY}


def policy_name(policy: AuthorizationPolicy, rule: int) -> str:
    return f"ns[{policy.meta.namespace}]-policy[{policy.meta.name}]-rule[{rule}]"


@dataclass(frozen=True, slots=True)
class _Built:
    rules: rbac_pb2.RBAC | None
    shadow: rbac_pb2.RBAC | None


def _build(policies: Sequence[AuthorizationPolicy], action: Action, *, tcp: bool,
           trust_domains: TrustDomains) -> _Built:
    enforced = rbac_pb2.RBAC(action=_ENVOY_ACTION[action])
    shadow = rbac_pb2.RBAC(action=_ENVOY_ACTION[action])
    any_enforced = any_shadow = False
    for policy in policies:
        dry_run = policy.dry_run and action is not Action.CUSTOM
        target = shadow if dry_run else enforced
        any_shadow |= dry_run
        any_enforced |= not dry_run
        # Custom policies are only ever rebuilt as denials (see the module's docstring).
        prefix = f"{EXT_AUTHZ_PREFIX}-{policy.provider}-" if action is Action.CUSTOM else ""
        suffix = BAD_CUSTOM_SUFFIX if action is Action.CUSTOM else ""
        ctx = RuleContext(action, tcp, trust_domains, policy.meta.namespace)
        for index, rule in enumerate(policy.rules):
            generated = rule_policy(rule, ctx)
            if generated is not None:
                target.policies[prefix + policy_name(policy, index) + suffix].CopyFrom(generated)
        if not policy.rules:
            target.policies[prefix + policy_name(policy, 0) + suffix].CopyFrom(match_never())
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
    """What a proxy's inbound (sidecar) or gateway chains carry: the CUSTOM stand-ins go
    first, before authentication; the RBAC filters after it."""

    http_custom: tuple[hcm_pb2.HttpFilter, ...] = ()
    http: tuple[hcm_pb2.HttpFilter, ...] = ()
    tcp: tuple[lc.Filter, ...] = ()
    problems: tuple[Problem, ...] = ()


NO_FILTERS = AuthorizationFilters()


def _custom_problem(policy: AuthorizationPolicy) -> Problem:
    return Problem(Reason.UNSUPPORTED,
                   f"action CUSTOM (ext_authz provider {policy.provider!r}) is not supported "
                   "by pilotpy: the requests its rules match are denied, as istiod does for "
                   "a provider it cannot use", policy.meta.key, "spec.action", Severity.ERROR)


def authorization_filters(policies: WorkloadPolicies,
                          trust_domains: TrustDomains) -> AuthorizationFilters:
    if not policies:
        return NO_FILTERS
    http_custom: list[hcm_pb2.HttpFilter] = []
    tcp: list[lc.Filter] = []
    if policies.custom:
        enforced = [p for p in policies.custom if not p.dry_run]
        for_http = _build(enforced, Action.CUSTOM, tcp=False, trust_domains=trust_domains)
        for_tcp = _build(enforced, Action.CUSTOM, tcp=True, trust_domains=trust_domains)
        if for_http.rules is not None and for_tcp.rules is not None:
            http_custom.append(_http_filter(_Built(for_http.rules, None)))
            tcp.append(_network_filter(_Built(for_tcp.rules, None)))
    http: list[hcm_pb2.HttpFilter] = []
    for action, listed in _ordered(policies):
        http.append(_http_filter(_build(listed, action, tcp=False, trust_domains=trust_domains)))
        tcp.append(_network_filter(_build(listed, action, tcp=True,
                                          trust_domains=trust_domains)))
    return AuthorizationFilters(tuple(http_custom), tuple(http), tuple(tcp),
                                tuple(_custom_problem(p) for p in policies.custom))
