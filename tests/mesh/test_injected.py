"""W2 through pods built from what pilotpy's injection webhook returns (tests/mesh/injected.py):
istio-init's arguments given to the real `pilot-agent istio-iptables`, the istio-proxy
container's arguments and environment given to the real pilot-agent, its volumes (the
istio-ca token, the istio-ca-root-cert root, the downward-API labels) laid out as files. The
agents get their certificates and config from pilotpy's :15012 as istio/proxyv2 would."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.mesh.conftest import require_capabilities
from tests.mesh.injected import container
from tests.mesh.mesh import Mesh, ServiceSpec, running
from tests.mesh.netns import wait_until
from tests.mesh.pods import PodSpec

HTTPBIN = ServiceSpec("httpbin-service", "10.96.0.20", {"app": "httpbin"})
PODS = (PodSpec("sleep", {"app": "sleep"}, app_port=None, agent=True, injected=True),
        PodSpec("httpbin-v1", {"app": "httpbin", "version": "v1"}, agent=True, injected=True))
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def injected_mesh() -> Iterator[Mesh]:
    require_capabilities()
    yield from running(Mesh(PODS, [HTTPBIN]))


def test_the_pods_run_what_the_webhook_injected(injected_mesh: Mesh) -> None:
    for name in ("sleep", "httpbin-v1"):
        pod = injected_mesh.injected[name]
        assert "istio-proxy" in {c["name"] for c in pod["spec"]["containers"]}
        assert injected_mesh.pods[name].ready_status() == 200, name
    proxy = container(injected_mesh.injected["httpbin-v1"], "istio-proxy")
    assert proxy["args"][:2] == ["proxy", "sidecar"]


def test_w2_through_both_injected_sidecars(injected_mesh: Mesh) -> None:
    server = injected_mesh.pods["httpbin-v1"]
    inbound = "cluster.inbound|8000||;.upstream_rq_total"
    before = server.stat(inbound)
    (answer,) = injected_mesh.pods["sleep"].get("http://httpbin-service/headers")
    assert answer["status"] == 200, answer
    assert answer["headers"]["server"] == "envoy"  # the server-side sidecar answered
    assert "x-envoy-upstream-service-time" in answer["headers"]
    # The server sidecar's inbound listener exists because its labels (from the
    # downward-API file) match the Service.
    wait_until(lambda: server.stat(inbound) > before, "the inbound request counted")


def test_capture_is_what_istio_init_installed(injected_mesh: Mesh) -> None:
    rules = injected_mesh.pods["httpbin-v1"].netns.run("iptables-save")
    for rule in ("-A ISTIO_INBOUND -p tcp -m tcp --dport 15020 -j RETURN",
                 "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
                 "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
                 "--uid-owner 1337"):
        assert rule in rules, rules
    assert "-A OUTPUT -j REJECT" in rules  # the harness's guard is still there


def test_the_rewritten_probe_reaches_the_application_through_the_agent(
        injected_mesh: Mesh) -> None:
    """kubelet's probe, as injected: GET /app-health/httpbin/readyz on the agent's port 15020,
    which probes the application (ISTIO_KUBE_APP_PROBERS)."""
    server = injected_mesh.pods["httpbin-v1"]
    probe = container(injected_mesh.injected["httpbin-v1"], "httpbin")["readinessProbe"]
    assert probe["httpGet"]["port"] == 15020
    url = f"http://{server.ip}:{probe['httpGet']['port']}{probe['httpGet']['path']}"
    with _OPENER.open(url, timeout=5) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError):  # a probe the agent was not told of
        _OPENER.open(f"http://{server.ip}:15020/app-health/other/readyz", timeout=5)
    assert server.ready_status() == 200
