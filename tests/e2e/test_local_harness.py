"""The local harness against the real Envoy binary: bootstraps validate, Envoy waits for its
control plane without answering readiness, and the backends behave like httpbin."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pilotpy.local.backend import Backend
from pilotpy.local.bootstrap import envoy_bootstrap
from pilotpy.local.envoy import EnvoyError, EnvoyProcess, free_port, validate_bootstrap

pytestmark = pytest.mark.e2e

NODE_ID = "router~127.0.0.1~istio-ingressgateway-local.istio-system~istio-system.svc.cluster.local"
REPO = Path(__file__).resolve().parents[2]


def _bootstrap(*, with_ports: bool = True, delta: bool = False) -> dict[str, Any]:
    # The xDS port is free and stays unused: nothing answers, so Envoy keeps retrying.
    return envoy_bootstrap(
        node_id=NODE_ID,
        xds_address=("127.0.0.1", free_port()),
        delta=delta,
        labels={"istio": "ingressgateway", "app": "istio-ingressgateway"},
        admin_port=free_port() if with_ports else 0,
        status_port=free_port() if with_ports else None,
        stats_port=free_port() if with_ports else None,
    )


def _request(
    url_host: str, port: int, path: str, *, timeout: float = 2, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    # http.client ignores http_proxy, so requests can only go where the test points them.
    connection = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def _typed_configs(node: Any) -> Iterator[Any]:
    """Every `typed_config` and typed extension option anywhere in a bootstrap."""
    if isinstance(node, list):
        for item in node:
            yield from _typed_configs(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "typed_config":
                yield value
            elif key == "typed_extension_protocol_options":
                yield from value.values()
            yield from _typed_configs(value)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- bootstrap ------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
@pytest.mark.parametrize("with_ports", [True, False], ids=["ports", "no-ports"])
def test_bootstrap_validates(tmp_path: Path, delta: bool, with_ports: bool) -> None:
    bootstrap = _bootstrap(with_ports=with_ports, delta=delta)

    output = validate_bootstrap(bootstrap, tmp_path)

    assert "OK" in output
    assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == (
        "DELTA_GRPC" if delta else "GRPC"
    )
    listeners = bootstrap["static_resources"]["listeners"]
    assert len(listeners) == (2 if with_ports else 0)


def test_bootstrap_node_is_istio_shaped() -> None:
    bootstrap = _bootstrap()

    node = bootstrap["node"]
    metadata = node["metadata"]
    assert node["id"] == NODE_ID
    assert node["cluster"] == "istio-ingressgateway.istio-system"  # pilot-agent: <app>.<ns>
    assert metadata["INSTANCE_IPS"] == "127.0.0.1"
    assert metadata["NAMESPACE"] == "istio-system"
    assert metadata["CLUSTER_ID"] == "Kubernetes"
    assert metadata["LABELS"] == {"istio": "ingressgateway", "app": "istio-ingressgateway"}
    assert isinstance(metadata["ENVOY_STATUS_PORT"], int)
    typed_configs = list(_typed_configs(bootstrap))
    assert len(typed_configs) == 6  # xds-grpc options, 2 HCMs, health check, 2 routers
    assert all("@type" in config for config in typed_configs)


def test_bootstrap_rejects_stats_without_fixed_admin_port() -> None:
    with pytest.raises(ValueError, match="admin_port"):
        envoy_bootstrap(node_id=NODE_ID, xds_address=("127.0.0.1", 1), admin_port=0)


def test_bootstrap_rejects_non_istio_node_id() -> None:
    with pytest.raises(ValueError, match="node id"):
        envoy_bootstrap(node_id="gateway", xds_address=("127.0.0.1", 1), stats_port=None)


# -- Envoy process --------------------------------------------------------------------------


def test_envoy_without_control_plane_is_not_ready(tmp_path: Path) -> None:
    bootstrap = _bootstrap()
    status_port = bootstrap["node"]["metadata"]["ENVOY_STATUS_PORT"]
    envoy = EnvoyProcess(bootstrap, tmp_path)

    with envoy:
        pid = envoy.pid
        assert envoy.admin_url.startswith("http://127.0.0.1:")
        assert envoy.server_state() in {"PRE_INITIALIZING", "INITIALIZING"}
        envoy.wait_for(
            lambda: _xds_connection_attempts(envoy) >= 1,
            timeout=10,
            what="a connection attempt to the xDS address",
        )
        bootstrap_dump = envoy.config_dump()["configs"][0]["bootstrap"]
        assert bootstrap_dump["node"]["id"] == NODE_ID
        with pytest.raises(OSError):
            _request("127.0.0.1", status_port, "/healthz/ready", timeout=1)
        assert envoy.server_state() in {"PRE_INITIALIZING", "INITIALIZING"}

    assert pid is not None
    assert not envoy.running
    assert _process_gone(pid)
    envoy.stop()  # idempotent


def _xds_connection_attempts(envoy: EnvoyProcess) -> int:
    name = "cluster.xds-grpc.upstream_cx_total"
    return envoy.stats("^" + name.replace(".", r"\.") + "$").get(name, 0)


def test_envoy_start_failure_reports_log(tmp_path: Path) -> None:
    broken = {"static_resources": {"clusters": [{"name": "x", "type": "NO_SUCH_TYPE"}]}}
    envoy = EnvoyProcess(broken, tmp_path, name="broken")

    with pytest.raises(EnvoyError, match="exited") as failure:
        envoy.start()

    assert "NO_SUCH_TYPE" in str(failure.value)
    assert not envoy.running


def test_envoy_wait_for_times_out_with_context(tmp_path: Path) -> None:
    with (
        EnvoyProcess(_bootstrap(with_ports=False), tmp_path) as envoy,
        pytest.raises(TimeoutError, match="the impossible"),
    ):
        envoy.wait_for(lambda: False, timeout=0.3, what="the impossible")


def test_initialized_envoy_serves_readiness_stats_and_backend(tmp_path: Path) -> None:
    """Without dynamic resources Envoy initializes at once, which shows what the status and
    stats listeners do once live, and that backends suit Envoy's upstream connection reuse."""
    bootstrap = _bootstrap()
    del bootstrap["dynamic_resources"]
    metadata = bootstrap["node"]["metadata"]
    status_port, stats_port = metadata["ENVOY_STATUS_PORT"], metadata["ENVOY_PROMETHEUS_PORT"]
    proxy_port = free_port()

    with Backend(version="v2") as backend:
        _add_proxy_to(bootstrap, proxy_port, backend.port)
        with EnvoyProcess(bootstrap, tmp_path) as envoy:
            envoy.wait_for(lambda: envoy.server_state() == "LIVE", timeout=10, what="LIVE")
            envoy.wait_for(
                lambda: _request("127.0.0.1", status_port, "/healthz/ready")[0] == 200,
                timeout=10,
                what="/healthz/ready",
            )
            assert _request("127.0.0.1", status_port, "/other")[0] == 404
            status, _, body = _request("127.0.0.1", stats_port, "/stats/prometheus")
            assert status == 200
            assert b"envoy_server_live" in body

            # One downstream connection lands on one worker, whose pool should then reuse a
            # single upstream connection: proof the backend's keep-alive suits Envoy.
            assert _versions_over_one_connection(proxy_port, 3) == ["v2"] * 3
            assert backend.requests == 3
            cx_total = envoy.stats(r"^cluster\.backend\.upstream_cx_total$")
            assert cx_total == {"cluster.backend.upstream_cx_total": 1}

            envoy.admin_post("/healthcheck/fail")
            assert _request("127.0.0.1", status_port, "/healthz/ready")[0] == 503


def _versions_over_one_connection(port: int, count: int) -> list[str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    versions = []
    try:
        for _ in range(count):
            connection.request("GET", "/headers")
            response = connection.getresponse()
            response.read()
            versions.append(response.getheader("x-backend-version"))
    finally:
        connection.close()
    return versions


def _add_proxy_to(bootstrap: dict[str, Any], listen_port: int, backend_port: int) -> None:
    statics = bootstrap["static_resources"]
    statics["clusters"].append(
        {
            "name": "backend",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": "backend",
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {
                                            "address": "127.0.0.1",
                                            "port_value": backend_port,
                                        }
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        }
    )
    # Reuse the stats listener's shape: same HCM, one route to the backend.
    proxy = json.loads(json.dumps(statics["listeners"][-1]))
    proxy["name"] = f"127.0.0.1_{listen_port}"
    proxy["address"]["socket_address"].update(address="127.0.0.1", port_value=listen_port)
    hcm = proxy["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["stat_prefix"] = "proxy"
    hcm["route_config"] = {
        "name": "proxy",
        "virtual_hosts": [
            {
                "name": "backend",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}],
            }
        ],
    }
    statics["listeners"].append(proxy)


# -- backend --------------------------------------------------------------------------------


def test_backend_echoes_and_answers_status() -> None:
    with Backend(version="v1", name="httpbin") as backend:
        assert backend.port != 0
        connection = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=5)
        try:
            # One keep-alive connection for every request, as Envoy would use it.
            connection.request("GET", "/headers?a=1", headers={"X-Test": "yes"})
            response = connection.getresponse()
            echo = json.loads(response.read())
            assert response.status == 200
            assert response.getheader("x-backend-version") == "v1"
            assert response.getheader("x-backend-name") == "httpbin"
            assert echo["headers"]["x-test"] == "yes"
            assert echo["version"] == "v1"
            assert echo["path"] == "/headers"
            assert echo["args"] == {"a": "1"}
            assert echo["host"] == f"127.0.0.1:{backend.port}"

            connection.request("GET", "/status/503")
            response = connection.getresponse()
            response.read()
            assert response.status == 503
            assert response.getheader("x-backend-version") == "v1"

            connection.request("POST", "/anything/x", body=b"hello")
            response = connection.getresponse()
            echo = json.loads(response.read())
            assert (echo["method"], echo["data"]) == ("POST", "hello")

            connection.request("GET", "/status/204")
            response = connection.getresponse()
            assert (response.status, response.read()) == (204, b"")

            connection.request("GET", "/delay/0.05")
            assert connection.getresponse().read()
        finally:
            connection.close()
        assert backend.requests == 5
        assert _request("127.0.0.1", backend.port, "/status/oops")[0] == 400


def test_backend_stop_closes_keepalive_connections() -> None:
    backend = Backend()
    backend.start()
    connection = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=5)
    try:
        connection.request("GET", "/get")
        connection.getresponse().read()
        backend.stop()
        with pytest.raises((OSError, http.client.HTTPException)):
            connection.request("GET", "/get")
            connection.getresponse().read()
    finally:
        connection.close()
        backend.stop()


def test_backend_only_binds_loopback() -> None:
    for host in ("0.0.0.0", "10.1.2.3", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            Backend(host=host)
    # In a pod's own network namespace the wildcard is private too; other addresses are not.
    with pytest.raises(ValueError, match="loopback"):
        Backend(host="10.1.2.3", pod=True)


def test_backend_command_line() -> None:
    command = [
        sys.executable, "-m", "pilotpy.local.backend",
        "--listen", "127.0.0.1:0", "--version", "v2", "--name", "cli", "--exit-after", "30",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 10)
        assert readable, "backend printed no listening line within 10 s"
        line = proc.stdout.readline()
        url = line.split()[2]
        port = int(url.rsplit(":", 1)[1])
        status, headers, _ = _request("127.0.0.1", port, "/headers")
        assert (status, headers["x-backend-version"], headers["x-backend-name"]) == (
            200,
            "v2",
            "cli",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_free_port_never_repeats_within_a_process() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_free_port_stays_below_the_ephemeral_range() -> None:
    """Outgoing connections take ports from the ephemeral range; a picked port that is not
    bound yet must not be one of them."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(10000 <= free_port() < low for _ in range(50))
