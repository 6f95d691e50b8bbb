"""One pod in, the injected pod and its JSON patch out, in istiod's steps (injectPod):

1. whether the pod gets a proxy at all (pods.injection_required; a pod injected before is
   left as it is);
2. its annotations validated (a bad value refuses the pod, naming the annotation);
3. each selected template rendered from the pod and merged into it;
4. containers the pod defines itself under a template's names (the istio/gateway chart's
   `istio-proxy` with `image: auto`) applied back over the template's, and recorded in
   `proxy.istio.io/overrides`;
5. the cluster's URL parameters, metrics merging, probe rewriting, the status annotation,
   the container order;
6. the patch from the pod as sent to the pod as injected.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pilotpy.inject import annotations as names
from pilotpy.inject import gateway, jsonpatch, pods, probes, prometheus, proxyconfig, sidecar
from pilotpy.inject.inputs import TemplateInput
from pilotpy.inject.merge import canonical_resources, strategic_merge
from pilotpy.inject.policy import TEMPLATES, InjectionPolicy
from pilotpy.inject.quantity import QuantityError
from pilotpy.inject.values import InjectionValues
from pilotpy.mesh import MeshConfig

Json = dict[str, Any]
AUTO_IMAGE = "auto"
NETWORK_LABEL = "topology.istio.io/network"
RENDERERS = {"sidecar": sidecar.render, "gateway": gateway.render}
assert set(RENDERERS) == set(TEMPLATES)


class InjectionRefused(ValueError):
    """The pod cannot be injected as it is; the message says why (admission refusal)."""


@dataclass(frozen=True)
class InjectorConfig:
    """What injection depends on besides the pod."""

    values: InjectionValues = field(default_factory=InjectionValues)
    policy: InjectionPolicy = field(default_factory=InjectionPolicy)
    mesh: MeshConfig = field(default_factory=MeshConfig)

    @property
    def mesh_proxy_config(self) -> Json:
        found = json.loads(self.mesh.default_proxy_config or "{}")
        return found if isinstance(found, dict) else {}


@dataclass
class Injection:
    pod: Json  # the injected pod (the pod as sent when not injected)
    patch: list[Json]
    injected: bool
    reason: str
    warnings: list[str] = field(default_factory=list)


def inject(pod: Mapping[str, Any], config: InjectorConfig, *, native: bool,
           namespace: str = "", proxy_envs: Mapping[str, str] | None = None) -> Injection:
    """Inject `pod` (as the API server sends it; `namespace` fills an empty one).
    `native`: the cluster runs native sidecars. `proxy_envs`: the webhook path's
    `/inject/cluster/<id>/net/<network>` settings. Raises InjectionRefused."""
    original = copy.deepcopy(dict(pod))
    meta = original.setdefault("metadata", {})
    meta.pop("managedFields", None)  # never read, and possibly huge
    if not meta.get("namespace") and namespace:
        meta["namespace"] = namespace
    decision = pods.injection_required(original, config.policy)
    warnings = [decision.warning] if decision.warning else []
    if not decision.inject:
        return Injection(original, [], False, decision.reason, warnings)
    errors = names.invalid_annotations(pods.annotations_of(original))
    if errors:
        raise InjectionRefused("; ".join(errors))
    try:
        injected = _inject(original, config, native, dict(proxy_envs or {}), warnings)
    except (sidecar.TemplateError, prometheus.PrometheusError, QuantityError,
            proxyconfig.ProxyConfigError) as err:
        raise InjectionRefused(str(err)) from None
    return Injection(injected, jsonpatch.diff(original, injected), True, decision.reason,
                     warnings)


def _inject(original: Json, config: InjectorConfig, native: bool, proxy_envs: dict[str, str],
            warnings: list[str]) -> Json:
    values, mesh = config.values, config.mesh
    pod_annotations = pods.annotations_of(original)
    proxy_config = proxyconfig.effective(config.mesh_proxy_config,
                                         pod_annotations.get(names.PROXY_CONFIG))
    mesh_status_port = proxyconfig.status_port(
        proxyconfig.merge(proxyconfig.DEFAULTS, config.mesh_proxy_config))
    _cluster_and_network(original, values, proxy_envs)
    image = pod_annotations.get(names.PROXY_IMAGE)
    if image is not None and "/" not in image:
        warnings.append(f"annotation {names.PROXY_IMAGE}: {image!r} is not a full image "
                        "reference (no '/'), so the configured image is used, as istiod does")
    inp = TemplateInput(original, pods.workload(original), values, proxy_config, mesh, native)
    merged: Json = original
    template_pod: Json = {}
    for name in _templates(pod_annotations, config.policy):
        rendered = RENDERERS[name](inp)
        template_pod = strategic_merge(template_pod, rendered)
        merged = _native_move(merged, template_pod, native)
        merged = strategic_merge(merged, rendered)
    merged = _reapply_overrides(merged, original, template_pod, proxy_config)
    _post_process(merged, template_pod, config, proxy_config, proxy_envs,
                  status_port=mesh_status_port)
    return merged


def _cluster_and_network(pod: Json, values: InjectionValues, envs: dict[str, str]) -> None:
    """istiod's extractClusterAndNetwork: the values', then the webhook path's, then the
    pod's network label; set ones end up last in the proxy's environment."""
    cluster = envs.get("ISTIO_META_CLUSTER_ID") or values.cluster_name
    network = envs.get("ISTIO_META_NETWORK") or values.network
    network = pods.labels_of(pod).get(NETWORK_LABEL, network)
    if cluster:
        envs["ISTIO_META_CLUSTER_ID"] = cluster
    if network:
        envs["ISTIO_META_NETWORK"] = network


def _templates(pod_annotations: Mapping[str, str], policy: InjectionPolicy) -> list[str]:
    if names.TEMPLATES in pod_annotations:
        wanted = [t.strip() for t in pod_annotations[names.TEMPLATES].split(",")]
    else:
        wanted = list(policy.default_templates)
    resolved = [t for name in wanted for t in policy.aliases.get(name, (name,))]
    for name in resolved:
        if name not in RENDERERS:
            raise InjectionRefused(
                f"annotation {names.TEMPLATES}: requested template {name!r} not found; have "
                + ", ".join(TEMPLATES))
    return resolved


def _overrides(pod: Mapping[str, Any]) -> Json:
    text = pods.annotations_of(dict(pod)).get(names.OVERRIDES)
    if text is None:
        return {}
    try:
        found = json.loads(text)
    except ValueError as err:
        raise InjectionRefused(f"annotation {names.OVERRIDES}: not JSON: {err}") from None
    if not isinstance(found, dict):
        raise InjectionRefused(f"annotation {names.OVERRIDES}: expected a JSON object")
    return found


def _native_move(merged: Json, template_pod: Json, native: bool) -> Json:
    """With native sidecars the template's istio-proxy is an init container: the pod's own
    istio-proxy moves there too before the merge."""
    value = pods.annotations_of(merged).get(names.NATIVE_SIDECAR)
    native = True if value == "true" else False if value == "false" else native
    if not native or pods.find(pods.containers(template_pod, "initContainers"),
                               pods.PROXY) is None:
        return merged
    own = pods.find(pods.containers(merged), pods.PROXY)
    if own is None:
        return merged
    out = copy.deepcopy(merged)
    spec = out["spec"]
    spec["containers"] = [c for c in spec["containers"] if c.get("name") != pods.PROXY]
    spec.setdefault("initContainers", []).append(copy.deepcopy(own))
    return out


def _overlay(container: Json) -> Json:
    """The pod's container as Go writes it back: no image when `auto`, no empty lists or
    maps, canonical quantities."""
    overlay: Json = _without_empty(container)
    if overlay.get("image") in (AUTO_IMAGE, ""):
        overlay.pop("image")
    canonical_resources(overlay)
    return overlay


def _without_empty(value: Any) -> Any:
    if isinstance(value, Mapping):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None and v not in ([], {})}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return copy.deepcopy(value)


def _reapply_overrides(final: Json, original: Json, template_pod: Json,
                       proxy_config: Mapping[str, Any]) -> Json:
    """istiod's reapplyOverwrittenContainers: a container the pod defines under a template's
    name wins over the template's, field by field (its image only if not `auto`)."""
    existing = _overrides(original)
    kept: dict[str, list[Json]] = {"containers": [], "initContainers": []}
    for key in ("containers", "initContainers"):
        for container in pods.containers(template_pod, key):
            name = container.get("name")
            # The pod's own: given in proxy.istio.io/overrides, else in the pod (an init
            # container's also among the containers, as native sidecars move it).
            match = pods.find(existing.get(key) or [], str(name)) \
                or pods.find(pods.containers(original), str(name))
            if match is None and key == "initContainers":
                match = pods.find(pods.containers(original, key), str(name))
            if match is None:
                continue
            overlay = _overlay(match)
            kept[key].append(overlay)
            final = strategic_merge(final, {"spec": {key: [overlay]}})
    if kept["containers"] or kept["initContainers"]:
        final.setdefault("metadata", {}).setdefault("annotations", {})[names.OVERRIDES] = \
            json.dumps({k: v for k, v in kept.items() if v}, separators=(",", ":"))
    _adjust_init_user(final, original, proxy_config)
    return final


def _adjust_init_user(final: Json, original: Json, proxy_config: Mapping[str, Any]) -> None:
    """A user-set runAsUser on istio-proxy: istio-init's `-u` follows it (TPROXY keeps the
    proxy at uid 0)."""
    own = pods.find_proxy(original)
    security = (own or {}).get("securityContext") or {}
    if own is None or (security.get("runAsUser") is None
                       and security.get("runAsGroup") is None):
        return
    init = pods.find(pods.containers(final, "initContainers"), pods.INIT)
    if init is None:
        return
    tproxy = proxyconfig.interception_mode(proxy_config) == "TPROXY" or \
        pods.annotations_of(final).get(names.INTERCEPTION_MODE) == "TPROXY"
    if tproxy and security.get("runAsUser") is not None:
        proxy = pods.find_proxy(final)
        if proxy is not None:
            proxy.setdefault("securityContext", {})["runAsUser"] = 0
    user = security.get("runAsUser")
    if not user:
        return
    args = init.get("args") or []
    for i, arg in enumerate(args[:-1]):
        if arg == "-u":
            args[i + 1] = str(user)
            return


def _post_process(pod: Json, template_pod: Json, config: InjectorConfig,
                  proxy_config: Mapping[str, Any], proxy_envs: Mapping[str, str], *,
                  status_port: int) -> None:
    meta = pod.setdefault("metadata", {})
    annotations = meta.setdefault("annotations", {})
    meta.setdefault("labels", {})
    proxy = pods.find_proxy(pod)
    if proxy is not None and proxy_envs:  # istiod's overwriteClusterInfo
        proxy["env"] = [e for e in proxy.get("env") or [] if e.get("name") not in proxy_envs]
        proxy["env"] += [{"name": k, "value": proxy_envs[k]} for k in sorted(proxy_envs)]
    prometheus.apply(pod, status_port, config.mesh.enable_prometheus_merge)
    prometheus.apply_secure_port(pod)
    if proxy is not None and probes.should_rewrite(annotations,
                                                   config.values.rewrite_app_http_probe):
        found = probes.app_probers(pod, status_port)
        if found:
            proxy["env"] = [*(proxy.get("env") or []),
                            {"name": probes.PROBERS_ENV, "value": found}]
        try:
            rewrite_port = int(annotations.get(names.STATUS_PORT, status_port))
        except ValueError:
            rewrite_port = 0
        probes.rewrite(pod, rewrite_port)
    if "ISTIO_META_NETWORK" in proxy_envs:
        meta["labels"][NETWORK_LABEL] = proxy_envs["ISTIO_META_NETWORK"]
    annotations[names.STATUS] = _status_annotation(template_pod, config.values)
    annotations.update(config.policy.injected_annotations)
    _reorder(pod, config, proxy_config)
    for key in ("containers", "initContainers"):
        for container in pods.containers(pod, key):
            canonical_resources(container)


def _status_annotation(template_pod: Json, values: InjectionValues) -> str:
    spec = pods.spec(template_pod)

    def names_of(key: str) -> list[str] | None:
        found = [str(item.get("name")) for item in spec.get(key) or []]
        return found or None

    return json.dumps({"initContainers": names_of("initContainers"),
                       "containers": names_of("containers"), "volumes": names_of("volumes"),
                       "imagePullSecrets": names_of("imagePullSecrets"),
                       "revision": values.effective_revision}, separators=(",", ":"))


def _move(items: list[Json], name: str, *, first: bool) -> list[Json]:
    found = [c for c in items if c.get("name") == name]
    if not found:
        return items
    rest = [c for c in items if c.get("name") != name]
    return [found[-1], *rest] if first else [*rest, found[-1]]


def _reorder(pod: Json, config: InjectorConfig, proxy_config: Mapping[str, Any]) -> None:
    """istio-proxy last among the containers (first when the application waits for it), so
    kubectl exec and logs pick the application; istio-init last of the init containers, or,
    with a native sidecar, istio-init then istio-proxy first."""
    spec = pod.setdefault("spec", {})
    hold = proxyconfig.hold_application(proxy_config) or \
        config.values.proxy.hold_application_until_proxy_starts
    if "containers" in spec:
        spec["containers"] = _move(pods.containers(pod), pods.PROXY, first=hold)
    init = pods.containers(pod, "initContainers")
    if not init:
        return
    if pods.find(init, pods.PROXY) is not None:
        for name in (pods.ENABLE_CORE_DUMP, pods.PROXY, pods.VALIDATION, pods.INIT):
            init = _move(init, name, first=True)
    else:
        init = _move(init, pods.VALIDATION, first=True)
        init = _move(init, pods.INIT, first=False)
        init = _move(init, pods.ENABLE_CORE_DUMP, first=False)
    spec["initContainers"] = init
