"""`pilotpy diff` on Bookinfo (the golden w3 input): what a proposed change does to each proxy
class, the findings it raises, and exit codes CI can use (0 no change, 1 changes, 2 errors)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from aiohttp import web

from pilotpy.cli.diff import adsz_clients, connected_proxies, overlay, registry_proxies
from pilotpy.cli.main import main
from pilotpy.cli.translate import read_objects
from pilotpy.model.kinds import Kind
from pilotpy.server.debug_pages import DebugPages
from tests.golden.cases import case_named

BOOKINFO = case_named("w3-bookinfo-productpage").path / "input"
GATEWAY = ("router~10.244.0.7~istio-ingressgateway-5c8d-abcde.istio-system"
           "~istio-system.svc.cluster.local")
REVIEWS_50_V3 = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v3}, weight: 50}
"""
GATEWAY_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: istio-ingressgateway-1, namespace: istio-system,
           labels: {istio: ingressgateway}}
status: {podIP: 10.244.0.7}
---
apiVersion: v1
kind: Pod
metadata: {name: job-1, namespace: default, annotations: {sidecar.istio.io/inject: "false"}}
status: {podIP: 10.244.2.1}
"""


def _diff(capsys: pytest.CaptureFixture[str], proposed: Path, *extra: str) -> tuple[int, str]:
    code = main(["--log-level", "error", "diff", "--config", str(BOOKINFO),
                 "--proposed", str(proposed), *extra])
    return code, capsys.readouterr().out


def test_a_route_change_is_shown_once_for_every_sidecar_it_reaches(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vs.yaml").write_text(REVIEWS_50_V3)
    code, out = _diff(capsys, tmp_path)
    assert code == 1, out
    lines = out.splitlines()
    assert lines[0].startswith("sidecar 6 proxies ("), lines
    assert "  ~ RouteConfiguration 9080" in lines
    assert any(line.strip().startswith(
        "- virtualHosts[reviews.default.svc.cluster.local:9080].routes[prefix /, header "
        "end-user exact jason]") for line in lines), out
    assert any(".routes[prefix /].route.weightedClusters: " in line and "v3" in line
               for line in lines), out


def test_json_output_lists_each_class_and_its_field_changes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vs.yaml").write_text(REVIEWS_50_V3)
    code, out = _diff(capsys, tmp_path, "--node-id", GATEWAY, "--label",
                      "istio=ingressgateway", "-o", "json")
    assert code == 0  # the gateway's config does not use the reviews routes
    answer = json.loads(out)
    assert answer["changed"] is False
    assert [c["proxies"] for c in answer["classes"]] == [[GATEWAY]]


def test_the_same_objects_change_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _diff(capsys, BOOKINFO / "destination-rule-all.yaml")
    assert code == 0, out
    assert out.endswith(": no change\n")


def test_an_error_the_proposed_objects_raise_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vs.yaml").write_text(REVIEWS_50_V3.replace("subset: v3", "subset: v9"))
    code, out = _diff(capsys, tmp_path)
    assert code == 2, out
    (finding,) = [line for line in out.splitlines() if "IST0101" in line]
    assert '"reviews+v9"' in finding and "VirtualService default/reviews" in finding


def test_findings_the_current_state_has_are_not_new(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(BOOKINFO, tmp_path / "current")
    broken = REVIEWS_50_V3.replace("subset: v3", "subset: v9")
    (tmp_path / "current" / "virtual-service-reviews-test-v2.yaml").write_text(broken)
    (tmp_path / "fix.yaml").write_text(REVIEWS_50_V3)
    code = main(["--log-level", "error", "diff", "--config", str(tmp_path / "current"),
                 "--proposed", str(tmp_path / "fix.yaml")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "problems the proposed config raises" not in out
    assert "problems it resolves: 1" in out


def test_prune_deletes_istio_objects_the_proposed_files_lack() -> None:
    current, _ = read_objects([BOOKINFO])
    proposed, _ = read_objects([BOOKINFO / "destination-rule-all.yaml"])
    kept = overlay(current, proposed)
    pruned = overlay(current, proposed, prune=True)
    assert len(kept[Kind.VIRTUAL_SERVICE]) == 1
    assert pruned[Kind.VIRTUAL_SERVICE] == {}
    assert pruned[Kind.DESTINATION_RULE] == current[Kind.DESTINATION_RULE]
    assert pruned[Kind.SERVICE] == current[Kind.SERVICE]  # the registry stays


def test_registry_pods_become_proxies(tmp_path: Path) -> None:
    (tmp_path / "pods.yaml").write_text(GATEWAY_POD)
    objects, _ = read_objects([BOOKINFO, tmp_path])
    proxies = {p.id: p.type for p in registry_proxies(objects)}
    assert proxies["istio-ingressgateway-1.istio-system"] == "router"
    assert proxies["reviews-v2-6b74-abcde.default"] == "sidecar"
    assert "job-1.default" not in proxies  # no sidecar injected


async def test_server_proxies_are_read_from_every_page_of_adsz() -> None:
    """/debug/adsz answers one page at a time (its byte limit); --server follows the
    `Link: rel="next"` header to the last page."""
    clients = [{"proxy": f"sidecar~10.0.0.{i}~app-{i}.default~default.svc.cluster.local",
                "labels": {"app": f"app-{i}"}} for i in range(7)]
    pages = DebugPages(max_bytes=200)

    async def adsz(request: web.Request) -> web.Response:
        return await pages.respond(request, clients,
                                   wrap=lambda body: b'{"clients": ' + body + b"}")

    app = web.Application()
    app.router.add_get("/debug/adsz", adsz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        read = await asyncio.to_thread(adsz_clients, f"http://127.0.0.1:{port}/")
        proxies = await asyncio.to_thread(connected_proxies, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
    assert read == clients  # in order, each once, over several pages
    assert [p.metadata_labels["app"] for p in proxies] == [f"app-{i}" for i in range(7)]
