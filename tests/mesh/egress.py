"""The egress mesh: a client pod (`sleep`, with a sidecar) and `external`, a pod with no
sidecar and no registry entry standing in for the Internet: the httpbin-like backend on port
80 (with `/delay/<s>`) and two HTTPS servers signed by a test CA, 443 (SNI
`secure.example.org`) and 8443 (SNI `mtls.example.org`, client certificate required). Every
pod's hosts file maps the external names to it, as public DNS would; nothing leaves the run's
subnet."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.mesh.mesh import Mesh, ServiceSpec
from tests.mesh.netns import Process, wait_until
from tests.mesh.pods import PodSpec
from tests.tls_certs import TestCA

TLS_SERVER = Path(__file__).with_name("tls_server.py")
SIMPLE_HOST, SIMPLE_PORT = "secure.example.org", 443
MUTUAL_HOST, MUTUAL_PORT = "mtls.example.org", 8443
# Resolves to an address nobody holds: only a sidecar that knows the real endpoint gets there.
UNASSIGNED = "192.0.2.10"
# A TCP port both external pods serve: a multi-CIDR ServiceEntry covers the two addresses.
TCP_PORT = 9100
PODS = (
    PodSpec("sleep", {"app": "sleep"}, app_port=None, delta=True),
    PodSpec("external", {}, sidecar=False, app_port=80, extra_ports=(TCP_PORT,)),
    PodSpec("external2", {}, sidecar=False, app_port=TCP_PORT),
)
# Istio's sleep sample has a Service on port 80; it gives the sidecar its HTTP listener on
# 80, where REGISTRY_ONLY answers 502 (with no HTTP service on a port, unknown destinations
# fall through to the catch-all chain and are reset instead).
SLEEP = ServiceSpec("sleep", "10.96.0.40", {"app": "sleep"})
EXTERNAL_NAMES = {
    "httpbin.org": "external",
    "unknown.example.net": "external",
    "legacy.example.net": "external",
    "static.example.net": UNASSIGNED,
    SIMPLE_HOST: "external",
    MUTUAL_HOST: "external",
    # What cluster DNS answers for an ExternalName Service to httpbin.org: its target.
    "my-httpbin.default.svc.cluster.local": "external",
    "my-httpbin": "external",
}


# The test CA's files (tests/tls_certs.py names), readable by the sidecar's uid 1337.
ROOT_CERT, CLIENT_CERT, CLIENT_KEY, CRL = "ca.crt", "client.crt", "client.key", "ca.crl"


def certificates(mesh: Mesh) -> Path:
    return mesh.workdir / "certs"


def other_ca(mesh: Mesh) -> Path:
    """A second CA that signed nothing the servers present."""
    return mesh.workdir / "other-ca"


class EgressMesh(Mesh):
    """The pods above; once started, the TLS servers run on `external`."""

    def __init__(self) -> None:
        # Access logs to the sidecar's stdout (its envoy.log): they name upstream TLS failures.
        super().__init__(PODS, [SLEEP], mesh_config={"accessLogFile": "/dev/stdout"},
                         external_names=EXTERNAL_NAMES)

    def start(self) -> None:
        super().start()
        start_tls_servers(self)


def _wait_listening(server: Process, log: Path, what: str) -> None:
    wait_until(lambda: "listening on" in log.read_text(errors="replace") or not server.alive,
               what, timeout=20)
    if not server.alive:
        raise RuntimeError(f"{what} exited:\n{log.read_text()}")


def start_tls_servers(mesh: Mesh) -> None:
    ca = TestCA(certificates(mesh))
    server = ca.issue("server", [SIMPLE_HOST, MUTUAL_HOST])
    ca.issue("client", ["sleep.default"], client=True)
    ca.crl()
    TestCA(other_ca(mesh), "another CA")
    for directory in (certificates(mesh), other_ca(mesh)):  # the sidecar runs as uid 1337
        directory.chmod(0o755)
        for path in directory.iterdir():
            path.chmod(0o644)
    external = mesh.pods["external"]
    for port, sni, client_ca in ((SIMPLE_PORT, SIMPLE_HOST, ""),
                                 (MUTUAL_PORT, MUTUAL_HOST, str(ca.ca))):
        log = external.workdir / f"tls-{port}.log"
        command = [sys.executable, str(TLS_SERVER), "--listen", f"0.0.0.0:{port}",
                   "--cert", str(server.cert), "--key", str(server.key),
                   "--sni", sni, "--client-ca", client_ca, "--exit-after", "1800"]
        process = external.netns.spawn(f"external/tls-{port}", command, str(log))
        _wait_listening(process, log, f"the TLS server on {port}")
