"""The `gateway` template (istio-discovery's files/gateway-injection-template.yaml), chosen
with `inject.istio.io/templates: gateway`: the istio-proxy container of a gateway pod
(`pilot-agent proxy router`), no init container and no capture, the pod allowed to bind
ports below 1024. The pod's own istio-proxy container (the istio/gateway chart's, with
`image: auto`) is applied over it afterwards, as istiod does."""

from __future__ import annotations

from typing import Any

from pilotpy.inject import pods, proxy_parts
from pilotpy.inject.inputs import PROXY_GID, PROXY_UID, TemplateInput

Json = dict[str, Any]
UNPRIVILEGED_PORTS = {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start",
                                   "value": "0"}]}


def render(inp: TemplateInput) -> Json:
    proxy = inp.values.proxy
    container: Json = {
        "name": pods.PROXY, "image": inp.proxy_image(),
        "ports": [{"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}],
        "args": proxy_parts.proxy_args(inp, "router"),
    }
    if proxy.lifecycle:
        container["lifecycle"] = dict(proxy.lifecycle)
    container["securityContext"] = {"runAsUser": PROXY_UID, "runAsGroup": PROXY_GID}
    container["env"] = proxy_parts.proxy_env(inp, gateway=True)
    proxy_parts.with_pull_policy(container, inp)
    container["readinessProbe"] = proxy_parts.readiness_probe(inp, gateway=True)
    container["volumeMounts"] = proxy_parts.volume_mounts(inp, gateway=True)
    spec: Json = {
        "securityContext": dict(inp.values.gateway_security_context) or UNPRIVILEGED_PORTS,
        "containers": [container],
        "volumes": proxy_parts.volumes(inp, gateway=True),
    }
    secrets = proxy_parts.image_pull_secrets(inp)
    if secrets:
        spec["imagePullSecrets"] = secrets
    return {"metadata": {"labels": proxy_parts.canonical_labels(inp, gateway=True),
                         "annotations": proxy_parts.pod_annotations(inp)},
            "spec": spec}
