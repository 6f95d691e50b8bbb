"""Bookinfo in a mesh of its own (W3): productpage, details, reviews v1/v2/v3 and ratings
(tests/mesh/bookinfo/apps.py) with sidecars in `default`; httpbin and a fortio-like client
with sidecars for circuit breaking; and istio-ingressgateway, a router Envoy without capture
in `istio-system` behind a Service 80 -> 8080. Every Envoy writes a JSON access log line per
request to its stdout (tests/explain_agreement.py's format). Requests to the gateway go from
the test process over the bridge to the gateway pod's address. Package-scoped: this mesh is
gone before the W2 mesh of tests/mesh starts."""

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

SERVICES = (
    *(ServiceSpec(name, f"10.96.1.{10 + index}", {"app": name}, port=PORT, target_port=PORT)
      for index, name in enumerate(("productpage", "details", "reviews", "ratings"))),
    ServiceSpec("httpbin", "10.96.1.20", {"app": "httpbin"}, port=8000, target_port=8000),
    ServiceSpec("istio-ingressgateway", "10.96.1.30", {"istio": "ingressgateway"}, port=80,
                target_port=GATEWAY_PORT, port_name="http2", namespace="istio-system"),
)


def _bookinfo(app: str, version: str, *, delta: bool = False) -> PodSpec:
    return PodSpec(f"{app}-{version}", {"app": app, "version": version}, app_port=PORT,
                   app_command=APPS, delta=delta)


PODS = (
    PodSpec(GATEWAY_POD, {"istio": "ingressgateway", "app": "istio-ingressgateway"},
            namespace="istio-system", sidecar=False, router=True, app_port=None),
    # productpage speaks Delta xDS, the others state-of-the-world.
    _bookinfo("productpage", "v1", delta=True),
    _bookinfo("details", "v1"),
    _bookinfo("reviews", "v1"),
    _bookinfo("reviews", "v2"),
    _bookinfo("reviews", "v3"),
    _bookinfo("ratings", "v1"),
    PodSpec("httpbin-v1", {"app": "httpbin", "version": "v1"}),
    PodSpec("fortio", {"app": "fortio"}, app_port=None),
)


@pytest.fixture(scope="package")
def bookinfo() -> Iterator[Mesh]:
    require_capabilities()
    # Every Envoy logs each request with the route and cluster it picked (to its stdout, the
    # pod's envoy.log), for checking `pilotpy explain` against it.
    yield from running(Mesh(PODS, SERVICES, mesh_config=mesh_config("/dev/stdout")))
