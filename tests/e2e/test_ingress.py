"""W3's Kubernetes Ingress through a real Envoy gateway: Ingress YAML in the config directory
(file source), two local backends, requests routed by host and path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilotpy.local.demo import EXAMPLES
from pilotpy.local.envoy import free_port
from pilotpy.local.stack import LocalStack, eventually, http_get

pytestmark = pytest.mark.e2e

BACKENDS = """
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  clusterIP: 10.96.0.20
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: {web}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec:
  clusterIP: 10.96.0.21
  selector: {{app: api}}
  ports: [{{name: http-api, port: 8080, targetPort: {api}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-local
  namespace: shop
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: {web}}}]
endpoints: [{{addresses: [127.0.0.21], conditions: {{ready: true}}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-local
  namespace: shop
  labels: {{kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{{name: http-api, port: {api}}}]
endpoints: [{{addresses: [127.0.0.22], conditions: {{ready: true}}}}]
"""

INGRESSES = """
# By annotation; its TLS block (no Secret anywhere) must not disturb plain HTTP.
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
  annotations: {kubernetes.io/ingress.class: istio}
spec:
  tls:
  - hosts: [web.example.com]
    secretName: web-credential
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http-api}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: api, port: {number: 8080}}}}
---
# By ingressClassName, through istio's IngressClass.
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: classed, namespace: shop}
spec:
  ingressClassName: istio
  rules:
  - host: classed.example.com
    http:
      paths:
      - {path: /static/*, pathType: ImplementationSpecific,
         backend: {service: {name: api, port: {number: 8080}}}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: istio}
spec: {controller: istio.io/ingress-controller}
---
# Another controller's class: not served.
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: other, namespace: shop}
spec:
  ingressClassName: nginx
  rules:
  - host: other.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""


BROKEN_PORT = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: broken-port
  namespace: shop
  annotations: {kubernetes.io/ingress.class: istio}
spec:
  rules:
  - host: broken-port.example.com
    http:
      paths:
      - {path: /grpc, pathType: Prefix, backend: {service: {name: api, port: {name: grpc}}}}
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""


class IngressEnv:
    def __init__(self, stack: LocalStack, config: Path, port: int) -> None:
        self.stack = stack
        self.config = config
        self.port = port

    def write(self, name: str, text: str) -> None:
        tmp = (self.config / name).with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.config / name)

    def who(self, host: str, path: str) -> str:
        """The backend answering (`web`, `api`), else the status code."""
        status, headers, _ = http_get(self.port, host, path)
        return headers.get("x-backend-name", "?") if status == 200 else str(status)


async def start_env(tmp_path: Path, mesh_config: str | None = None) -> IngressEnv:
    config = tmp_path / "config"
    config.mkdir()
    port = free_port()
    gateway = (EXAMPLES / "gateway-service.yaml").read_text(encoding="utf-8")
    gateway = gateway.replace("targetPort: 8080", f"targetPort: {port}").replace(
        "targetPort: 8443", f"targetPort: {free_port()}")
    (config / "gateway-service.yaml").write_text(gateway, encoding="utf-8")
    (config / "backends.yaml").write_text(BACKENDS.format(web=free_port(), api=free_port()),
                                          encoding="utf-8")
    mesh = None
    if mesh_config is not None:
        mesh = tmp_path / "mesh.yaml"
        mesh.write_text(mesh_config, encoding="utf-8")
    stack = LocalStack([config], tmp_path, poll_interval=0.05, mesh_config=mesh)
    try:
        await stack.start()
        await stack.wait_live()
    except BaseException:
        await stack.stop()
        raise
    return IngressEnv(stack, config, port)


@pytest.fixture
async def ingress_env(tmp_path: Path) -> AsyncIterator[IngressEnv]:
    env = await start_env(tmp_path)
    try:
        yield env
    finally:
        await env.stack.stop()


async def test_ingress_routes_by_host_and_path_and_ignores_other_classes(
        ingress_env: IngressEnv) -> None:
    env = ingress_env
    assert env.who("web.example.com", "/") == "0", "nothing listens before any Ingress"
    env.write("ingresses.yaml", INGRESSES)
    await eventually(lambda: env.who("web.example.com", "/") == "web", "the Ingress served")

    expected = {
        ("web.example.com", "/"): "web",
        ("web.example.com", "/anything"): "web",
        ("web.example.com", "/api"): "api",
        ("web.example.com", "/api/v1/items"): "api",  # Prefix matches whole segments...
        ("web.example.com", "/apix"): "web",  # ...so /apix is not under /api
        ("web.example.com", "/exact"): "api",
        ("web.example.com", "/exact/more"): "web",  # Exact is exact
        ("classed.example.com", "/static/app.js"): "api",  # `/static/*` is a prefix
        ("classed.example.com", "/other"): "404",  # host served, path not
        ("other.example.com", "/"): "404",  # nginx's class: not served
        ("unknown.example.com", "/"): "404",
    }
    got = {key: env.who(*key) for key in expected}
    assert got == expected

    # A path whose named port the Service lacks is reported; the Ingress's other path serves.
    env.write("broken-port.yaml", BROKEN_PORT)
    await eventually(lambda: env.who("broken-port.example.com", "/") == "web",
                     "broken-port.example.com served")
    assert env.who("broken-port.example.com", "/grpc") == "web"
    problems = [str(p) for p in env.stack.plane.problems.problems()]
    assert ("Warning [NotFound] (Ingress shop/broken-port) spec.rules[0].http.paths[0]."
            "backend.service.port.name: Service shop/api has no port named 'grpc'; path "
            "skipped") in problems

    # Ingress changes are pushed: the annotation now names another class.
    env.write("ingresses.yaml", INGRESSES.replace("kubernetes.io/ingress.class: istio",
                                                  "kubernetes.io/ingress.class: nginx"))
    await eventually(lambda: env.who("web.example.com", "/") == "404",
                     "web.example.com dropped")
    assert env.who("classed.example.com", "/static/x") == "api"

    # No NACK anywhere: every pushed type was accepted.
    assert env.stack.envoy is not None
    counters = env.stack.envoy.stats("update_rejected$")
    assert "listener_manager.lds.update_rejected" in counters
    assert {k: v for k, v in counters.items() if v} == {}


CLASSLESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: classless, namespace: shop}
spec:
  rules:
  - host: classless.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""


@pytest.mark.parametrize(("mode", "served"), [
    # DEFAULT also serves Ingresses that name no class; OFF ignores the annotation, but an
    # IngressClass naming istio's controller is still honoured (as in istiod).
    ("DEFAULT", {"web.example.com", "classed.example.com", "classless.example.com"}),
    ("OFF", {"classed.example.com"}),
])
async def test_ingress_controller_mode(tmp_path: Path, mode: str, served: set[str]) -> None:
    env = await start_env(tmp_path, f"ingressControllerMode: {mode}\n")
    try:
        env.write("ingresses.yaml", INGRESSES + "---" + CLASSLESS)
        paths = {"web.example.com": "/", "classed.example.com": "/static/x",
                 "classless.example.com": "/", "other.example.com": "/"}
        first = sorted(served)[0]
        await eventually(lambda: env.who(first, paths[first]) in ("web", "api"),
                         f"{first} served")
        got = {host for host, path in paths.items() if env.who(host, path) in ("web", "api")}
        assert got == served
    finally:
        await env.stack.stop()
