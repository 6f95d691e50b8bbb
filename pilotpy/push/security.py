"""Security policies by the workloads they apply to (istiod's AuthorizationPolicies and
AuthenticationPolicies in pilot/pkg/model): policies of the root namespace apply to every
workload they select in the mesh, the others to the workloads they select in their own
namespace; oldest first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from pilotpy.model.authorization import Action, AuthorizationPolicy
from pilotpy.model.request_authentication import RequestAuthentication


@dataclass(frozen=True, slots=True)
class WorkloadPolicies:
    """The AuthorizationPolicies that apply to one workload, by action, in istiod's order."""

    custom: tuple[AuthorizationPolicy, ...] = ()
    deny: tuple[AuthorizationPolicy, ...] = ()
    allow: tuple[AuthorizationPolicy, ...] = ()
    audit: tuple[AuthorizationPolicy, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.custom or self.deny or self.allow or self.audit)


NO_POLICIES = WorkloadPolicies()
Policy = TypeVar("Policy", AuthorizationPolicy, RequestAuthentication)


def _by_namespace(policies: Iterable[Policy]) -> dict[str, list[Policy]]:
    """Each namespace's policies, oldest first (istiod's creation-time order)."""
    out: dict[str, list[Policy]] = {}
    for policy in sorted(policies, key=lambda p: p.meta.age_order):
        out.setdefault(policy.meta.namespace, []).append(policy)
    return out


class AuthorizationIndex:
    __slots__ = ("_by_namespace", "_root")

    def __init__(self, policies: Iterable[AuthorizationPolicy], root_namespace: str) -> None:
        self._root = root_namespace
        self._by_namespace = _by_namespace(policies)

    def for_workload(self, namespace: str, labels: Mapping[str, str]) -> WorkloadPolicies:
        """istiod's ListAuthorizationPolicies: the root namespace's, then the workload's."""
        found: dict[Action, list[AuthorizationPolicy]] = {a: [] for a in Action}
        for ns in dict.fromkeys((self._root, namespace)):
            for policy in self._by_namespace.get(ns, ()):
                if policy.target.applies_to(namespace, ns, labels):
                    found[policy.action].append(policy)
        return WorkloadPolicies(tuple(found[Action.CUSTOM]), tuple(found[Action.DENY]),
                                tuple(found[Action.ALLOW]), tuple(found[Action.AUDIT]))


class RequestAuthenticationIndex:
    __slots__ = ("_by_namespace", "_root")

    def __init__(self, policies: Iterable[RequestAuthentication], root_namespace: str) -> None:
        self._root = root_namespace
        self._by_namespace = _by_namespace(policies)

    def for_workload(self, namespace: str, labels: Mapping[str, str]
                     ) -> tuple[RequestAuthentication, ...]:
        """istiod's GetJwtPoliciesForWorkload: the workload's namespace, then the root's."""
        return tuple(policy for ns in dict.fromkeys((namespace, self._root))
                     for policy in self._by_namespace.get(ns, ())
                     if policy.target.applies_to(namespace, ns, labels))
