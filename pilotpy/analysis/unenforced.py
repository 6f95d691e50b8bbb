"""Kinds pilotpy reads but does not enforce yet: one warning per object, so nobody believes a
policy is in force while traffic flows past it; and the security policies of enforced kinds
that still do nothing here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilotpy.mesh import MeshConfig
from pilotpy.model.authorization import Action, AuthorizationPolicy
from pilotpy.model.kinds import Kind
from pilotpy.model.stored import GATEWAY_API_GROUP, UNENFORCED_KINDS
from pilotpy.problems import Problem, Reason

# What a user would expect of the kind and does not get.
_CONSEQUENCES = {
    Kind.WORKLOAD_ENTRY: "its workload gets no endpoints",
    "WorkloadGroup": "its workloads get no endpoints",
    "EnvoyFilter": "its patches are not applied",
    "ProxyConfig": "its proxy settings are not applied",
    "Telemetry": "its telemetry settings are not applied",
    "WasmPlugin": "its plugin is not loaded",
    "TrafficExtension": "its extension is not loaded",
}
_GATEWAY_API = ("the Gateway API is not translated; use Istio's Gateway and VirtualService "
                "instead")


def consequence(kind: str) -> str:
    if kind.endswith("." + GATEWAY_API_GROUP):
        return _GATEWAY_API
    return _CONSEQUENCES.get(kind, "it is not applied")


def _security_unenforced(objects: Mapping[str, Mapping[Any, Any]],
                         mesh: MeshConfig | None) -> list[Problem]:
    """Security policies of enforced kinds that still do nothing here: those bound by
    targetRefs to waypoints (a Service, ServiceEntry or GatewayClass), which pilotpy does
    not serve, and CUSTOM policies whose provider the mesh config does not define (their
    rules deny instead, as istiod's)."""
    out = []
    for kind in (Kind.AUTHORIZATION_POLICY, Kind.REQUEST_AUTHENTICATION):
        for key, policy in sorted(objects.get(kind, {}).items()):
            refs = policy.target.target_refs
            if refs and not any(ref.is_gateway for ref in refs):
                out.append(Problem(
                    Reason.NOT_ENFORCED, f"{key.kind} is not enforced by pilotpy: its "
                    "targetRefs bind it to waypoint proxies, which pilotpy does not serve",
                    key, "spec.targetRefs"))
            if (mesh is not None and isinstance(policy, AuthorizationPolicy)
                    and policy.action is Action.CUSTOM and not policy.stand_in
                    and mesh.ext_authz_provider(policy.provider) is None):
                out.append(Problem(
                    Reason.NOT_ENFORCED, f"CUSTOM provider {policy.provider!r} is not "
                    "defined in meshConfig extensionProviders: no ext_authz server is asked; "
                    "the requests its rules match are denied", key, "spec.provider.name"))
    return out


def unenforced(objects: Mapping[str, Mapping[Any, Any]],
               mesh: MeshConfig | None = None) -> list[Problem]:
    """One warning per object of a kind pilotpy does not enforce, by kind then name; then
    the security policies that do nothing here (with `mesh`, also CUSTOM providers)."""
    out = []
    for kind in sorted(UNENFORCED_KINDS & set(objects)):
        for key in sorted(objects[kind]):
            out.append(Problem(Reason.NOT_ENFORCED,
                               f"{key.kind} is read but not enforced by pilotpy: "
                               f"{consequence(key.kind)}", key))
    return out + _security_unenforced(objects, mesh)
