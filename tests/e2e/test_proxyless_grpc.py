"""Proxyless gRPC end to end (docs/proxyless-grpc.md): `pilotpy serve` configures grpcio's own
xDS client and xDS-enabled grpcio servers on loopback, no Envoy anywhere. One pilotpy, two
echo servers (v1 on 127.0.0.31, v2 on 127.0.0.32, each asking for its inbound listener) and
one long-lived client process for the whole module; every test ends with no NACK from any
of them (/debug/syncz and pilot_total_xds_rejects)."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pilotpy.local.envoy import free_port
from pilotpy.local.grpc_bootstrap import grpc_bootstrap

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PILOTPY = Path(sys.executable).with_name("pilotpy")
SERVERS = {"v1": "127.0.0.31", "v2": "127.0.0.32"}
CLIENT_NODE = "sidecar~127.0.0.40~echo-client.default~default.svc.cluster.local"
FQDN = "xds:///echo.default.svc.cluster.local:9080"
SHORT = "xds:///echo:9080"
PLAIN = "xds:///plain:9090"
WAIT = 20.0  # bound of every wait for something to happen


def registry(port: int, plain_endpoints: list[str]) -> str:
    """Services `echo` (both versions) and `plain` (the endpoints given) on the servers'
    port, their Pods and EndpointSlices."""
    pods = "".join(f"""---
apiVersion: v1
kind: Pod
metadata: {{name: echo-{version}, namespace: default, labels: {{app: echo, version: {version}}}}}
status: {{podIP: {ip}}}
""" for version, ip in SERVERS.items())

    def endpoint_slice(name: str, addresses: list[str]) -> str:
        endpoints = "".join(f"\n- addresses: [{a}]" for a in addresses) or " []"
        return f"""---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: grpc, port: {port}}}]
endpoints:{endpoints}
"""
    services = "".join(f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  clusterIP: {ip}
  selector: {{app: {name}}}
  ports: [{{name: grpc, port: {number}, targetPort: {port}}}]
""" for name, ip, number in (("echo", "10.96.0.20", 9080), ("plain", "10.96.0.21", 9090)))
    return (services + pods + endpoint_slice("echo", list(SERVERS.values()))
            + endpoint_slice("plain", plain_endpoints))


ROUTING = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {grpcStatus: RESOURCE_EXHAUSTED, percentage: {value: 100}}}
    route: [{destination: {host: echo, subset: v1}}]
  - match: [{headers: {x-slow: {exact: "1"}}}]
    timeout: 0.3s
    route: [{destination: {host: echo, subset: v1}}]
  - match: [{headers: {x-version: {exact: v2}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - route:
    - {destination: {host: echo, subset: v1}, weight: 80}
    - {destination: {host: echo, subset: v2}, weight: 20}
"""


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT:.0f} s waiting for {what}")
        time.sleep(0.2)


def _accepts(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((address, port)) == 0


def _ready(port: int) -> bool:
    try:
        return _get(f"http://127.0.0.1:{port}/ready").startswith("ready")
    except OSError:  # refused, or 503 before the config is loaded
        return False


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@dataclass
class Mesh:
    workdir: Path
    config: Path
    port: int  # the servers' port (targetPort of both Services)
    http_port: int
    monitoring_port: int
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    client: subprocess.Popen[str] | None = None

    def write_registry(self, plain_endpoints: list[str]) -> None:
        path = self.config / "registry.yaml"
        staging = path.with_suffix(".tmp")  # not *.yaml: the file source never reads it
        staging.write_text(registry(self.port, plain_endpoints), encoding="utf-8")
        staging.replace(path)

    def spawn(self, args: list[str], node_id: str, xds_port: int, **labels: str
              ) -> subprocess.Popen[str]:
        name = node_id.split("~")[2]
        bootstrap = self.workdir / f"{name}.bootstrap.json"
        bootstrap.write_text(json.dumps(grpc_bootstrap(node_id, ("127.0.0.1", xds_port),
                                                       labels=labels)), encoding="utf-8")
        env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
        log = (self.workdir / f"{name}.log").open("w", encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.grpc_echo", *args], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
            start_new_session=True)
        self.processes.append(process)
        return process

    def call(self, target: str, count: int = 1, metadata: dict[str, str] | None = None,
             payload: str = "") -> dict[str, int]:
        """The answers of `count` calls from the running client: version -> count, or
        status code -> count."""
        assert self.client is not None and self.client.stdin and self.client.stdout
        self.client.stdin.write(json.dumps({"target": target, "count": count,
                                            "metadata": metadata or {},
                                            "payload": payload}) + "\n")
        ready, _, _ = select.select([self.client.stdout], [], [], count * 10.0 + WAIT)
        assert ready, f"the client did not answer {count} calls to {target}"
        answer: dict[str, int] = json.loads(self.client.stdout.readline())
        return answer

    def rejects(self) -> list[str]:
        """NACKs pilotpy saw: errors in /debug/syncz and pilot_total_xds_rejects lines."""
        found = [f"{p['proxy']} {t}: {r['lastError']}"
                 for p in json.loads(_get(f"http://127.0.0.1:{self.http_port}/debug/syncz"))
                 for t, r in p.get("resources", {}).items() if r.get("lastError")]
        metrics = _get(f"http://127.0.0.1:{self.monitoring_port}/metrics")
        found += [line for line in metrics.splitlines()
                  if line.startswith("pilot_total_xds_rejects{") and not line.endswith(" 0")]
        return found


def _stop(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        process.stdin.close()  # the echo programs end when stdin closes
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = tmp_path_factory.mktemp("proxyless-grpc")
    config = workdir / "config"
    config.mkdir()
    env = Mesh(workdir, config, free_port(), free_port(), free_port())
    env.write_registry([SERVERS["v1"]])
    (config / "routing.yaml").write_text(ROUTING, encoding="utf-8")
    xds_port = free_port()
    pilot = subprocess.Popen(
        [str(PILOTPY), "--log-level", "warning", "serve", "--config", str(config),
         "--grpc-addr", f"127.0.0.1:{xds_port}", "--grpc-tls-addr", "",
         "--http-addr", f"127.0.0.1:{env.http_port}",
         "--monitoring-addr", f"127.0.0.1:{env.monitoring_port}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=(workdir / "pilotpy.log").open("w", encoding="utf-8"), start_new_session=True)
    try:
        _eventually(lambda: _ready(env.http_port), "pilotpy to be ready")
        for version, ip in SERVERS.items():
            env.spawn(["server", version, f"{ip}:{env.port}"],
                      f"sidecar~{ip}~echo-{version}.default~default.svc.cluster.local",
                      xds_port, app="echo", version=version)
        # An xDS server listens only once pilotpy sent its inbound listener.
        _eventually(lambda: all(_accepts(ip, env.port) for ip in SERVERS.values()),
                    "both echo servers to listen")
        env.client = env.spawn(["client"], CLIENT_NODE, xds_port, app="echo-client")
        yield env
    finally:
        for process in env.processes:
            _stop(process)
        pilot.terminate()
        try:
            pilot.wait(10)
        except subprocess.TimeoutExpired:
            pilot.kill()
            pilot.wait(5)


@pytest.fixture(autouse=True)
def no_nack(mesh: Mesh) -> Iterator[None]:
    yield
    assert mesh.rejects() == []


def test_client_reaches_the_service_by_its_fqdn(mesh: Mesh) -> None:
    answers = mesh.call(FQDN, 10)
    assert sum(answers.get(v, 0) for v in SERVERS) == 10, answers


def test_client_reaches_the_service_by_its_short_name(mesh: Mesh) -> None:
    answers = mesh.call(SHORT, 10)
    assert sum(answers.get(v, 0) for v in SERVERS) == 10, answers


def test_an_80_20_split_is_seen_in_the_answers(mesh: Mesh) -> None:
    answers = mesh.call(SHORT, 200)
    assert answers.get("v1", 0) + answers.get("v2", 0) == 200, answers
    # 160 expected; the bounds are over 4 standard deviations (5.7) away.
    assert 136 <= answers["v1"] <= 184, answers


def test_a_header_match_picks_the_subset(mesh: Mesh) -> None:
    assert mesh.call(SHORT, 20, {"x-version": "v2"}) == {"v2": 20}


def test_a_fault_abort_returns_the_configured_status(mesh: Mesh) -> None:
    assert mesh.call(SHORT, 5, {"x-fault": "abort"}) == {"RESOURCE_EXHAUSTED": 5}


def test_a_virtual_service_timeout_fires_before_the_client_deadline(mesh: Mesh) -> None:
    # The server sleeps 3 s; the client's own deadline is 10 s, the route's 0.3 s.
    assert mesh.call(SHORT, 1, {"x-slow": "1"}, payload="sleep:3") == {"DEADLINE_EXCEEDED": 1}


def test_endpoints_added_and_removed_reach_the_running_client(mesh: Mesh) -> None:
    assert mesh.call(PLAIN, 10) == {"v1": 10}
    mesh.write_registry([SERVERS["v1"], SERVERS["v2"]])
    _eventually(lambda: "v2" in mesh.call(PLAIN, 10), "the added endpoint to answer")
    mesh.write_registry([SERVERS["v2"]])
    _eventually(lambda: mesh.call(PLAIN, 10) == {"v2": 10}, "the removed endpoint to leave")
