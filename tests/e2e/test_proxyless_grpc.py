"""Proxyless gRPC end to end (docs/proxyless-grpc.md): `pilotpy serve` configures grpcio's own
xDS client and xDS-enabled grpcio servers on loopback, no Envoy anywhere. One pilotpy, two
echo servers (v1 on 127.0.0.31, v2 on 127.0.0.32, each asking for its inbound listener) and
one long-lived client process for the whole module; every test ends with no NACK from any
of them (/debug/syncz and pilot_total_xds_rejects)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pilotpy.local.envoy import free_port
from tests.e2e.grpc_support import Pilotpy, accepts, call, eventually, spawn, stop

pytestmark = pytest.mark.e2e

SERVERS = {"v1": "127.0.0.31", "v2": "127.0.0.32"}
CLIENT_NODE = "sidecar~127.0.0.40~echo-client.default~default.svc.cluster.local"
FQDN = "xds:///echo.default.svc.cluster.local:9080"
SHORT = "xds:///echo:9080"
PLAIN = "xds:///plain:9090"
STICKY = "xds:///sticky:9091"


def registry(port: int, plain_endpoints: list[str]) -> str:
    """Services `echo` and `sticky` (both versions) and `plain` (the endpoints given) on
    the servers' port, their Pods and EndpointSlices."""
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
""" for name, ip, number in (("echo", "10.96.0.20", 9080), ("plain", "10.96.0.21", 9090),
                              ("sticky", "10.96.0.22", 9091)))
    return (services + pods + endpoint_slice("echo", list(SERVERS.values()))
            + endpoint_slice("plain", plain_endpoints)
            + endpoint_slice("sticky", list(SERVERS.values())))


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
  - match: [{uri: {prefix: /echo.Echo/Forbidden}}]
    fault: {abort: {grpcStatus: PERMISSION_DENIED, percentage: {value: 100}}}
    route: [{destination: {host: echo, subset: v1}}]
  - match: [{uri: {exact: /echo.Echo/Other}}]
    route: [{destination: {host: echo, subset: v2}}]
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
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sticky, namespace: default}
spec:
  host: sticky
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
"""


@dataclass
class Mesh:
    workdir: Path
    config: Path
    port: int  # the servers' port (targetPort of both Services)
    pilotpy: Pilotpy | None = None
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    client: subprocess.Popen[str] | None = None

    def write_registry(self, plain_endpoints: list[str]) -> None:
        path = self.config / "registry.yaml"
        staging = path.with_suffix(".tmp")  # not *.yaml: the file source never reads it
        staging.write_text(registry(self.port, plain_endpoints), encoding="utf-8")
        staging.replace(path)

    def call(self, target: str, count: int = 1, metadata: dict[str, str] | None = None,
             payload: str = "", method: str = "/echo.Echo/Call") -> dict[str, int]:
        assert self.client is not None
        return call(self.client, target, count, metadata, payload=payload, method=method)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = tmp_path_factory.mktemp("proxyless-grpc")
    config = workdir / "config"
    config.mkdir()
    env = Mesh(workdir, config, free_port())
    env.write_registry([SERVERS["v1"]])
    (config / "routing.yaml").write_text(ROUTING, encoding="utf-8")
    try:
        env.pilotpy = pilot = Pilotpy(config, workdir)
        for version, ip in SERVERS.items():
            env.processes.append(spawn(
                workdir, ["server", version, f"{ip}:{env.port}"],
                f"sidecar~{ip}~echo-{version}.default~default.svc.cluster.local",
                pilot.xds_port, {"app": "echo", "version": version}))
        # An xDS server listens only once pilotpy sent its inbound listener.
        eventually(lambda: all(accepts(ip, env.port) for ip in SERVERS.values()),
                   "both echo servers to listen")
        env.client = spawn(workdir, ["client"], CLIENT_NODE, pilot.xds_port,
                           {"app": "echo-client"})
        env.processes.append(env.client)
        yield env
    finally:
        for process in env.processes:
            stop(process)
        if env.pilotpy is not None:
            env.pilotpy.stop()


@pytest.fixture(autouse=True)
def no_nack(mesh: Mesh) -> Iterator[None]:
    yield
    assert mesh.pilotpy is not None
    assert mesh.pilotpy.rejects() == []


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


def test_a_path_match_picks_its_route(mesh: Mesh) -> None:
    assert mesh.call(SHORT, 20, method="/echo.Echo/Other") == {"v2": 20}
    # The route's fault answers before any server is asked.
    assert mesh.call(SHORT, 3, method="/echo.Echo/Forbidden") == {"PERMISSION_DENIED": 3}


def test_a_consistent_hash_keeps_a_user_on_one_server(mesh: Mesh) -> None:
    for user in ("ana", "bo"):
        answers = mesh.call(STICKY, 10, {"x-user": user})
        assert len(answers) == 1 and set(answers) <= set(SERVERS), answers
    # Twenty users all hashed onto one of two servers: 2 in a million.
    seen = set()
    for index in range(20):
        seen |= set(mesh.call(STICKY, 1, {"x-user": f"user-{index}"}))
    assert seen == set(SERVERS)


def test_a_fault_abort_returns_the_configured_status(mesh: Mesh) -> None:
    assert mesh.call(SHORT, 5, {"x-fault": "abort"}) == {"RESOURCE_EXHAUSTED": 5}


def test_a_virtual_service_timeout_fires_before_the_client_deadline(mesh: Mesh) -> None:
    # The server sleeps 3 s; the client's own deadline is 10 s, the route's 0.3 s.
    assert mesh.call(SHORT, 1, {"x-slow": "1"}, payload="sleep:3") == {"DEADLINE_EXCEEDED": 1}


def test_endpoints_added_and_removed_reach_the_running_client(mesh: Mesh) -> None:
    assert mesh.call(PLAIN, 10) == {"v1": 10}
    mesh.write_registry([SERVERS["v1"], SERVERS["v2"]])
    eventually(lambda: "v2" in mesh.call(PLAIN, 10), "the added endpoint to answer")
    mesh.write_registry([SERVERS["v2"]])
    eventually(lambda: mesh.call(PLAIN, 10) == {"v2": 10}, "the removed endpoint to leave")
