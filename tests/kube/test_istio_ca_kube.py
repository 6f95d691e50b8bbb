"""The mesh CA and :15012 against a real API server: service-account tokens from the
TokenRequest API checked by TokenReview (audience istio-ca), the self-signed root kept in
Secret istio-ca-secret, the `cacerts` plug-in, the istio-ca-root-cert ConfigMap in every
namespace, and two pilotpy replicas electing one leader on a Lease."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pilotpy.ca import ca_pb2
from pilotpy.server.controlplane import ControlPlane
from pilotpy.server.settings import Settings
from tests.kube.cluster import ApiStatusError, Cluster
from tests.unit.test_ca import _intermediate, csr
from tests.xds_client import SotwClient

ISTIOD = "istiod.istio-system.svc"
CREATE = "/istio.v1.auth.IstioCertificateService/CreateCertificate"
ROOT_CM = "istio-ca-root-cert"
ELECTION = "istio-namespace-controller-election"
SECRETS = "/api/v1/namespaces/istio-system/secrets"


@contextlib.asynccontextmanager
async def pilotpy(cluster: Cluster, workdir: Path, name: str = "pilotpy-0"
                  ) -> AsyncIterator[ControlPlane]:
    kubeconfig = cluster.kubeconfig(workdir / f"kubeconfig-{uuid.uuid4().hex[:6]}")
    plane = ControlPlane(Settings(
        grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0", grpc_tls_addr="127.0.0.1:0",
        monitoring_addr="127.0.0.1:0", kube=True, kubeconfig=kubeconfig, instance_id=name,
        lease_duration_seconds=4.0))
    await plane.start()
    try:
        assert plane.secure is not None
        await asyncio.wait_for(plane.secure.ready.wait(), 30)
        yield plane
    finally:
        await plane.stop()


def account(cluster: Cluster, namespace: str, name: str) -> None:
    cluster.admin.ensure_namespace(namespace)
    cluster.admin.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": name, "namespace": namespace}})


async def create_certificate(plane: ControlPlane, token: str, identity: str
                             ) -> ca_pb2.IstioCertificateResponse:
    assert plane.secure is not None
    credentials = grpc.ssl_channel_credentials(plane.secure.root_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{plane.grpc_tls_port}", credentials,
                                       options=[("grpc.ssl_target_name_override", ISTIOD)]
                                       ) as channel:
        call = channel.unary_unary(
            CREATE, request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
            response_deserializer=ca_pb2.IstioCertificateResponse.FromString)
        pem = csr(identity).public_bytes(serialization.Encoding.PEM).decode()
        answer: ca_pb2.IstioCertificateResponse = await call(
            ca_pb2.IstioCertificateRequest(csr=pem),
            metadata=[("authorization", f"Bearer {token}")], timeout=15)
        return answer


async def test_tokenrequest_tokens_are_reviewed_with_audience_istio_ca(
        cluster: Cluster, tmp_path: Path) -> None:
    account(cluster, "default", "sleep")
    identity = "spiffe://cluster.local/ns/default/sa/sleep"
    async with pilotpy(cluster, tmp_path) as plane:
        token = await asyncio.to_thread(cluster.admin.token, "default", "sleep", 600,
                                        ("istio-ca",))
        answer = await create_certificate(plane, token, identity)
        leaf = x509.load_pem_x509_certificate(answer.cert_chain[0].encode())
        assert leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier) == [identity]
        # The API server's own audience is not istio-ca: TokenReview refuses it.
        plain = await asyncio.to_thread(cluster.admin.token, "default", "sleep", 600)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await create_certificate(plane, plain, identity)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "invalid for the target audiences [\"istio-ca\"]" in (refused.value.details() or "")
        # A real token of another namespace may not be this node.
        account(cluster, "elsewhere", "sleep")
        other = await asyncio.to_thread(cluster.admin.token, "elsewhere", "sleep", 600,
                                        ("istio-ca",))
        assert plane.secure is not None
        async with SotwClient(
                f"127.0.0.1:{plane.grpc_tls_port}",
                "sidecar~10.0.0.5~sleep-1.default~default.svc.cluster.local",
                metadata={"NAMESPACE": "default", "SERVICE_ACCOUNT": "sleep"},
                credentials=grpc.ssl_channel_credentials(plane.secure.root_pem),
                options=[("grpc.ssl_target_name_override", ISTIOD)],
                call_metadata=[("authorization", f"Bearer {other}")]) as client:
            await client.request("type.googleapis.com/envoy.config.cluster.v3.Cluster")
            assert await client.wait_closed(15) == grpc.StatusCode.PERMISSION_DENIED


def _secret_data(cluster: Cluster, name: str) -> dict[str, bytes]:
    found = cluster.admin.get(f"{SECRETS}/{name}")
    return {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}


async def test_the_self_signed_root_is_kept_in_istio_ca_secret_and_reused(
        cluster: Cluster, tmp_path: Path) -> None:
    async with pilotpy(cluster, tmp_path) as first:
        assert first.secure is not None
        root = first.secure.root_pem
    stored = _secret_data(cluster, "istio-ca-secret")
    assert stored["ca-cert.pem"] == root and stored["ca-key.pem"]
    async with pilotpy(cluster, tmp_path, "pilotpy-1") as second:
        assert second.secure is not None and second.secure.root_pem == root


@pytest.fixture
def cacerts(cluster: Cluster) -> Iterator[tuple[bytes, bytes]]:
    cert, key, root = _intermediate()
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "cacerts", "namespace": "istio-system"},
              "data": {k: base64.b64encode(v).decode() for k, v in (
                  ("ca-cert.pem", cert), ("ca-key.pem", key), ("root-cert.pem", root),
                  ("cert-chain.pem", cert + root))}}
    cluster.admin.apply(secret)
    try:
        yield cert, root
    finally:
        cluster.admin.delete(secret)


async def test_cacerts_plugs_in_an_intermediate(cluster: Cluster, tmp_path: Path,
                                                cacerts: tuple[bytes, bytes]) -> None:
    cert, root = cacerts
    account(cluster, "default", "sleep")
    async with pilotpy(cluster, tmp_path) as plane:
        assert plane.secure is not None and plane.secure.root_pem == root
        token = await asyncio.to_thread(cluster.admin.token, "default", "sleep", 600,
                                        ("istio-ca",))
        answer = await create_certificate(plane, token,
                                          "spiffe://cluster.local/ns/default/sa/sleep")
        leaf = x509.load_pem_x509_certificate(answer.cert_chain[0].encode())
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(cert))
        assert answer.cert_chain[-1].encode() == root


def root_config_map(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = cluster.admin.get(
            f"/api/v1/namespaces/{namespace}/configmaps/{ROOT_CM}")
    except ApiStatusError as err:
        if err.code == 404:
            return None
        raise
    return found


async def eventually(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_the_root_is_published_in_every_namespace_and_kept_there(
        cluster: Cluster, tmp_path: Path) -> None:
    async with pilotpy(cluster, tmp_path) as plane:
        assert plane.secure is not None
        root = plane.secure.root_pem.decode()

        def published(namespace: str) -> bool:
            found = root_config_map(cluster, namespace)
            return found is not None and found["data"].get("root-cert.pem") == root

        cluster.admin.ensure_namespace("team-a")
        for namespace in ("default", "istio-system", "kube-system", "team-a"):
            await eventually(lambda n=namespace: published(n), f"the root in {namespace}")
        assert root_config_map(cluster, "kube-public") is None  # skipped, as by istiod
        found = root_config_map(cluster, "team-a")
        assert found is not None and found["metadata"]["labels"] == {"istio.io/config": "true"}
        cluster.admin.request("DELETE", f"/api/v1/namespaces/team-a/configmaps/{ROOT_CM}")
        await eventually(lambda: published("team-a"), "the deleted ConfigMap back")
        cluster.admin.request("PATCH", f"/api/v1/namespaces/team-a/configmaps/{ROOT_CM}",
                              {"data": {"root-cert.pem": "edited"}},
                              "application/merge-patch+json")
        await eventually(lambda: published("team-a"), "the edited ConfigMap corrected")
        assert lease_holder(cluster) == "pilotpy-0"
    assert lease_holder(cluster) == ""  # released on a clean stop: no successor waits


def lease_holder(cluster: Cluster) -> str:
    try:
        lease = cluster.admin.get(f"/apis/coordination.k8s.io/v1/namespaces/istio-system/"
                                  f"leases/{ELECTION}")
    except ApiStatusError:
        return ""
    return str(lease["spec"].get("holderIdentity") or "")


def replica(cluster: Cluster, workdir: Path, name: str) -> subprocess.Popen[bytes]:
    kubeconfig = cluster.kubeconfig(workdir / f"kubeconfig-{name}")
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "pilotpy.cli", "serve", "--kubeconfig", str(kubeconfig),
         "--grpc-addr", "127.0.0.1:0", "--grpc-tls-addr", "127.0.0.1:0",
         "--http-addr", "127.0.0.1:0", "--monitoring-addr", "127.0.0.1:0",
         "--webhook-addr", "", "--lease-duration", "4s"],
        env={**os.environ, "POD_NAME": name}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)


def test_two_replicas_elect_one_leader_and_the_other_takes_over(cluster: Cluster,
                                                                tmp_path: Path) -> None:
    replicas = {name: replica(cluster, tmp_path, name) for name in ("istiod-a", "istiod-b")}
    try:
        deadline = time.monotonic() + 40
        while lease_holder(cluster) not in replicas:
            assert time.monotonic() < deadline, (tmp_path / "istiod-a.log").read_text()
            time.sleep(0.2)
        leader = lease_holder(cluster)
        follower = next(n for n in replicas if n != leader)
        # Both campaign once their CA is loaded; only then can a follower steal.
        while not all("TLS xDS and CA on" in (tmp_path / f"{n}.log").read_text()
                      for n in replicas):
            assert time.monotonic() < deadline, "a replica never opened its TLS port"
            time.sleep(0.2)
        for _ in range(15):  # several renewals: the follower never steals a live lease
            assert lease_holder(cluster) == leader
            time.sleep(0.2)
        assert f"{follower} leads" not in (tmp_path / f"{follower}.log").read_text()
        os.killpg(replicas[leader].pid, signal.SIGKILL)  # no release: the lease must expire
        replicas[leader].wait(10)
        killed = time.monotonic()
        while lease_holder(cluster) != follower:
            assert time.monotonic() - killed < 4 + 2 + 3, "no takeover within the lease time"
            time.sleep(0.2)
        # The new leader keeps the root published.
        cluster.admin.ensure_namespace("team-b")
        deadline = time.monotonic() + 20
        while root_config_map(cluster, "team-b") is None:
            assert time.monotonic() < deadline, (tmp_path / f"{follower}.log").read_text()
            time.sleep(0.2)
    finally:
        for process in replicas.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
