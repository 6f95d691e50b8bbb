"""W5, Istio's Bookinfo security walkthrough (mutual TLS and PeerAuthentication), one test per
step, through the real pilot-agent proxies of the Bookinfo mesh (tests/mesh/bookinfo): every
sidecar-to-sidecar hop is mutual TLS with certificates from pilotpy's CA, and `sleep`, a pod
without a sidecar, calls productpage and details by their pod addresses in plaintext. The
gateway's `ISTIO_MUTUAL` server (the east-west pattern) is called from the test process with a
mesh certificate pilotpy's CA issues.

Each test applies its PeerAuthentications over the baseline (steps.use, which also removes
what earlier steps left) and waits until the proxy that enforces them holds them."""

from __future__ import annotations

import http.client
import re
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from pilotpy.local.certs import CERT_CHAIN, KEY, write_mesh_certificate
from tests.mesh.bookinfo.conftest import (
    GATEWAY_ACCOUNT,
    GATEWAY_POD,
    GATEWAY_TLS_PORT,
    PLAINTEXT_CLIENT,
    PORT,
)
from tests.mesh.bookinfo.steps import page, sample, subset_cluster, use, wait_for_vhost
from tests.mesh.mesh import Mesh
from tests.mesh.netns import wait_until

INBOUND = "virtualInbound"


def spiffe(account: str, namespace: str = "default") -> str:
    return f"spiffe://cluster.local/ns/{namespace}/sa/{account}"


def peer_authentication(name: str, namespace: str = "default", mode: str = "STRICT",
                        **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"mtls": {"mode": mode}, **spec}}


STRICT_DEFAULT = peer_authentication("default")
MESH_STRICT = peer_authentication("default", "istio-system")
PRODUCTPAGE_PLAINTEXT_PORT = peer_authentication(
    "productpage", mode="UNSET", selector={"matchLabels": {"app": "productpage"}},
    portLevelMtls={str(PORT): {"mode": "DISABLE"}})


def plaintext_get(mesh: Mesh, pod: str, path: str) -> dict[str, Any]:
    """GET from the pod without a sidecar to `pod`'s address: no VIP, no mTLS."""
    target = mesh.pods[pod]
    (answer,) = mesh.pods[PLAINTEXT_CLIENT].get(f"http://{target.ip}:{PORT}{path}",
                                                timeout=5)
    return answer


def _port_chains(listener: Mapping[str, Any], port: int) -> list[dict[str, Any]]:
    return [c.get("filter_chain_match", {}) for c in listener.get("filter_chains", [])
            if c.get("filter_chain_match", {}).get("destination_port") == port]


def takes_plaintext(listener: Mapping[str, Any], port: int = PORT) -> bool:
    return any(m.get("transport_protocol") == "raw_buffer" for m in _port_chains(listener, port))


def takes_mtls(listener: Mapping[str, Any], port: int = PORT) -> bool:
    return any(m.get("transport_protocol") == "tls" for m in _port_chains(listener, port))


def wait_for_inbound(mesh: Mesh, pod: str, predicate: Callable[[Mapping[str, Any]], bool],
                     what: str) -> None:
    target = mesh.pods[pod]
    wait_until(lambda: (listener := target.listener_config(INBOUND)) is not None
               and predicate(listener), f"{pod}'s {INBOUND} {what}", timeout=30)


def _permissive(mesh: Mesh) -> None:
    use(mesh, *sample("virtual-service-reviews-v3.yaml"))
    for pod in ("productpage-v1", "details-v1"):
        wait_for_inbound(mesh, pod, lambda li: takes_plaintext(li) and takes_mtls(li),
                         "taking mTLS and plaintext")


def test_w5_every_sidecar_hop_is_mutual_tls(bookinfo: Mesh) -> None:
    _permissive(bookinfo)
    wait_for_vhost(bookinfo, "productpage-v1", "reviews",
                   lambda v: subset_cluster("reviews", "v3") in str(v), "reviews on v3")
    seen = {pod: len(bookinfo.pods[pod].requests_seen())
            for pod in ("productpage-v1", "details-v1", "reviews-v3", "ratings-v1")}
    found = page(bookinfo)
    assert found["details"]["status"] == 200 and found["reviews"]["version"] == "v3", found
    assert "error" not in (found["reviews"]["rating"] or {}), found

    def callers(pod: str) -> set[str]:
        """The caller identities `pod`'s sidecar forwarded in x-forwarded-client-cert."""
        fresh = bookinfo.pods[pod].requests_seen()[seen[pod]:]
        return {part.removeprefix("URI=") for r in fresh for part in r["xfcc"].split(";")
                if part.startswith("URI=")}

    # Each server sidecar saw its caller's certificate, issued by pilotpy's CA.
    assert callers("productpage-v1") == {spiffe(GATEWAY_ACCOUNT, "istio-system")}
    assert callers("details-v1") == {spiffe("bookinfo-productpage")}
    assert callers("reviews-v3") == {spiffe("bookinfo-productpage")}
    assert callers("ratings-v1") == {spiffe("bookinfo-reviews")}
    # ... and every connection of the calling clusters was a TLS handshake (the sidecars
    # route to virtual-service-all-v1's subsets; the gateway to productpage's service).
    for pod, cluster in ((GATEWAY_POD, "outbound|9080||productpage.default.svc.cluster.local"),
                         ("productpage-v1", subset_cluster("details", "v1")),
                         ("productpage-v1", subset_cluster("reviews", "v3")),
                         ("reviews-v3", subset_cluster("ratings", "v1"))):
        prefix = f"cluster.{cluster};."  # Istio's bootstrap ends the cluster's name with ';'
        stats = bookinfo.pods[pod].stats(re.escape(prefix))
        handshakes = stats.get(prefix + "ssl.handshake", 0)
        assert handshakes >= 1 and handshakes == stats[prefix + "upstream_cx_total"], (
            pod, cluster, stats)


def test_w5_a_pod_without_a_sidecar_still_calls_productpage_under_permissive(
        bookinfo: Mesh) -> None:
    _permissive(bookinfo)
    before = len(bookinfo.pods["productpage-v1"].requests_seen())
    answer = plaintext_get(bookinfo, "productpage-v1", "/productpage")
    assert answer["status"] == 200, answer
    (received,) = bookinfo.pods["productpage-v1"].requests_seen()[before:before + 1]
    assert received["xfcc"] == ""  # plaintext: no certificate to forward


def test_w5_strict_for_the_namespace_refuses_the_pod_without_a_sidecar(bookinfo: Mesh) -> None:
    use(bookinfo, STRICT_DEFAULT)
    for pod in ("productpage-v1", "details-v1"):
        wait_for_inbound(bookinfo, pod, lambda li: takes_mtls(li) and not takes_plaintext(li),
                         "taking mTLS only")
    for pod, path in (("productpage-v1", "/productpage"), ("details-v1", "/details/0")):
        answer = plaintext_get(bookinfo, pod, path)
        assert answer["status"] == 0, answer  # the connection is closed: no HTTP answer
    # Callers with a sidecar still get through, over mutual TLS.
    found = page(bookinfo)
    assert found["details"]["status"] == 200 and found["reviews"]["status"] == 200, found


def test_w5_a_port_level_disable_exempts_productpage_from_strict(bookinfo: Mesh) -> None:
    use(bookinfo, STRICT_DEFAULT, PRODUCTPAGE_PLAINTEXT_PORT)
    wait_for_inbound(bookinfo, "productpage-v1", lambda li: takes_plaintext(li)
                     and not takes_mtls(li), "taking plaintext on 9080")
    wait_for_inbound(bookinfo, "details-v1", lambda li: not takes_plaintext(li),
                     "taking mTLS only")
    assert plaintext_get(bookinfo, "productpage-v1", "/productpage")["status"] == 200
    assert plaintext_get(bookinfo, "details-v1", "/details/0")["status"] == 0
    # The gateway follows: productpage's endpoint no longer takes mTLS, so it sends plaintext.
    found = page(bookinfo)
    assert found["details"]["status"] == 200, found


def test_w5_mesh_wide_strict_from_the_root_namespace_and_its_removal(bookinfo: Mesh) -> None:
    use(bookinfo, MESH_STRICT)
    wait_for_inbound(bookinfo, "details-v1", lambda li: not takes_plaintext(li),
                     "taking mTLS only")
    assert plaintext_get(bookinfo, "details-v1", "/details/0")["status"] == 0
    assert page(bookinfo)["details"]["status"] == 200
    # Removing the policy restores plaintext.
    use(bookinfo)
    wait_for_inbound(bookinfo, "details-v1", takes_plaintext, "taking plaintext again")
    assert plaintext_get(bookinfo, "details-v1", "/details/0")["status"] == 200


MUTUAL_GATEWAY = {
    "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
    "metadata": {"name": "bookinfo-mesh-gateway", "namespace": "default"},
    "spec": {"selector": {"istio": "ingressgateway"},
             "servers": [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                          "hosts": ["*"], "tls": {"mode": "ISTIO_MUTUAL"}}]}}
MUTUAL_ROUTE = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "bookinfo-mesh", "namespace": "default"},
    "spec": {"hosts": ["*"], "gateways": ["bookinfo-mesh-gateway"],
             "http": [{"match": [{"uri": {"exact": "/productpage"}}],
                       "route": [{"destination": {"host": "productpage",
                                                  "port": {"number": PORT}}}]}]}}


def mesh_tls_get(mesh: Mesh, path: str, certificate: Path | None
                 ) -> tuple[int, str]:
    """GET over TLS to the gateway's 8443 from the test process, with a mesh certificate
    (`certificate`: the directory write_mesh_certificate filled) or none: the status (0 when
    no HTTP answer came) and the URI SAN of the certificate the gateway presented."""
    plane = mesh.plane
    assert plane.secure is not None
    context = ssl.create_default_context(cadata=plane.secure.root_pem.decode())
    context.check_hostname = False  # a workload certificate names a SPIFFE id, no DNS name
    if certificate is not None:
        context.load_cert_chain(certificate / CERT_CHAIN, certificate / KEY)
    connection = http.client.HTTPSConnection(mesh.pods[GATEWAY_POD].ip, GATEWAY_TLS_PORT,
                                             timeout=5, context=context)
    try:
        connection.request("GET", path, headers={"Host": "bookinfo.mesh"})
        status = connection.getresponse().status
        assert isinstance(connection.sock, ssl.SSLSocket)
        peer = x509.load_der_x509_certificate(connection.sock.getpeercert(binary_form=True)
                                              or b"")
        names = peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return status, ",".join(names.get_values_for_type(x509.UniformResourceIdentifier))
    except OSError:  # ssl.SSLError included: the gateway wanted a client certificate
        return 0, ""
    finally:
        connection.close()


def test_w5_an_istio_mutual_gateway_server_takes_mesh_certificates_only(
        bookinfo: Mesh, tmp_path: Path) -> None:
    use(bookinfo, MUTUAL_GATEWAY, MUTUAL_ROUTE)
    plane = bookinfo.plane
    assert plane.secure is not None and plane.secure.authority is not None
    client = write_mesh_certificate(plane.secure.authority, tmp_path / "sleep",
                                    spiffe("sleep"))
    wait_until(lambda: mesh_tls_get(bookinfo, "/productpage", client)[0] == 200,
               "the ISTIO_MUTUAL server answering a mesh client", timeout=30)
    # The gateway presents its own workload certificate (from its agent's SDS) ...
    assert mesh_tls_get(bookinfo, "/productpage", client) == (
        200, spiffe(GATEWAY_ACCOUNT, "istio-system"))
    # ... and a client without a mesh certificate gets no HTTP answer.
    assert mesh_tls_get(bookinfo, "/productpage", None) == (0, "")
