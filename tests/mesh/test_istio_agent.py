"""Istio's own proxy against pilotpy: every pod here runs the real pilot-agent (built from the
pin), which gets its workload certificate from pilotpy's CA and its config over the
authenticated TLS port, verified against pilotpy's root (tests/mesh/agent.py). W1 goes
through an agent-managed gateway (`pilot-agent proxy router`), W2 through agent-managed
sidecars; agents with a bad credential get neither a certificate nor config, and the others
do not notice."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from pilotpy.ca.bundle import generated_bundle
from tests.istio_bins import ISTIOCTL, UNREACHABLE_KUBECONFIG
from tests.istioctl_certs import ISTIOD_SAN, write_cert_dir
from tests.mesh.agent import ISTIOD_NAME
from tests.mesh.conftest import require_capabilities
from tests.mesh.mesh import Mesh, ServiceSpec, running
from tests.mesh.netns import wait_until
from tests.mesh.pods import Pod, PodSpec

GATEWAY = "istio-ingressgateway-agent"
GATEWAY_PORT = 8080
HTTPBIN = ServiceSpec("httpbin-service", "10.96.0.20", {"app": "httpbin"})
SERVICES = (HTTPBIN, ServiceSpec("istio-ingressgateway", "10.96.1.30",
                                 {"istio": "ingressgateway"}, port=80,
                                 target_port=GATEWAY_PORT, port_name="http2",
                                 namespace="istio-system"))
PODS = (
    PodSpec(GATEWAY, {"istio": "ingressgateway", "app": "istio-ingressgateway"},
            namespace="istio-system", sidecar=False, router=True, app_port=None, agent=True),
    PodSpec("sleep", {"app": "sleep"}, app_port=None, agent=True),
    PodSpec("httpbin-v1", {"app": "httpbin", "version": "v1"}, agent=True),
    PodSpec("httpbin-v2", {"app": "httpbin", "version": "v2"}, agent=True),
    # Refused: a token of the same account in another namespace, an expired token, a token
    # signed by a key pilotpy does not trust, no token at all, and a valid token whose CSR
    # and node claim another account.
    PodSpec("other-ns", {"app": "other-ns"}, app_port=None, agent=True,
            token="other-namespace"),
    PodSpec("expired", {"app": "expired"}, app_port=None, agent=True, token="expired"),
    PodSpec("forged", {"app": "forged"}, app_port=None, agent=True, token="forged"),
    PodSpec("no-token", {"app": "no-token"}, app_port=None, agent=True, token="none"),
    PodSpec("impostor", {"app": "impostor"}, app_port=None, agent=True,
            service_account="sleep", declared_account="httpbin"),
)
ADMITTED = [p.name for p in PODS if p.admitted]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def pilot_log() -> Iterator[Records]:
    records = Records()
    logger = logging.getLogger("pilotpy")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def agents(pilot_log: Records) -> Iterator[Mesh]:
    require_capabilities()
    yield from running(Mesh(PODS, SERVICES))


def metric(mesh: Mesh, name: str) -> float:
    total = 0.0
    for line in mesh.plane.metrics.render().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def connected(mesh: Mesh) -> set[str]:
    return {p.node_id.split("~")[2] for p in mesh.plane.xds.proxies()}


def gateway_get(mesh: Mesh, host: str = "httpbin.local") -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(f"http://{mesh.pods[GATEWAY].ip}:{GATEWAY_PORT}/headers",
                                     headers={"Host": host})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def test_every_admitted_agent_is_ready_with_config_over_tls(agents: Mesh) -> None:
    for name in ADMITTED:
        assert agents.pods[name].ready_status() == 200, name
    wait_until(lambda: {f"{n}.{agents.pods[n].spec.namespace}" for n in ADMITTED}
               <= connected(agents), "every admitted agent connected")
    # Over the TLS port: the front forwarded one connection per agent (xDS and CA share it).
    assert agents.plane.secure is not None and agents.plane.secure.front is not None
    assert len(agents.plane.secure.front.connections) >= len(ADMITTED)
    assert metric(agents, "citadel_server_success_cert_issuance_count") >= len(ADMITTED)


def test_w1_through_an_agent_managed_gateway(agents: Mesh) -> None:
    gateway = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "httpbin-gateway", "namespace": "default"},
               "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
                   {"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": ["httpbin.local"]}]}}
    agents.apply([gateway])
    wait_until(lambda: gateway_get(agents)[0] == 404, "404 from the gateway's blackhole")
    status, headers = gateway_get(agents)
    assert headers.get("server") == "istio-envoy"
    rule = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "httpbin", "namespace": "default"},
            "spec": {"host": "httpbin-service", "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}}]}}
    routes = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
              "metadata": {"name": "httpbin", "namespace": "default"},
              "spec": {"hosts": ["httpbin.local"], "gateways": ["httpbin-gateway"],
                       "http": [{"route": [
                           {"destination": {"host": "httpbin-service", "subset": "v1"},
                            "weight": 0},
                           {"destination": {"host": "httpbin-service", "subset": "v2"},
                            "weight": 100}],
                           "retries": {"attempts": 10}}]}}
    agents.apply([rule, routes])
    wait_until(lambda: gateway_get(agents)[0] == 200, "200 through the gateway")
    for _ in range(5):
        status, headers = gateway_get(agents)
        assert (status, headers.get("x-backend-version")) == (200, "v2")


def test_w2_through_agent_managed_sidecars(agents: Mesh) -> None:
    inbound = "cluster.inbound|8000||;.upstream_rq_total"
    before = sum(agents.pods[p].stat(inbound) for p in ("httpbin-v1", "httpbin-v2"))
    (answer,) = agents.pods["sleep"].get("http://httpbin-service/headers")
    assert answer["status"] == 200, answer
    assert answer["headers"]["server"] == "envoy"
    assert "x-envoy-upstream-service-time" in answer["headers"]
    assert sum(agents.pods[p].stat(inbound) for p in ("httpbin-v1", "httpbin-v2")) > before


def sds_secret(pod: Pod, name: str) -> secret_pb2.Secret:
    """What the pod's agent serves its Envoy as SDS secret `name`, read from the agent's
    own SDS socket (the one Envoy's `sds-grpc` cluster uses)."""
    socket = pod.workdir / "agent/var/run/secrets/workload-spiffe-uds/socket"
    request = discovery_pb2.DiscoveryRequest(
        type_url="type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        resource_names=[name])
    request.node.id = pod.node_id
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        call = channel.stream_stream(
            "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString)
        responses = call(iter([request]), timeout=10)
        response = next(responses)
        responses.cancel()
    secret = secret_pb2.Secret()
    response.resources[0].Unpack(secret)
    return secret


def test_workload_certificate_is_the_pods_identity_and_chains_to_pilotpys_root(
        agents: Mesh) -> None:
    assert agents.plane.secure is not None
    root = x509.load_pem_x509_certificate(agents.plane.secure.root_pem)
    for name, account in (("sleep", "sleep"), ("httpbin-v1", "httpbin")):
        pod = agents.pods[name]
        secret = sds_secret(pod, "default")
        chain = x509.load_pem_x509_certificates(
            secret.tls_certificate.certificate_chain.inline_bytes)
        leaf = chain[0]
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"spiffe://cluster.local/ns/default/sa/{account}"]
        leaf.verify_directly_issued_by(root)
        trust = sds_secret(pod, "ROOTCA")
        assert x509.load_pem_x509_certificates(
            trust.validation_context.trusted_ca.inline_bytes) == [root]


def test_the_tls_port_proves_istiods_name_under_pilotpys_root(agents: Mesh) -> None:
    """What the agents verified (they dial with root-cert.pem and ServerName
    istiod.istio-system.svc, no insecure option): the same check here with Python's ssl."""
    assert agents.plane.secure is not None
    context = ssl.create_default_context(cadata=agents.plane.secure.root_pem.decode())
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((agents.network.gateway, agents.plane.grpc_tls_port),
                                  timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=ISTIOD_NAME) as tls:
        assert tls.selected_alpn_protocol() == "h2"
    other = ssl.create_default_context(
        cadata=generated_bundle("cluster.local", "other").root_pem.decode())
    with socket.create_connection((agents.network.gateway, agents.plane.grpc_tls_port),
                                  timeout=5) as raw, pytest.raises(ssl.SSLCertVerificationError):
        other.wrap_socket(raw, server_hostname=ISTIOD_NAME)


REFUSAL_LOGS = {
    "other-ns": ("CSR refused (PERMISSION_DENIED)", "xDS stream refused (PERMISSION_DENIED)"),
    "impostor": ("CSR refused (PERMISSION_DENIED)", "xDS stream refused (PERMISSION_DENIED)"),
    "expired": ("CSR refused (UNAUTHENTICATED)", "xDS stream refused (UNAUTHENTICATED)"),
    "forged": ("CSR refused (UNAUTHENTICATED)", "xDS stream refused (UNAUTHENTICATED)"),
}


def test_refused_agents_get_no_certificate_and_no_config(agents: Mesh,
                                                         pilot_log: Records) -> None:
    def refused_everywhere() -> bool:
        return all(any(text in m and agents.pods[pod].ip in m for m in pilot_log.messages)
                   for pod, texts in REFUSAL_LOGS.items() for text in texts[:1]) and all(
            any(text in m for m in pilot_log.messages)
            for texts in REFUSAL_LOGS.values() for text in texts[1:])

    wait_until(refused_everywhere, "each refusal logged by pilotpy", timeout=60)
    refused = [p.name for p in PODS if not p.admitted]
    for name in refused:
        pod = agents.pods[name]
        assert pod.ready_status() != 200, name
        assert f"{name}.default" not in connected(agents), name
        assert not (pod.workdir / "agent/var/run/secrets/workload-spiffe-uds/socket").exists() \
            or _no_certificate(pod), name
    assert metric(agents, "citadel_server_authentication_failure_count") >= 2
    assert metric(agents, "citadel_server_id_extraction_err_count") >= 2
    assert metric(agents, 'pilotpy_xds_auth_refusals{code="UNAUTHENTICATED"}') >= 2
    assert metric(agents, 'pilotpy_xds_auth_refusals{code="PERMISSION_DENIED"}') >= 2
    # The others did not notice.
    (answer,) = agents.pods["sleep"].get("http://httpbin-service/get")
    assert answer["status"] == 200


def _no_certificate(pod: Pod) -> bool:
    try:
        sds_secret(pod, "default")
    except (grpc.RpcError, IndexError, StopIteration):
        return True
    return False


def test_istioctl_proxy_status_over_the_tls_port_verifies_pilotpys_root(agents: Mesh,
                                                                        tmp_path: Path) -> None:
    """istioctl with --cert-dir: a mesh certificate as its identity (no token), pilotpy's
    root to verify the server, no --insecure."""
    assert agents.plane.secure is not None and agents.plane.secure.authority is not None
    certs = write_cert_dir(agents.plane.secure.authority, tmp_path / "certs")
    (tmp_path / "kubeconfig").write_text(UNREACHABLE_KUBECONFIG)
    command = [str(ISTIOCTL), "--kubeconfig", str(tmp_path / "kubeconfig"),
               "proxy-status", "--revision", "default", "--timeout", "10s", "--xds-address",
               f"{agents.network.gateway}:{agents.plane.grpc_tls_port}",
               "--cert-dir", str(certs), "--authority", ISTIOD_SAN, "-v", "1"]
    wanted = [agents.pods[n].node_id for n in ADMITTED]
    last = None
    for _ in range(30):  # bounded: each run has its own timeout
        last = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        rows = [line for line in last.stdout.splitlines()[1:] if line.strip()]
        synced = {node for node in wanted for row in rows if row.startswith(node)
                  and row.count("SYNCED") == 4}
        if last.returncode == 0 and synced == set(wanted):
            return
        time.sleep(1)
    raise AssertionError(f"not every agent SYNCED over TLS:\n{last}")




