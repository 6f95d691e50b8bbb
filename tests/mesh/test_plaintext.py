"""A pod without a sidecar calls a pod with one: plaintext is accepted (no mTLS yet), and
the call goes through the server sidecar's inbound chain."""

from __future__ import annotations

from tests.mesh.mesh import Mesh

INBOUND = "cluster.inbound|8000||;.upstream_rq_total"


def test_pod_without_sidecar_reaches_a_pod_with_one(mesh: Mesh) -> None:
    outside, server = mesh.pods["outside"], mesh.pods["httpbin-v1"]
    before = server.stat(INBOUND)
    (answer,) = outside.get(f"http://{server.ip}:8000/headers")
    assert answer["status"] == 200, answer
    assert answer["version"] == "v1"
    assert answer["headers"]["server"] == "istio-envoy"  # the inbound sidecar answered
    assert server.stat(INBOUND) > before
