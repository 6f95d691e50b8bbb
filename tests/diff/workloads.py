"""What the controllers and kubelets of a real cluster would add to a sample's manifests: one
running Pod per Deployment (its template's labels and container ports, an address of its
own) and, per Service with a selector, the EndpointSlice Kubernetes' controller would write.

Istio's samples ship Deployments and Services only; the API server of the tier runs no
controller manager, so without this they would have no endpoints and no workloads for
sidecars to be."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

POD_SUBNET = "10.244.{block}.{host}"


@dataclass(frozen=True)
class Workload:
    """A Pod made for a Deployment: the sidecar identity a case can connect as."""

    deployment: str
    pod: str
    namespace: str
    ip: str
    labels: dict[str, str]


# What the sidecar injector adds to a Pod's labels (istiod and pilotpy send endpoints of such
# Pods with `tlsMode: istio`, which auto mTLS reads).
INJECTED_LABELS = {"security.istio.io/tlsMode": "istio"}


def _pods(docs: list[dict[str, Any]], block: int,
          injected: bool) -> Iterator[tuple[dict[str, Any], Workload]]:
    host = 10
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        metadata = doc["metadata"]
        namespace = metadata.get("namespace", "default")
        template = doc.get("spec", {}).get("template", {})
        labels = {str(k): str(v) for k, v in
                  (template.get("metadata", {}).get("labels") or {}).items()}
        if injected:
            labels.update(INJECTED_LABELS)
        spec = copy.deepcopy(template.get("spec") or {})
        containers = [{"name": c.get("name", "app"), "image": c.get("image", "app"),
                       "ports": c.get("ports", [])} for c in spec.get("containers", [])]
        name = f"{metadata['name']}-0"
        ip = POD_SUBNET.format(block=block, host=host)
        host += 1
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace, "labels": labels},
               "spec": {"containers": containers or [{"name": "app", "image": "app"}],
                        "serviceAccountName": spec.get("serviceAccountName", "default")},
               "status": {"podIP": ip}}
        yield pod, Workload(metadata["name"], name, namespace, ip, labels)


def _target_port(port: dict[str, Any], pod: dict[str, Any]) -> int | None:
    target = port.get("targetPort", port["port"])
    if isinstance(target, int):
        return target
    for container in pod["spec"]["containers"]:
        for declared in container.get("ports") or []:
            if declared.get("name") == target:
                return int(declared["containerPort"])
    return None


def _slices(docs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if doc.get("kind") != "Service":
            continue
        metadata = doc["metadata"]
        namespace = metadata.get("namespace", "default")
        selector = doc.get("spec", {}).get("selector") or {}
        if not selector:
            continue
        selected = [p for p in pods if p["metadata"]["namespace"] == namespace and all(
            p["metadata"]["labels"].get(k) == v for k, v in selector.items())]
        # One slice per distinct set of target ports, as the controller groups endpoints.
        groups: dict[tuple[tuple[str, int], ...], list[dict[str, Any]]] = {}
        for pod in selected:
            ports = []
            for port in doc["spec"].get("ports") or []:
                number = _target_port(port, pod)
                if number is not None:
                    ports.append((port.get("name", ""), number))
            groups.setdefault(tuple(ports), []).append(pod)
        for index, (slice_ports, members) in enumerate(sorted(groups.items())):
            yield {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{metadata['name']}-{index}", "namespace": namespace,
                             "labels": {"kubernetes.io/service-name": metadata["name"]}},
                "addressType": "IPv4",
                "ports": [{"name": name, "port": number, "protocol": "TCP"}
                          for name, number in slice_ports],
                "endpoints": [{"addresses": [p["status"]["podIP"]],
                               "conditions": {"ready": True},
                               "targetRef": {"kind": "Pod", "namespace": namespace,
                                             "name": p["metadata"]["name"]}}
                              for p in members],
            }


def running(docs: list[dict[str, Any]], block: int, *, injected: bool = False
            ) -> tuple[list[dict[str, Any]], list[Workload]]:
    """The Pods and EndpointSlices for `docs`' Deployments and Services (pod addresses in
    10.244.<block>.0/24), and the workloads made; `injected`: Pods with pilot-agent."""
    made = list(_pods(docs, block, injected))
    pods = [pod for pod, _ in made]
    return [*pods, *_slices(docs, pods)], [w for _, w in made]
