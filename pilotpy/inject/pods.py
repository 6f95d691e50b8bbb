"""Reading a Pod as the injector needs it: its labels and annotations, its containers, the
workload that owns it (istiod's GetDeployMetaFromPod: a ReplicaSet's pod belongs to its
Deployment, a Job's to its CronJob), and whether it gets a proxy at all (injectRequired)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilotpy.inject import annotations as names
from pilotpy.inject.policy import InjectionPolicy

Pod = dict[str, Any]
PROXY = "istio-proxy"
INIT = "istio-init"
VALIDATION = "istio-validation"
ENABLE_CORE_DUMP = "enable-core-dump"
# Namespaces istiod never injects into (pkg/kube/inject/initializer.go).
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease",
                                "local-path-storage"})
_CRON_JOB = re.compile(r"^(.+)-\d{8,10}$")


def metadata(pod: Pod) -> dict[str, Any]:
    meta = pod.get("metadata")
    return meta if isinstance(meta, dict) else {}


def labels_of(pod: Pod) -> dict[str, str]:
    found = metadata(pod).get("labels")
    return found if isinstance(found, dict) else {}


def annotations_of(pod: Pod) -> dict[str, str]:
    found = metadata(pod).get("annotations")
    return found if isinstance(found, dict) else {}


def spec(pod: Pod) -> dict[str, Any]:
    found = pod.get("spec")
    return found if isinstance(found, dict) else {}


def containers(pod: Pod, key: str = "containers") -> list[dict[str, Any]]:
    found = spec(pod).get(key)
    return found if isinstance(found, list) else []


def find(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((c for c in items if c.get("name") == name), None)


def find_proxy(pod: Pod) -> dict[str, Any] | None:
    """The istio-proxy container, among the containers or (native sidecar) init containers."""
    return find(containers(pod), PROXY) or find(containers(pod, "initContainers"), PROXY)


def display_name(pod: Pod) -> str:
    meta = metadata(pod)
    if meta.get("name"):
        return str(meta["name"])
    if meta.get("generateName"):
        return f"{meta['generateName']}***** (actual name not yet known)"
    return ""


@dataclass(frozen=True)
class Workload:
    """The pod's owner as istiod names it (DeploymentMeta and TypeMeta)."""

    name: str
    namespace: str
    kind: str = "Pod"
    api_version: str = "v1"


def workload(pod: Pod) -> Workload:
    meta = metadata(pod)
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    kind, api_version = "Pod", "v1"
    pod_labels = labels_of(pod)
    if meta.get("generateName"):
        owner = next((r for r in meta.get("ownerReferences") or []
                      if isinstance(r, Mapping) and r.get("controller") is True), None)
        if owner is not None:
            kind, api_version = str(owner.get("kind", "")), str(owner.get("apiVersion", ""))
            owner_name = str(owner.get("name", ""))
            name = owner_name
            template_hash = pod_labels.get("pod-template-hash", "")
            rollout_hash = pod_labels.get("rollouts-pod-template-hash", "")
            if kind == "ReplicaSet" and template_hash and owner_name.endswith(template_hash):
                name, kind = owner_name.removesuffix("-" + template_hash), "Deployment"
            elif kind == "ReplicaSet" and rollout_hash and owner_name.endswith(rollout_hash):
                name, kind = owner_name.removesuffix("-" + rollout_hash), "Rollout"
                api_version = "v1alpha1"
            elif kind == "ReplicationController" and pod_labels.get("deploymentconfig"):
                name, kind = pod_labels["deploymentconfig"], "DeploymentConfig"
            elif kind == "Job" and (cron := _CRON_JOB.match(owner_name)):
                name, kind, api_version = cron.group(1), "CronJob", "batch/v1"
    return Workload(name or str(meta.get("name") or ""), namespace, kind, api_version)


def injection_status(pod: Pod) -> dict[str, Any] | None:
    """The `sidecar.istio.io/status` a previous injection left (None: none, or unreadable)."""
    text = annotations_of(pod).get(names.STATUS)
    if text is None:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


@dataclass(frozen=True)
class Decision:
    inject: bool
    reason: str
    warning: str = ""  # for the admission response: a value the user should fix


def injection_required(pod: Pod, policy: InjectionPolicy) -> Decision:
    """istiod's injectRequired: hostNetwork and system namespaces never, nor a pod injected
    before (left as it is, see docs/istio-proxy.md#differences-from-istiod); the pod's
    `sidecar.istio.io/inject` label (else annotation) "true"/"false" decides; else the
    policy's never- then always-inject selectors; else the policy."""
    if spec(pod).get("hostNetwork") is True:
        return Decision(False, "the pod uses the host's network")
    namespace = str(metadata(pod).get("namespace") or "")
    if namespace in IGNORED_NAMESPACES:
        return Decision(False, f"namespace {namespace} is never injected")
    if injection_status(pod) is not None:
        return Decision(False, f"injected already ({names.STATUS})")
    selector = annotations_of(pod).get(names.INJECT, "")
    where = "annotation"
    if names.INJECT in labels_of(pod):
        selector, where = labels_of(pod)[names.INJECT], "label"
    warning = ""
    if selector == "true":
        return Decision(True, f"{where} {names.INJECT}=true")
    if selector == "false":
        return Decision(False, f"{where} {names.INJECT}=false")
    if selector:
        warning = (f"{where} {names.INJECT}: invalid value {selector!r}; only \"true\" and "
                   "\"false\" are accepted, so the injection policy applies")
    pod_labels = labels_of(pod)
    for never in policy.never_inject:
        if not never.empty and never.matches(pod_labels):
            return Decision(False, "labels match a neverInjectSelector", warning)
    for always in policy.always_inject:
        if not always.empty and always.matches(pod_labels):
            return Decision(True, "labels match an alwaysInjectSelector", warning)
    return Decision(policy.policy == "enabled", f"the injection policy is {policy.policy}",
                    warning)
