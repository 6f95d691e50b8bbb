"""One mesh for the module's tests: a client (sleep), httpbin v1 and v2 behind
httpbin-service, all with sidecars, and `outside`, a pod with no sidecar and no registry
entry running an HTTP server on port 80. Torn down at the end even on failure; the teardown
itself checks that no namespace, link or process of the run is left."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.mesh import egress
from tests.mesh.mesh import Mesh, ServiceSpec, running
from tests.mesh.pods import PodSpec

HTTPBIN = ServiceSpec("httpbin-service", "10.96.0.20", {"app": "httpbin"})
# The same pods behind a TCP port and behind a port whose protocol is left to detection.
HTTPBIN_TCP = ServiceSpec("httpbin-tcp", "10.96.0.21", {"app": "httpbin"}, port=9000,
                          target_port=9000, port_name="tcp-web")
# Headless: clients connect to pod addresses, sidecars listen on each of them.
HTTPBIN_HEADLESS = ServiceSpec("httpbin-headless", "None", {"app": "httpbin"}, port=9000,
                               target_port=9000, port_name="tcp-web")
HTTPBIN_SNIFFED = ServiceSpec("httpbin-sniffed", "10.96.0.22", {"app": "httpbin"}, port=7000,
                              target_port=7000, port_name="")
# The client speaks Delta xDS, the servers state-of-the-world: config changes reach both kinds.
PODS = (
    PodSpec("sleep", {"app": "sleep"}, app_port=None, delta=True),
    PodSpec("httpbin-v1", {"app": "httpbin", "version": "v1"}, extra_ports=(9000, 7000)),
    PodSpec("httpbin-v2", {"app": "httpbin", "version": "v2"}, extra_ports=(9000, 7000)),
    PodSpec("outside", {}, sidecar=False, app_port=80),
)


# Session fixtures holding a running Mesh; every test using one is checked for NACKs.
MESH_FIXTURES = ("mesh", "bookinfo", "egress_mesh", "injected_mesh")


def require_capabilities() -> None:
    # The mesh tier needs what it models; a skip would hide that nothing was tested.
    if os.geteuid() != 0:
        pytest.fail("the mesh tier needs root (network namespaces, iptables)")
    for tool in ("ip", "iptables-restore", "setpriv"):
        if shutil.which(tool) is None:
            pytest.fail(f"the mesh tier needs {tool!r} (make test-mesh installs iptables)")


@pytest.fixture(scope="session")
def mesh() -> Iterator[Mesh]:
    require_capabilities()
    yield from running(Mesh(PODS, [HTTPBIN, HTTPBIN_TCP, HTTPBIN_SNIFFED, HTTPBIN_HEADLESS]))


@pytest.fixture(autouse=True)
def no_rejected_config(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every mesh test fails if pilotpy recorded a NACK or an Envoy rejected an update."""
    yield
    for name in MESH_FIXTURES:
        if name in request.fixturenames:
            found: Mesh = request.getfixturevalue(name)
            assert not found.rejected(), f"rejected configuration: {found.rejected()}"


@pytest.fixture(scope="session")
def egress_mesh() -> Iterator[Mesh]:
    """The egress modules' own mesh (tests/mesh/egress.py), apart from the W2 one."""
    require_capabilities()
    yield from running(egress.EgressMesh())
