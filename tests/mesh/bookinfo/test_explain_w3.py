"""W3 through real Envoys: for requests through the ingress gateway and the calls productpage
makes from its sidecar, what `pilotpy explain` says (route, VirtualService, cluster,
endpoint, the address dialled) is what each Envoy's access log reports it did."""

from __future__ import annotations

import copy
from typing import Any

from pilotpy.cli.translate import load_config
from tests.explain_agreement import disagreements, entries, explain_logged
from tests.mesh.bookinfo.conftest import GATEWAY_POD
from tests.mesh.bookinfo.steps import gateway_get, routed_to, sample, use, wait_for_vhost
from tests.mesh.mesh import Mesh
from tests.mesh.netns import wait_until


def _named_jason_rules() -> dict[str, Any]:
    """Istio's reviews-test-v2 sample with its two rules named, so Envoy logs which one."""
    (doc,) = sample("virtual-service-reviews-test-v2.yaml")
    named = copy.deepcopy(doc)
    named["spec"]["http"][0]["name"] = "jason"
    named["spec"]["http"][1]["name"] = "everyone"
    return named


def _logged(mesh: Mesh, pod: str) -> list[dict[str, Any]]:
    path = mesh.pods[pod].workdir / "envoy.log"
    return entries(path.read_text(errors="replace")) if path.exists() else []


def test_w3_explain_agrees_with_the_gateway_and_productpages_sidecar(bookinfo: Mesh) -> None:
    use(bookinfo, _named_jason_rules())
    wait_for_vhost(bookinfo, "productpage-v1", "reviews",
                   lambda v: routed_to(v, "v1", "v2") and "jason" in str(v),
                   "reviews: the named jason rule on v2, everyone on v1")
    seen = {pod: len(_logged(bookinfo, pod)) for pod in (GATEWAY_POD, "productpage-v1")}
    for user in ("jason", "", "jason", ""):
        gateway_get(bookinfo, "/productpage", headers={"end-user": user} if user else {})
    gateway_get(bookinfo, "/not-exposed")
    # Each page: one gateway line; productpage's sidecar logs the page (inbound) and its
    # calls to details and reviews (outbound).
    wait_until(lambda: len(_logged(bookinfo, GATEWAY_POD)) >= seen[GATEWAY_POD] + 5
               and len(_logged(bookinfo, "productpage-v1")) >= seen["productpage-v1"] + 12,
               "the access log lines of the requests")
    loaded = load_config([bookinfo.config_dir])
    gateway = bookinfo.pods[GATEWAY_POD]
    for entry in _logged(bookinfo, GATEWAY_POD)[seen[GATEWAY_POD]:]:
        answer = explain_logged(loaded, gateway.node_id, gateway.spec.labels, entry)
        assert not disagreements(answer, entry), (entry, answer)
    productpage = bookinfo.pods["productpage-v1"]
    reviews = []
    for entry in _logged(bookinfo, "productpage-v1")[seen["productpage-v1"]:]:
        if not (entry.get("upstream_cluster") or "").startswith("outbound|"):
            continue  # the inbound side of the page: explain follows outbound calls
        answer = explain_logged(loaded, productpage.node_id, productpage.spec.labels, entry)
        assert not disagreements(answer, entry), (entry, answer)
        if entry["authority"].startswith("reviews"):
            reviews.append((entry["end_user"] or "", entry["route_name"],
                            entry["upstream_cluster"].split("|")[2]))
    assert sorted(reviews) == [("", "everyone", "v1"), ("", "everyone", "v1"),
                               ("jason", "jason", "v2"), ("jason", "jason", "v2")], reviews
