"""Bookinfo in a mesh of its own (W3, W5): productpage, details, reviews v1/v2/v3 and ratings
(tests/mesh/bookinfo/apps.py) in `default`, httpbin and a fortio-like client, each with the
real pilot-agent as its proxy (Bookinfo's service accounts: bookinfo-productpage, ...;
`security.istio.io/tlsMode: istio` on their Pods as injection sets it), so every hop between
sidecars is mutual TLS with certificates from pilotpy's CA; istio-ingressgateway, a
pilot-agent `router` without capture in `istio-system` behind a Service 80 -> 8080 and
443 -> 8443; and `sleep`, a pod with no sidecar at all (W5's plaintext client). Every Envoy
writes a JSON access log line per request to its stdout (tests/explain_agreement.py's
format). Requests to
the gateway go from the test process over the bridge to the gateway pod's address.
Package-scoped: this mesh is gone before the W2 mesh of tests/mesh starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.explain_agreement import mesh_config
from tests.mesh.conftest import require_capabilities
from tests.mesh.mesh import Mesh, ServiceSpec, running
from tests.mesh.pods import PodSpec

APPS = (str(Path(__file__).with_name("apps.py")),)
PORT = 9080
GATEWAY_POD = "istio-ingressgateway-7d9f6"
GATEWAY_PORT = 8080
GATEWAY_TLS_PORT = 8443
GATEWAY_ACCOUNT = "istio-ingressgateway-service-account"
# A pod outside the mesh: no sidecar, in the registry (it has labels), no Service.
PLAINTEXT_CLIENT = "sleep"

SERVICES = (
    *(ServiceSpec(name, f"10.96.1.{10 + index}", {"app": name}, port=PORT, target_port=PORT)
      for index, name in enumerate(("productpage", "details", "reviews", "ratings"))),
    ServiceSpec("httpbin", "10.96.1.20", {"app": "httpbin"}, port=8000, target_port=8000),
    ServiceSpec("istio-ingressgateway", "10.96.1.30", {"istio": "ingressgateway"}, port=80,
                target_port=GATEWAY_PORT, port_name="http2", namespace="istio-system"),
    ServiceSpec("istio-ingressgateway-tls", "10.96.1.31", {"istio": "ingressgateway"},
                port=443, target_port=GATEWAY_TLS_PORT, port_name="https",
                namespace="istio-system"),
)


def _bookinfo(app: str, version: str) -> PodSpec:
    return PodSpec(f"{app}-{version}", {"app": app, "version": version}, app_port=PORT,
                   app_command=APPS, agent=True, service_account=f"bookinfo-{app}")


PODS = (
    PodSpec(GATEWAY_POD, {"istio": "ingressgateway", "app": "istio-ingressgateway"},
            namespace="istio-system", sidecar=False, router=True, app_port=None, agent=True,
            service_account=GATEWAY_ACCOUNT),
    _bookinfo("productpage", "v1"),
    _bookinfo("details", "v1"),
    _bookinfo("reviews", "v1"),
    _bookinfo("reviews", "v2"),
    _bookinfo("reviews", "v3"),
    _bookinfo("ratings", "v1"),
    PodSpec("httpbin-v1", {"app": "httpbin", "version": "v1"}, agent=True),
    PodSpec("fortio", {"app": "fortio"}, app_port=None, agent=True),
    PodSpec(PLAINTEXT_CLIENT, {"app": "sleep"}, sidecar=False, app_port=None),
)


@pytest.fixture(scope="package")
def bookinfo() -> Iterator[Mesh]:
    require_capabilities()
    # Every Envoy logs each request with the route and cluster it picked (to its stdout, the
    # pod's envoy.log), for checking `pilotpy explain` against it.
    yield from running(Mesh(PODS, SERVICES, mesh_config=mesh_config("/dev/stdout")))
