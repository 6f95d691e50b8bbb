"""Kubernetes Ingress and IngressClass applied through a real kube-apiserver reach a real Envoy
gateway: routes by path to two Services (one port by name), the class by ingressClassName and
by annotation, another controller's class ignored, and an IngressClass deletion pushed."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotpy.local.stack import eventually
from tests.kube.support import HTTPBIN_IPS, KubeMesh

pytestmark = pytest.mark.e2e


def version_service(version: str, port: int) -> list[dict[str, Any]]:
    """A Service selecting one httpbin version, and the slice its controller would write."""
    name = f"httpbin-{version}-svc"
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": "default"},
         "spec": {"selector": {"app": "httpbin", "version": version},
                  "ports": [{"name": "http", "port": 80, "targetPort": port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{name}-abc", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4",
         "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
         "endpoints": [{"addresses": [HTTPBIN_IPS[version]], "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "namespace": "default",
                                      "name": f"httpbin-{version}"}}]},
    ]


INGRESSES = """\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: istio}
spec: {controller: istio.io/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: versions, namespace: default}
spec:
  ingressClassName: istio
  rules:
  - host: versions.local
    http:
      paths:
      - path: /v1
        pathType: Prefix
        backend: {service: {name: httpbin-v1-svc, port: {name: http}}}
      - path: /v2
        pathType: Prefix
        backend: {service: {name: httpbin-v2-svc, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: annotated
  namespace: default
  annotations: {kubernetes.io/ingress.class: istio}
spec:
  rules:
  - host: annotated.local
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: httpbin-service, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: nginx-only, namespace: default}
spec:
  ingressClassName: nginx
  rules:
  - host: nginx.local
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: httpbin-service, port: {number: 80}}}
"""


def answer(mesh: KubeMesh, host: str, path: str) -> str:
    status, headers, _ = mesh.get(host, path)
    return headers.get("x-backend-version", "?") if status == 200 else str(status)


async def test_ingress_through_the_api_server(mesh: KubeMesh) -> None:
    mesh.write_registry()
    extra = [*version_service("v1", mesh.backend_port), *version_service("v2", mesh.backend_port)]
    ingress_docs = [d for d in yaml.safe_load_all(INGRESSES) if d]
    # KubeMesh.stop deletes every applied object: the API server outlives this test.
    for doc in extra:
        mesh.apply_doc(doc)
    await mesh.start()
    # Nothing routes the host before its Ingress (another test's Gateway may listen).
    await eventually(lambda: answer(mesh, "versions.local", "/v1/headers") in ("0", "404"),
                     "versions.local unrouted before any Ingress")
    for doc in ingress_docs:
        mesh.apply_doc(doc)
    await eventually(lambda: answer(mesh, "versions.local", "/v1/headers") == "v1",
                     "versions.local/v1 served", timeout=20)
    expected = {
        ("versions.local", "/v1/headers"): "v1",  # port by name, through the Service
        ("versions.local", "/v2/headers"): "v2",
        ("versions.local", "/v3/headers"): "404",
        ("nginx.local", "/headers"): "404",
    }
    assert {key: answer(mesh, *key) for key in expected} == expected
    assert answer(mesh, "annotated.local", "/headers") in ("v1", "v2")

    # Without istio's IngressClass, ingressClassName no longer selects istio (STRICT).
    mesh.admin.delete(ingress_docs[0])
    await eventually(lambda: answer(mesh, "versions.local", "/v1/headers") == "404",
                     "versions.local dropped with its IngressClass", timeout=20)
    assert answer(mesh, "annotated.local", "/headers") in ("v1", "v2")

    envoy = mesh.stack.envoy if mesh.stack is not None else None
    assert envoy is not None
    assert {k: v for k, v in envoy.stats("update_rejected$").items() if v} == {}
    assert sum(mesh.plane.xds.stats.rejects.values()) == 0
