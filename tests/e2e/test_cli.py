"""The `pilotpy` command as users run it: serve, translate, bootstrap, version."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pilotpy.local.bootstrap import envoy_bootstrap
from pilotpy.local.envoy import EnvoyProcess, free_port, validate_bootstrap
from tests.e2e.support import deep_policy

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
GATEWAY_NODE = "router~10.244.0.7~gw-1.istio-system~istio-system.svc.cluster.local"
V2 = "outbound|80|v2|httpbin-service.default.svc.cluster.local"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def pilotpy(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pilotpy.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)


def translate(*paths: Path, extra: tuple[str, ...] = ()) -> tuple[dict[str, Any], str, int]:
    args = [a for p in paths for a in ("--config", str(p))]
    done = pilotpy("translate", *args, "--node-id", GATEWAY_NODE,
                   "--label", "istio=ingressgateway", *extra)
    return (json.loads(done.stdout) if done.stdout else {}), done.stderr, done.returncode


def test_translate_w1_shows_the_routed_gateway() -> None:
    out, stderr, code = translate(EXAMPLES)
    assert code == 0, stderr
    assert set(out) == {"listeners", "routes", "clusters", "endpoints"}
    assert [li["name"] for li in out["listeners"]] == ["0.0.0.0_8080"]
    (route,) = out["routes"]
    assert route["name"] == "http.80"
    (vhost,) = route["virtualHosts"]
    assert vhost["name"] == "httpbin.local:80"
    action = vhost["routes"][0]["route"]
    assert action["cluster"] == V2
    assert action["retryPolicy"]["numRetries"] == 10


def test_translate_gateway_alone_answers_404_from_blackhole(tmp_path: Path) -> None:
    for name in ("gateway-service.yaml", "httpbin.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path)
    gateway, _, _ = (EXAMPLES / "httpbin-gateway.yaml").read_text().partition("---")
    (tmp_path / "gateway.yaml").write_text(gateway)
    out, stderr, code = translate(tmp_path)
    assert code == 0, stderr
    (route,) = out["routes"]
    assert route["name"] == "http.80"
    (vhost,) = route["virtualHosts"]
    assert (vhost["name"], vhost["domains"]) == ("blackhole:80", ["*"])
    assert vhost["routes"][0]["directResponse"]["status"] == 404


def test_translate_output_is_stable() -> None:
    first, _, _ = translate(EXAMPLES)
    second, _, _ = translate(EXAMPLES)
    assert json.dumps(first) == json.dumps(second)


def test_translate_reports_invalid_objects_and_serves_the_rest(tmp_path: Path) -> None:
    for name in ("gateway-service.yaml", "httpbin.yaml", "httpbin-gateway.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path)
    (tmp_path / "broken.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: bad, namespace: default}\n"
        "spec: {hosts: [x.local], http: [{route: [{destination: {host: y}, weight: -1}]}]}\n")
    (tmp_path / "garbage.yaml").write_text("kind: [unclosed\n")
    out, stderr, code = translate(tmp_path)
    assert code == 0
    assert "VirtualService default/bad" in stderr and "spec.http[0].route[0].weight" in stderr
    assert "garbage.yaml" in stderr and "invalid YAML" in stderr
    assert out["routes"][0]["virtualHosts"][0]["name"] == "httpbin.local:80"
    _, _, strict_code = translate(tmp_path, extra=("--strict",))
    assert strict_code == 1


@pytest.mark.parametrize("args", [
    ("translate", "--config", "/nonexistent/pilotpy", "--node-id", GATEWAY_NODE),
    ("serve", "--config", "/nonexistent/pilotpy"),
    ("translate", "--config", "examples", "--node-id", "router~only-three~parts"),
    ("translate", "--config", "examples", "--node-id", GATEWAY_NODE, "--label", "nokey"),
])
def test_bad_arguments_fail_with_a_clear_message(args: tuple[str, ...]) -> None:
    done = pilotpy(*args)
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert any(word in message for word in ("--config", "--node-id", "--label")), message


def test_version() -> None:
    done = pilotpy("version")
    assert done.returncode == 0 and done.stdout.startswith("pilotpy ")


def test_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    done = pilotpy("bootstrap", "--node-id", GATEWAY_NODE, "--delta", "--label",
                   "istio=ingressgateway", "--admin-port", str(free_port()))
    assert done.returncode == 0, done.stderr
    bootstrap = json.loads(done.stdout)
    assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    validate_bootstrap(bootstrap, tmp_path)


def serve(grpc_port: int, http_port: int, *extra: str) -> subprocess.Popen[bytes]:
    """`pilotpy serve` on loopback ports (every port flag, so nothing lands on istiod's)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pilotpy.cli", "--log-format", "json", "serve", "--config",
         str(EXAMPLES), "--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr",
         f"127.0.0.1:{http_port}", "--grpc-tls-addr", f"127.0.0.1:{free_port()}",
         "--monitoring-addr", f"127.0.0.1:{free_port()}", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_ready(http_port: int) -> None:
    deadline = time.monotonic() + 30
    status = 0
    while time.monotonic() < deadline and status != 200:
        try:
            with OPENER.open(f"http://127.0.0.1:{http_port}/ready", timeout=1) as response:
                status = response.status
        except OSError:
            time.sleep(0.1)
    assert status == 200


def json_logs(server: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    assert server.stderr is not None
    return [json.loads(line) for line in server.stderr.read().decode().splitlines() if line]


def test_serve_reports_ready_and_stops_on_sigterm() -> None:
    grpc_port, http_port = free_port(), free_port()
    server = serve(grpc_port, http_port)
    try:
        wait_ready(http_port)
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
        logs = json_logs(server)
        assert any(f":{grpc_port}" in entry["msg"] for entry in logs), logs
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def test_sigterm_after_a_hostile_config_edit_still_shuts_down_cleanly(tmp_path: Path) -> None:
    """A 1000-level nested object written and edited (which once killed the file source's
    task, and with it the shutdown of gRPC and HTTP): SIGTERM still exits 0."""
    grpc_port, http_port = free_port(), free_port()
    server = serve(grpc_port, http_port, "--config", str(tmp_path))
    try:
        wait_ready(http_port)
        for leaf in ("x", "y"):
            (tmp_path / "policy.yaml").write_text(deep_policy(1000, leaf), encoding="utf-8")
            time.sleep(1.5)  # three polls of the file source
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
        text = json.dumps(json_logs(server))
        assert "Event loop is closed" not in text and "RecursionError" not in text
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def test_sigterm_closes_streams_and_the_proxy_reconnects_elsewhere(tmp_path: Path) -> None:
    """Graceful shutdown: the stream ends cleanly, Envoy keeps its config, and reconnects to
    the next instance listening on the address (a new pod behind the istiod Service)."""
    grpc_port = free_port()
    first_http, second_http = free_port(), free_port()
    first = serve(grpc_port, first_http)
    second: subprocess.Popen[bytes] | None = None
    bootstrap = envoy_bootstrap(node_id=GATEWAY_NODE, xds_address=("127.0.0.1", grpc_port),
                                labels={"istio": "ingressgateway"}, admin_port=free_port(),
                                status_port=free_port(), stats_port=None)
    envoy = EnvoyProcess(bootstrap, tmp_path, name="gateway")
    try:
        wait_ready(first_http)
        envoy.start()
        envoy.wait_for(lambda: envoy.stats().get("control_plane.connected_state") == 1
                       and envoy.stats().get("listener_manager.lds.update_success", 0) >= 1,
                       20, "the gateway connected and configured")
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
        logs = json_logs(first)
        assert any(e["msg"].startswith("draining: closing 1 streams") for e in logs), logs
        (gone,) = [e for e in logs if e["msg"].startswith("disconnected")]
        assert (gone["proxy"], gone["proxy_type"]) == (GATEWAY_NODE, "router")
        envoy.wait_for(lambda: envoy.stats().get("control_plane.connected_state") == 0,
                       10, "the stream to be closed")
        assert envoy.stats().get("listener_manager.total_listeners_active", 0) >= 1

        second = serve(grpc_port, second_http)
        wait_ready(second_http)
        envoy.wait_for(lambda: envoy.stats().get("control_plane.connected_state") == 1,
                       20, "the gateway reconnected to the next instance")
        with OPENER.open(f"http://127.0.0.1:{second_http}/debug/syncz", timeout=5) as answer:
            assert [e["proxy"] for e in json.load(answer)] == [GATEWAY_NODE]
    finally:
        envoy.stop()
        for server in (first, second):
            if server is not None and server.poll() is None:
                server.kill()
                server.wait(10)


def test_bootstrap_of_a_default_sidecar_gets_its_inbound_listener(tmp_path: Path) -> None:
    """`pilotpy bootstrap` takes the namespace from the node id: a `default` sidecar is
    served as one (its Service's inbound chain), not as an istio-system proxy."""
    node = "sidecar~127.0.0.1~httpbin-v1-abc12.default~default.svc.cluster.local"
    refused = pilotpy("bootstrap", "--node-id", node, "--namespace", "istio-system")
    assert refused.returncode != 0
    assert "names namespace 'default', not 'istio-system'" in refused.stderr
    grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
    done = pilotpy("bootstrap", "--node-id", node, "--xds-address", f"127.0.0.1:{grpc_port}",
                   "--label", "app=httpbin", "--label", "version=v1",
                   "--admin-port", str(admin_port), "--status-port", str(free_port()),
                   "--stats-port", str(free_port()))
    assert done.returncode == 0, done.stderr
    bootstrap = json.loads(done.stdout)
    assert bootstrap["node"]["metadata"]["NAMESPACE"] == "default"
    assert bootstrap["node"]["cluster"] == "httpbin.default"
    # The capture ports are the host's here: move them to free ones.
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(f"proxyListenPort: {free_port()}\nproxyInboundListenPort: {free_port()}\n")
    server = serve(grpc_port, http_port, "--mesh-config", str(mesh))
    envoy = EnvoyProcess(bootstrap, tmp_path, name="sidecar")
    try:
        wait_ready(http_port)
        envoy.start()
        envoy.wait_for(lambda: envoy.stats().get("listener_manager.lds.update_success", 0) >= 1,
                       20, "the sidecar configured")
        dump = envoy.config_dump("dynamic_listeners")
        (inbound,) = [c["active_state"]["listener"] for c in dump["configs"]
                      if c.get("active_state", {}).get("listener", {}).get("name")
                      == "virtualInbound"]
        ports = {c.get("filter_chain_match", {}).get("destination_port")
                 for c in inbound["filter_chains"]}
        assert 8000 in ports, ports
    finally:
        envoy.stop()
        server.kill()
        server.wait(10)


def test_translate_prints_each_problem_once(tmp_path: Path) -> None:
    (tmp_path / "vs.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: typo, namespace: default}\n"
        "spec: {hosts: [foo], retires: 3, http: [{route: [{destination: {host: foo}}]}]}\n")
    _, stderr, code = translate(tmp_path)
    assert code == 0, stderr
    lines = [line for line in stderr.splitlines() if "spec.retires" in line]
    assert lines == [f"Warning [UnknownField] (VirtualService default/typo {tmp_path / 'vs.yaml'})"
                     " spec.retires: unknown field, ignored"], stderr
