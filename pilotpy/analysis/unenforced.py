"""Kinds pilotpy reads but does not enforce yet: one warning per object, so nobody believes a
policy is in force while traffic flows past it (an unenforced PeerAuthentication leaves
plaintext open)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilotpy.model.kinds import Kind
from pilotpy.model.stored import GATEWAY_API_GROUP, UNENFORCED_KINDS
from pilotpy.problems import Problem, Reason

# What a user would expect of the kind and does not get.
_CONSEQUENCES = {
    Kind.PEER_AUTHENTICATION: "mutual TLS is not required or configured; plaintext is accepted",
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


def unenforced(objects: Mapping[str, Mapping[Any, Any]]) -> list[Problem]:
    """One warning per object of a kind pilotpy does not enforce, by kind then name."""
    out = []
    for kind in sorted(UNENFORCED_KINDS & set(objects)):
        for key in sorted(objects[kind]):
            out.append(Problem(Reason.NOT_ENFORCED,
                               f"{key.kind} is read but not enforced by pilotpy: "
                               f"{consequence(key.kind)}", key))
    return out
