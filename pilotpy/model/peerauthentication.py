"""PeerAuthentication (security.istio.io), validated like istiod's ValidatePeerAuthentication.

A policy without a selector is namespace-wide (mesh-wide in the root namespace); with one it
selects workloads of its namespace and may set `portLevelMtls` per workload port. How the
levels combine is istiod's (pilotpy/push/peer_authn.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pilotpy.model.fields import Fields
from pilotpy.model.meta import Meta
from pilotpy.model.selector import parse_workload_selector

UNSET = "UNSET"
DISABLE = "DISABLE"
PERMISSIVE = "PERMISSIVE"
STRICT = "STRICT"
MTLS_MODES = (UNSET, DISABLE, PERMISSIVE, STRICT)


@dataclass(frozen=True, slots=True)
class PeerAuthentication:
    meta: Meta
    # matchLabels; empty: every workload of the namespace (of the mesh in the root namespace).
    selector: Mapping[str, str] = field(default_factory=dict)
    mode: str = UNSET  # UNSET: inherit from the level above
    # Workload (target) port -> mode; only on policies with a selector.
    port_level: Mapping[int, str] = field(default_factory=dict)

    @property
    def namespace_wide(self) -> bool:
        return not self.selector


def _mode(f: Fields | None) -> str:
    if f is None:
        return UNSET
    mode = f.enum("mode", MTLS_MODES, default=UNSET) or UNSET
    f.done()
    return mode


def _port_level(spec: Fields) -> dict[int, str]:
    """`portLevelMtls`: keys are port numbers (strings in JSON, numbers in YAML)."""
    entries = spec.child_map("portLevelMtls")
    if spec.has("portLevelMtls") and not entries:
        spec.error("port level mTLS, if defined, must have at least one element",
                   "portLevelMtls")
    out: dict[int, str] = {}
    for key, value in entries.items():
        mode = _mode(value)
        port = int(key) if key.isdigit() else 0
        if not 0 < port <= 65535:
            spec.error(f"port {key!r} must be in range 1..65535", f"portLevelMtls.{key}")
            continue
        out[port] = mode
    return out


def parse_peer_authentication(meta: Meta, spec: Fields) -> PeerAuthentication:
    selector = parse_workload_selector(spec)
    mode = _mode(spec.child("mtls"))
    port_level = _port_level(spec)
    if not selector and spec.has("portLevelMtls"):
        spec.error("mesh/namespace peer authentication cannot have port level mTLS",
                   "portLevelMtls")
    spec.done()
    return PeerAuthentication(meta, selector, mode, port_level)
