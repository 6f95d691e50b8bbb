"""The application's probes handed to the agent (istiod's app_probe.go): kubelet's HTTP, TCP
and gRPC probes and HTTP/TCP lifecycle hooks become HTTP GETs on the agent's status port
(`/app-health/<container>/readyz`...), and the agent, which reaches the application from
inside the pod, gets the original ones in ISTIO_KUBE_APP_PROBERS. Without this an mTLS or
captured port would fail kubelet's probes."""

from __future__ import annotations

import copy
import json
from typing import Any

from pilotpy.inject import annotations as names
from pilotpy.inject import pods

Json = dict[str, Any]
PROBERS_ENV = "ISTIO_KUBE_APP_PROBERS"
# Go's JSON field order of the probe actions istiod writes into ISTIO_KUBE_APP_PROBERS.
_ORDER = {"httpGet": ("path", "port", "host", "scheme", "httpHeaders"),
          "tcpSocket": ("port", "host"), "grpc": ("port", "service")}


def should_rewrite(annotations: dict[str, str], default: bool) -> bool:
    return names.flag(annotations, names.REWRITE_PROBES, default)


def urls(container: str) -> dict[str, str]:
    return {"readinessProbe": f"/app-health/{container}/readyz",
            "livenessProbe": f"/app-health/{container}/livez",
            "startupProbe": f"/app-health/{container}/startupz",
            "preStop": f"/app-lifecycle/{container}/prestopz",
            "postStart": f"/app-lifecycle/{container}/poststartz"}


def _ordered(action: str, value: Json) -> Json:
    order = _ORDER[action]
    return {k: value[k] for k in (*order, *sorted(set(value) - set(order))) if k in value}


def _prober(probe: Any, *, lifecycle: bool = False) -> Json | None:
    if not isinstance(probe, dict):
        return None
    actions = ("httpGet", "tcpSocket") if lifecycle else ("httpGet", "tcpSocket", "grpc")
    for action in actions:
        if isinstance(probe.get(action), dict):
            out = {action: _ordered(action, probe[action])}
            if not lifecycle and probe.get("timeoutSeconds"):
                out["timeoutSeconds"] = probe["timeoutSeconds"]
            return out
    return None


def _resolve_port(prober: Json | None, named: dict[str, int], target: int) -> Json | None:
    """Named ports resolved; a probe already on the status port (injected before) dropped."""
    if prober is None or "grpc" in prober:
        return prober
    action = prober.get("httpGet") or prober.get("tcpSocket")
    assert action is not None
    port = action.get("port")
    if isinstance(port, str):  # a named port (Go reads "8080" as a name too)
        if port not in named:
            return None
        action["port"] = named[port]
    elif port is not None and int(port) == target:
        return None
    return prober


def app_probers(pod: pods.Pod, target: int) -> str:
    """ISTIO_KUBE_APP_PROBERS for the pod's containers, "" when there is none."""
    out: dict[str, Json] = {}
    for container in pods.containers(pod, "initContainers") + pods.containers(pod):
        name = str(container.get("name"))
        if name == pods.PROXY:
            continue
        named = {str(p["name"]): int(p["containerPort"]) for p in container.get("ports") or []
                 if p.get("name")}
        paths = urls(name)
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            found = _resolve_port(_prober(copy.deepcopy(container.get(kind))), named, target)
            if found is not None:
                out[paths[kind]] = found
        hooks = container.get("lifecycle")
        if isinstance(hooks, dict):
            for kind in ("preStop", "postStart"):
                found = _resolve_port(_prober(copy.deepcopy(hooks.get(kind)), lifecycle=True),
                                      named, target)
                if found is not None:
                    out[paths[kind]] = found
    if not out:
        return ""
    return json.dumps({k: out[k] for k in sorted(out)}, separators=(",", ":"))


def _rewrite_action(action: Json, url: str, port: int) -> None:
    action["port"] = port
    action["path"] = url
    if action.get("scheme") == "HTTPS":  # kubelet -> HTTP -> agent -> HTTPS -> application
        action["scheme"] = "HTTP"


def _converted(probe: Any, url: str, port: int, *, lifecycle: bool = False) -> Json | None:
    if not isinstance(probe, dict):
        return None
    out = copy.deepcopy(probe)
    if isinstance(out.get("httpGet"), dict):
        _rewrite_action(out["httpGet"], url, port)
        return out
    kinds = ("tcpSocket",) if lifecycle else ("tcpSocket", "grpc")
    for kind in kinds:
        if isinstance(out.get(kind), dict):
            del out[kind]
            out["httpGet"] = {}
            _rewrite_action(out["httpGet"], url, port)
            return out
    return None


def rewrite(pod: pods.Pod, status_port: int) -> None:
    """Point every application probe and lifecycle hook at the agent, in place."""
    for key in ("containers", "initContainers"):
        for container in pods.containers(pod, key):
            if container.get("name") == pods.PROXY:
                continue
            paths = urls(str(container.get("name")))
            for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                converted = _converted(container.get(kind), paths[kind], status_port)
                if converted is not None:
                    container[kind] = converted
            hooks = container.get("lifecycle")
            if isinstance(hooks, dict):
                for kind in ("preStop", "postStart"):
                    converted = _converted(hooks.get(kind), paths[kind], status_port,
                                           lifecycle=True)
                    if converted is not None:
                        hooks[kind] = converted
