"""Pods run from the Pod spec pilotpy's injection webhook returns, as a kubelet would run it,
in the mesh harness's network namespaces:

- the Pod the harness would create (its application container with a port and a readiness
  probe, its service account) goes to pilotpy's webhook as an AdmissionReview, over HTTPS
  verified against the mesh root; the JSON patch of the answer is applied;
- `istio-init`: the real `pilot-agent istio-iptables` with the init container's arguments,
  as root in the pod's namespace (then the harness's guard rules);
- `istio-proxy`: the real pilot-agent with the container's arguments (`$(POD_NAMESPACE)`
  expanded) and environment (`fieldRef` and `resourceFieldRef` resolved as the kubelet
  does), as the container's user, its working directory holding each volume it mounts at the
  mount path: the projected `istio-ca` token, the `istio-ca-root-cert` ConfigMap, the
  downward-API labels and annotations, empty directories.

Only what a container image would hold is the harness's: the Envoy binary and the bootstrap
template, named in the mesh config's defaultConfig, which reaches the pod in PROXY_CONFIG.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import ssl
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pilotpy.inject import quantity
from pilotpy.inject.jsonpatch import apply

Pod = dict[str, Any]
_VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_OPENER_PROXIES = urllib.request.ProxyHandler({})


def pod_object(name: str, namespace: str, labels: Mapping[str, str], account: str,
               app_port: int | None) -> Pod:
    """The pod as its Deployment would create it: the application (a probe on its port),
    or a client that only sleeps."""
    container: dict[str, Any] = {"name": labels.get("app", name), "image": "pilotpy/backend"}
    if app_port is not None:
        container["ports"] = [{"containerPort": app_port, "name": "http", "protocol": "TCP"}]
        container["readinessProbe"] = {"httpGet": {"path": "/get", "port": "http"},
                                       "timeoutSeconds": 3}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"serviceAccountName": account, "containers": [container]}}


def injected_by_webhook(url: str, root_pem: bytes, pod: Pod) -> Pod:
    """What the API server stores after pilotpy's webhook answered."""
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": f"mesh-{pod['metadata']['name']}",
                          "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "namespace": pod["metadata"]["namespace"], "operation": "CREATE",
                          "object": pod}}
    request = urllib.request.Request(url, data=json.dumps(review).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    https = urllib.request.HTTPSHandler(
        context=ssl.create_default_context(cadata=root_pem.decode()))
    with urllib.request.build_opener(_OPENER_PROXIES, https).open(request,
                                                                 timeout=10) as answer:
        response = json.loads(answer.read())["response"]
    if not response.get("allowed") or "patch" not in response:
        raise RuntimeError(f"pod {pod['metadata']['name']} not injected: {response}")
    injected: Pod = apply(pod, json.loads(base64.b64decode(response["patch"])))
    return injected


def container(pod: Pod, name: str) -> dict[str, Any]:
    for key in ("initContainers", "containers"):
        for found in pod["spec"].get(key) or []:
            if found["name"] == name:
                return dict(found)
    raise KeyError(f"no container {name} in the injected pod")


def _field(pod: Pod, path: str, ip: str, host_ip: str) -> str:
    values = {"metadata.name": pod["metadata"]["name"],
              "metadata.namespace": pod["metadata"]["namespace"],
              "status.podIP": ip, "status.hostIP": host_ip,
              "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
              "spec.nodeName": pod["spec"].get("nodeName", "")}
    return str(values[path])


def _resource(spec: Mapping[str, Any], name: str) -> str:
    """A resourceFieldRef with divisor 1: cores rounded up, bytes (the kubelet's answer)."""
    section, _, kind = name.partition(".")
    amount = ((spec.get("resources") or {}).get(section) or {}).get(kind)
    if amount is None:
        return "0"
    return str(math.ceil(quantity.value(str(amount))))


def environment(pod: Pod, spec: Mapping[str, Any], ip: str, host_ip: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in spec.get("env") or []:
        source = var.get("valueFrom")
        if source is None:
            value = str(var.get("value", ""))
        elif "fieldRef" in source:
            value = _field(pod, source["fieldRef"]["fieldPath"], ip, host_ip)
        else:
            value = _resource(spec, source["resourceFieldRef"]["resource"])
        env[var["name"]] = expand(value, env)
    return env


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) references to the container's environment."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def _downward(values: Mapping[str, str]) -> str:
    return "".join(f'{k}="{json.dumps(v)[1:-1]}"\n' for k, v in sorted(values.items()))


def lay_out_volumes(home: Path, pod: Pod, spec: Mapping[str, Any], *, token: str,
                    root_pem: bytes, uid: int, gid: int) -> None:
    """Each volume the container mounts, as files under `home` at its mount path."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    for mount in spec.get("volumeMounts") or []:
        target = home / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        volume = volumes[mount["name"]]
        if "configMap" in volume and volume["configMap"]["name"] == "istio-ca-root-cert":
            (target / "root-cert.pem").write_bytes(root_pem)
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                account_token = source["serviceAccountToken"]
                assert account_token["audience"] == "istio-ca", account_token
                (target / account_token["path"]).write_text(token)
        elif "downwardAPI" in volume:
            meta = pod["metadata"]
            for item in volume["downwardAPI"]["items"]:
                field = item["fieldRef"]["fieldPath"].removeprefix("metadata.")
                (target / item["path"]).write_text(_downward(meta.get(field) or {}))
    for path in [home, *home.rglob("*")]:
        os.chown(path, uid, gid)
