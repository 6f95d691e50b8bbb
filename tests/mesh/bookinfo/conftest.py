"""Bookinfo in a mesh of its own (W3, W5): productpage, details, reviews v1/v2/v3 and ratings
(tests/mesh/bookinfo/apps.py) with sidecars in `default`; httpbin and a fortio-like client
with sidecars for circuit breaking; an identity provider's key server (`jwks`, no sidecar,
serving the JWKS of `IDP`, whose tokens the W5 tests sign); and istio-ingressgateway, a router
Envoy without capture in `istio-system` behind a Service 80 -> 8080. Requests to the gateway
go from the test process over the bridge to the gateway pod's address. Package-scoped: this
mesh is gone before the W2 mesh of tests/mesh starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mesh.conftest import require_capabilities
from tests.mesh.mesh import Mesh, ServiceSpec, running
from tests.mesh.pods import PodSpec
from tests.tokens import EndUserIssuer

APPS = (str(Path(__file__).with_name("apps.py")),)
JWKS_APP = str(Path(__file__).parents[1] / "jwks_app.py")
PORT = 9080
JWKS_PORT = 8080
# The identity provider of the W5 JWT steps: its key is made here, its JWKS served by `jwks`.
IDP = EndUserIssuer(issuer="https://idp.bookinfo.test")
JWKS_URI = f"http://jwks.default.svc.cluster.local:{JWKS_PORT}/jwks.json"
GATEWAY_POD = "istio-ingressgateway-7d9f6"
GATEWAY_PORT = 8080

SERVICES = (
    *(ServiceSpec(name, f"10.96.1.{10 + index}", {"app": name}, port=PORT, target_port=PORT)
      for index, name in enumerate(("productpage", "details", "reviews", "ratings"))),
    ServiceSpec("httpbin", "10.96.1.20", {"app": "httpbin"}, port=8000, target_port=8000),
    ServiceSpec("jwks", "10.96.1.40", {"app": "jwks"}, port=JWKS_PORT, target_port=JWKS_PORT),
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
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require_capabilities()
    keys = tmp_path_factory.mktemp("idp") / "jwks.json"
    keys.write_text(IDP.jwks())
    jwks = PodSpec("jwks", {"app": "jwks"}, sidecar=False, app_port=JWKS_PORT,
                   app_command=(JWKS_APP, "--jwks-file", str(keys)))
    yield from running(Mesh((*PODS, jwks), SERVICES))
