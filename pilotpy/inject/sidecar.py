"""The `sidecar` template (istio-discovery's files/injection-template.yaml) as a partial Pod:
istio-init with istio-iptables' arguments (unless interception is NONE), istio-proxy running
`pilot-agent proxy sidecar`, their volumes, the canonical labels and istio.io/rev. Where the
cluster runs native sidecars, istio-proxy is an init container that keeps running
(`restartPolicy: Always`) and drains on preStop, as istiod decides.

Istio's CNI plugin (istio-validation instead of istio-init) is not rendered: values asking for
it are refused when read (pilotpy/inject/values.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pilotpy.inject import annotations as names
from pilotpy.inject import pods, proxy_parts
from pilotpy.inject.inputs import PROXY_GID, PROXY_UID, TemplateInput
from pilotpy.inject.proxyconfig import hold_application, proxy_metadata
from pilotpy.inject.values import go_string

Json = dict[str, Any]
RESOURCE_ANNOTATIONS = ((names.PROXY_CPU, "requests", "cpu"),
                        (names.PROXY_MEMORY, "requests", "memory"),
                        (names.PROXY_CPU_LIMIT, "limits", "cpu"),
                        (names.PROXY_MEMORY_LIMIT, "limits", "memory"))


class TemplateError(ValueError):
    """The template cannot be rendered for this pod (a bad annotation value)."""


def resources(inp: TemplateInput) -> Json | None:
    """The proxy's resources: the proxyCPU/proxyMemory(Limit) annotations when any is set
    (and then only those), else values.global.proxy.resources."""
    given = [(s, k, inp.annotations[a]) for a, s, k in RESOURCE_ANNOTATIONS
             if a in inp.annotations]
    if given:
        out: Json = {}
        for section, kind, value in given:
            out.setdefault(section, {})[kind] = value
        return out
    configured = _without_nulls(inp.values.proxy.resources)
    return dict(configured) if configured else None


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        kept = {k: _without_nulls(v) for k, v in value.items()}
        kept = {k: v for k, v in kept.items() if v is not None}
        return kept or None
    return value


def _tproxy(inp: TemplateInput) -> bool:
    return inp.interception_mode == "TPROXY"


def init_container(inp: TemplateInput) -> Json:
    values = inp.values
    proxy = values.proxy
    mesh = inp.mesh
    status_port = inp.annotation(names.STATUS_PORT, proxy.status_port)
    excluded = exclude_inbound_port(
        status_port, inp.annotation(names.EXCLUDE_INBOUND_PORTS, proxy.exclude_inbound_ports))
    args = ["istio-iptables",
            "-p", str(mesh.proxy_listen_port or 15001),
            "-z", str(mesh.proxy_inbound_listen_port or 15006),
            "-u", "1337" if _tproxy(inp) else str(PROXY_UID),
            "-m", inp.interception_mode,
            "-i", inp.annotation(names.INCLUDE_OUTBOUND_IP_RANGES, proxy.include_ip_ranges),
            "-x", inp.annotation(names.EXCLUDE_OUTBOUND_IP_RANGES, proxy.exclude_ip_ranges),
            "-b", inp.annotation(names.INCLUDE_INBOUND_PORTS, proxy.include_inbound_ports),
            "-d", f"15090,15021,{excluded}" if excluded else "15090,15021"]
    if names.INCLUDE_OUTBOUND_PORTS in inp.annotations or proxy.include_outbound_ports:
        args += ["-q", inp.annotation(names.INCLUDE_OUTBOUND_PORTS,
                                      proxy.include_outbound_ports)]
    if names.EXCLUDE_OUTBOUND_PORTS in inp.annotations or proxy.exclude_outbound_ports:
        args += ["-o", inp.annotation(names.EXCLUDE_OUTBOUND_PORTS,
                                      proxy.exclude_outbound_ports)]
    if names.REROUTE_VIRTUAL_INTERFACES in inp.annotations:
        args += ["-k", inp.annotations[names.REROUTE_VIRTUAL_INTERFACES]]
    elif names.KUBEVIRT_INTERFACES in inp.annotations:
        args += ["-k", inp.annotations[names.KUBEVIRT_INTERFACES]]
    if names.EXCLUDE_INTERFACES in inp.annotations:
        args += ["-c", inp.annotations[names.EXCLUDE_INTERFACES]]
    args.append("--log_output_level="
                + inp.annotation(names.AGENT_LOG_LEVEL, values.logging_level))
    if values.log_as_json:
        args.append("--log_as_json")
    if values.force_apply_iptables:
        args.append("--force-apply")
    if values.native_nftables:
        args.append("--native-nftables")
    container: Json = {"name": pods.INIT, "image": inp.proxy_image(init=True), "args": args}
    proxy_parts.with_pull_policy(container, inp)
    metadata = proxy_metadata(inp.proxy_config)
    if metadata:
        container["env"] = [{"name": k, "value": v} for k, v in metadata.items()]
    container["resources"] = resources(inp)
    security: Json = {
        "allowPrivilegeEscalation": proxy.privileged, "privileged": proxy.privileged,
        "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        "readOnlyRootFilesystem": False, "runAsGroup": 0, "runAsNonRoot": False,
        "runAsUser": 0}
    if proxy.seccomp_profile:
        security["seccompProfile"] = dict(proxy.seccomp_profile)
    container["securityContext"] = security
    return container


def exclude_inbound_port(port: str, excluded: str) -> str:
    """istiod's excludeInboundPort: the status port added to the excluded inbound ports."""
    port = port.strip()
    if not port or port == "0":
        return excluded
    kept = []
    for existing in excluded.split(","):
        if existing == port:
            return excluded
        if existing.strip():
            kept.append(existing.strip())
    return ",".join([*kept, port])


def proxy_container(inp: TemplateInput, native: bool) -> Json:
    values = inp.values
    proxy = values.proxy
    container: Json = {"name": pods.PROXY, "image": inp.proxy_image()}
    if native:
        container["restartPolicy"] = "Always"
    container["ports"] = [{"containerPort": 15090, "protocol": "TCP",
                           "name": "http-envoy-prom"}]
    container["args"] = proxy_parts.proxy_args(inp, "sidecar")
    hold = (hold_application(inp.proxy_config) or proxy.hold_application_until_proxy_starts) \
        and not native
    status_port = inp.annotation(names.STATUS_PORT, proxy.status_port)
    if proxy.lifecycle:
        container["lifecycle"] = dict(proxy.lifecycle)
    elif hold:
        container["lifecycle"] = {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}
    elif native:
        container["lifecycle"] = {"preStop": {"exec": {"command": [
            "pilot-agent", "request", f"--debug-port={status_port}", "POST", "drain"]}}}
    container["env"] = proxy_parts.proxy_env(inp, gateway=False)
    proxy_parts.with_pull_policy(container, inp)
    if status_port != "0":
        if proxy.startup_probe_enabled:
            container["startupProbe"] = {
                "httpGet": {"path": "/healthz/ready", "port": 15021},
                "periodSeconds": 1, "timeoutSeconds": 3,
                "failureThreshold": proxy.startup_probe_failure_threshold}
        container["readinessProbe"] = proxy_parts.readiness_probe(inp, gateway=False)
    container["securityContext"] = _proxy_security(inp)
    container["resources"] = resources(inp)
    mounts = proxy_parts.volume_mounts(inp, gateway=False)
    mounts += [{"name": name, **mount} for name, mount in
               _user_volumes(inp, names.USER_VOLUME_MOUNT).items()]
    container["volumeMounts"] = mounts
    return container


def _proxy_security(inp: TemplateInput) -> Json:
    proxy = inp.values.proxy
    security: Json
    if proxy_metadata(inp.proxy_config).get("IPTABLES_TRACE_LOGGING") == "true":
        security = {"allowPrivilegeEscalation": True,
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                    "privileged": True, "readOnlyRootFilesystem": True,
                    "runAsGroup": PROXY_GID, "runAsNonRoot": False, "runAsUser": 0}
    else:
        tproxy = _tproxy(inp)
        bind = inp.annotation(names.CAP_NET_BIND_SERVICE,
                              go_string(proxy.cap_net_bind_service)) == "true"
        add = (["NET_ADMIN"] if tproxy else []) + (["NET_BIND_SERVICE"] if bind else [])
        capabilities: Json = {"add": add, "drop": ["ALL"]} if add else {"drop": ["ALL"]}
        security = {"allowPrivilegeEscalation": proxy.privileged,
                    "capabilities": capabilities, "privileged": proxy.privileged,
                    "readOnlyRootFilesystem": True}
        if tproxy or bind:
            security.update(runAsNonRoot=False, runAsUser=0, runAsGroup=1337)
        else:
            security.update(runAsNonRoot=True, runAsUser=PROXY_UID, runAsGroup=PROXY_GID)
    if proxy.seccomp_profile:
        security["seccompProfile"] = dict(proxy.seccomp_profile)
    return security


def _user_volumes(inp: TemplateInput, annotation: str) -> dict[str, Json]:
    """sidecar.istio.io/userVolume(Mount): a JSON object of names to volumes (mounts)."""
    text = inp.annotations.get(annotation)
    if text is None:
        return {}
    try:
        found = json.loads(text)
    except ValueError as err:
        raise TemplateError(f"invalid value for annotation '{annotation}': not JSON: "
                            f"{err}") from None
    if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
        raise TemplateError(f"invalid value for annotation '{annotation}': expected a JSON "
                            "object of names to objects")
    return {k: found[k] for k in sorted(found)}


def render(inp: TemplateInput) -> Json:
    """The `sidecar` template for one pod."""
    native = inp.native_sidecar
    mode = inp.interception_mode
    labels = {"security.istio.io/tlsMode":
              inp.labels.get("security.istio.io/tlsMode") or "istio"}
    if proxy_metadata(inp.proxy_config).get("ISTIO_META_ENABLE_HBONE") == "true":
        labels["networking.istio.io/tunnel"] = \
            inp.labels.get("networking.istio.io/tunnel") or "http"
    labels.update(proxy_parts.canonical_labels(inp, gateway=False))
    init: list[Json] = [init_container(inp)] if mode != "NONE" else []
    proxy = proxy_container(inp, native)
    spec: Json = {"initContainers": [*init, proxy] if native else init}
    if not native:
        spec["containers"] = [proxy]
    volumes = proxy_parts.volumes(inp, gateway=False)
    volumes += [{"name": name, **volume} for name, volume in
                _user_volumes(inp, names.USER_VOLUME).items()]
    spec["volumes"] = volumes
    secrets = proxy_parts.image_pull_secrets(inp)
    if secrets:
        spec["imagePullSecrets"] = secrets
    return {"metadata": {"labels": labels, "annotations": proxy_parts.pod_annotations(inp)},
            "spec": spec}
