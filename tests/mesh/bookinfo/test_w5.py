"""W5, Istio's Bookinfo security walkthrough (mutual TLS and PeerAuthentication), one test per
step, through the real pilot-agent proxies of the Bookinfo mesh (tests/mesh/bookinfo): every
sidecar-to-sidecar hop is mutual TLS with certificates from pilotpy's CA, and `sleep`, a pod
without a sidecar, calls productpage and details by their pod addresses in plaintext.

Each test applies its PeerAuthentications over the baseline (steps.use, which also removes
what earlier steps left) and waits until the proxy that enforces them holds them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tests.mesh.bookinfo.conftest import GATEWAY_ACCOUNT, GATEWAY_POD, PLAINTEXT_CLIENT, PORT
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
