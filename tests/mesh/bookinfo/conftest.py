"""Bookinfo in a mesh of its own (W3, W5): productpage, details, reviews v1/v2/v3 and ratings
(tests/mesh/bookinfo/apps.py) in `default`, httpbin and a fortio-like client, each with the
real pilot-agent as its proxy (Bookinfo's service accounts: bookinfo-productpage, ...;
`security.istio.io/tlsMode: istio` on their Pods as injection sets it), so every hop between
sidecars is mutual TLS with certificates from pilotpy's CA; istio-ingressgateway, a
pilot-agent `router` without capture in `istio-system` behind a Service 80 -> 8080 and
443 -> 8443; `sleep`, a pod with no sidecar at all (W5's plaintext client); and an identity
provider's key server (`jwks`, no sidecar, serving the JWKS of `IDP`, whose tokens the W5
tests sign). Every Envoy writes a JSON access log line per request to its stdout
(tests/explain_agreement.py's format). Requests to the gateway go from the test process over
the bridge to the gateway pod's address. Package-scoped: this mesh is gone before the W2 mesh
of tests/mesh starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.explain_agreement import mesh_config
from tests.mesh.conftest import require_capabilities
from tests.mesh.mesh import Mesh, ServiceSpec, running
from tests.mesh.pods import PodSpec
from tests.tokens import EndUserIssuer

APPS = (str(Path(__file__).with_name("apps.py")),)
JWKS_APP = str(Path(__file__).parents[1] / "jwks_app.py")
PORT = 9080
JWKS_PORT = 8080
TCP_PORT = 9000
# The identity provider of the W5 JWT steps: its key is made here, its JWKS served by `jwks`.
IDP = EndUserIssuer(issuer="https://idp.bookinfo.test")
JWKS_URI = f"http://jwks.default.svc.cluster.local:{JWKS_PORT}/jwks.json"
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
    # The same backend on a port the mesh treats as opaque TCP (W5's TCP policy by principal).
    ServiceSpec("httpbin-tcp", "10.96.1.21", {"app": "httpbin"}, port=TCP_PORT,
                target_port=TCP_PORT, port_name="tcp-echo"),
    ServiceSpec("jwks", "10.96.1.40", {"app": "jwks"}, port=JWKS_PORT, target_port=JWKS_PORT),
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
    PodSpec("httpbin-v1", {"app": "httpbin", "version": "v1"}, agent=True,
            extra_ports=(TCP_PORT,)),
    PodSpec("fortio", {"app": "fortio"}, app_port=None, agent=True),
    PodSpec(PLAINTEXT_CLIENT, {"app": "sleep"}, sidecar=False, app_port=None),
)


@pytest.fixture(scope="package")
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require_capabilities()
    keys = tmp_path_factory.mktemp("idp") / "jwks.json"
    keys.write_text(IDP.jwks())
    jwks = PodSpec("jwks", {"app": "jwks"}, sidecar=False, app_port=JWKS_PORT,
                   app_command=(JWKS_APP, "--jwks-file", str(keys)))
    # Every Envoy logs each request with the route and cluster it picked (to its stdout, the
    # pod's envoy.log), for checking `pilotpy explain` against it.
    yield from running(Mesh((*PODS, jwks), SERVICES, mesh_config=mesh_config("/dev/stdout")))
