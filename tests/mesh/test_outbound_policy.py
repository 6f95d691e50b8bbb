"""outboundTrafficPolicy for a host outside the mesh (an HTTP server on port 80 in a pod that
is in no registry): ALLOW_ANY lets it through PassthroughCluster, REGISTRY_ONLY (here from a
Sidecar resource) answers 502 from block_all, and removing the Sidecar restores access."""

from __future__ import annotations

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
