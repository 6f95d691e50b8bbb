"""outboundTrafficPolicy for a host outside the mesh (an HTTP server on port 80 in a pod that
is in no registry): ALLOW_ANY lets it through PassthroughCluster, REGISTRY_ONLY (here from a
Sidecar resource) answers 502 from block_all, and removing the Sidecar restores access."""

from __future__ import annotations

from tests.mesh.conftest import HTTPBIN, PODS
from tests.mesh.mesh import Mesh

REGISTRY_ONLY_SIDECAR = {
    "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
    "metadata": {"name": "sleep", "namespace": "default"},
    "spec": {"workloadSelector": {"labels": {"app": "sleep"}},
             "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
}
PASSTHROUGH = "cluster.PassthroughCluster;.upstream_rq_total"


def _vhosts(config: dict[str, object]) -> set[str]:
    hosts = config.get("virtual_hosts", [])
    assert isinstance(hosts, list)
    return {str(v.get("name")) for v in hosts if isinstance(v, dict)}


def test_allow_any_then_registry_only_then_allow_any(mesh: Mesh) -> None:
    client, outside = mesh.pods["sleep"], mesh.pods["outside"]
    url = f"http://{outside.ip}/get"
    mesh.remove("sidecar.yaml")
    mesh.wait_for_route("sleep", "80", lambda c: "allow_any" in _vhosts(c), "allow_any")

    before = client.stat(PASSTHROUGH)
    (answer,) = client.get(url)
    assert answer["status"] == 200, answer
    assert answer["headers"].get("x-backend-name") == "outside"
    assert client.stat(PASSTHROUGH) > before

    mesh.write("sidecar.yaml", [REGISTRY_ONLY_SIDECAR])
    try:
        mesh.wait_for_route("sleep", "80", lambda c: "block_all" in _vhosts(c), "block_all")
        (answer,) = client.get(url)
        assert answer["status"] == 502, answer
        # Services in the registry still work.
        (inside,) = client.get("http://httpbin-service/get")
        assert inside["status"] == 200, inside
    finally:
        mesh.remove("sidecar.yaml")
    mesh.wait_for_route("sleep", "80", lambda c: "allow_any" in _vhosts(c), "allow_any again")
    (answer,) = client.get(url)
    assert answer["status"] == 200, answer


def test_mesh_config_registry_only_blocks_hosts_outside_the_registry() -> None:
    """meshConfig outboundTrafficPolicy REGISTRY_ONLY, in a mesh of its own."""
    own = Mesh([spec for spec in PODS if spec.name != "httpbin-v2"], [HTTPBIN],
               mesh_config={"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}})
    try:
        own.start()
        client, outside = own.pods["sleep"], own.pods["outside"]
        (blocked,) = client.get(f"http://{outside.ip}/get")
        assert blocked["status"] == 502, blocked
        (inside,) = client.get("http://httpbin-service/get")
        assert (inside["status"], inside["version"]) == (200, "v1"), inside
        # A port no listener serves falls through to virtualOutbound's catch-all chain.
        (dropped,) = client.get(f"http://{outside.ip}:81/get", timeout=3)
        assert dropped["status"] == 0, dropped
        assert client.stat("cluster.BlackHoleCluster;.upstream_cx_none_healthy") > 0
        assert not own.rejected(), own.rejected()
    finally:
        own.teardown()
    assert own.network.leftovers() == []
