"""PeerAuthentications indexed for the two questions istiod asks of them
(pilot/pkg/model/authentication.go, pilot/pkg/security/authn/policy_applier.go):

- which mTLS mode a *workload* accepts, per port (`for_workload`): the oldest mesh-wide
  policy (root namespace, no selector), overridden by the oldest namespace-wide one, overridden
  by the oldest policy of the workload's namespace whose selector matches it, each level's
  UNSET inheriting the level above, PERMISSIVE when nothing is set; the workload policy's
  `portLevelMtls` override it per port (an UNSET port inherits the workload's mode);
- which mode a *namespace* has (`namespace_mode`, what auto-mTLS asks of a destination): its
  namespace-wide policy, UNSET resolving to the mesh-wide mode, else PERMISSIVE; the mesh-wide
  mode for a namespace without one; UNKNOWN when there is no policy at all.

A second namespace-wide policy in one namespace is ignored (the oldest wins) and reported, as
is a policy with a selector in the root namespace (istiod never applies one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from pilotpy.model.labels import Empty, selects
from pilotpy.model.peerauthentication import UNSET, PeerAuthentication
from pilotpy.problems import ObjectRef, Problem, Reason


class MtlsMode(Enum):
    """istiod's model.MutualTLSMode."""

    UNKNOWN = "UNKNOWN"  # no policy says anything
    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


def _mode(name: str) -> MtlsMode:
    return MtlsMode(name) if name != UNSET else MtlsMode.UNKNOWN


@dataclass(frozen=True, slots=True)
class WorkloadMtls:
    """The mTLS a workload accepts (istiod's MergedPeerAuthentication)."""

    mode: MtlsMode = MtlsMode.PERMISSIVE
    # Workload (target) port -> mode, from the workload policy's portLevelMtls.
    per_port: Mapping[int, MtlsMode] = field(default_factory=dict)
    # The policy that set `mode` (None: the PERMISSIVE default), and the workload policy
    # whose portLevelMtls set `per_port`: for problems naming them.
    decided_by: ObjectRef | None = None
    port_policy: ObjectRef | None = None

    def for_port(self, port: int) -> MtlsMode:
        return self.per_port.get(port, self.mode)

    def policy_for_port(self, port: int) -> ObjectRef | None:
        return self.port_policy if port in self.per_port else self.decided_by


PERMISSIVE_WORKLOAD = WorkloadMtls()


class PeerAuthnIndex:
    __slots__ = ("_by_namespace", "_memo", "global_mode", "namespace_modes", "problems",
                 "root_namespace")

    def __init__(self, policies: Iterable[PeerAuthentication], root_namespace: str) -> None:
        self.root_namespace = root_namespace
        self.global_mode = MtlsMode.UNKNOWN
        self.problems: list[Problem] = []
        self._by_namespace: dict[str, list[PeerAuthentication]] = {}
        self._memo: dict[tuple[str, tuple[tuple[str, str], ...]], WorkloadMtls] = {}
        namespace_wide: dict[str, PeerAuthentication] = {}
        for policy in sorted(policies, key=lambda p: p.meta.age_order):
            namespace = policy.meta.namespace
            if policy.namespace_wide:
                first = namespace_wide.get(namespace)
                if first is not None:
                    self.problems.append(Problem(
                        Reason.CONFLICT, f"{namespace} already has a namespace-wide "
                        f"PeerAuthentication ({first.meta.name}, older); this one is ignored",
                        policy.meta.key))
                    continue
                namespace_wide[namespace] = policy
            elif namespace == root_namespace:
                self.problems.append(Problem(
                    Reason.IGNORED, "a PeerAuthentication with a selector in the root "
                    f"namespace ({root_namespace}) applies to no workload (as in istiod); "
                    "put it in the workload's namespace", policy.meta.key, "spec.selector"))
                continue
            self._by_namespace.setdefault(namespace, []).append(policy)
        mesh = namespace_wide.get(root_namespace)
        if mesh is not None:
            # UNSET on the mesh policy means PERMISSIVE.
            self.global_mode = (_mode(mesh.mode) if mesh.mode != UNSET
                                else MtlsMode.PERMISSIVE)
        inherited = (self.global_mode if self.global_mode is not MtlsMode.UNKNOWN
                     else MtlsMode.PERMISSIVE)
        self.namespace_modes = {
            ns: _mode(p.mode) if p.mode != UNSET else inherited
            for ns, p in namespace_wide.items() if ns != root_namespace}

    @property
    def empty(self) -> bool:
        return not self._by_namespace

    def namespace_mode(self, namespace: str) -> MtlsMode:
        """istiod's GetNamespaceMutualTLSMode: UNKNOWN when no policy covers `namespace`."""
        return self.namespace_modes.get(namespace, self.global_mode)

    def for_workload(self, namespace: str, labels: Mapping[str, str]) -> WorkloadMtls:
        """istiod's ComposePeerAuthentication over the policies that select the workload."""
        if self.empty:
            return PERMISSIVE_WORKLOAD
        key = (namespace, tuple(sorted(labels.items())))
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._compose(namespace, labels)
        return found

    def _compose(self, namespace: str, labels: Mapping[str, str]) -> WorkloadMtls:
        mesh = next((p for p in self._by_namespace.get(self.root_namespace, ())
                     if p.namespace_wide), None)
        own = [] if namespace == self.root_namespace else self._by_namespace.get(namespace, [])
        namespaced = next((p for p in own if p.namespace_wide), None)
        workload = next((p for p in own if not p.namespace_wide
                         and selects(p.selector, labels, empty=Empty.NONE)), None)
        mode = MtlsMode.PERMISSIVE
        decided_by: ObjectRef | None = None
        for policy in (mesh, namespaced, workload):
            if policy is not None and policy.mode != UNSET:
                mode = _mode(policy.mode)
                decided_by = policy.meta.key
        per_port: dict[int, MtlsMode] = {}
        if workload is not None:
            per_port = {port: mode if value == UNSET else _mode(value)
                        for port, value in sorted(workload.port_level.items())}
        if decided_by is None and not per_port:
            return PERMISSIVE_WORKLOAD
        return WorkloadMtls(mode, per_port, decided_by,
                            workload.meta.key if per_port and workload is not None else None)
