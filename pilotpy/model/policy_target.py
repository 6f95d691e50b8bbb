"""Which workloads a security policy applies to: `selector` (a WorkloadSelector) or
`targetRef`/`targetRefs` (PolicyTargetReference), validated like istiod's
validateOneOfSelectorType, validateWorkloadSelector and validatePolicyTargetReference, and
matched like its WorkloadPolicyMatcher.ShouldAttachPolicy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilotpy.model.fields import Fields
from pilotpy.problems import Reason

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
# The label the Gateway API puts on a gateway's pods (istiod's workloadGatewayName).
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
# The (group, kind) pairs a targetRef may name; "" is the core group.
ALLOWED_TARGETS = (("", "Service"), ("networking.istio.io", "ServiceEntry"),
                   (GATEWAY_API_GROUP, "Gateway"), (GATEWAY_API_GROUP, "GatewayClass"))


@dataclass(frozen=True, slots=True)
class TargetRef:
    group: str
    kind: str
    name: str

    @property
    def is_gateway(self) -> bool:
        return self.group == GATEWAY_API_GROUP and self.kind == "Gateway"


@dataclass(frozen=True, slots=True)
class PolicyTarget:
    # None: no selector (the whole namespace, or the mesh from the root namespace); an
    # empty mapping selects every workload too (istiod warns about it).
    selector: Mapping[str, str] | None = None
    target_refs: tuple[TargetRef, ...] = ()

    def applies_to(self, namespace: str, policy_namespace: str,
                   labels: Mapping[str, str]) -> bool:
        """istiod's ShouldAttachPolicy for a sidecar or a gateway (pilotpy serves no
        waypoints): a workload that is not a Gateway API gateway takes policies by selector
        and never by targetRef; a Gateway API gateway's pods take a selector policy (the
        ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY default) or one whose targetRef names their
        Gateway in their own namespace."""
        gateway_name = labels.get(GATEWAY_NAME_LABEL)
        if gateway_name is None or not self.target_refs:
            if self.target_refs:
                return False
            return all(labels.get(k) == v for k, v in (self.selector or {}).items())
        return policy_namespace == namespace and any(
            ref.is_gateway and ref.name == gateway_name for ref in self.target_refs)


def _parse_target_ref(f: Fields) -> TargetRef | None:
    group = f.string("group")
    kind = f.string("kind", required=True)
    name = f.string("name", required=True)
    if f.string("namespace"):
        f.error("targetRef namespace must not be set; cross namespace referencing is not "
                "supported", "namespace")
    f.done()
    if kind and (group, kind) not in ALLOWED_TARGETS:
        allowed = ", ".join(f"{g or 'core'}/{k}" for g, k in ALLOWED_TARGETS)
        f.error(f"targetRef must be to one of {allowed} but was {group}/{kind}", "kind")
        return None
    return TargetRef(group, kind, name) if kind and name else None


def parse_policy_target(spec: Fields) -> PolicyTarget:
    selector: dict[str, str] | None = None
    ws = spec.child("selector")
    if ws is not None:
        selector = ws.string_map("matchLabels")
        for key, value in selector.items():
            if not key:
                ws.error(f"empty key is not supported in selector: {key}={value}",
                         "matchLabels")
            if "*" in key or "*" in value:
                ws.error(f"wildcard is not supported in selector: {key}={value}",
                         "matchLabels")
        if not selector:
            ws.warn("workload selector specified without labels: it selects every workload",
                    "matchLabels", Reason.IGNORED)
        ws.done()
    refs: list[TargetRef] = []
    single = spec.child("targetRef")
    if single is not None:
        ref = _parse_target_ref(single)
        refs += [ref] if ref else []
    many = spec.children("targetRefs")
    for item in many:
        ref = _parse_target_ref(item)
        refs += [ref] if ref else []
    if sum((ws is not None, single is not None, bool(many))) > 1:
        spec.error("only one of targetRefs or workloadSelector can be set",
                   "targetRefs" if many else "targetRef")
    return PolicyTarget(selector, tuple(refs))
